"""Ed25519 identity keys: who sent a message, and whose keys an advertisement carries.

Theory of operation (DESIGN.md guarantee 2; docs/protocol.md, "Round stages";
Bonawitz et al. 2017, section 6, the actively secure variant in which every
advertised key is signed so that a server cannot substitute keys of its own):

- Each participant holds an Ed25519 identity key (RFC 8032) issued at provisioning.
  Signatures are deterministic, so the same key and message always give the same
  64 bytes, which lets the test vectors pin them.
- Every message a participant originates is signed over
  ``message_digest = SHA-256("accord/v1/msg" || F(federation_id) || F(round)
  || F(stage) || F(participant) || F(sequence) || F(payload_digest))``.
- The two X25519 public keys a participant advertises in a round are signed over
  ``keys_statement = "accord/v1/keys" || F(federation_id) || F(round)
  || F(participant) || F(encryption_public) || F(masking_public)``.
- At provisioning, a participant's kit request is signed over
  ``request_statement = "accord/v1/kit-request" || F(participant_id)
  || F(SHA-256(csr_der)) || F(identity_public) || F(ceremony_public)``: the signature
  proves possession of the identity key, and the statement binds the TLS key (whose
  certificate request is hashed), the identity key and the ceremony key to one id.
- ``F`` is ``agreement.encode_fields``: u32 big-endian length, then the bytes
  (strings as UTF-8, integers as u64 big-endian). The distinct prefixes keep a
  signature on one kind of statement from ever verifying as another.

``verify`` raises ``BadSignature`` rather than returning ``False`` (pyca style) and
never says what was wrong with a signature.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from accord.crypto.agreement import KEY_BYTES, KeyPair, encode_fields
from accord.errors import BadSignature, ConfigError, InternalError, UsageError

__all__ = [
    "KEYS_DOMAIN",
    "MESSAGE_DOMAIN",
    "REQUEST_DOMAIN",
    "SIGNATURE_BYTES",
    "KeyPair",
    "dump_private",
    "generate_identity",
    "keys_statement",
    "load_private",
    "message_digest",
    "public_from_private",
    "request_statement",
    "sign",
    "verify",
]

SIGNATURE_BYTES = 64
"""Length of an Ed25519 signature."""

MESSAGE_DOMAIN = b"accord/v1/msg"
"""Prefix of the digest every protocol message is signed over."""

KEYS_DOMAIN = b"accord/v1/keys"
"""Prefix of the statement an advertised key pair is signed over."""

REQUEST_DOMAIN = b"accord/v1/kit-request"
"""Prefix of the statement a participant's identity key signs in its kit request."""


def generate_identity(random_bytes: Callable[[int], bytes] = os.urandom) -> KeyPair:
    """Make an Ed25519 identity key pair from a 32-byte seed.

    Args:
        random_bytes: ``n -> n`` random bytes; called once with 32 (the RFC 8032 seed).

    Returns:
        The key pair as raw bytes (``private`` is the seed, ``public`` the point).

    Raises:
        UsageError: ``random_bytes`` did not return 32 bytes.
    """
    seed = random_bytes(KEY_BYTES)
    if not isinstance(seed, (bytes, bytearray)) or len(seed) != KEY_BYTES:
        raise InternalError(f"random_bytes({KEY_BYTES}) must return exactly {KEY_BYTES} bytes")
    return KeyPair(private=bytes(seed), public=public_from_private(bytes(seed)))


def public_from_private(private: bytes) -> bytes:
    """Return the raw 32-byte Ed25519 public key of a raw private key.

    Raises:
        UsageError: ``private`` is not 32 bytes.
    """
    return _private_key(private).public_key().public_bytes_raw()


def sign(private: bytes, message: bytes) -> bytes:
    """Sign ``message`` with a raw Ed25519 private key.

    Args:
        private: 32 raw private-key bytes.
        message: the bytes to sign (usually a ``message_digest`` or ``keys_statement``).

    Returns:
        The 64-byte signature.

    Raises:
        UsageError: ``private`` is not 32 bytes.
    """
    return _private_key(private).sign(bytes(message))


