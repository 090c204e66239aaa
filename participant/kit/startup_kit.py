"""A participant's startup kit: its files, ``kit.toml``, and loading a validated kit.

Theory of operation (DESIGN.md section 1 and section 3, "Provision";
docs/provisioning.md):

- ``participant/kit/packaging.py`` makes the keys and the request (``accord kit
  request``) and packages the operator's answer, checked against the pinned CA, into a
  kit folder (``accord kit package``).
- ``Kit.load`` refuses a kit whose private keys are readable by group or others
  (``chmod 600 FILE``), whose ``ca.pem`` no longer matches the pinned fingerprint, or
  whose certificate belongs to another key; ``channel_credentials`` turns it into
  mTLS credentials that verify the coordinator against the pinned CA and the host in
  the coordinator address.
- ``participant/kit/preflight.py`` checks a kit before the daemon starts (``accord kit
  check``), reporting every problem rather than raising at the first.

Kit folder (``kit.toml`` starts with ``format_version``)::

    kit.toml       format_version, federation_id, participant_id, coordinator, ca_fingerprint,
                   coordinator_ledger_key, coordinator_ledger_key_signature
    tls.key  0600  TLS private key          tls.pem   client certificate
    identity.key 0600  Ed25519 (PKCS#8)     ca.pem    the federation's CA (pinned)
    ceremony.key 0600  X25519 (PKCS#8)      request.json  the public request, kept for renewal
    coordinator_ledger.pub  the coordinator's ledger key (Ed25519, PEM), certified by the CA

The coordinator's ledger key is pinned the way the CA is: ``package`` takes it from the
response only with the CA's signature over it (``accord.crypto.ledger_key``), and
``Kit.load`` checks file, ``kit.toml`` and signature again; the daemon then refuses any
federation ledger head signed by another key (``participant/privacy_ledger.py``).
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509

from accord.core.configfile import check_format_version
from accord.core.kitformat import (
    PARTICIPANT_ID_PATTERN,
    split_address,
)
from accord.core.private_files import read_private
from accord.core.transport import client_options
from accord.crypto import agreement, identity, ledger_key
from accord.errors import (
    BadSignature,
    ConfigError,
    IntegrityError,
)
from accord.participant.kit.certificates import (
    chain_problems,
    fingerprint,
    is_for_key,
    load_ceremony_key,
    load_certificate,
    load_tls_key,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 has no tomllib; tomli is the same parser
    import tomli as tomllib

__all__ = [
    "CA_CERT_FILE",
    "CEREMONY_KEY_FILE",
    "FORMAT_VERSION",
    "IDENTITY_KEY_FILE",
    "KIT_FILE",
    "PRIVATE_FILES",
    "REPACKAGE_FIX",
    "REQUEST_FILE",
    "TLS_CERT_FILE",
    "TLS_KEY_FILE",
    "Kit",
    "KitManifest",
    "KitPaths",
    "channel_credentials",
    "is_address",
    "manifest_bytes",
    "read_private_key",
    "secure_channel",
]

FORMAT_VERSION = 1
"""Version of ``kit.toml`` this code writes and reads (``accord.core.kitformat`` has the
request's and the response's)."""

KIT_FILE = "kit.toml"
REQUEST_FILE = "request.json"
TLS_KEY_FILE = "tls.key"
TLS_CERT_FILE = "tls.pem"
CA_CERT_FILE = "ca.pem"
IDENTITY_KEY_FILE = "identity.key"
CEREMONY_KEY_FILE = "ceremony.key"
LEDGER_KEY_FILE = "coordinator_ledger.pub"
PRIVATE_FILES = (TLS_KEY_FILE, IDENTITY_KEY_FILE, CEREMONY_KEY_FILE)
"""Files that hold private keys: mode 0600, and they never leave this machine."""

REPACKAGE_FIX = "re-run `accord kit package REQUEST_DIR RESPONSE --ca-fingerprint FP --out KIT_DIR`"
"""What to do about a kit whose files are missing or do not fit together."""


# ---- the kit ----


@dataclass(frozen=True)
class KitPaths:
    """Where each file of a kit lies."""

    root: Path

    @property
    def kit_file(self) -> Path:
        return self.root / KIT_FILE

    @property
    def tls_key(self) -> Path:
        return self.root / TLS_KEY_FILE

    @property
    def tls_cert(self) -> Path:
        return self.root / TLS_CERT_FILE

    @property
    def ca_cert(self) -> Path:
        return self.root / CA_CERT_FILE

    @property
    def identity_key(self) -> Path:
        return self.root / IDENTITY_KEY_FILE

    @property
    def ceremony_key(self) -> Path:
        return self.root / CEREMONY_KEY_FILE


@dataclass(frozen=True)
class KitManifest:
    """What a kit's ``kit.toml`` says: whose kit it is and whom to dial (no keys read).

    Attributes:
        federation_id: the federation this participant belongs to.
        participant_id: this participant's id.
        coordinator: ``host:port`` to dial.
        ca_fingerprint: the pinned SHA-256 of ``ca.pem``.
    """

    federation_id: str
    participant_id: str
    coordinator: str
    ca_fingerprint: str

    @classmethod
    def read(cls, kit_dir: Path) -> KitManifest:
        """Read ``kit_dir/kit.toml`` only; ``Kit.load`` checks the keys and certificates.

        Raises:
            ConfigError: the file is missing, malformed or of a newer version.
        """
        document = _read_manifest(KitPaths(Path(kit_dir)).kit_file)
        return cls(
            federation_id=document["federation_id"],
            participant_id=document["participant_id"],
            coordinator=document["coordinator"],
            ca_fingerprint=document["ca_fingerprint"],
        )


@dataclass(frozen=True)
class Kit:
    """A loaded, validated startup kit (private keys kept out of ``repr``).

    Attributes:
        paths: the kit's files.
        format_version: of ``kit.toml``.
        federation_id: the federation this participant belongs to.
        participant_id: this participant's id (the certificate's CN).
        coordinator: ``host:port`` to dial.
        ca_fingerprint: the pinned SHA-256 of ``ca.pem``.
        tls_key_pem: the TLS private key (PKCS#8 PEM).
        tls_cert_pem: the client certificate (PEM).
        ca_pem: the CA certificate (PEM).
        identity_key: raw 32-byte Ed25519 private key.
        ceremony_key: raw 32-byte X25519 private key.
        coordinator_ledger_key: the coordinator's raw Ed25519 ledger key, pinned (None in a
            kit packaged before kits pinned it: the daemon refuses such a kit).
    """

    paths: KitPaths
    format_version: int
    federation_id: str
    participant_id: str
    coordinator: str
    ca_fingerprint: str
    tls_key_pem: bytes = field(repr=False)
    tls_cert_pem: bytes
    ca_pem: bytes
    identity_key: bytes = field(repr=False)
    ceremony_key: bytes = field(repr=False)
    coordinator_ledger_key: bytes | None = None

    @property
    def identity_public_key(self) -> bytes:
        """Raw Ed25519 public key (the roster holds the same)."""
        return identity.public_from_private(self.identity_key)

    @property
    def ceremony_public_key(self) -> bytes:
        """Raw X25519 public key (the roster holds the same)."""
        return agreement.public_key(self.ceremony_key)

    @property
    def certificate(self) -> x509.Certificate:
        """The client certificate."""
        return x509.load_pem_x509_certificate(self.tls_cert_pem)

    @classmethod
    def load(cls, kit_dir: Path) -> Kit:
        """Read and validate a kit folder.

        Raises:
            ConfigError: a file is missing or malformed, ``kit.toml`` has a newer
                version, or a private key is readable by group or others (the message
                says ``chmod 600 FILE``).
            IntegrityError: ``ca.pem`` does not match the pinned fingerprint, the CA did
                not issue ``tls.pem``, or ``tls.pem`` is for another key.
        """
        paths = KitPaths(Path(kit_dir))
        manifest = _read_manifest(paths.kit_file)
        private = {n: read_private_key(paths.root / n) for n in PRIVATE_FILES}
        tls_key = load_tls_key(private[TLS_KEY_FILE], paths.tls_key)
        identity_key = identity.load_private(
            private[IDENTITY_KEY_FILE], what=str(paths.identity_key)
        )
        ceremony_key = load_ceremony_key(private[CEREMONY_KEY_FILE], paths.ceremony_key)
        ca_pem = _read_public(paths.ca_cert)
        cert_pem = _read_public(paths.tls_cert)
        ca = load_certificate(ca_pem, str(paths.ca_cert))
        if fingerprint(ca) != manifest["ca_fingerprint"]:
            raise IntegrityError(
                f"{paths.ca_cert} has SHA-256 fingerprint {fingerprint(ca)}, but kit.toml pins "
                f"{manifest['ca_fingerprint']} ({REPACKAGE_FIX})"
            )
        certificate = load_certificate(cert_pem, str(paths.tls_cert))
        problems = chain_problems(
            ca, certificate, manifest["participant_id"], manifest["federation_id"]
        )
        if problems:
            raise IntegrityError(f"{paths.tls_cert}: {problems[0]} ({REPACKAGE_FIX})")
        if not is_for_key(certificate, tls_key):
            raise IntegrityError(f"{paths.tls_cert} is for another key than {paths.tls_key}")
        pinned = _pinned_ledger_key(paths.root, manifest, ca)
        return cls(
            paths=paths,
            format_version=manifest["format_version"],
            federation_id=manifest["federation_id"],
            participant_id=manifest["participant_id"],
            coordinator=manifest["coordinator"],
            ca_fingerprint=manifest["ca_fingerprint"],
            tls_key_pem=private[TLS_KEY_FILE],
            tls_cert_pem=cert_pem,
            ca_pem=ca_pem,
            identity_key=identity_key,
            ceremony_key=ceremony_key,
            coordinator_ledger_key=pinned,
        )


def channel_credentials(kit: Kit) -> grpc.ChannelCredentials:
    """mTLS credentials: present the kit's certificate, trust only the pinned CA."""
    return grpc.ssl_channel_credentials(
        root_certificates=kit.ca_pem,
        private_key=kit.tls_key_pem,
        certificate_chain=kit.tls_cert_pem,
    )


