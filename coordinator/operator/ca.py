"""The federation's certificate authority: making it, reading it, and the certificate
builders every certificate it issues shares.

Theory of operation (DESIGN.md section 1 and section 3, "Provision";
docs/provisioning.md):

- Private keys never leave their owner. The operator holds the CA key (``ca.key``,
  0600) and the coordinator's TLS key; each enterprise makes its own keys and sends
  only a request (``coordinator/operator/approve.py`` signs it).
- The CA is ECDSA P-256 with SHA-256 signatures, the kind every TLS stack that gRPC
  uses accepts; it may sign only end-entity certificates (path length 0). Its subject
  carries the federation id, so a participant can check that the CA it pins by
  fingerprint is the one of the federation it joins.
- Time is an argument (``now``); certificates are back-dated five minutes so that a
  participant whose clock runs a little behind can use a fresh one.

Files (``format_version`` first in every JSON file):

    CA_DIR/ca.key     0600  the CA's private key
    CA_DIR/ca.pem           the CA certificate (its fingerprint goes out of band)
    CA_DIR/ca.json          federation id, coordinator address, roster path
    <roster>                the roster (``coordinator/roster.py``), by default CA_DIR/roster.json
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from accord.coordinator.roster import RosterSnapshot, read_snapshot, write_snapshot
from accord.core.configfile import dump_versioned_json, read_versioned_json
from accord.core.kitformat import (
    check_id,
    split_address,
    utc_now,
    write_private,
    write_public,
)
from accord.core.pki import fingerprint
from accord.core.private_files import read_private
from accord.errors import ConfigError, UsageError

__all__ = [
    "CA_CERT_FILE",
    "CA_KEY_FILE",
    "CA_META_FILE",
    "CLOCK_SKEW_ALLOWANCE",
    "DEFAULT_CA_VALIDITY_DAYS",
    "DEFAULT_CERT_VALIDITY_DAYS",
    "FORMAT_VERSION",
    "CertificateAuthority",
    "check_days",
    "create_ca",
    "leaf_builder",
    "load_ca",
    "make_dir",
    "private_pem",
]

CA_KEY_FILE = "ca.key"
CA_CERT_FILE = "ca.pem"
CA_META_FILE = "ca.json"

FORMAT_VERSION = 1
"""Version of the CA metadata this code writes and reads (``accord.core.kitformat`` has the
request's and the response's)."""

CA_FORMAT = "accord/ca"

DEFAULT_CA_VALIDITY_DAYS = 3650
DEFAULT_CERT_VALIDITY_DAYS = 365

CLOCK_SKEW_ALLOWANCE = dt.timedelta(minutes=5)
"""Certificates start this long before they are issued."""


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
        data = read_private(path, "the CA key", missing="the CA key is missing")
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
    check_id(federation_id, "federation id")
    split_address(coordinator)
    check_days(validity_days)
    ca_dir = Path(ca_dir)
    roster_path = Path(roster_path) if roster_path is not None else ca_dir / "roster.json"
    _refuse_existing(ca_dir, roster_path, federation_id)
    now = utc_now(now)
    make_dir(ca_dir, private=True)
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = _self_signed(key, federation_id, now, validity_days)
    write_private(ca_dir / CA_KEY_FILE, private_pem(key))
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


def _refuse_existing(ca_dir: Path, roster_path: Path, federation_id: str) -> None:
    """Never overwrite a CA, nor another federation's (or a filled) roster."""
    if (ca_dir / CA_KEY_FILE).exists() or (ca_dir / CA_META_FILE).exists():
        raise UsageError(
            f"{ca_dir} already holds a CA; never overwrite one (use another folder, "
            "or keep using this CA)"
        )
    if roster_path.exists():
        existing = read_snapshot(roster_path)
        if existing.federation_id != federation_id or existing.entries:
            raise UsageError(
                f"{roster_path} already holds the roster of {existing.federation_id}; "
                "choose another roster path"
            )


def _self_signed(
    key: ec.EllipticCurvePrivateKey, federation_id: str, now: dt.datetime, validity_days: int
) -> x509.Certificate:
    """The CA certificate: self-signed, may sign end-entity certificates only."""
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, federation_id),
            x509.NameAttribute(NameOID.COMMON_NAME, f"Accord CA {federation_id}"),
        ]
    )
    return (
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


# ---- certificates ----


def leaf_builder(
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


def private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


# ---- files ----


def make_dir(path: Path, *, private: bool) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700 if private else 0o755)


def _meta_string(meta: dict[str, Any], name: str, ca_dir: Path) -> str:
    value = meta.get(name)
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{ca_dir / CA_META_FILE} {name}: required string")
    return value


def check_days(days: int) -> None:
    if not isinstance(days, int) or isinstance(days, bool) or days < 1:
        raise ConfigError(f"validity_days = {days!r}: must be a whole number of days >= 1")
