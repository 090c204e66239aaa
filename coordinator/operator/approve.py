"""Approving participants' requests into the roster, and revoking them.

Theory of operation (DESIGN.md section 3, "Provision"; docs/provisioning.md):

- Each enterprise makes its own TLS, Ed25519 identity and X25519 ceremony keys
  (``accord kit request``) and sends only ``request.json``: a PKCS#10 request and the
  two public keys, plus an Ed25519 signature by the identity key over
  ``identity.request_statement`` (the participant id, the SHA-256 of the request's DER
  and both public keys). The request's own signature proves possession of the TLS key;
  the statement proves possession of the identity key and binds the three keys to one
  participant.
- ``approve`` checks all of that, refuses an id that is already active with another
  identity key or another participant's key, issues a client certificate (CN =
  participant id, O = federation id, extended key usage clientAuth only, and the
  participant id with both public keys in the non-critical member-keys extension of
  ``accord.crypto.credential``) and records the certificate, its SHA-256 fingerprint,
  the identity key and the ceremony key in the roster the coordinator reads. The
  coordinator hands the certificates out at enrolment, and every participant checks
  each member's keys against its pinned CA, so the coordinator cannot substitute keys
  (DESIGN.md guarantee 2). Approving the same identity key again renews the
  certificate; the roster then names only the new one.
- Adding a participant changes neither the CA nor anyone else's certificate, so
  existing kits stay valid; a coordinator that takes its members from the roster admits
  the newcomer when it enrols (no restart). Revoking marks the roster entry
  ``revoked`` (an atomic rewrite) and signs a new revocation list; the coordinator
  reloads the roster on its next request. The TLS handshake of a revoked participant
  still succeeds, but every call is refused.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import fcntl
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from accord.coordinator import federation_ledger as ledger
from accord.coordinator.operator.ca import (
    DEFAULT_CERT_VALIDITY_DAYS,
    CertificateAuthority,
    check_days,
    leaf_builder,
    load_ca,
)
from accord.coordinator.roster import (
    RosterEntry,
    RosterSnapshot,
    Status,
    read_snapshot,
    write_snapshot,
)
from accord.core.configfile import dump_versioned_json, read_versioned_json
from accord.core.kitformat import (
    EXCHANGE_FORMAT_VERSION,
    PARTICIPANT_ID_PATTERN,
    REQUEST_FORMAT,
    RESPONSE_FORMAT,
    TERMS_FILE,
    utc_now,
    write_public,
)
from accord.core.pki import fingerprint
from accord.crypto import credential, identity
from accord.crypto.agreement import KEY_BYTES
from accord.crypto.revocation import RevocationList, sign_revocations, verify_revocations
from accord.errors import BadSignature, ConfigError, UsageError

__all__ = ["REVOCATIONS_FILE", "approve", "revoke"]

_LOCK_FILE = ".lock"


def approve(
    request_path: Path,
    ca_dir: Path,
    *,
    out_path: Path | None = None,
    validity_days: int = DEFAULT_CERT_VALIDITY_DAYS,
    now: dt.datetime | None = None,
) -> Path:
    """Sign a participant's request and add it to the roster.

    Args:
        request_path: the ``request.json`` a participant sent.
        ca_dir: the CA folder.
        out_path: where to write the response; default ``<id>.response.json`` next to
            the request.
        validity_days: how long the client certificate is valid.
        now: the issuing time (default: now).

    Returns:
        The response file to send back (public: the certificate and the CA certificate).

    Raises:
        ConfigError: the request file is malformed or of an unknown version.
        BadSignature: the certificate request's or the identity key's signature fails.
        UsageError: the id is active with another key, or a key is another
            participant's.
    """
    authority = load_ca(ca_dir)
    check_days(validity_days)
    request = _read_request(Path(request_path))
    now = utc_now(now)
    _refuse_expired(authority, now)
    with _locked(authority.root):
        roster = read_snapshot(authority.roster_path)
        _check_admissible(roster, request, authority)
        certificate = _client_certificate(authority, request, now, validity_days)
        response = _response(authority, request, certificate)
        target = (
            Path(out_path)
            if out_path is not None
            else Path(request_path).parent / f"{request.participant_id}.response.json"
        )
        write_public(
            target,
            dump_versioned_json(
                response, document_format=RESPONSE_FORMAT, version=EXCHANGE_FORMAT_VERSION
            ),
        )
        entry = RosterEntry(
            participant_id=request.participant_id,
            cert_sha256=fingerprint(certificate),
            identity_public_key=request.identity_public_key,
            ceremony_public_key=request.ceremony_public_key,
            status=Status.ACTIVE,
            approved_at=now.isoformat(timespec="seconds"),
            certificate=certificate.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        )
        write_snapshot(authority.roster_path, roster.replace(entry))
    return target


def revoke(ca_dir: Path, participant_id: str, *, now: dt.datetime | None = None) -> RosterEntry:
    """Mark a participant revoked; the coordinator refuses it from its next request on.

    Args:
        ca_dir: the CA folder.
        participant_id: the participant to revoke.
        now: the revocation time (default: now).

    Returns:
        The revoked entry (unchanged if it was revoked already).

    Raises:
        UsageError: the roster has no such participant.
    """
    authority = load_ca(ca_dir)
    with _locked(authority.root):
        roster = read_snapshot(authority.roster_path)
        entry = roster.get(participant_id)
        if entry is None:
            known = ", ".join(e.participant_id for e in roster.entries) or "none"
            raise UsageError(f"no participant {participant_id!r} in the roster (known: {known})")
        if not entry.active:
            return entry
        revoked = dataclasses.replace(
            entry, status=Status.REVOKED, revoked_at=utc_now(now).isoformat(timespec="seconds")
        )
        updated = roster.replace(revoked)
        write_snapshot(authority.roster_path, updated)
        _write_revocations(
            authority, tuple(e.participant_id for e in updated.entries if not e.active)
        )
    return revoked


def _refuse_expired(authority: CertificateAuthority, now: dt.datetime) -> None:
    """An expired CA issues nothing: the federation needs a new one."""
    if now >= authority.certificate.not_valid_after_utc:
        raise ConfigError(
            f"{authority.root}: the CA expired on "
            f"{authority.certificate.not_valid_after_utc:%Y-%m-%d}; provision the federation "
            "again with a new CA"
        )


def _client_certificate(
    authority: CertificateAuthority, request: _Request, now: dt.datetime, validity_days: int
) -> x509.Certificate:
    """The participant's client certificate, carrying its member keys."""
    ca_key = authority.private_key()
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, authority.federation_id),
            x509.NameAttribute(NameOID.COMMON_NAME, request.participant_id),
        ]
    )
    certificate = (
        leaf_builder(authority, ca_key, subject, request.csr.public_key(), now, validity_days)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            credential.extension(
                credential.MemberKeys(
                    participant_id=request.participant_id,
                    identity_public=request.identity_public_key,
                    ceremony_public=request.ceremony_public_key,
                )
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return certificate


def _response(
    authority: CertificateAuthority, request: _Request, certificate: x509.Certificate
) -> dict[str, Any]:
    """What the participant gets back: its certificate, the CA's, the ledger key, the terms."""
    response = {
        "federation_id": authority.federation_id,
        "participant_id": request.participant_id,
        "coordinator": authority.coordinator,
        "certificate": certificate.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        "ca_certificate": authority.certificate_pem.decode("ascii"),
    }
    certified = ledger.certified_key(authority.root)
    if certified is not None:  # the kit pins the coordinator's ledger key
        response.update(certified.response_fields())
    if (authority.root / TERMS_FILE).exists():  # the kit carries the signed terms
        response["terms"] = base64.b64encode((authority.root / TERMS_FILE).read_bytes()).decode()
    return response


REVOCATIONS_FILE = "revocations.signed"
"""The CA-signed revocation list, next to the roster; the coordinator relays it to members."""


def _write_revocations(authority: CertificateAuthority, revoked_ids: tuple[str, ...]) -> None:
    """Sign the revocation list, numbered one above the last, next to the roster."""
    path = authority.roster_path.parent / REVOCATIONS_FILE
    number = 1
    if path.exists():
        number = (
            verify_revocations(
                path.read_bytes(), authority.certificate_pem, authority.federation_id
            ).number
            + 1
        )
    listed = RevocationList(
        federation_id=authority.federation_id, number=number, revoked=tuple(sorted(revoked_ids))
    )
    partial = path.with_suffix(".partial")
    partial.write_bytes(sign_revocations(listed, authority.private_key()))
    os.replace(partial, path)


# ---- requests ----


@dataclass(frozen=True)
class _Request:
    participant_id: str
    csr: x509.CertificateSigningRequest
    identity_public_key: bytes
    ceremony_public_key: bytes


def _read_request(path: Path) -> _Request:
    fix = "ask the participant for the request.json `accord kit request` wrote"
    document = read_versioned_json(
        path,
        expected_format=REQUEST_FORMAT,
        what="a certificate request",
        max_version=EXCHANGE_FORMAT_VERSION,
        fix=fix,
    )
    participant_id = document.get("participant_id")
    if not isinstance(participant_id, str) or not re.fullmatch(
        PARTICIPANT_ID_PATTERN, participant_id
    ):
        raise ConfigError(
            f"{path} participant_id = {participant_id!r}: must match {PARTICIPANT_ID_PATTERN} "
            "(lower case letters, digits, - and _)"
        )
    who = f"the request of {participant_id}"
    try:
        csr = x509.load_pem_x509_csr(str(document.get("csr", "")).encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise ConfigError(f"{path} csr: not a PEM certificate request ({fix})") from None
    if not csr.is_signature_valid:
        raise BadSignature(f"bad signature on {who}")
    public_key = csr.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
        public_key.curve, ec.SECP256R1
    ):
        raise ConfigError(f"{path} csr: the TLS key must be ECDSA P-256 ({fix})")
    names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1 or names[0].value != participant_id:
        raise ConfigError(f"{path} csr: its common name must be {participant_id!r} ({fix})")
    identity_public = _hex_key(document, "identity_public_key", path)
    ceremony_public = _hex_key(document, "ceremony_public_key", path)
    signature_hex = document.get("signature")
    try:
        signature = bytes.fromhex(signature_hex) if isinstance(signature_hex, str) else b""
    except ValueError:
        signature = b""
    statement = identity.request_statement(
        participant_id=participant_id,
        csr_der=csr.public_bytes(serialization.Encoding.DER),
        identity_public=identity_public,
        ceremony_public=ceremony_public,
    )
    identity.verify(identity_public, statement, signature, what=who)
    return _Request(
        participant_id=participant_id,
        csr=csr,
        identity_public_key=identity_public,
        ceremony_public_key=ceremony_public,
    )


def _check_admissible(
    roster: RosterSnapshot, request: _Request, authority: CertificateAuthority
) -> None:
    name = request.participant_id
    if roster.federation_id != authority.federation_id:
        raise ConfigError(
            f"{authority.roster_path}: roster of {roster.federation_id}, but the CA is "
            f"{authority.federation_id}'s"
        )
    current = roster.get(name)
    if (
        current is not None
        and not current.active
        and current.identity_public_key == request.identity_public_key
    ):
        raise UsageError(
            f"the identity key of {name} was revoked and stays revoked; {name} must make new "
            "keys with `accord kit request`"
        )
    if (
        current is not None
        and current.active
        and current.identity_public_key != request.identity_public_key
    ):
        raise UsageError(
            f"{name} is already active with another identity key; if this request replaces "
            f"it, first run `accord provision revoke {name} --ca {authority.root}`"
        )
    for entry in roster.entries:
        if entry.participant_id == name:
            continue
        if entry.identity_public_key == request.identity_public_key:
            raise UsageError(
                f"the identity key of this request belongs to {entry.participant_id}; "
                f"{name} must make its own keys with `accord kit request`"
            )
        if entry.ceremony_public_key == request.ceremony_public_key:
            raise UsageError(
                f"the ceremony key of this request belongs to {entry.participant_id}; "
                f"{name} must make its own keys with `accord kit request`"
            )


@contextlib.contextmanager
def _locked(ca_dir: Path) -> Iterator[None]:
    """Serialize approvals and revocations of one CA (read-modify-write of the roster)."""
    with open(ca_dir / _LOCK_FILE, "a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _hex_key(document: dict[str, Any], name: str, path: Path) -> bytes:
    value = document.get(name)
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != KEY_BYTES:
        raise ConfigError(f"{path} {name}: must be {2 * KEY_BYTES} hex digits")
    return raw