def secure_channel(kit: Kit, *, options: list[tuple[str, int]] | None = None) -> grpc.Channel:
    """A channel to the kit's coordinator over mTLS, with the federation's transport options."""
    return grpc.secure_channel(
        kit.coordinator,
        channel_credentials(kit),
        options=options if options is not None else client_options(),
    )


# ---- files ----


def manifest_bytes(
    *,
    federation_id: str,
    participant_id: str,
    coordinator: str,
    ca_fingerprint: str,
    ledger_key: bytes,
    ledger_key_signature: bytes,
) -> bytes:
    """The text of ``kit.toml`` (``_read_manifest`` reads it back)."""
    lines = [
        f"format_version = {FORMAT_VERSION}",
        "# Accord startup kit, written by `accord kit package`. tls.key, identity.key and",
        "# ceremony.key are private (mode 600) and never leave this machine.",
        f"federation_id = {json.dumps(federation_id)}",
        f"participant_id = {json.dumps(participant_id)}",
        f"coordinator = {json.dumps(coordinator)}",
        "# SHA-256 of ca.pem, as the operator gave it out of band",
        f"ca_fingerprint = {json.dumps(ca_fingerprint)}",
        "# the coordinator's ledger key (coordinator_ledger.pub) and the CA's signature on it",
        f"coordinator_ledger_key = {json.dumps(ledger_key.hex())}",
        f"coordinator_ledger_key_signature = {json.dumps(ledger_key_signature.hex())}",
    ]
    return ("\n".join(lines) + "\n").encode("utf-8")


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no kit file ({REPACKAGE_FIX})") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read ({error})") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None
    check_format_version(
        document.get("format_version"), source=str(path), max_version=FORMAT_VERSION
    )
    expected = {
        "format_version",
        "federation_id",
        "participant_id",
        "coordinator",
        "ca_fingerprint",
    }
    optional = {"coordinator_ledger_key", "coordinator_ledger_key_signature"}
    unknown = sorted(set(document) - expected - optional)
    if unknown:
        raise ConfigError(
            f"{path}: unknown setting {unknown[0]!r} (known: {', '.join(sorted(expected))})"
        )
    for name in sorted(expected - {"format_version"}):
        if not isinstance(document.get(name), str):
            raise ConfigError(f"{path} {name}: required string ({REPACKAGE_FIX})")
    for name in ("federation_id", "participant_id"):
        if not re.fullmatch(PARTICIPANT_ID_PATTERN, document[name]):
            raise ConfigError(
                f"{path} {name} = {document[name]!r}: must match {PARTICIPANT_ID_PATTERN}"
            )
    if not is_address(document["coordinator"]):
        raise ConfigError(
            f"{path} coordinator = {document['coordinator']!r}: must be host:port, e.g. "
            "127.0.0.1:50051"
        )
    if not re.fullmatch(r"[0-9a-f]{64}", document["ca_fingerprint"]):
        raise ConfigError(f"{path} ca_fingerprint: must be 64 lower-case hex digits")
    if ("coordinator_ledger_key" in document) != ("coordinator_ledger_key_signature" in document):
        raise ConfigError(
            f"{path}: coordinator_ledger_key and its signature come together ({REPACKAGE_FIX})"
        )
    if "coordinator_ledger_key" in document:
        if not re.fullmatch(r"[0-9a-f]{64}", str(document["coordinator_ledger_key"])):
            raise ConfigError(f"{path} coordinator_ledger_key: must be 64 lower-case hex digits")
        if not re.fullmatch(r"(?:[0-9a-f]{2})+", str(document["coordinator_ledger_key_signature"])):
            raise ConfigError(f"{path} coordinator_ledger_key_signature: must be hex digits")
    return document


