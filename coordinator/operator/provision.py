"""The operator's side of provisioning: the federation's CA, the coordinator's certificate,
approving participants' requests and revoking them.

Theory of operation (DESIGN.md section 1 and section 3, "Provision";
docs/provisioning.md):

- Private keys never leave their owner. The operator holds the CA key (``ca.key``,
  0600) and the coordinator's TLS key; each enterprise makes its own TLS, Ed25519
  identity and X25519 ceremony keys (``accord kit request``) and sends only
  ``request.json``: a PKCS#10 request and the two public keys, plus an Ed25519
  signature by the identity key over ``identity.request_statement`` (the participant
  id, the SHA-256 of the request's DER and both public keys). The request's own signature
  proves possession of the TLS key; the statement proves possession of the identity
  key and binds the three keys to one participant.
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
- The CA is ECDSA P-256 with SHA-256 signatures, the kind every TLS stack that gRPC
  uses accepts; it may sign only end-entity certificates (path length 0). Its subject
  carries the federation id, so a participant can check that the CA it pins by
  fingerprint is the one of the federation it joins.
- Adding a participant changes neither the CA nor anyone else's certificate, so
  existing kits stay valid; a coordinator that takes its members from the roster admits
  the newcomer when it enrols (no restart). Revoking marks the roster entry
  ``revoked`` (an atomic rewrite); the coordinator reloads the roster on its next
  request. The TLS handshake of a revoked participant still succeeds, but every call
  is refused.
- Time is an argument (``now``); certificates are back-dated five minutes so that a
  participant whose clock runs a little behind can use a fresh one.

Files (``format_version`` first in every JSON file):

    CA_DIR/ca.key     0600  the CA's private key
    CA_DIR/ca.pem           the CA certificate (its fingerprint goes out of band)
    CA_DIR/ca.json          federation id, coordinator address, roster path
    <roster>                the roster (``coordinator/roster.py``), by default CA_DIR/roster.json
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import fcntl
import ipaddress
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from accord.coordinator import federation_ledger as ledger
from accord.coordinator.roster import (
    RosterEntry,
    RosterSnapshot,
    Status,
    fingerprint,
    read_snapshot,
    write_snapshot,
)
from accord.coordinator.tls import ServerTlsFiles
from accord.core.configfile import dump_versioned_json, read_versioned_json
from accord.core.kitformat import (
    EXCHANGE_FORMAT_VERSION,
    PARTICIPANT_ID_PATTERN,
    REQUEST_FORMAT,
    RESPONSE_FORMAT,
    TERMS_FILE,
    split_address,
    utc_now,
    write_private,
    write_public,
)
from accord.core.private_files import refuse_if_readable
from accord.crypto import credential, identity
from accord.crypto.agreement import KEY_BYTES
from accord.crypto.revocation import RevocationList, sign_revocations, verify_revocations
from accord.errors import BadSignature, ConfigError, UsageError

__all__ = [
    "CA_CERT_FILE",
    "CA_KEY_FILE",
    "CA_META_FILE",
    "CLOCK_SKEW_ALLOWANCE",
    "DEFAULT_CA_VALIDITY_DAYS",
    "DEFAULT_CERT_VALIDITY_DAYS",
    "DEFAULT_SERVER_HOSTS",
    "FORMAT_VERSION",
    "PROBE_CERT_FILE",
    "PROBE_KEY_FILE",
    "CertificateAuthority",
    "approve",
    "create_ca",
    "issue_probe_cert",
    "issue_server_cert",
    "load_ca",
    "probe_common_name",
    "revoke",
]

CA_KEY_FILE = "ca.key"
CA_CERT_FILE = "ca.pem"
CA_META_FILE = "ca.json"
PROBE_CERT_FILE = "probe.pem"
PROBE_KEY_FILE = "probe.key"
_LOCK_FILE = ".lock"

FORMAT_VERSION = 1
"""Version of the CA metadata this code writes and reads (``accord.core.kitformat`` has the
request's and the response's)."""

CA_FORMAT = "accord/ca"

DEFAULT_CA_VALIDITY_DAYS = 3650
DEFAULT_CERT_VALIDITY_DAYS = 365
DEFAULT_SERVER_HOSTS: tuple[str, ...] = ("127.0.0.1", "localhost")

CLOCK_SKEW_ALLOWANCE = dt.timedelta(minutes=5)
"""Certificates start this long before they are issued."""

_HOST_NAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+$")


@dataclass(frozen=True)
class CertificateAuthority:
    """A federation's CA as it lies in its folder (the key is read only when signing).

    Attributes:
        root: the CA folder.
        federation_id: the federation; also the O of the CA's subject.
        coordinator: ``host:port`` participants dial; written into every response.
        roster_path: the roster ``approve`` and ``revoke`` update.
        certificate: the CA certificate.
    """

    root: Path
    federation_id: str
    coordinator: str
    roster_path: Path
    certificate: x509.Certificate

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the CA certificate (64 hex digits): what participants pin."""
        return fingerprint(self.certificate)

    @property
    def certificate_pem(self) -> bytes:
        """The CA certificate as PEM."""
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def private_key(self) -> ec.EllipticCurvePrivateKey:
        """Read ``ca.key``, refusing it if group or others may read it.

        Raises:
            ConfigError: missing, readable by others, or not an EC private key.
        """
        path = self.root / CA_KEY_FILE
        data = _read_private(path, "the CA key")
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            key = None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ConfigError(f"{path}: not an unencrypted EC private key")
        return key


