"""Aggregate integrity (issue 12, finding 3): the tags catch any aggregate that is not the sum.

The honest rounds run the real pipeline (masks, pairwise seeds, CKKS, `UpdateSum`, the
mask correction) on tagged vectors; the attacks then change what the coordinator serves.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.crypto import integrity, pipeline, wire
from accord.crypto.messages import Stage
from accord.crypto.profile import Profile
from accord.errors import IntegrityError, InternalError
from tests.crypto.harness import FederationHarness

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
BITS = 16
SECURE = [Profile.MASKS, Profile.CKKS, Profile.CKKS_MASKS]


def tagged(values: np.ndarray, participant: str, *, round: int = 1, key: bytes = KEY) -> np.ndarray:
    return integrity.append_tags(
        values,
        key,
        federation_id="fed-test",
        round=round,
        participant=participant,
        modulus_bits=BITS,
    )


def check(sums: np.ndarray, survivors: tuple[str, ...], *, round: int = 1) -> np.ndarray:
    return integrity.check(
        sums,
        KEY,
        federation_id="fed-test",
        round=round,
        survivors=survivors,
        modulus_bits=BITS,
    )


def tagged_harness(profile: Profile, n: int = 4, *, threshold: int | None = None):
    """A harness whose participants upload tagged vectors (values and weight, then tags)."""
    body = 300
    harness = FederationHarness(
        n,
        profile=profile,
        threshold=threshold,
        element_count=integrity.protected_length(body - 1, profile),
        modulus_bits=BITS,
    )
    for p in harness.ids:
        harness.inputs[p] = tagged(harness.inputs[p][:body], p)
    return harness


def field_sum(*vectors: np.ndarray) -> np.ndarray:
    total = np.sum([v.astype(np.uint64) for v in vectors], axis=0)
    return (total % (1 << BITS)).astype(np.uint32)


@pytest.mark.parametrize("profile", SECURE, ids=str)
def test_the_honest_aggregate_passes_and_loses_its_tags(profile: Profile) -> None:
    harness = tagged_harness(profile)
    result = harness.run()
    assert result.stage is Stage.AGGREGATE
    body = check(result.aggregate, result.survivors)
    assert body.size == harness.config.element_count - integrity.TAG_SLOTS
    np.testing.assert_array_equal(body, result.expected[: body.size])


@pytest.mark.parametrize("profile", [Profile.MASKS, Profile.CKKS_MASKS], ids=str)
def test_the_honest_aggregate_passes_after_a_dropout_and_the_mask_correction(
    profile: Profile,
) -> None:
    harness = tagged_harness(profile, 5, threshold=3)
    result = harness.run(drop_before={Stage.UPLOAD: {"p03"}})
    assert result.stage is Stage.AGGREGATE
    assert "p03" not in result.survivors
    check(result.aggregate, result.survivors)
    # The same aggregate claimed for all five (the dropped one too) is refused.
    with pytest.raises(IntegrityError, match="round 1 is not the sum of the uploads"):
        check(result.aggregate, harness.ids)


@pytest.mark.parametrize("profile", SECURE, ids=str)
def test_attacks_on_the_aggregate_are_caught(profile: Profile) -> None:
    harness = tagged_harness(profile)
    result = harness.run()
    honest, survivors = result.aggregate, result.survivors
    one = harness.inputs["p01"]
    replayed = tagged(one[: -integrity.TAG_SLOTS], "p01", round=2)
    forged = np.random.default_rng(5).integers(0, 1 << BITS, honest.size).astype(np.uint32)
    forged[-integrity.TAG_SLOTS :] = 0  # a change of the values only, tags left as they are
    half = np.zeros(honest.size, dtype=np.uint32)
    half[7] = 1 << (BITS - 1)  # the hardest change for one tag: divisible by 2^(b-1)
    attacks = {
        "one member's upload served as the aggregate": one,
        "a dropped contribution": field_sum(honest, (-one.astype(np.int64)) % (1 << BITS)),
        "a duplicated contribution": field_sum(honest, one),
        "a contribution replayed from round 2": field_sum(
            honest, (-one.astype(np.int64)) % (1 << BITS), replayed
        ),
        "an added forged vector": field_sum(honest, forged),
        "an added vector divisible by 2^(b-1)": field_sum(honest, half),
        "a scaled sum": field_sum(honest, honest),
    }
    for what, served in attacks.items():
        with pytest.raises(IntegrityError, match="is not the sum of the uploads"):
            check(served, survivors)
            pytest.fail(f"not caught: {what}")
    for wrong in (survivors[:-1], (*survivors, "p99")):
        with pytest.raises(IntegrityError):
            check(honest, wrong)
    with pytest.raises(IntegrityError):  # the aggregate of round 1 claimed for round 2
        check(honest, survivors, round=2)


def test_a_single_ciphertext_upload_revealed_as_the_aggregate_is_caught() -> None:
    """CKKS: the coordinator serves one member's own ciphertexts as the sum of all."""
    harness = tagged_harness(Profile.CKKS)
    result = harness.run()
    chunks = pipeline.protect(
        harness.inputs["p02"],
        profile=Profile.CKKS,
        federation_id="fed-test",
        round=1,
        mask_terms=[],
        modulus_bits=BITS,
        packing=harness.packing,
        secret=harness.secret,
    )
    # The aggregate flag sits behind an unkeyed CRC: the coordinator sets it at will.
    relabelled = []
    for chunk in chunks:
        header, payload = wire.decode_chunk(chunk)
        flagged = dataclasses.replace(header, flags=header.flags | wire.FLAG_AGGREGATE)
        relabelled.append(wire.encode_chunk(flagged, payload))
    served = pipeline.reveal(
        relabelled,
        profile=Profile.CKKS,
        element_count=harness.config.element_count,
        modulus_bits=BITS,
        packing=harness.packing,
        secret=harness.secret,
    )
    with pytest.raises(IntegrityError, match=r"\{p00, p01, p02, p03\}"):
        check(served, result.survivors)