def _pinned_ledger_key(root: Path, manifest: dict[str, Any], ca: x509.Certificate) -> bytes | None:
    """The kit's pinned coordinator ledger key, checked against its file and the CA."""
    if "coordinator_ledger_key" not in manifest:
        return None
    pinned = bytes.fromhex(manifest["coordinator_ledger_key"])
    path = root / LEDGER_KEY_FILE
    if ledger_key.from_pem(_read_public(path), what=str(path)) != pinned:
        raise IntegrityError(f"{path} differs from the key kit.toml pins ({REPACKAGE_FIX})")
    try:
        ledger_key.check(
            ca,
            manifest["federation_id"],
            pinned,
            bytes.fromhex(manifest["coordinator_ledger_key_signature"]),
        )
    except BadSignature:
        raise IntegrityError(
            f"{root / KIT_FILE}: the CA did not certify coordinator_ledger_key ({REPACKAGE_FIX})"
        ) from None
    return pinned


def is_address(address: str) -> bool:
    try:
        split_address(address)
    except ConfigError:
        return False
    return True


def read_private_key(path: Path) -> bytes:
    """Read a private key file, refusing one that group or others may read."""
    return read_private(
        path,
        "the private key",
        missing="private key missing (restore it, or start over with `accord kit request`)",
    )


def _read_public(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: missing ({REPACKAGE_FIX})") from None
