"""The federation's revocation list, signed by the operator's CA, with a monotonic number.

Theory of operation. `accord provision revoke` signs the list of revoked members with
the CA key (ECDSA P-256, as the terms in `crypto/terms.py`, under its own domain tag),
numbered one higher than the last. The coordinator relays the newest list with every
task; a member keeps the highest number it has seen and refuses an older list (so a
coordinator cannot roll a revocation back once a member saw it), and refuses a key
ceremony or a round that includes a revoked member, naming it.

Residual risk: a coordinator may withhold a list a member has not seen yet; the
coordinator itself rotates the key and leaves the revoked member out (its own roster
refuses the member's calls), so withholding gains it nothing a revoked member could
use, unless the coordinator colludes with that member.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec

from accord.crypto.terms import ca_sign, ca_verify
from accord.errors import Malformed, NotAllowed, Replayed

__all__ = ["RevocationList", "check_not_revoked", "newer", "sign_revocations", "verify_revocations"]

FORMAT_VERSION = 1
_DOMAIN = b"accord revocation list v1\x00"


@dataclass(frozen=True)
class RevocationList:
    """Revoked member ids of a federation, as of list `number` (>= 1)."""

    federation_id: str
    number: int
    revoked: tuple[str, ...]
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.format_version != FORMAT_VERSION:
            raise Malformed(f"revocation list: format version {self.format_version} unknown")
        if not isinstance(self.number, int) or self.number < 1:
            raise Malformed(f"revocation list: number {self.number!r} must be >= 1")
        if tuple(sorted(set(self.revoked))) != self.revoked:
            raise Malformed("revocation list: ids must be unique and sorted")

    def to_bytes(self) -> bytes:
        """Canonical sorted-key JSON."""
        fields = {
            "federation_id": self.federation_id,
            "format_version": self.format_version,
            "number": self.number,
            "revoked": list(self.revoked),
        }
        return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> RevocationList:
        """Decode `to_bytes()` exactly. Raises Malformed."""
        try:
            fields = json.loads(data.decode())
            made = cls(
                federation_id=str(fields["federation_id"]),
                number=fields["number"],
                revoked=tuple(fields["revoked"]),
                format_version=fields["format_version"],
            )
        except (ValueError, TypeError, KeyError, UnicodeDecodeError):
            raise Malformed("the revocation list does not decode") from None
        if made.to_bytes() != data:
            raise Malformed("the revocation list is not in canonical form")
        return made


def sign_revocations(revocations: RevocationList, ca_key: ec.EllipticCurvePrivateKey) -> bytes:
    """The signed list, in the framing of `crypto.terms.ca_sign`."""
    return ca_sign(_DOMAIN, revocations.to_bytes(), ca_key)


def verify_revocations(
    signed: bytes, ca_certificate_pem: bytes, federation_id: str
) -> RevocationList:
    """Check a signed list against the pinned CA and the federation.

    Raises:
        Malformed: it does not decode, or names another federation.
        BadSignature: the CA did not sign it.
    """
    revocations = RevocationList.from_bytes(
        ca_verify(_DOMAIN, signed, ca_certificate_pem, what="the revocation list")
    )
    if revocations.federation_id != federation_id:
        raise Malformed(f"the revocation list is for federation {revocations.federation_id!r}")
    return revocations


def newer(current: RevocationList | None, offered: RevocationList) -> RevocationList:
    """The list to keep after `offered` arrives.

    Raises:
        Replayed: `offered` is older than the list already seen (a rollback).
    """
    if current is not None and offered.number < current.number:
        raise Replayed(
            f"revocation list #{offered.number} is older than #{current.number} already seen"
        )
    return offered


def check_not_revoked(
    revocations: RevocationList | None, members: tuple[str, ...], *, what: str
) -> None:
    """Refuse `what` (e.g. "round 3 from the coordinator") if it includes a revoked member.

    Raises:
        NotAllowed: names the revoked member(s) and the list's number.
    """
    if revocations is None:
        return
    bad = sorted(set(members) & set(revocations.revoked))
    if bad:
        raise NotAllowed(
            f"{what} includes revoked member {', '.join(bad)} (revocation list "
            f"#{revocations.number}); refused"
        )
