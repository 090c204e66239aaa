"""Specification of accord.crypto.shamir: t-of-n sharing over GF(2^521 - 1)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from accord.crypto.shamir import PRIME, SHARE_BYTES, Share, combine, split
from accord.errors import IntegrityError, InternalError, Malformed, RoundAborted


def byte_source(seed: int) -> Callable[[int], bytes]:
    rng = np.random.default_rng(seed)
    return lambda n: rng.bytes(n)


def interpolate(points: list[tuple[int, int]], x: int) -> int:
    """Value at ``x`` of the unique polynomial of degree < len(points) through ``points``."""
    total = 0
    for i, (xi, yi) in enumerate(points):
        numerator, denominator = 1, 1
        for j, (xj, _) in enumerate(points):
            if j != i:
                numerator = numerator * (x - xj) % PRIME
                denominator = denominator * (xi - xj) % PRIME
        total += yi * numerator * pow(denominator, -1, PRIME)
    return total % PRIME


@given(
    secret=st.binary(max_size=64),
    count=st.integers(1, 20),
    data=st.data(),
)
def test_any_threshold_shares_rebuild_the_secret(
    secret: bytes, count: int, data: st.DataObject
) -> None:
    threshold = data.draw(st.integers(1, count))
    shares = split(secret, threshold, count, random_bytes=byte_source(count))
    assert [share.x for share in shares] == list(range(1, count + 1))
    chosen = data.draw(st.permutations(shares)).copy()[: data.draw(st.integers(threshold, count))]
    assert combine(chosen, threshold, len(secret)) == secret


@pytest.mark.parametrize(("threshold", "count"), [(1, 1), (2, 3), (3, 5), (7, 10), (51, 100)])
def test_one_share_too_few_aborts_the_round(threshold: int, count: int) -> None:
    shares = split(b"k" * 32, threshold, count)
    with pytest.raises(RoundAborted) as caught:
        combine(shares[: threshold - 1], threshold, 32, what="the self-mask seed of P3")
    assert str(caught.value).startswith(f"only {threshold - 1} of {threshold} shares")
    assert "the self-mask seed of P3" in str(caught.value)


def test_repeated_identical_shares_count_once() -> None:
    shares = split(b"secret", 3, 5)
    with pytest.raises(RoundAborted):
        combine([shares[0], shares[1], shares[1]], 3, 6)


def test_duplicate_x_with_different_values_is_an_integrity_error() -> None:
    shares = split(b"secret", 2, 3)
    forged = Share(x=shares[1].x, y=(shares[1].y + 1) % PRIME)
    with pytest.raises(IntegrityError):
        combine([shares[0], shares[1], forged], 2, 6)
    with pytest.raises(IntegrityError):
        combine([shares[0], forged, shares[2], shares[1]], 2, 6)


@pytest.mark.parametrize("threshold", [1, 2, 3, 5])
def test_fewer_than_threshold_shares_are_consistent_with_every_secret(threshold: int) -> None:
    # Information-theoretic hiding: given t - 1 shares of secret A, for any other
    # secret B there is a polynomial of degree t - 1 through (0, B) and those same
    # shares, whose t-th share makes the set rebuild B. The t - 1 shares therefore
    # carry no information about which secret was shared.
    real = b"the real secret!"
    shares = split(real, threshold, threshold + 2, random_bytes=byte_source(threshold))
    known = shares[: threshold - 1]
    missing_x = shares[threshold - 1].x
    for candidate in [b"another secret!!", bytes(16), b"\xff" * 16]:
        points = [(0, int.from_bytes(candidate, "big"))] + [(share.x, share.y) for share in known]
        completion = Share(x=missing_x, y=interpolate(points, missing_x))
        assert combine([*known, completion], threshold, 16) == candidate
    assert combine([*known, shares[threshold - 1]], threshold, 16) == real


def test_threshold_one_hands_out_the_secret() -> None:
    secret = b"\x00\x01\x02"
    shares = split(secret, 1, 4)
    assert {share.y for share in shares} == {int.from_bytes(secret, "big")}


def test_leading_zero_bytes_survive() -> None:
    secret = bytes(5) + b"\x07"
    assert combine(split(secret, 2, 2), 2, len(secret)) == secret


def test_split_is_deterministic_given_the_randomness() -> None:
    first = split(b"abc", 3, 4, random_bytes=byte_source(9))
    assert first == split(b"abc", 3, 4, random_bytes=byte_source(9))
    assert first != split(b"abc", 3, 4, random_bytes=byte_source(10))


def test_coefficient_equal_to_the_prime_is_drawn_again() -> None:
    # 66 bytes of 0xff mask to 2^521 - 1 = p, which is not a field element.
    stream = [b"\xff" * 66, b"\x00" * 65 + b"\x05"]
    shares = split(b"\x02", 2, 2, random_bytes=lambda n: stream.pop(0))
    assert [share.y for share in shares] == [2 + 5, 2 + 10]
    assert stream == []


def test_share_bytes_round_trip() -> None:
    for share in split(b"k" * 32, 3, 5):
        encoded = share.to_bytes()
        assert len(encoded) == SHARE_BYTES == 69
        assert encoded[0] == 1
        assert Share.from_bytes(encoded) == share


@pytest.mark.parametrize(
    "encoded",
    [
        b"",
        b"\x01" + bytes(67),
        b"\x01" + bytes(69),
        b"\x02" + (1).to_bytes(2, "big") + bytes(66),
        b"\x01" + (0).to_bytes(2, "big") + bytes(66),
        b"\x01" + (1).to_bytes(2, "big") + PRIME.to_bytes(66, "big"),
        b"\x01" + (1).to_bytes(2, "big") + b"\xff" * 66,
    ],
)
def test_malformed_share_bytes_are_refused(encoded: bytes) -> None:
    with pytest.raises(Malformed):
        Share.from_bytes(encoded)


def test_share_repr_hides_the_value() -> None:
    share = Share(x=3, y=123456789123456789)
    assert "123456789123456789" not in repr(share)


@given(seed=st.integers(0, 2**32 - 1), bit=st.integers(0, 520), victim=st.integers(0, 2))
def test_a_corrupted_share_gives_a_wrong_secret_or_an_error(
    seed: int, bit: int, victim: int
) -> None:
    secret = byte_source(seed)(32)
    shares = split(secret, 3, 3, random_bytes=byte_source(seed + 1))
    y = shares[victim].y ^ (1 << bit)
    if y >= PRIME:
        return
    shares[victim] = Share(x=shares[victim].x, y=y)
    try:
        rebuilt = combine(shares, 3, 32)
    except IntegrityError:
        return
    assert rebuilt != secret


@pytest.mark.parametrize(
    ("secret", "threshold", "count"),
    [(bytes(65), 1, 1), (b"s", 0, 3), (b"s", 4, 3), (b"s", 1, 0), (b"s", 1, 65536), ("s", 1, 1)],
)
def test_split_refuses_bad_arguments(secret: bytes, threshold: int, count: int) -> None:
    with pytest.raises(InternalError):
        split(secret, threshold, count)


@pytest.mark.parametrize(("threshold", "length"), [(0, 16), (2, -1), (2, 65)])
def test_combine_refuses_bad_arguments(threshold: int, length: int) -> None:
    with pytest.raises(InternalError):
        combine(split(b"s", 2, 2), threshold, length)


def test_combine_refuses_a_secret_longer_than_announced() -> None:
    shares = split(b"\x01\x02", 2, 2)
    with pytest.raises(IntegrityError):
        combine(shares, 2, 1)


def test_share_coordinates_are_checked() -> None:
    with pytest.raises(Malformed):
        Share(x=0, y=1)
    with pytest.raises(Malformed):
        Share(x=1, y=PRIME)
