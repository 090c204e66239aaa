"""The coordinator's ledger key, certified by the federation's CA so that kits can pin it.

Theory of operation (DESIGN.md section 3, "Provision", and guarantee 4; docs/audit.md).
Each participant keeps the federation ledger's latest signed head, so that `accord
audit verify` can show that the coordinator's ledger lost its tail. That evidence is
only worth something if the head is signed by the coordinator's own key, not by
whichever key the first task happened to carry. So the key is made at provisioning and
its public half is certified by the CA, which every participant already pins by
fingerprint (`accord kit package --ca-fingerprint`):

    statement = "accord/v1/coordinator-ledger-key" || F(federation_id) || F(public_key)
    signature = ECDSA P-256 / SHA-256 by the CA key over `statement` (DER)

`F` is `agreement.encode_fields` (u32 big-endian length, then the bytes). The operator's
response carries key and signature; `package` checks them against the pinned CA and
writes the key into the kit; a daemon with that kit refuses any head signed by another
key. Nothing here touches a file; `check` raises rather than returning False.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from accord.crypto.agreement import KEY_BYTES, encode_fields
from accord.errors import BadSignature, ConfigError

__all__ = ["DOMAIN", "certify", "check", "from_pem", "statement", "to_pem"]

DOMAIN = b"accord/v1/coordinator-ledger-key"


def statement(federation_id: str, public_key: bytes) -> bytes:
    """The bytes the CA signs to certify `public_key` as `federation_id`'s ledger key."""
    if len(public_key) != KEY_BYTES:
        raise ConfigError(f"a ledger key is {KEY_BYTES} bytes, not {len(public_key)}")
    return encode_fields(DOMAIN, federation_id, public_key)


def certify(ca_private: ec.EllipticCurvePrivateKey, federation_id: str, public_key: bytes) -> bytes:
    """The CA's DER signature over `statement(federation_id, public_key)`."""
    return ca_private.sign(statement(federation_id, public_key), ec.ECDSA(hashes.SHA256()))


def check(
    ca_certificate: x509.Certificate, federation_id: str, public_key: bytes, signature: bytes
) -> None:
    """Check that the CA certified `public_key` as `federation_id`'s coordinator ledger key.

    Raises:
        BadSignature: the signature is not the CA's over this key and federation.
    """
    ca_public = ca_certificate.public_key()
    if not isinstance(ca_public, ec.EllipticCurvePublicKey):
        raise BadSignature("the coordinator ledger key's certification")
    try:
        ca_public.verify(signature, statement(federation_id, public_key), ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        raise BadSignature("the coordinator ledger key's certification") from None


def to_pem(public_key: bytes) -> bytes:
    """A raw Ed25519 public key as PEM (SubjectPublicKeyInfo), as a kit keeps it."""
    return Ed25519PublicKey.from_public_bytes(public_key).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def from_pem(data: bytes, *, what: str = "coordinator ledger key") -> bytes:
    """The raw 32 bytes of a PEM Ed25519 public key.

    Raises:
        ConfigError: `data` is not a PEM Ed25519 public key.
    """
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise ConfigError(f"{what}: not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{what}: not an Ed25519 public key")
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
