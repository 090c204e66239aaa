"""Specification of accord.crypto.prg: a seekable AES-128-CTR stream of Z_{2^b} elements."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st

from accord.crypto.prg import Keystream, expand
from accord.errors import InternalError

SEED = bytes(range(16))


def reference(seed: bytes, start: int, count: int, bits: int) -> list[int]:
    """The definition, word by word: encrypt zeros from counter block 0, slice, mask."""
    stream = (
        Cipher(algorithms.AES(seed), modes.CTR(bytes(16)))
        .encryptor()
        .update(bytes(4 * (start + count)))
    )
    words = [
        int.from_bytes(stream[4 * i : 4 * i + 4], "little") for i in range(start, start + count)
    ]
    return [word % (1 << bits) for word in words]


@given(
    seed=st.binary(min_size=16, max_size=16),
    start=st.integers(0, 300),
    count=st.integers(0, 300),
    bits=st.integers(1, 32),
)
def test_matches_the_word_by_word_definition(
    seed: bytes, start: int, count: int, bits: int
) -> None:
    out = expand(seed, start, count, bits)
    assert out.dtype == np.uint32
    assert out.shape == (count,)
    assert out.tolist() == reference(seed, start, count, bits)


@given(
    bits=st.sampled_from([8, 12, 16, 24, 32]),
    cuts=st.lists(st.integers(0, 5000), max_size=8),
)
def test_chunks_at_any_offsets_equal_slices_of_the_full_expansion(
    bits: int, cuts: list[int]
) -> None:
    total = 5000
    full = expand(SEED, 0, total, bits)
    bounds = [0, *sorted(cuts), total]
    pieces = [expand(SEED, a, b - a, bits) for a, b in itertools.pairwise(bounds)]
    np.testing.assert_array_equal(np.concatenate(pieces), full)


def test_long_streams_cross_internal_piece_boundaries_seamlessly() -> None:
    # 100_003 words span several of the 64 KiB pieces the implementation encrypts at once.
    start, count = 3, 100_003
    stream = (
        Cipher(algorithms.AES(SEED), modes.CTR(bytes(16)))
        .encryptor()
        .update(bytes(4 * (start + count)))
    )
    expected = np.frombuffer(stream, dtype="<u4")[start:].astype(np.uint32)
    np.testing.assert_array_equal(expand(SEED, start, count, 32), expected)
    np.testing.assert_array_equal(expand(SEED, start, count, 16), expected & 0xFFFF)


@given(bits=st.integers(1, 32), start=st.integers(0, 2**40))
def test_values_are_below_the_modulus(bits: int, start: int) -> None:
    out = expand(SEED, start, 257, bits)
    assert int(out.max()) < (1 << bits)


def test_seeking_far_sets_the_big_endian_counter_block() -> None:
    start = 2**64 - 5
    block, skip = divmod(4 * start, 16)
    stream = (
        Cipher(algorithms.AES(SEED), modes.CTR(block.to_bytes(16, "big")))
        .encryptor()
        .update(bytes(skip + 20))
    )
    expected = np.frombuffer(stream[skip:], dtype="<u4")
    np.testing.assert_array_equal(expand(SEED, start, 5, 32), expected)


def test_different_seeds_give_different_streams() -> None:
    other = bytes(15) + b"\x01"
    assert not np.array_equal(expand(SEED, 0, 64, 32), expand(other, 0, 64, 32))


def test_empty_expansion() -> None:
    out = expand(SEED, 12345, 0, 16)
    assert out.shape == (0,)
    assert out.dtype == np.uint32


def test_wide_modulus_is_roughly_uniform() -> None:
    # A smoke test of the reading, not of AES: 8-bit values of a long stream use all
    # 256 values, and their mean is near 127.5.
    out = expand(SEED, 0, 1 << 16, 8)
    assert len(np.unique(out)) == 256
    assert abs(float(out.mean()) - 127.5) < 2


@pytest.mark.parametrize("seed", [b"", bytes(15), bytes(17), bytes(32)])
def test_refuses_seeds_that_are_not_16_bytes(seed: bytes) -> None:
    with pytest.raises(InternalError):
        expand(seed, 0, 4, 16)


@pytest.mark.parametrize(
    ("start", "count", "bits"),
    [(-1, 4, 16), (0, -1, 16), (0, 4, 0), (0, 4, 33), (2**64, 1, 16), (0, 4, True), (1.0, 4, 16)],
)
def test_refuses_bad_ranges(start: object, count: object, bits: object) -> None:
    with pytest.raises(InternalError):
        expand(SEED, start, count, bits)  # type: ignore[arg-type]


def test_keystream_reads_on_where_it_left_off() -> None:
    stream = Keystream(SEED, 5)
    scratch = np.empty(4 * 100 + 16, dtype=np.uint8)
    first = stream.read_into(scratch, 7).copy()
    second = stream.read_into(scratch, 100).copy()
    np.testing.assert_array_equal(np.concatenate([first, second]), expand(SEED, 5, 107, 32))


@pytest.mark.parametrize("seed", [bytes(24), bytes(32)])
def test_keystream_refuses_longer_aes_keys(seed: bytes) -> None:
    with pytest.raises(InternalError):
        Keystream(seed, 0)


def test_keystream_refuses_a_short_scratch_buffer() -> None:
    with pytest.raises(InternalError):
        Keystream(SEED, 0).read_into(np.empty(4 * 10, dtype=np.uint8), 10)
