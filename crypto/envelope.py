"""Sealed envelopes: public-key authenticated encryption to one recipient.

Theory of operation (an ECIES / HPKE-base-mode construction, RFC 9180 section 5.1
in spirit; used for the Shamir shares of Bonawitz et al. 2017, "ShareKeys", and
for the CKKS secret context of the key ceremony, DESIGN.md section 3):

- ``seal`` draws a fresh ephemeral X25519 key ``e`` and a 12-byte nonce, derives
  ``k = HKDF-SHA256(X25519(e, R), salt=None, info="accord/v1/envelope" || E || R,
  32 bytes)`` where ``E`` and ``R`` are the raw ephemeral and recipient public keys,
  and encrypts with AES-256-GCM under ``k`` with the caller's associated data.
- Envelope layout: ``version u8 (0x01) || E (32) || nonce (12) || ciphertext || tag (16)``.
- The caller's ``aad`` must bind who and what the envelope is for (federation id,
  key epoch or round, sender, recipient); it is authenticated, not sent.
- Binding ``E`` and ``R`` into the key makes the key specific to this recipient and
  this ephemeral key; the GCM tag covers ciphertext and ``aad``, so any change to any
  byte, or a different ``aad`` or recipient key, makes ``open`` fail.
- ``open`` raises ``IntegrityError(f"{what} could not be opened")`` for every failure,
  never saying which check failed, so it offers no decryption oracle.

Randomness is injected: ``random_bytes`` is called with 32 (the ephemeral private
key) and then with 12 (the nonce), which lets the test vectors fix every byte.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from accord.crypto.agreement import KEY_BYTES, public_key, shared_key
from accord.errors import AccordError, IntegrityError, InternalError

__all__ = ["ENVELOPE_INFO", "ENVELOPE_VERSION", "NONCE_BYTES", "OVERHEAD_BYTES", "open", "seal"]

ENVELOPE_VERSION = 1
"""Format version, the first byte of every envelope."""

ENVELOPE_INFO = b"accord/v1/envelope"
"""Domain-separation prefix of the HKDF ``info`` of an envelope key."""

NONCE_BYTES = 12
_TAG_BYTES = 16
_AES_KEY_BYTES = 32
_HEADER_BYTES = 1 + KEY_BYTES + NONCE_BYTES

OVERHEAD_BYTES = _HEADER_BYTES + _TAG_BYTES
"""Bytes an envelope adds to its plaintext (61)."""


def seal(
    plaintext: bytes,
    recipient_public: bytes,
    *,
    aad: bytes,
    random_bytes: Callable[[int], bytes] = os.urandom,
    what: str = "the recipient's encryption key",
) -> bytes:
    """Encrypt ``plaintext`` so that only the holder of ``recipient_public`` can read it.

    Args:
        plaintext: the bytes to protect (any length).
        recipient_public: the recipient's 32 raw X25519 public-key bytes (``c_v^PK``).
        aad: associated data, authenticated but not sent; ``open`` needs the same bytes.
        random_bytes: ``n -> n`` random bytes; called with 32, then with 12.
        what: names the recipient key in an error.

    Returns:
        The envelope, ``len(plaintext) + 61`` bytes.

    Raises:
        UsageError: ``random_bytes`` returned the wrong number of bytes.
        IntegrityError: ``recipient_public`` is malformed or a low-order point.
    """
    ephemeral_private = _draw(random_bytes, KEY_BYTES)
    ephemeral_public = public_key(ephemeral_private)
    key = shared_key(
        ephemeral_private,
        recipient_public,
        info=ENVELOPE_INFO + ephemeral_public + bytes(recipient_public),
        length=_AES_KEY_BYTES,
        what=what,
    )
    nonce = _draw(random_bytes, NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, bytes(plaintext), bytes(aad))
    return bytes([ENVELOPE_VERSION]) + ephemeral_public + nonce + sealed


def open(  # Shadows the builtin on purpose: it pairs with seal (envelope.open).
    envelope: bytes,
    recipient_private: bytes,
    *,
    aad: bytes,
    what: str = "envelope",
) -> bytes:
    """Decrypt and authenticate an envelope made by ``seal``.

    Args:
        envelope: the sealed bytes.
        recipient_private: the recipient's 32 raw X25519 private-key bytes (``c_v^SK``).
        aad: the associated data given to ``seal``.
        what: names the envelope in the error, e.g. ``"the shares from P3"``.

    Returns:
        The plaintext.

    Raises:
        UsageError: ``recipient_private`` is not 32 bytes.
        IntegrityError: ``f"{what} could not be opened"`` for any other failure (wrong
            key, wrong ``aad``, any altered or missing byte, unknown version).
    """
    recipient_public = public_key(recipient_private)
    try:
        data = bytes(envelope)
        if len(data) < OVERHEAD_BYTES or data[0] != ENVELOPE_VERSION:
            raise InvalidTag
        ephemeral_public = data[1 : 1 + KEY_BYTES]
        nonce = data[1 + KEY_BYTES : _HEADER_BYTES]
        key = shared_key(
            recipient_private,
            ephemeral_public,
            info=ENVELOPE_INFO + ephemeral_public + recipient_public,
            length=_AES_KEY_BYTES,
        )
        return AESGCM(key).decrypt(nonce, data[_HEADER_BYTES:], bytes(aad))
    except (InvalidTag, AccordError, ValueError, TypeError):
        raise IntegrityError(f"{what} could not be opened") from None


def _draw(random_bytes: Callable[[int], bytes], count: int) -> bytes:
    data = random_bytes(count)
    if not isinstance(data, (bytes, bytearray)) or len(data) != count:
        raise InternalError(f"random_bytes({count}) must return exactly {count} bytes")
    return bytes(data)
