"""Packing: which layouts are exact, and that pack/unpack lose nothing and guess nothing."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.crypto.packing import (
    MAX_PAYLOAD_BITS,
    PackingSpec,
    choose_packing,
    pack,
    required_scale_bits,
    unpack,
)
from accord.errors import ConfigError, IntegrityError, InternalError

MODULUS_BITS = [8, 12, 16, 24, 32]


@pytest.mark.parametrize(
    ("b", "n", "k", "w", "s"),
    [
        (16, 10, 2, 20, 15),  # the default: ~4.0 bytes per parameter
        (8, 10, 3, 12, 15),  # ~2.7 bytes per parameter
        (12, 10, 2, 16, 15),
        (16, 30, 2, 21, 16),
        (16, 100, 1, 23, 17),  # 2 * 23 = 46 > 44: one field per real
        (8, 100, 2, 15, 17),
        (24, 10, 1, 28, 15),
        (32, 10, 1, 36, 15),
        (8, 1, 4, 9, 14),
    ],
)
def test_choose_packing_picks_the_densest_exact_layout(
    b: int, n: int, k: int, w: int, s: int
) -> None:
    spec = choose_packing(b, n)
    assert (spec.fields_per_real, spec.field_bits, spec.scale_bits) == (k, w, s)
    assert spec.elements_per_ciphertext == 4096 * k
    assert spec.reals_per_ciphertext == 4096
    assert spec.max_summands == n + 1


@given(b=st.integers(1, 32), n=st.integers(1, 5000))
def test_choose_packing_obeys_every_limit_or_refuses(b: int, n: int) -> None:
    w = b + math.ceil(math.log2(n + 1))
    try:
        spec = choose_packing(b, n)
    except ConfigError as err:
        assert "lower modulus_bits or max_participants" in str(err)
        assert w > MAX_PAYLOAD_BITS or w + required_scale_bits(n) > 58
        return
    k = spec.fields_per_real
    assert spec.field_bits == w
    assert k * w <= 44 and k * w + spec.scale_bits <= 58
    assert (k + 1) * w > 44 or (k + 1) * w + spec.scale_bits > 58
    # n inputs and one correction, each < 2^b, never carry into the next field.
    assert (n + 1) * (2**b - 1) < 2**w


def test_choose_packing_refuses_an_impossible_config_naming_the_limit() -> None:
    with pytest.raises(ConfigError, match=r"at most min\(44, 58 - \d+\) bits") as err:
        choose_packing(32, 1 << 20)
    assert "lower modulus_bits or max_participants" in str(err.value)


@pytest.mark.parametrize(
    ("args", "field"),
    [((0, 10), "modulus_bits"), ((33, 10), "modulus_bits"), ((16, 0), "max_participants")],
)
def test_choose_packing_refuses_bad_arguments(args: tuple[int, int], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        choose_packing(*args)


def test_choose_packing_refuses_an_unknown_ring_degree() -> None:
    with pytest.raises(ConfigError, match="poly_modulus_degree"):
        choose_packing(16, 10, 2048)


def test_the_larger_ring_is_supported() -> None:
    spec = choose_packing(16, 10, 8192)
    assert spec.poly_modulus_degree == 8192
    assert spec.elements_per_ciphertext == 8192 * spec.fields_per_real


def test_scale_rule_is_the_documented_one_at_n_4096() -> None:
    for n in range(1, 2000):
        assert required_scale_bits(n) == 13 + math.ceil(math.log2(n + 1) / 2)


@pytest.mark.parametrize(
    ("change", "limit"),
    [
        ({"field_bits": 19}, "field_bits = 19: must be >= 20"),
        ({"scale_bits": 14}, "scale_bits = 14: must be >= 15"),
        ({"fields_per_real": 3}, "must be <= 44"),
        ({"scale_bits": 19}, "must be <= 58"),
        ({"poly_modulus_degree": 1024}, "poly_modulus_degree"),
        ({"fields_per_real": 0}, "fields_per_real"),
    ],
)
def test_a_hand_made_spec_must_be_exact(change: dict[str, int], limit: str) -> None:
    base = {
        "modulus_bits": 16,
        "max_participants": 10,
        "fields_per_real": 2,
        "field_bits": 20,
        "scale_bits": 15,
    }
    PackingSpec(**base)  # the chosen one is valid
    with pytest.raises(ConfigError, match=limit):
        PackingSpec(**{**base, **change})


def test_pack_lays_out_consecutive_elements_as_fields_of_one_real() -> None:
    spec = choose_packing(8, 10)  # k = 3, w = 12
    reals = pack(np.array([1, 2, 3, 255, 0, 7], dtype=np.uint32), spec)
    assert reals.dtype == np.float64 and reals.shape == (4096,)
    assert reals[0] == 1 + 2 * 2**12 + 3 * 2**24
    assert reals[1] == 255 + 0 + 7 * 2**24
    assert not reals[2:].any()


spec_strategy = st.builds(choose_packing, st.sampled_from(MODULUS_BITS), st.integers(1, 120))


@settings(max_examples=40, deadline=None)
@given(spec=spec_strategy, data=st.data())
def test_unpack_inverts_pack(spec: PackingSpec, data: st.DataObject) -> None:
    count = data.draw(st.integers(0, spec.elements_per_ciphertext))
    seed = data.draw(st.integers(0, 2**32 - 1))
    values = np.random.default_rng(seed).integers(0, 2**spec.modulus_bits, count).astype(np.uint32)
    reals = pack(values, spec)
    assert np.all(reals == np.rint(reals)) and reals.max(initial=0) < 2.0**spec.payload_bits
    out = unpack(reals, spec, count)
    assert out.dtype == np.uint32
    np.testing.assert_array_equal(out, values)


@settings(max_examples=25, deadline=None)
@given(spec=spec_strategy, data=st.data())
def test_packed_sums_unpack_to_the_sum_mod_2b_despite_noise(
    spec: PackingSpec, data: st.DataObject
) -> None:
    n = data.draw(st.integers(1, spec.max_participants))
    count = data.draw(st.integers(1, spec.elements_per_ciphertext))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    top = 2**spec.modulus_bits
    # n uploads and one correction vector: the most a ciphertext may hold.
    inputs = [rng.integers(0, top, count).astype(np.uint32) for _ in range(n + 1)]
    total = np.sum([pack(v, spec) for v in inputs], axis=0)
    noisy = total + rng.uniform(-0.249, 0.249, total.shape)
    expected = np.sum([v.astype(np.uint64) for v in inputs], axis=0) % top
    np.testing.assert_array_equal(unpack(noisy, spec, count), expected)


@given(offset=st.floats(0.2501, 0.7499), where=st.integers(0, 4095), sign=st.sampled_from([-1, 1]))
def test_unpack_refuses_a_value_that_is_not_an_integer(
    offset: float, where: int, sign: int
) -> None:
    spec = choose_packing(16, 10)
    reals = pack(np.arange(100, dtype=np.uint32), spec)
    reals[where] += sign * offset
    with pytest.raises(IntegrityError, match="exact packed integers"):
        unpack(reals, spec, 100)


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda r: r.__setitem__(3, -1.0),  # negative beyond noise
        lambda r: r.__setitem__(3, 2.0**40),  # past the k*w payload bits
        lambda r: r.__setitem__(3, np.nan),
        lambda r: r.__setitem__(3, np.inf),
        lambda r: r.__setitem__(3, float(12 * 65535)),  # field above (n+1)(2^b-1)
        lambda r: r.__setitem__(4000, 1.0),  # padding must be zero
    ],
)
def test_unpack_refuses_what_no_honest_sum_produces(corrupt: object) -> None:
    spec = choose_packing(16, 10)
    reals = pack(np.arange(100, dtype=np.uint32), spec)
    corrupt(reals)  # type: ignore[operator]
    with pytest.raises(IntegrityError):
        unpack(reals, spec, 100)


def test_unpack_returns_integers_only() -> None:
    spec = choose_packing(12, 5)
    out = unpack(pack(np.array([5, 6], dtype=np.uint32), spec) + 0.1, spec, 2)
    assert out.dtype == np.uint32
    assert out.tolist() == [5, 6]


@pytest.mark.parametrize(
    "values",
    [
        np.array([70000], dtype=np.uint32),  # >= 2^16
        np.array([-1], dtype=np.int64),
        np.zeros(2 * 4096 + 1, dtype=np.uint32),  # more than one ciphertext
        np.zeros((2, 2), dtype=np.uint32),
        np.zeros(3, dtype=np.float32),
    ],
)
def test_pack_refuses_values_that_do_not_fit(values: np.ndarray) -> None:
    with pytest.raises(InternalError):
        pack(values, choose_packing(16, 10))


def test_unpack_refuses_wrong_shapes_and_counts() -> None:
    spec = choose_packing(16, 10)
    with pytest.raises(InternalError):
        unpack(np.zeros(100), spec, 1)
    with pytest.raises(InternalError):
        unpack(np.zeros(4096), spec, 2 * 4096 + 1)


def test_ciphertext_count_rounds_up() -> None:
    spec = choose_packing(16, 10)
    assert [spec.ciphertext_count(c) for c in (1, 8192, 8193)] == [1, 1, 2]
