"""t-of-n Shamir secret sharing over GF(2^521 - 1).

Theory of operation (Shamir 1979; Bonawitz et al. 2017, section 3.1 and the
"ShareKeys" round, which shares ``s_u^SK`` and ``b_u``; docs/protocol.md, "Masks"):

- A secret of at most 64 bytes is read as a big-endian integer ``s < 2^512``, which
  is an element of GF(p) for the Mersenne prime ``p = 2^521 - 1``.
- ``split`` draws ``t - 1`` uniform coefficients ``a_1 .. a_{t-1}`` of GF(p) and hands
  holder ``x`` (``x = 1..n``) the share ``(x, f(x))`` of
  ``f(X) = s + a_1 X + ... + a_{t-1} X^(t-1)``. Each coefficient is 66 random bytes
  with the top 7 bits cleared, drawn again in the (2^-521) case that it equals ``p``,
  so coefficients are exactly uniform and a seeded ``random_bytes`` fixes every share.
- ``combine`` evaluates the Lagrange interpolation of ``threshold`` distinct shares
  at zero. Any ``t - 1`` shares are consistent with every secret (for each candidate
  there is exactly one polynomial of degree ``t - 1`` through it and those shares),
  so fewer than ``t`` shares reveal nothing.
- A share is ``version (1) || x (u16 big-endian) || y (66 bytes big-endian)``.

Invariants: ``1 <= x <= 65535`` (``x = 0`` would be the secret itself) and
``0 <= y < p`` for every ``Share``; ``combine(split(s, t, n)[any t], t, len(s)) == s``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from accord.errors import IntegrityError, InternalError, Malformed, RoundAborted

__all__ = [
    "MAX_SECRET_BYTES",
    "MAX_SHARES",
    "PRIME",
    "SHARE_BYTES",
    "SHARE_VERSION",
    "Share",
    "combine",
    "split",
]

PRIME = (1 << 521) - 1
"""The field modulus ``p = 2^521 - 1`` (a Mersenne prime)."""

MAX_SECRET_BYTES = 64
"""Longest secret ``split`` accepts; ``2^512 < p`` so it is one field element."""

MAX_SHARES = 0xFFFF
"""Most shares of one secret: x-coordinates are u16 and never 0."""

SHARE_VERSION = 1
"""Format version byte of ``Share.to_bytes``."""

_Y_BYTES = (PRIME.bit_length() + 7) // 8  # 66
SHARE_BYTES = 1 + 2 + _Y_BYTES
"""Length of an encoded share (69)."""

_TOP_BYTE_MASK = (1 << (PRIME.bit_length() - 8 * (_Y_BYTES - 1))) - 1  # keeps 521 bits


@dataclass(frozen=True)
class Share:
    """One holder's point ``(x, f(x))`` on the sharing polynomial.

    Attributes:
        x: the holder's x-coordinate, 1..65535.
        y: ``f(x)``, an element of GF(p); kept out of ``repr``.
    """

    x: int
    y: int = field(repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.x, bool) or not isinstance(self.x, int) or not 1 <= self.x <= MAX_SHARES:
            raise Malformed(f"a share's x-coordinate must be in 1..{MAX_SHARES}")
        if isinstance(self.y, bool) or not isinstance(self.y, int) or not 0 <= self.y < PRIME:
            raise Malformed("a share's value must be an element of GF(2^521 - 1)")

    def to_bytes(self) -> bytes:
        """Encode as ``version u8 (1) || x u16 BE || y 66 bytes BE`` (69 bytes)."""
        return bytes([SHARE_VERSION]) + self.x.to_bytes(2, "big") + self.y.to_bytes(_Y_BYTES, "big")

    @classmethod
    def from_bytes(cls, data: bytes) -> Share:
        """Decode the output of ``to_bytes``.

        Raises:
            Malformed: wrong length, unknown version, ``x = 0`` or ``y >= p``.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) != SHARE_BYTES:
            raise Malformed(f"a share must be {SHARE_BYTES} bytes")
        raw = bytes(data)
        if raw[0] != SHARE_VERSION:
            raise Malformed(f"unknown share format version {raw[0]}")
        return cls(x=int.from_bytes(raw[1:3], "big"), y=int.from_bytes(raw[3:], "big"))


