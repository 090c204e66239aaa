"""Whose keys a ledger's checks use, and whose ledgers are missing: the auditor's questions.

Issue 12, finding 7. A ledger proves only that it is consistent with the key it names
itself; it proves who wrote it only when the key comes from the federation's CA, which
the auditor pins: ``certified_identity`` accepts a participant's identity key only from
a client certificate the CA signed for that participant (its member-keys extension,
``credential``), and ``missing_members`` names every member the federation ledger
records whose own ledger the auditor was not given, so that a deleted ledger is a
finding rather than an absence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from accord.errors import BadSignature

__all__ = ["certified_identity", "missing_members"]


def certified_identity(ca: Any, certificate_der: bytes, participant_id: str) -> bytes:
    """The identity key the federation's CA certified for ``participant_id``.

    The audit reads ledgers after the fact, so the certificate's validity period is not
    checked (an expired or revoked member's past entries still carry its signature);
    only who signed the certificate and what it certifies.

    Args:
        ca: the CA certificate the auditor pins (an ``x509.Certificate``).
        certificate_der: the member's client certificate (DER) as the roster keeps it.
        participant_id: the member the roster entry names.

    Returns:
        The raw Ed25519 identity key (32 bytes) the certificate's member-keys extension holds.

    Raises:
        BadSignature: the certificate is absent, unreadable, not signed by ``ca``, made
            out to another member, or certifies no keys or another member's keys.
    """
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.x509.oid import NameOID

    from accord.crypto import credential
    from accord.errors import AccordError

    who = f"the certificate of {participant_id}"
    if not certificate_der:
        raise BadSignature(f"{who}: none (the roster entry carries no certificate)")
    try:
        certificate = x509.load_der_x509_certificate(bytes(certificate_der))
        certificate.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise BadSignature(f"{who}: not signed by the pinned CA") from None
    names = [a.value for a in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if names != [participant_id]:
        raise BadSignature(f"{who}: made out to {names!r}")
    try:
        keys = credential.certified_keys(certificate)
    except AccordError:
        raise BadSignature(f"{who}: certifies no member keys") from None
    if keys.participant_id != participant_id:
        raise BadSignature(f"{who}: certifies the keys of {keys.participant_id}")
    return keys.identity_public


def missing_members(
    federation_rounds: Sequence[Mapping[str, Any]], present: Sequence[str]
) -> dict[str, list[int]]:
    """The members the federation ledger names (uploads and survivors) with no ledger given.

    Args:
        federation_rounds: the bodies of the federation ledger's ``round`` entries.
        present: the participant ids whose ledgers the auditor holds (readable or not).

    Returns:
        Each missing member's id, mapped to the rounds that name it (ascending).
    """
    named: dict[str, set[int]] = {}
    for body in federation_rounds:
        round = int(body.get("round", 0))
        members = {*dict(body.get("uploads") or {}), *list(body.get("survivors") or [])}
        for member in members:
            named.setdefault(str(member), set()).add(round)
    return {
        member: sorted(rounds) for member, rounds in sorted(named.items()) if member not in present
    }