def test_tags_of_another_key_fail() -> None:
    values = np.arange(50, dtype=np.uint32)
    sums = tagged(values, "p00", key=OTHER_KEY)
    with pytest.raises(IntegrityError):
        check(sums, ("p00",))


def test_bad_arguments_are_refused() -> None:
    values = np.arange(50, dtype=np.uint32)
    with pytest.raises(InternalError):
        tagged(values, "p00", key=b"short")
    sums = tagged(values, "p00")
    with pytest.raises(InternalError):
        check(sums, ())
    with pytest.raises(InternalError):
        check(sums, ("p00", "p00"))
    with pytest.raises(InternalError):
        check(sums[: integrity.TAG_SLOTS], ("p00",))


def test_protected_length_counts_the_tags_of_secure_profiles_only() -> None:
    assert integrity.protected_length(10, Profile.NONE) == 11
    for profile in SECURE:
        length = integrity.protected_length(10, profile)
        assert length == 11 + integrity.TAG_SLOTS
        assert integrity.adapter_parameters(length, profile) == 10


def test_tags_span_several_prg_chunks() -> None:
    """A vector longer than one chunk of R: the chunked product equals the linear sum."""
    rng = np.random.default_rng(1)
    size = integrity.CHUNK_ELEMENTS + 123
    a = rng.integers(0, 1 << BITS, size).astype(np.uint32)
    b = rng.integers(0, 1 << BITS, size).astype(np.uint32)
    check(field_sum(tagged(a, "p00"), tagged(b, "p01")), ("p00", "p01"))


@settings(max_examples=40, deadline=None)
@given(
    size=st.integers(1, 400),
    count=st.integers(1, 5),
    bits=st.sampled_from([8, 12, 16, 24, 32]),
    seed=st.integers(0, 2**32 - 1),
    position=st.integers(0, 10_000),
)
def test_random_sums_pass_and_random_changes_fail(
    size: int, count: int, bits: int, seed: int, position: int
) -> None:
    rng = np.random.default_rng(seed)
    names = tuple(f"m{i}" for i in range(count))
    modulus = 1 << bits
    total = np.zeros(size + integrity.TAG_SLOTS, dtype=np.uint64)
    for name in names:
        x = rng.integers(0, modulus, size, dtype=np.uint64).astype(np.uint32)
        total += integrity.append_tags(
            x, KEY, federation_id="f", round=3, participant=name, modulus_bits=bits
        )
    sums = (total % modulus).astype(np.uint32)
    body = integrity.check(
        sums, KEY, federation_id="f", round=3, survivors=names, modulus_bits=bits
    )
    assert body.size == size
    changed = sums.copy()
    index = position % size
    changed[index] = (int(changed[index]) + int(rng.integers(1, modulus))) % modulus
    with pytest.raises(IntegrityError):
        integrity.check(
            changed, KEY, federation_id="f", round=3, survivors=names, modulus_bits=bits
        )