def verify(public: bytes, message: bytes, signature: bytes, *, what: str) -> None:
    """Check an Ed25519 signature; return only if it is valid.

    Args:
        public: the signer's 32 raw public-key bytes.
        message: the bytes that were signed.
        signature: the 64-byte signature.
        what: names the signed object in the error, e.g. ``"the upload from P3"``.

    Raises:
        BadSignature: ``f"bad signature on {what}"`` for any failure: a wrong or empty
            signature, a malformed public key, or an altered message.
    """
    try:
        if len(signature) != SIGNATURE_BYTES or len(public) != KEY_BYTES:
            raise InvalidSignature
        Ed25519PublicKey.from_public_bytes(bytes(public)).verify(bytes(signature), bytes(message))
    except (InvalidSignature, ValueError, TypeError):
        raise BadSignature(f"bad signature on {what}") from None


def message_digest(
    *,
    federation_id: str,
    round: int,
    stage: str,
    participant: str,
    sequence: int,
    payload_digest: bytes,
) -> bytes:
    """Return the 32-byte SHA-256 digest a protocol message is signed over.

    Args:
        federation_id: the federation.
        round: the round number, 0..2^64 - 1.
        stage: the stage name, e.g. ``"UPLOAD"``.
        participant: the sender's id.
        sequence: the sender's message counter within the stage, 0..2^64 - 1.
        payload_digest: a digest of the message body (any length, usually 32 bytes).

    Returns:
        32 bytes.

    Raises:
        UsageError: ``round`` or ``sequence`` is outside 0..2^64 - 1.
    """
    framed = encode_fields(federation_id, round, stage, participant, sequence, payload_digest)
    return hashlib.sha256(MESSAGE_DOMAIN + framed).digest()


def keys_statement(
    *,
    federation_id: str,
    round: int,
    participant: str,
    encryption_public: bytes,
    masking_public: bytes,
) -> bytes:
    """Return the bytes a participant signs to vouch for the keys it advertises.

    Args:
        federation_id: the federation.
        round: the round number, 0..2^64 - 1.
        participant: the advertiser's id.
        encryption_public: 32 raw bytes of ``c_u^PK``.
        masking_public: 32 raw bytes of ``s_u^PK``.

    Returns:
        ``"accord/v1/keys"`` followed by the framed fields.

    Raises:
        UsageError: a public key is not 32 bytes or ``round`` is out of range.
    """
    for name, key in (("encryption_public", encryption_public), ("masking_public", masking_public)):
        if len(key) != KEY_BYTES:
            raise UsageError(f"{name} has {len(key)} bytes: must be {KEY_BYTES} raw bytes")
    return KEYS_DOMAIN + encode_fields(
        federation_id, round, participant, encryption_public, masking_public
    )


def request_statement(
    *, participant_id: str, csr_der: bytes, identity_public: bytes, ceremony_public: bytes
) -> bytes:
    """Return the bytes a participant's identity key signs in its kit request.

    ``accord kit request`` signs them; ``accord provision approve`` verifies them before
    it issues a certificate.

    Args:
        participant_id: the id the request is for.
        csr_der: the PKCS#10 certificate request (DER) the TLS key signed.
        identity_public: 32 raw bytes of the Ed25519 identity public key.
        ceremony_public: 32 raw bytes of the X25519 ceremony public key.

    Returns:
        ``"accord/v1/kit-request"`` followed by the framed id, SHA-256 of ``csr_der``
        and both public keys.
    """
    return REQUEST_DOMAIN + encode_fields(
        participant_id, hashlib.sha256(csr_der).digest(), identity_public, ceremony_public
    )


def load_private(pem_or_raw: bytes, *, what: str = "identity key") -> bytes:
    """Read an Ed25519 private key given as 32 raw bytes or as unencrypted PKCS#8 PEM.

    Args:
        pem_or_raw: the file contents.
        what: names the key in an error.

    Returns:
        The 32 raw private-key bytes.

    Raises:
        ConfigError: the data is neither form, or is a key of another kind.
    """
    data = bytes(pem_or_raw)
    if len(data) == KEY_BYTES:
        return data
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        key = None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(
            f"{what}: not an Ed25519 private key (32 raw bytes or unencrypted PKCS#8 PEM); "
            "re-create it with `accord kit request`"
        )
    return key.private_bytes_raw()


def dump_private(private: bytes) -> bytes:
    """Write a raw Ed25519 private key as unencrypted PKCS#8 PEM (inverse of ``load_private``).

    Raises:
        UsageError: ``private`` is not 32 bytes.
    """
    return _private_key(private).private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


def _private_key(private: bytes) -> Ed25519PrivateKey:
    if not isinstance(private, (bytes, bytearray)) or len(private) != KEY_BYTES:
        raise InternalError(f"an Ed25519 private key must be {KEY_BYTES} raw bytes")
    return Ed25519PrivateKey.from_private_bytes(bytes(private))