def create_ca(
    ca_dir: Path,
    federation_id: str,
    *,
    coordinator: str = "127.0.0.1:50051",
    roster_path: Path | None = None,
    validity_days: int = DEFAULT_CA_VALIDITY_DAYS,
    now: dt.datetime | None = None,
) -> CertificateAuthority:
    """Make a federation's CA: an ECDSA P-256 key (0600) and a self-signed certificate.

    Args:
        ca_dir: folder to create or fill; must not already hold a CA.
        federation_id: the federation's id (``[a-z0-9][a-z0-9_-]{0,62}``).
        coordinator: ``host:port`` participants will dial.
        roster_path: where the coordinator will read the roster; default
            ``ca_dir/roster.json``. An empty roster is written there.
        validity_days: how long the CA certificate is valid.
        now: the issuing time (default: the current UTC time).

    Returns:
        The new CA.

    Raises:
        UsageError: ``ca_dir`` already holds a CA.
        ConfigError: a bad id, address or validity.
    """
    _check_id(federation_id, "federation id")
    split_address(coordinator)
    _check_days(validity_days)
    ca_dir = Path(ca_dir)
    if (ca_dir / CA_KEY_FILE).exists() or (ca_dir / CA_META_FILE).exists():
        raise UsageError(
            f"{ca_dir} already holds a CA; never overwrite one (use another folder, "
            "or keep using this CA)"
        )
    roster_path = Path(roster_path) if roster_path is not None else ca_dir / "roster.json"
    if roster_path.exists():
        existing = read_snapshot(roster_path)
        if existing.federation_id != federation_id or existing.entries:
            raise UsageError(
                f"{roster_path} already holds the roster of {existing.federation_id}; "
                "choose another roster path"
            )
    now = utc_now(now)
    _make_dir(ca_dir, private=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, federation_id),
            x509.NameAttribute(NameOID.COMMON_NAME, f"Accord CA {federation_id}"),
        ]
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW_ALLOWANCE)
        .not_valid_after(now + dt.timedelta(days=validity_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    write_private(ca_dir / CA_KEY_FILE, _private_pem(key))
    write_public(ca_dir / CA_CERT_FILE, certificate.public_bytes(serialization.Encoding.PEM))
    stored_roster = os.path.relpath(roster_path.resolve(), ca_dir.resolve())
    meta = {
        "federation_id": federation_id,
        "coordinator": coordinator,
        "roster": stored_roster,
        "ca_sha256": fingerprint(certificate),
    }
    write_public(
        ca_dir / CA_META_FILE,
        dump_versioned_json(meta, document_format=CA_FORMAT, version=FORMAT_VERSION),
    )
    if not roster_path.exists():
        write_snapshot(roster_path, RosterSnapshot(federation_id=federation_id))
    return load_ca(ca_dir)


def load_ca(ca_dir: Path) -> CertificateAuthority:
    """Read a CA folder made by ``create_ca`` (the private key stays on disk).

    Raises:
        ConfigError: the folder holds no CA, or its files disagree.
    """
    ca_dir = Path(ca_dir)
    meta = read_versioned_json(
        ca_dir / CA_META_FILE,
        expected_format=CA_FORMAT,
        what="the CA metadata",
        max_version=FORMAT_VERSION,
        fix="accord provision",
    )
    try:
        certificate = x509.load_pem_x509_certificate((ca_dir / CA_CERT_FILE).read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"{ca_dir / CA_CERT_FILE}: missing CA certificate") from None
    except ValueError:
        raise ConfigError(f"{ca_dir / CA_CERT_FILE}: not a PEM certificate") from None
    if meta.get("ca_sha256") != fingerprint(certificate):
        raise ConfigError(f"{ca_dir}: ca.pem does not match ca.json (the CA folder was altered)")
    federation_id = _meta_string(meta, "federation_id", ca_dir)
    coordinator = _meta_string(meta, "coordinator", ca_dir)
    roster = Path(_meta_string(meta, "roster", ca_dir))
    return CertificateAuthority(
        root=ca_dir,
        federation_id=federation_id,
        coordinator=coordinator,
        roster_path=roster if roster.is_absolute() else (ca_dir / roster),
        certificate=certificate,
    )


def issue_server_cert(
    ca_dir: Path,
    out_dir: Path,
    hosts: Sequence[str] = DEFAULT_SERVER_HOSTS,
    *,
    validity_days: int = DEFAULT_CERT_VALIDITY_DAYS,
    now: dt.datetime | None = None,
) -> ServerTlsFiles:
    """Make the coordinator's TLS key (0600) and certificate, and copy the CA next to them.

    Args:
        ca_dir: the CA folder.
        out_dir: the coordinator's TLS folder; receives ``server.key``, ``server.pem``,
            ``ca.pem``.
        hosts: names and addresses participants dial (IP addresses become IP SANs,
            the rest DNS SANs); the coordinator address's host is always added.
        validity_days: how long the certificate is valid.
        now: the issuing time (default: now).

    Returns:
        The three paths, ready for ``tls.server_credentials``.

    Raises:
        UsageError: ``out_dir`` already holds a server key.
        ConfigError: a host is not a valid DNS name or IP address.
    """
    authority = load_ca(ca_dir)
    _check_days(validity_days)
    names = _unique([*hosts, split_address(authority.coordinator)[0]])
    alternative_names = [_general_name(host) for host in names]
    files = ServerTlsFiles.from_dir(Path(out_dir))
    if files.key.exists():
        raise UsageError(f"{files.key} exists; remove it first to issue a new server certificate")
    now = utc_now(now)
    key = ec.generate_private_key(ec.SECP256R1())
    ca_key = authority.private_key()
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, authority.federation_id),
            x509.NameAttribute(NameOID.COMMON_NAME, names[0]),
        ]
    )
    certificate = (
        _leaf_builder(authority, ca_key, subject, key.public_key(), now, validity_days)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _make_dir(Path(out_dir), private=True)
    write_private(files.key, _private_pem(key))
    write_public(files.cert, certificate.public_bytes(serialization.Encoding.PEM))
    write_public(files.ca, authority.certificate_pem)
    # The ledger key, certified by the CA: every kit pins it (coordinator/federation_ledger.py).
    ledger.provision_key(authority, Path(out_dir))
    return files


def probe_common_name(federation_id: str) -> str:
    """The common name of a federation's probe certificate: never a participant id (a dot)."""
    return f"health-probe.{federation_id}"


def issue_probe_cert(
    ca_dir: Path,
    out_dir: Path,
    *,
    validity_days: int = DEFAULT_CERT_VALIDITY_DAYS,
    now: dt.datetime | None = None,
) -> tuple[Path, Path]:
    """Issue the coordinator's probe client certificate into its TLS folder.

    The coordinator serves mTLS only, so a health check (the container's HEALTHCHECK,
    Kubernetes probes, grpc_health_probe) needs a client certificate of the CA. This
    one (clientAuth, common name ``health-probe.<federation>``, which no participant
    id can equal, and no member-keys extension) passes the handshake and the
    ``grpc.health.v1`` check, but names no roster member, so the coordinator refuses
    it every federation call.

    Returns:
        ``(probe.pem, probe.key)`` in ``out_dir``.

    Raises:
        UsageError: ``out_dir`` already holds a probe key.
    """
    authority = load_ca(ca_dir)
    _check_days(validity_days)
    out_dir = Path(out_dir)
    cert_path, key_path = out_dir / PROBE_CERT_FILE, out_dir / PROBE_KEY_FILE
    if key_path.exists():
        raise UsageError(f"{key_path} exists; remove it first to issue a new probe certificate")
    now = utc_now(now)
    key = ec.generate_private_key(ec.SECP256R1())
    ca_key = authority.private_key()
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, authority.federation_id),
            x509.NameAttribute(NameOID.COMMON_NAME, probe_common_name(authority.federation_id)),
        ]
    )
    certificate = (
        _leaf_builder(authority, ca_key, subject, key.public_key(), now, validity_days)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _make_dir(out_dir, private=True)
    write_private(key_path, _private_pem(key))
    write_public(cert_path, certificate.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


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
    _check_days(validity_days)
    request = _read_request(Path(request_path))
    now = utc_now(now)
    if now >= authority.certificate.not_valid_after_utc:
        raise ConfigError(
            f"{authority.root}: the CA expired on "
            f"{authority.certificate.not_valid_after_utc:%Y-%m-%d}; provision the federation "
            "again with a new CA"
        )
    with _locked(authority.root):
        roster = read_snapshot(authority.roster_path)
        _check_admissible(roster, request, authority)
        ca_key = authority.private_key()
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, authority.federation_id),
                x509.NameAttribute(NameOID.COMMON_NAME, request.participant_id),
            ]
        )
        certificate = (
            _leaf_builder(authority, ca_key, subject, request.csr.public_key(), now, validity_days)
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
            response["terms"] = base64.b64encode(
                (authority.root / TERMS_FILE).read_bytes()
            ).decode()
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


# ---- certificates ----


def _leaf_builder(
    authority: CertificateAuthority,
    ca_key: ec.EllipticCurvePrivateKey,
    subject: x509.Name,
    public_key: Any,
    now: dt.datetime,
    validity_days: int,
) -> x509.CertificateBuilder:
    not_after = min(
        now + dt.timedelta(days=validity_days), authority.certificate.not_valid_after_utc
    )
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(authority.certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW_ALLOWANCE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not _HOST_NAME.fullmatch(host):
        raise ConfigError(f"host {host!r}: must be a DNS name or an IP address")
    return x509.DNSName(host.lower().rstrip("."))


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


# ---- files ----


def _make_dir(path: Path, *, private: bool) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700 if private else 0o755)


def _read_private(path: Path, what: str) -> bytes:
    try:
        refuse_if_readable(path, what)
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} is missing") from None
    return path.read_bytes()