def split(
    secret: bytes,
    threshold: int,
    count: int,
    *,
    random_bytes: Callable[[int], bytes] = os.urandom,
) -> list[Share]:
    """Split ``secret`` into ``count`` shares, any ``threshold`` of which rebuild it.

    Args:
        secret: at most 64 bytes (e.g. a 32-byte private key or a 16-byte seed).
        threshold: ``t``, shares needed, 1..count.
        count: ``n``, shares made, 1..65535; share ``i`` has ``x = i + 1``.
        random_bytes: ``k -> k`` random bytes; read in 66-byte draws, one per
            coefficient ``a_1 .. a_{t-1}`` in order.

    Returns:
        ``count`` shares with x-coordinates ``1..count``.

    Raises:
        UsageError: ``secret`` is too long, or ``threshold``/``count`` are out of range,
            or ``random_bytes`` returned the wrong number of bytes.
    """
    if not isinstance(secret, (bytes, bytearray)) or len(secret) > MAX_SECRET_BYTES:
        raise InternalError(f"a secret to share must be bytes, at most {MAX_SECRET_BYTES} long")
    if not _is_int(count) or not 1 <= count <= MAX_SHARES:
        raise InternalError(f"count = {count!r}: must be an integer in 1..{MAX_SHARES}")
    if not _is_int(threshold) or not 1 <= threshold <= count:
        raise InternalError(f"threshold = {threshold!r}: must be an integer in 1..count ({count})")
    coefficients = [int.from_bytes(secret, "big")]
    coefficients += [_random_element(random_bytes) for _ in range(threshold - 1)]
    highest_first = coefficients[::-1]
    shares = []
    for x in range(1, count + 1):
        # Horner's rule. x has at most 16 bits, so each step is a short multiplication;
        # reducing only every `run` steps keeps y below about 1,040 bits.
        run = max(1, 512 // x.bit_length())
        y = 0
        for begin in range(0, len(highest_first), run):
            for coefficient in highest_first[begin : begin + run]:
                y = y * x + coefficient
            y %= PRIME
        shares.append(Share(x=x, y=y))
    return shares


def combine(
    shares: Sequence[Share], threshold: int, secret_length: int, *, what: str = "the secret"
) -> bytes:
    """Rebuild a secret from ``threshold`` distinct shares by Lagrange interpolation at 0.

    Shares are taken in the order given: the first ``threshold`` distinct x-coordinates
    are used and the rest ignored, except that every repeat of an x must agree.

    Args:
        shares: at least ``threshold`` shares with distinct x-coordinates.
        threshold: ``t``, the threshold used by ``split`` (>= 1).
        secret_length: length of the original secret in bytes, 0..64.
        what: names the secret in an error, e.g. ``"the self-mask seed of P3"``.

    Returns:
        The ``secret_length``-byte secret.

    Raises:
        UsageError: ``threshold`` or ``secret_length`` is out of range.
        RoundAborted: fewer than ``threshold`` distinct x-coordinates were given.
        IntegrityError: two shares with the same x disagree, or the shares do not lie
            on a polynomial whose constant term fits in ``secret_length`` bytes.
    """
    if not _is_int(threshold) or threshold < 1:
        raise InternalError(f"threshold = {threshold!r}: must be an integer >= 1")
    if not _is_int(secret_length) or not 0 <= secret_length <= MAX_SECRET_BYTES:
        raise InternalError(
            f"secret_length = {secret_length!r}: must be an integer in 0..{MAX_SECRET_BYTES}"
        )
    seen: dict[int, int] = {}
    chosen: dict[int, int] = {}
    for share in shares:
        if not isinstance(share, Share):
            raise InternalError(f"combine takes Share objects, got {type(share).__name__}")
        earlier = seen.setdefault(share.x, share.y)
        if earlier != share.y:
            raise IntegrityError(f"the shares of {what} held at x = {share.x} disagree")
        if len(chosen) < threshold:
            chosen[share.x] = share.y
    if len(chosen) < threshold:
        raise RoundAborted(f"only {len(chosen)} of {threshold} shares needed to rebuild {what}")
    secret = _interpolate_at_zero(chosen)
    if secret >> (8 * secret_length):
        raise IntegrityError(f"the shares of {what} are inconsistent")
    return secret.to_bytes(secret_length, "big")


def _interpolate_at_zero(points: dict[int, int]) -> int:
    """``sum_i y_i * prod_{j != i} x_j / (x_j - x_i)`` mod p, with one field inversion.

    The x-coordinates are small integers, so numerators and denominators are exact
    integer products; the denominators are inverted together (Montgomery's trick).
    """
    xs = list(points)
    product = math.prod(xs)
    numerators = [product // xi % PRIME for xi in xs]
    denominators = [math.prod(xj - xi for xj in xs if xj != xi) % PRIME for xi in xs]
    # prefix[i] = d_0 * ... * d_{i-1}; one inversion of the total yields every 1/d_i.
    prefix = [1]
    for denominator in denominators:
        prefix.append(prefix[-1] * denominator % PRIME)
    inverse = pow(prefix[-1], -1, PRIME)
    total = 0
    for i in range(len(xs) - 1, -1, -1):
        inverse_i = inverse * prefix[i] % PRIME
        inverse = inverse * denominators[i] % PRIME
        total += points[xs[i]] * numerators[i] % PRIME * inverse_i
    return total % PRIME


def _random_element(random_bytes: Callable[[int], bytes]) -> int:
    while True:
        data = random_bytes(_Y_BYTES)
        if not isinstance(data, (bytes, bytearray)) or len(data) != _Y_BYTES:
            raise InternalError(f"random_bytes({_Y_BYTES}) must return exactly {_Y_BYTES} bytes")
        value = int.from_bytes(bytes([data[0] & _TOP_BYTE_MASK]) + bytes(data[1:]), "big")
        if value < PRIME:
            return value


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
