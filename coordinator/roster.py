"""The federation roster file: which client certificate may speak for which participant.

Theory of operation (DESIGN.md section 1, "network attacker", and section 3, "Enroll";
docs/provisioning.md):

- mTLS proves only that a peer holds *some* key whose certificate the federation's CA
  signed. The roster says which one: every entry binds a participant id to the
  SHA-256 fingerprint of the one client certificate issued to it, to its Ed25519
  identity public key (which signs every protocol message) and to its X25519
  ceremony public key (to which the CKKS secret is sealed).
- Every entry also keeps that certificate (PEM), in which the CA certified both public
  keys (``accord.crypto.credential``). The coordinator hands the certificates out at
  enrolment so that each participant accepts another member's keys only on the CA's
  word, never on the coordinator's. Entries of a version-1 file have no certificate;
  participants refuse such a member until the operator approves its request again.
- ``coordinator/live_roster.py`` holds the ``Roster`` the coordinator authorizes every
  call against, reloaded when the operator rewrites the file.

File format (JSON, UTF-8), ``format_version`` first (version 1 lacks ``certificate``)::

    {"format_version": 2, "format": "accord/roster", "federation_id": "city-safety",
     "participants": [{"participant_id": "energy", "status": "active",
                       "cert_sha256": "<64 hex>", "identity_public_key": "<64 hex>",
                       "ceremony_public_key": "<64 hex>", "approved_at": "<ISO 8601>",
                       "revoked_at": null, "certificate": "-----BEGIN CERTIFICATE-----..."}]}
"""

from __future__ import annotations

import dataclasses
import enum
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from accord.core.configfile import dump_versioned_json, read_versioned_json
from accord.core.kitformat import PARTICIPANT_ID_PATTERN, write_public
from accord.core.pki import fingerprint
from accord.errors import ConfigError, UsageError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "RosterEntry",
    "RosterSnapshot",
    "Status",
    "read_snapshot",
    "write_snapshot",
]

FORMAT = "accord/roster"
"""The ``format`` field of a roster file."""

FORMAT_VERSION = 2
"""The newest roster format this code reads and the one it writes (2 added ``certificate``)."""

_HEX_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_KEY_HEX_LENGTH = 64


class Status(enum.Enum):
    """Whether a roster entry may still speak."""

    ACTIVE = "active"
    REVOKED = "revoked"


@dataclass(frozen=True)
class RosterEntry:
    """One participant of the federation.

    Attributes:
        participant_id: the id the client certificate's CN carries.
        cert_sha256: SHA-256 of the client certificate's DER, 64 lower-case hex digits.
        identity_public_key: raw Ed25519 public key (32 bytes).
        ceremony_public_key: raw X25519 public key (32 bytes) the CKKS secret is sealed to.
        status: active or revoked.
        approved_at: when the operator approved it (ISO 8601, UTC).
        revoked_at: when it was revoked, else None.
        certificate: the client certificate (PEM) whose fingerprint is ``cert_sha256``;
            None in entries approved before the roster kept certificates.
    """

    participant_id: str
    cert_sha256: str
    identity_public_key: bytes
    ceremony_public_key: bytes
    status: Status = Status.ACTIVE
    approved_at: str = ""
    revoked_at: str | None = None
    certificate: str | None = None

    @property
    def active(self) -> bool:
        """True while the entry may speak."""
        return self.status is Status.ACTIVE

    def to_json(self) -> dict[str, Any]:
        """The entry as the roster file holds it."""
        return {
            "participant_id": self.participant_id,
            "status": self.status.value,
            "cert_sha256": self.cert_sha256,
            "identity_public_key": self.identity_public_key.hex(),
            "ceremony_public_key": self.ceremony_public_key.hex(),
            "approved_at": self.approved_at,
            "revoked_at": self.revoked_at,
            "certificate": self.certificate,
        }

    @property
    def certificate_der(self) -> bytes:
        """The client certificate as DER (empty when the entry has none)."""
        if self.certificate is None:
            return b""
        return x509.load_pem_x509_certificate(self.certificate.encode("ascii")).public_bytes(
            serialization.Encoding.DER
        )

    @classmethod
    def from_json(cls, item: Any, *, where: str) -> RosterEntry:
        """Read one entry; ``where`` names it in errors.

        Raises:
            ConfigError: a field is missing or malformed.
        """
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: must be an object")
        expected = {
            "participant_id",
            "status",
            "cert_sha256",
            "identity_public_key",
            "ceremony_public_key",
            "approved_at",
            "revoked_at",
            "certificate",
        }
        unknown = sorted(set(item) - expected)
        if unknown:
            raise ConfigError(f"{where}: unknown field {unknown[0]!r}")
        participant_id = _string(item, "participant_id", where)
        if not re.fullmatch(PARTICIPANT_ID_PATTERN, participant_id):
            raise ConfigError(
                f"{where} participant_id = {participant_id!r}: must match {PARTICIPANT_ID_PATTERN}"
            )
        status_text = _string(item, "status", where)
        try:
            status = Status(status_text)
        except ValueError:
            raise ConfigError(
                f"{where} status = {status_text!r}: must be one of active, revoked"
            ) from None
        cert_sha256 = _string(item, "cert_sha256", where)
        if not _HEX_DIGEST.fullmatch(cert_sha256):
            raise ConfigError(f"{where} cert_sha256: must be 64 lower-case hex digits")
        revoked_at = item.get("revoked_at")
        if revoked_at is not None and not isinstance(revoked_at, str):
            raise ConfigError(f"{where} revoked_at: must be a string or null")
        approved_at = item.get("approved_at", "")
        if not isinstance(approved_at, str):
            raise ConfigError(f"{where} approved_at: must be a string")
        certificate = item.get("certificate")
        if certificate is not None:
            _check_certificate(certificate, cert_sha256, where)
        return cls(
            participant_id=participant_id,
            cert_sha256=cert_sha256,
            identity_public_key=_key(item, "identity_public_key", where),
            ceremony_public_key=_key(item, "ceremony_public_key", where),
            status=status,
            approved_at=approved_at,
            revoked_at=revoked_at,
            certificate=certificate,
        )


