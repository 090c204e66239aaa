"""Specification of accord.crypto.quantize: fixed point in Z_{2^b} with exact sums."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.crypto.quantize import (
    QuantSpec,
    clip_l2,
    decode,
    dequantize,
    encode,
    from_field,
    quantize,
    to_field,
)
from accord.errors import ConfigError, IntegrityError, InternalError, UsageError


def test_default_spec_has_documented_levels() -> None:
    spec = QuantSpec()
    assert spec.headroom_bits == 4
    assert spec.max_level == 2**11 - 1
    assert spec.bound == 1.0
    assert spec.step == pytest.approx(1.0 / 2047)
    assert spec.cap == 2047


@pytest.mark.parametrize(
    ("participants", "headroom"), [(1, 0), (2, 1), (3, 2), (4, 2), (5, 3), (16, 4), (17, 5)]
)
def test_headroom_is_ceil_log2_of_participants(participants: int, headroom: int) -> None:
    spec = QuantSpec(modulus_bits=32, max_participants=participants)
    assert spec.headroom_bits == headroom
    assert spec.max_level == 2 ** (31 - headroom) - 1


def test_value_bound_and_weight_cap_override_defaults() -> None:
    spec = QuantSpec(
        modulus_bits=16, max_participants=16, clip_norm=2.0, value_bound=0.5, weight_cap=100
    )
    assert spec.bound == 0.5
    assert spec.step == pytest.approx(0.5 / 2047)
    assert spec.cap == 100


@pytest.mark.parametrize(
    ("kwargs", "names"),
    [
        ({"modulus_bits": 7}, ["modulus_bits = 7", "8, 12, 16, 24, 32"]),
        ({"modulus_bits": 16.0}, ["modulus_bits = 16.0"]),
        ({"max_participants": 0}, ["max_participants = 0", ">= 1"]),
        ({"clip_norm": -1.0}, ["clip_norm = -1.0", "> 0"]),
        ({"clip_norm": math.nan}, ["clip_norm = nan"]),
        ({"clip_norm": math.inf}, ["clip_norm = inf"]),
        ({"value_bound": 0.0}, ["value_bound = 0.0", "> 0"]),
        ({"weight_cap": 0}, ["weight_cap = 0", "1..2047"]),
        ({"weight_cap": 2048}, ["weight_cap = 2048", "1..2047"]),
        ({"weight_cap": True}, ["weight_cap = True"]),
        (
            {"modulus_bits": 8, "max_participants": 128},
            [
                "modulus_bits = 8",
                "max_participants = 128",
                "raise modulus_bits",
                "lower max_participants",
            ],
        ),
    ],
)
def test_config_error_names_field_value_and_fix(
    kwargs: dict[str, object], names: list[str]
) -> None:
    with pytest.raises(ConfigError) as caught:
        QuantSpec(**kwargs)  # type: ignore[arg-type]
    for name in names:
        assert name in str(caught.value)


def test_smallest_valid_group_has_one_level() -> None:
    spec = QuantSpec(modulus_bits=8, max_participants=64)
    assert spec.max_level == 1


def test_clip_l2_scales_long_vectors_onto_the_ball() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=1001).astype(np.float32) * 10
    clipped = clip_l2(x, 1.5)
    assert clipped.dtype == np.float32
    assert float(np.linalg.norm(clipped.astype(np.float64))) <= 1.5
    assert float(np.linalg.norm(clipped.astype(np.float64))) == pytest.approx(1.5, rel=1e-6)
    cosine = np.dot(clipped, x) / (np.linalg.norm(clipped) * np.linalg.norm(x))
    assert cosine == pytest.approx(1.0, abs=1e-6)


def test_clip_l2_leaves_short_vectors_alone_and_copies() -> None:
    x = np.array([0.1, -0.2, 0.3], dtype=np.float32)
    clipped = clip_l2(x, 1.0)
    np.testing.assert_array_equal(clipped, x)
    clipped[0] = 5
    assert x[0] == np.float32(0.1)


@given(
    values=st.lists(st.floats(-1e6, 1e6, width=32), min_size=1, max_size=200),
    clip_norm=st.floats(1e-3, 1e3),
)
def test_clip_l2_never_exceeds_the_bound(values: list[float], clip_norm: float) -> None:
    clipped = clip_l2(np.array(values, dtype=np.float32), clip_norm)
    assert float(np.linalg.norm(clipped.astype(np.float64))) <= clip_norm


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_clip_l2_refuses_non_finite_input(bad: float) -> None:
    with pytest.raises(UsageError):
        clip_l2(np.array([1.0, bad], dtype=np.float32), 1.0)


@given(
    bits=st.sampled_from([8, 12, 16, 24, 32]),
    participants=st.integers(1, 16),
    seed=st.integers(0, 2**32 - 1),
    size=st.integers(1, 300),
)
def test_round_trip_error_is_below_one_step(
    bits: int, participants: int, seed: int, size: int
) -> None:
    spec = QuantSpec(modulus_bits=bits, max_participants=participants)
    rng = np.random.default_rng(seed)
    x = rng.uniform(-spec.bound, spec.bound, size=size)
    q = quantize(x, spec, rng)
    assert q.dtype == np.int64
    assert np.all(np.abs(q) <= spec.max_level)
    assert np.all(np.abs(dequantize(q, spec) - x) < spec.step)


def test_quantize_clips_coordinates_to_the_bound() -> None:
    spec = QuantSpec(modulus_bits=12, max_participants=4, value_bound=0.25)
    q = quantize(
        np.array([-10.0, -0.25, 0.25, 10.0, np.inf, -np.inf]), spec, np.random.default_rng(0)
    )
    level = spec.max_level
    np.testing.assert_array_equal(q, [-level, -level, level, level, level, -level])


def test_quantize_refuses_nan() -> None:
    with pytest.raises(UsageError):
        quantize(np.array([0.0, np.nan]), QuantSpec(), np.random.default_rng(0))


@pytest.mark.parametrize("fraction", [0.1, 0.37, 0.5, 0.93])
def test_stochastic_rounding_is_unbiased(fraction: float) -> None:
    spec = QuantSpec(modulus_bits=8, max_participants=16)
    x = (3 + fraction) * spec.step
    draws = 200_000
    q = quantize(np.full(draws, x), spec, np.random.default_rng(7))
    assert set(np.unique(q)) <= {3, 4}
    # The rounding error of one draw is Bernoulli(fraction) in steps; allow 5 sigma.
    sigma = math.sqrt(fraction * (1 - fraction) / draws)
    assert abs(float(dequantize(q, spec).mean()) - x) < 5 * sigma * spec.step


@given(bits=st.integers(1, 32), data=st.data())
def test_field_round_trip_is_the_centred_lift(bits: int, data: st.DataObject) -> None:
    half = 1 << (bits - 1)
    values = data.draw(st.lists(st.integers(-half, half - 1), min_size=1, max_size=50))
    q = np.array(values, dtype=np.int64)
    field = to_field(q, bits)
    assert field.dtype == np.uint32
    assert np.all(field.astype(np.int64) < (1 << bits))
    np.testing.assert_array_equal(field.astype(np.int64) % (1 << bits), q % (1 << bits))
    np.testing.assert_array_equal(from_field(field, bits), q)


def test_from_field_reduces_unreduced_sums() -> None:
    total = np.array([2**16 + 5, 3 * 2**16 - 1], dtype=np.uint64)
    np.testing.assert_array_equal(from_field(total, 16), [5, -1])


@pytest.mark.parametrize("bits", [0, 33, 16.0])
def test_field_maps_refuse_bad_modulus(bits: object) -> None:
    with pytest.raises(InternalError):
        to_field(np.array([1]), bits)  # type: ignore[arg-type]
    with pytest.raises(InternalError):
        from_field(np.array([1]), bits)  # type: ignore[arg-type]


def test_field_maps_refuse_floats() -> None:
    with pytest.raises(InternalError):
        to_field(np.array([1.0]), 16)


@pytest.mark.parametrize("size", [1, 3, 7, 1001])
def test_encode_appends_the_capped_weight(size: int) -> None:
    spec = QuantSpec(modulus_bits=16, max_participants=8, weight_cap=50)
    rng = np.random.default_rng(size)
    delta = rng.normal(size=size).astype(np.float32)
    for weight, expected in [(0, 0), (1, 1), (50, 50), (10_000, 50)]:
        encoded = encode(delta, weight, spec, rng)
        assert encoded.dtype == np.uint32
        assert encoded.shape == (size + 1,)
        assert np.all(encoded < 2**16)
        assert int(encoded[-1]) == expected


def test_weight_zero_encodes_zeros() -> None:
    spec = QuantSpec()
    encoded = encode(np.ones(5, dtype=np.float32), 0, spec, np.random.default_rng(0))
    np.testing.assert_array_equal(encoded, np.zeros(6, dtype=np.uint32))


@pytest.mark.parametrize("weight", [-1, 1.5, True])
def test_encode_refuses_bad_weight(weight: object) -> None:
    with pytest.raises(InternalError):
        encode(np.zeros(3, dtype=np.float32), weight, QuantSpec(), np.random.default_rng(0))  # type: ignore[arg-type]


def test_encode_refuses_matrices() -> None:
    with pytest.raises(InternalError):
        encode(np.zeros((2, 3), dtype=np.float32), 1, QuantSpec(), np.random.default_rng(0))


@settings(max_examples=60)
@given(
    bits=st.sampled_from([8, 12, 16]),
    participants=st.integers(1, 16),
    spare=st.integers(0, 8),
    size=st.integers(1, 97),
    seed=st.integers(0, 2**32 - 1),
    data=st.data(),
)
def test_sum_of_encodings_decodes_to_the_weighted_mean(
    bits: int, participants: int, spare: int, size: int, seed: int, data: st.DataObject
) -> None:
    # The spec allows more participants than actually take part.
    spec = QuantSpec(modulus_bits=bits, max_participants=participants + spare, clip_norm=2.0)
    weights = data.draw(
        st.lists(st.integers(1, 3 * spec.cap), min_size=participants, max_size=participants)
    )
    rng = np.random.default_rng(seed)
    deltas = rng.normal(scale=1.5, size=(participants, size)).astype(np.float32)
    total = np.zeros(size + 1, dtype=np.uint64)
    for delta, weight in zip(deltas, weights, strict=True):
        total += encode(delta, weight, spec, rng)
    mean, total_weight = decode(total % (1 << bits), spec)

    capped = np.array([min(w, spec.cap) for w in weights], dtype=np.float64)
    clipped = np.stack([clip_l2(delta, spec.clip_norm) for delta in deltas]).astype(np.float64)
    expected = (capped[:, None] * clipped).sum(axis=0) / capped.sum()
    assert total_weight == int(capped.sum())
    assert mean.dtype == np.float32
    assert mean.shape == (size,)
    # Each participant's rounding error is below one step of the scaled value, i.e.
    # below step * cap / W in the mean; float32 output adds a relative 2^-23.
    bound = participants * spec.step * spec.cap / total_weight
    assert np.all(np.abs(mean - expected) <= bound + 1e-6 * (1 + np.abs(expected)))


@pytest.mark.parametrize("bits", [8, 12, 16, 24, 32])
def test_worst_case_sum_of_max_participants_does_not_wrap(bits: int) -> None:
    spec = QuantSpec(modulus_bits=bits, max_participants=16)
    rng = np.random.default_rng(0)
    total = np.zeros(4, dtype=np.uint64)
    for _ in range(spec.max_participants):
        # The largest update there is: all of the L2 budget on one coordinate, and a
        # weight far above the cap.
        total += encode(np.array([spec.clip_norm, 0, 0], dtype=np.float32), 10**9, spec, rng)
    lifted = from_field(total % (1 << bits), bits)
    assert lifted[0] == spec.max_participants * spec.max_level
    assert lifted[-1] == spec.max_participants * spec.cap
    mean, weight = decode(total % (1 << bits), spec)
    assert weight == spec.max_participants * spec.cap
    np.testing.assert_allclose(mean, [spec.clip_norm, 0, 0], atol=1e-6)


def test_negative_extremes_do_not_wrap_either() -> None:
    spec = QuantSpec(modulus_bits=8, max_participants=16)
    rng = np.random.default_rng(0)
    total = np.zeros(2, dtype=np.uint64)
    for _ in range(16):
        total += encode(np.array([-1.0], dtype=np.float32), spec.cap, spec, rng)
    assert from_field(total % 256, 8)[0] == -16 * spec.max_level
    mean, _ = decode(total % 256, spec)
    np.testing.assert_allclose(mean, [-1.0], atol=1e-6)


def test_decode_of_zero_weight_is_zeros() -> None:
    mean, weight = decode(np.zeros(4, dtype=np.uint32), QuantSpec())
    assert weight == 0
    np.testing.assert_array_equal(mean, np.zeros(3, dtype=np.float32))
    assert mean.dtype == np.float32


def test_decode_refuses_negative_total_weight() -> None:
    field = np.array([0, 2**16 - 1], dtype=np.uint32)
    with pytest.raises(IntegrityError) as caught:
        decode(field, QuantSpec())
    assert "weight" in str(caught.value)


def test_decode_refuses_empty_input() -> None:
    with pytest.raises(InternalError):
        decode(np.zeros(0, dtype=np.uint32), QuantSpec())


def test_encoding_is_reproducible_with_the_same_generator_seed() -> None:
    spec = QuantSpec()
    delta = np.linspace(-0.2, 0.2, 17, dtype=np.float32)
    first = encode(delta, 3, spec, np.random.default_rng(42))
    second = encode(delta, 3, spec, np.random.default_rng(42))
    np.testing.assert_array_equal(first, second)