@contextlib.contextmanager
def _locked(ca_dir: Path) -> Iterator[None]:
    """Serialize approvals and revocations of one CA (read-modify-write of the roster)."""
    with open(ca_dir / _LOCK_FILE, "a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _meta_string(meta: dict[str, Any], name: str, ca_dir: Path) -> str:
    value = meta.get(name)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{ca_dir / CA_META_FILE} {name}: required string")
    return value


def _hex_key(document: dict[str, Any], name: str, path: Path) -> bytes:
    value = document.get(name)
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != KEY_BYTES:
        raise ConfigError(f"{path} {name}: must be {2 * KEY_BYTES} hex digits")
    return raw


def _check_id(value: str, what: str) -> None:
    if not isinstance(value, str) or not re.fullmatch(PARTICIPANT_ID_PATTERN, value):
        raise ConfigError(
            f"{what} {value!r}: must match {PARTICIPANT_ID_PATTERN} (lower case letters, "
            "digits, - and _, at most 63 characters)"
        )


def _check_days(days: int) -> None:
    if not isinstance(days, int) or isinstance(days, bool) or days < 1:
        raise ConfigError(f"validity_days = {days!r}: must be a whole number of days >= 1")


def _unique(items: Iterable[str]) -> list[str]:
    seen: list[str] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen
