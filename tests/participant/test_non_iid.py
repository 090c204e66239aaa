"""Non-IID options of the benchmark data: feature and quantity skew really present."""

from __future__ import annotations

import numpy as np
import pytest

from accord.errors import ConfigError
from accord.participant.data import city_safety, digit_incidents, incident_sets, non_iid
from accord.participant.data.folder import Example


@pytest.fixture(scope="module")
def digits() -> incident_sets.Benchmark:
    # Near-IID labels (large alpha), so that only the options below make enterprises differ.
    return digit_incidents.digits_benchmark(
        3, source="digits", seed=1, dirichlet_alpha=100.0, vague_share=0.0, limit=300
    )


def _mean_brightness(examples: tuple[Example, ...]) -> float:
    return float(np.mean([e.image.mean() for e in examples]))


def test_feature_skew_keeps_shapes_labels_and_counts(digits: incident_sets.Benchmark) -> None:
    skewed = non_iid.feature_skew(digits)
    for before, after in zip(digits.enterprises, skewed.enterprises, strict=True):
        assert len(after.train) == len(before.train) and len(after.test) == len(before.test)
        for old, new in zip(before.train + before.test, after.train + after.test, strict=True):
            assert new.image.shape == old.image.shape and new.image.dtype == np.uint8
            assert (new.id, new.label, new.split) == (old.id, old.label, old.split)
    assert skewed.settings["feature_skew"] == 1.0


def test_feature_skew_gives_each_enterprise_its_own_brightness(
    digits: incident_sets.Benchmark,
) -> None:
    before = [_mean_brightness(e.train) for e in digits.enterprises]
    after = [_mean_brightness(e.train) for e in non_iid.feature_skew(digits).enterprises]
    # Enterprise 0 keeps its exposure, 1 is darkened (x0.45), 2 brightened (x1.6).
    assert after[0] == pytest.approx(before[0], rel=0.02)
    assert after[1] < 0.6 * before[1]
    assert after[2] > 1.2 * before[2]
    assert after[1] < after[0] < after[2]


def test_feature_skew_gives_each_enterprise_its_own_words(
    digits: incident_sets.Benchmark,
) -> None:
    skewed = non_iid.feature_skew(digits)
    for index, enterprise in enumerate(skewed.enterprises):
        for example in enterprise.train:
            phrases = incident_sets.SPECIFIC_PHRASES[example.label]
            assert phrases[index % len(phrases)] in example.text
            assert not any(p in example.text for p in phrases if p != phrases[index % len(phrases)])
    # Before the skew, one enterprise wrote its incidents in several ways.
    first = digits.enterprises[0].train
    used = {p for e in first for p in incident_sets.SPECIFIC_PHRASES[e.label] if p in e.text}
    assert len(used) > len(incident_sets.SPECIFIC_PHRASES)


def test_feature_skew_of_strength_zero_changes_nothing(digits: incident_sets.Benchmark) -> None:
    same = non_iid.feature_skew(digits, strength=0.0)
    for before, after in zip(digits.enterprises, same.enterprises, strict=True):
        pairs = zip(after.train, before.train, strict=True)
        assert all(np.array_equal(a.image, b.image) for a, b in pairs)
        assert [e.text for e in after.train] == [e.text for e in before.train]
    with pytest.raises(ConfigError, match="strength"):
        non_iid.feature_skew(digits, strength=1.5)


def test_quantity_skew_keeps_the_given_shares_of_training_data(
    digits: incident_sets.Benchmark,
) -> None:
    skewed = non_iid.quantity_skew(digits, (1.0, 0.25, 0.05))
    counts = [len(e.train) for e in skewed.enterprises]
    full = [len(e.train) for e in digits.enterprises]
    assert counts[0] == full[0]
    assert counts[1] == round(0.25 * full[1])
    assert counts[2] == max(1, round(0.05 * full[2]))
    assert counts[0] > 3 * counts[1] > 3 * counts[2]
    # Test splits stay whole, and kept samples are the originals.
    for before, after in zip(digits.enterprises, skewed.enterprises, strict=True):
        assert after.test == before.test
        assert after.train == before.train[: len(after.train)]
    with pytest.raises(ConfigError, match="one per enterprise"):
        non_iid.quantity_skew(digits, (1.0, 0.5))
    with pytest.raises(ConfigError, match=r"\(0, 1\]"):
        non_iid.quantity_skew(digits, (1.0, 0.0, 0.5))


def test_split_validation_holds_out_a_disjoint_share(digits: incident_sets.Benchmark) -> None:
    enterprise = digits.enterprises[0]
    fit, validation = non_iid.split_validation(enterprise, 0.2, seed=3)
    assert len(validation) == round(0.2 * len(enterprise.train))
    assert len(fit) + len(validation) == len(enterprise.train)
    assert {e.id for e in fit}.isdisjoint({e.id for e in validation})
    assert not {e.id for e in validation} & {e.id for e in enterprise.test}
    assert non_iid.split_validation(enterprise, 0.2, seed=3) == (fit, validation)


def _example(label: str) -> Example:
    return Example(label, np.zeros((2, 2), np.uint8), "", label, "test")


def test_coverage_ceiling_counts_test_samples_of_seen_labels() -> None:
    train = [_example("fire"), _example("flood"), _example("fire")]
    test = [_example(label) for label in ("fire", "flood", "gas_leak", "vandalism", "fire")]
    assert non_iid.coverage_ceiling(train, test) == pytest.approx(3 / 5)
    assert non_iid.coverage_ceiling(train, []) == 1.0
    assert non_iid.coverage_ceiling([], test) == 0.0


def test_coverage_ceiling_of_a_label_skewed_benchmark_is_below_one() -> None:
    skewed = city_safety.city_safety_benchmark(
        3, train_per_enterprise=40, test_per_enterprise=10, frame_size=16
    )
    pooled = skewed.pooled_test
    ceilings = [non_iid.coverage_ceiling(e.train, pooled) for e in skewed.enterprises]
    # Each city domain has only part of the labels, so none covers the pooled test set.
    assert all(0 < c < 1 for c in ceilings)
    for enterprise in skewed.enterprises:
        assert non_iid.coverage_ceiling(enterprise.train, enterprise.train) == 1.0
