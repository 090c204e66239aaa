"""X25519 key agreement and the pairwise mask seeds derived from it.

Theory of operation (docs/protocol.md, "Masks"; Bonawitz et al. 2017, section 4,
"AdvertiseKeys" and "MaskedInputCollection"):

- Every participant makes a fresh X25519 masking key pair ``(s_u^SK, s_u^PK)`` and a
  fresh encryption key pair ``(c_u^SK, c_u^PK)`` each round (RFC 7748).
- Two participants ``u`` and ``v`` agree on
  ``s_uv = HKDF-SHA256(X25519(s_u^SK, s_v^PK), salt=None, info, 16 bytes)`` with
  ``info = "accord/v1/pairwise" || F(federation_id) || F(round) || F(min(u, v))
  || F(max(u, v))``. ``F`` frames one field as its u32 big-endian length followed by
  its bytes (strings as UTF-8, integers as u64 big-endian), so no two field lists
  share an encoding. Since X25519 is commutative and the ids are ordered, both ends
  derive the same seed; binding the federation and round makes a seed useless in any
  other round even if a key pair were reused.
- A peer key that is not 32 bytes, or that yields the all-zero shared secret (one of
  the low-order points), is refused with ``IntegrityError`` naming the key; the
  message never says why, so it is no oracle for an attacker.

Invariant: ``pairwise_seed(a.private, b.public, u=x, v=y) ==
pairwise_seed(b.private, a.public, u=y, v=x)`` for all ids ``x != y``.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from accord.errors import IntegrityError, InternalError

__all__ = [
    "KEY_BYTES",
    "PAIRWISE_INFO",
    "PAIRWISE_SEED_BYTES",
    "KeyPair",
    "encode_fields",
    "generate_keypair",
    "pairwise_seed",
    "public_key",
    "shared_key",
]

KEY_BYTES = 32
"""Length of a raw X25519 (or Ed25519) private or public key."""

PAIRWISE_SEED_BYTES = 16
"""Length of a pairwise seed ``s_uv``: one AES-128 key for the PRG."""

PAIRWISE_INFO = b"accord/v1/pairwise"
"""Domain-separation prefix of the HKDF ``info`` of a pairwise seed."""

_MAX_HKDF_BYTES = 255 * 32


@dataclass(frozen=True)
class KeyPair:
    """A raw 32-byte key pair (X25519 here; ``identity`` uses it for Ed25519 too).

    Attributes:
        private: the 32 raw private-key bytes; kept out of ``repr``.
        public: the 32 raw public-key bytes.
    """

    private: bytes = field(repr=False)
    public: bytes


def generate_keypair(random_bytes: Callable[[int], bytes] = os.urandom) -> KeyPair:
    """Make an X25519 key pair from 32 bytes of ``random_bytes``.

    Args:
        random_bytes: ``n -> n`` random bytes; called once with 32. Tests pass a
            seeded source so key pairs are reproducible.

    Returns:
        The key pair, raw bytes (the private key as drawn; X25519 clamps it on use).

    Raises:
        UsageError: ``random_bytes`` did not return 32 bytes.
    """
    private = _draw(random_bytes, KEY_BYTES)
    return KeyPair(private=private, public=public_key(private))


def public_key(private: bytes) -> bytes:
    """Return the raw X25519 public key of a raw private key.

    Args:
        private: 32 raw private-key bytes.

    Returns:
        32 raw public-key bytes.

    Raises:
        UsageError: ``private`` is not 32 bytes.
    """
    return _private_key(private).public_key().public_bytes_raw()


def shared_key(
    private: bytes,
    peer_public: bytes,
    *,
    info: bytes,
    length: int,
    what: str = "the peer's public key",
) -> bytes:
    """Derive ``HKDF-SHA256(X25519(private, peer_public), salt=None, info, length)``.

    Args:
        private: our 32 raw X25519 private-key bytes.
        peer_public: the peer's 32 raw X25519 public-key bytes.
        info: HKDF context; callers bind purpose and parties here.
        length: bytes of key material wanted, 1..8160.
        what: names the peer key in an error, e.g. ``"the masking key of P3"``.

    Returns:
        ``length`` bytes of key material.

    Raises:
        UsageError: ``private`` is not 32 bytes or ``length`` is out of range.
        IntegrityError: ``peer_public`` is malformed or a low-order point; the message
            is ``f"{what} was refused"``.
    """
    if not isinstance(length, int) or not 1 <= length <= _MAX_HKDF_BYTES:
        raise InternalError(f"length = {length!r}: must be an integer in 1..{_MAX_HKDF_BYTES}")
    ours = _private_key(private)
    try:
        peer = X25519PublicKey.from_public_bytes(bytes(peer_public))
        secret = ours.exchange(peer)
    except (ValueError, TypeError):
        raise IntegrityError(f"{what} was refused") from None
    # OpenSSL already refuses an all-zero result; this keeps the guarantee explicit.
    if secret == bytes(KEY_BYTES):
        raise IntegrityError(f"{what} was refused")
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(secret)


def pairwise_seed(
    private: bytes,
    peer_public: bytes,
    *,
    federation_id: str,
    round: int,
    u: str,
    v: str,
    what: str | None = None,
) -> bytes:
    """Derive the 16-byte pairwise seed ``s_uv``, the same from both ends.

    By convention ``u`` is the caller (owner of ``private``) and ``v`` the peer (owner
    of ``peer_public``); the seed itself is symmetric in ``(u, v)``.

    Args:
        private: the caller's 32 raw X25519 masking private-key bytes ``s_u^SK``.
        peer_public: the peer's 32 raw masking public-key bytes ``s_v^PK``.
        federation_id: the federation, bound into the seed.
        round: the round number (0..2^64 - 1), bound into the seed.
        u: one participant id (the caller).
        v: the other participant id (the peer); must differ from ``u``.
        what: names the peer key in an error; default ``f"the masking key of {v}"``.

    Returns:
        16 bytes, a PRG seed.

    Raises:
        UsageError: ``u == v``, ``round`` is out of range, or ``private`` is malformed.
        IntegrityError: ``peer_public`` is malformed or a low-order point.
    """
    if u == v:
        raise InternalError(f"a pairwise seed needs two different participants, got {u!r} twice")
    info = PAIRWISE_INFO + encode_fields(federation_id, round, min(u, v), max(u, v))
    return shared_key(
        private,
        peer_public,
        info=info,
        length=PAIRWISE_SEED_BYTES,
        what=what if what is not None else f"the masking key of {v}",
    )


def encode_fields(*fields: str | bytes | int) -> bytes:
    """Frame fields unambiguously: each is its u32 big-endian length, then its bytes.

    Args:
        fields: strings (encoded as UTF-8), bytes, or integers in 0..2^64 - 1 (encoded
            as 8 bytes, big-endian, and then framed like any other field).

    Returns:
        The concatenated frames.

    Raises:
        UsageError: an integer is negative, too large, or a bool.
    """
    parts = []
    for value in fields:
        if isinstance(value, bool):
            raise InternalError(f"{value!r} is not a valid field")
        if isinstance(value, int):
            if not 0 <= value < 1 << 64:
                raise InternalError(f"{value} does not fit in an unsigned 64-bit integer")
            data = value.to_bytes(8, "big")
        elif isinstance(value, str):
            data = value.encode("utf-8")
        else:
            data = bytes(value)
        parts.append(struct.pack(">I", len(data)) + data)
    return b"".join(parts)


def _private_key(private: bytes) -> X25519PrivateKey:
    if not isinstance(private, (bytes, bytearray)) or len(private) != KEY_BYTES:
        raise InternalError(f"an X25519 private key must be {KEY_BYTES} raw bytes")
    return X25519PrivateKey.from_private_bytes(bytes(private))


def _draw(random_bytes: Callable[[int], bytes], count: int) -> bytes:
    data: Any = random_bytes(count)
    if not isinstance(data, (bytes, bytearray)) or len(data) != count:
        raise InternalError(f"random_bytes({count}) must return exactly {count} bytes")
    return bytes(data)
