"""Certificate fingerprints, one way for everyone: the roster, kits, preflight, the audit.

fingerprint(certificate)          SHA-256 of the DER, 64 lower-case hex digits
normalize_fingerprint(text, ...)  a fingerprint as people paste it, made canonical
"""

from __future__ import annotations

import hashlib
import re

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from accord.errors import UsageError

_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


def fingerprint(certificate: bytes | x509.Certificate) -> str:
    """SHA-256 of a certificate's DER encoding, as 64 lower-case hex digits.

    Args:
        certificate: a ``cryptography`` certificate, or its DER or PEM bytes.

    Raises:
        UsageError: the bytes are not a certificate.
    """
    if isinstance(certificate, x509.Certificate):
        der = certificate.public_bytes(serialization.Encoding.DER)
    else:
        data = bytes(certificate)
        try:
            if data.lstrip().startswith(b"-----BEGIN"):
                loaded = x509.load_pem_x509_certificate(data)
            else:
                loaded = x509.load_der_x509_certificate(data)
        except ValueError:
            raise UsageError("not an X.509 certificate (PEM or DER expected)") from None
        der = loaded.public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def normalize_fingerprint(text: str, *, what: str = "fingerprint") -> str:
    """Accept a SHA-256 fingerprint as people paste it; return 64 lower-case hex digits.

    Upper case, ``:`` or blank separators and a ``sha256:`` or ``sha256 `` prefix are
    allowed.

    Raises:
        UsageError: what remains is not 64 hex digits (`what` names the input).
    """
    cleaned = str(text).strip().lower()
    for prefix in ("sha256:", "sha256 "):
        cleaned = cleaned.removeprefix(prefix)
    cleaned = re.sub(r"[\s:]", "", cleaned)
    if not _HEX_DIGEST.fullmatch(cleaned):
        raise UsageError(
            f"{what} {text!r}: must be a SHA-256 fingerprint, 64 hex digits (`:` allowed)"
        )
    return cleaned