@dataclass(frozen=True)
class RosterSnapshot:
    """The roster's contents at one moment (a value; ``Roster`` holds the live copy).

    Attributes:
        federation_id: the federation the roster belongs to.
        entries: one per participant id, in approval order.
    """

    federation_id: str
    entries: tuple[RosterEntry, ...] = ()

    def __post_init__(self) -> None:
        ids = [entry.participant_id for entry in self.entries]
        if len(set(ids)) != len(ids):
            raise ConfigError("roster: a participant id appears twice (keep one entry per id)")
        prints = [entry.cert_sha256 for entry in self.entries]
        if len(set(prints)) != len(prints):
            raise ConfigError("roster: one certificate fingerprint appears twice")

    def get(self, participant_id: str) -> RosterEntry | None:
        """The entry of ``participant_id``, or None."""
        for entry in self.entries:
            if entry.participant_id == participant_id:
                return entry
        return None

    def by_fingerprint(self, cert_sha256: str) -> RosterEntry | None:
        """The entry whose certificate has this fingerprint, or None."""
        for entry in self.entries:
            if entry.cert_sha256 == cert_sha256:
                return entry
        return None

    def replace(self, entry: RosterEntry) -> RosterSnapshot:
        """A copy with ``entry`` added, or replacing the entry of the same id in place."""
        kept = [e for e in self.entries if e.participant_id != entry.participant_id]
        if len(kept) == len(self.entries):
            return dataclasses.replace(self, entries=(*self.entries, entry))
        return dataclasses.replace(
            self,
            entries=tuple(
                entry if e.participant_id == entry.participant_id else e for e in self.entries
            ),
        )

    def active(self) -> tuple[RosterEntry, ...]:
        """The entries that may speak."""
        return tuple(entry for entry in self.entries if entry.active)

    def to_bytes(self) -> bytes:
        """Serialize as the roster file (format version first)."""
        document = {
            "federation_id": self.federation_id,
            "participants": [entry.to_json() for entry in self.entries],
        }
        return dump_versioned_json(document, document_format=FORMAT, version=FORMAT_VERSION)

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = "roster.json") -> RosterSnapshot:
        """Parse a roster file.

        Raises:
            ConfigError: not JSON, another format, a newer version, or a bad entry.
        """
        document = read_versioned_json(
            data,
            expected_format=FORMAT,
            what="an Accord roster",
            max_version=FORMAT_VERSION,
            source=source,
        )
        federation_id = document.get("federation_id")
        if not isinstance(federation_id, str) or not re.fullmatch(
            PARTICIPANT_ID_PATTERN, federation_id
        ):
            raise ConfigError(f"{source} federation_id = {federation_id!r}: not a valid id")
        items = document.get("participants")
        if not isinstance(items, list):
            raise ConfigError(f"{source} participants: must be a list")
        entries = tuple(
            RosterEntry.from_json(item, where=f"{source} participants[{index}]")
            for index, item in enumerate(items)
        )
        return cls(federation_id=federation_id, entries=entries)


def read_snapshot(path: Path) -> RosterSnapshot:
    """Read the roster file at ``path``.

    Raises:
        ConfigError: the file is missing, unreadable or malformed.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no roster (create the federation with `accord provision`)"
        ) from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the roster ({error.strerror})") from None
    return RosterSnapshot.from_bytes(data, source=str(path))


def write_snapshot(path: Path, snapshot: RosterSnapshot) -> None:
    """Replace the roster file atomically, so a reader sees the old or the new file whole.

    The roster holds only public material; it is written 0644 so the coordinator's
    service account can read it.
    """
    write_public(Path(path), snapshot.to_bytes())


def _string(item: dict[str, Any], name: str, where: str) -> str:
    value = item.get(name)
    if not isinstance(value, str):
        raise ConfigError(f"{where} {name}: required string")
    return value


def _check_certificate(value: Any, cert_sha256: str, where: str) -> None:
    """The stored certificate must parse and be the one ``cert_sha256`` names."""
    try:
        matches = isinstance(value, str) and fingerprint(value.encode("ascii")) == cert_sha256
    except (UsageError, UnicodeEncodeError):
        matches = False
    if not matches:
        raise ConfigError(
            f"{where} certificate: must be the PEM certificate whose SHA-256 is cert_sha256 "
            "(approve the participant's request again to rewrite the entry)"
        )


def _key(item: dict[str, Any], name: str, where: str) -> bytes:
    value = _string(item, name, where)
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raw = b""
    if len(value) != _KEY_HEX_LENGTH or len(raw) != _KEY_HEX_LENGTH // 2:
        raise ConfigError(f"{where} {name}: must be 64 hex digits (a raw 32-byte public key)")
    return raw
