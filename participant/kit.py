"""A participant's startup kit: make keys and a request, package the operator's answer,
load the kit, and check it before the daemon starts.

Theory of operation (DESIGN.md section 1 and section 3, "Provision";
docs/provisioning.md):

- ``request`` makes every private key of the enterprise on its own machine: the TLS
  key (ECDSA P-256) with a PKCS#10 request for CN = participant id, the Ed25519
  identity key that signs every protocol message, and the X25519 ceremony key to
  which the federation's CKKS secret is later sealed. Each is written 0600 in a 0700
  folder and never overwritten. ``request.json`` holds only public material: the
  request, both public keys and the identity key's signature over
  ``request_statement`` (which binds the three keys to the id).
- The operator answers with a response file (certificate and CA certificate). The
  file travels over channels nobody vouches for, so ``package`` trusts it only after
  the CA certificate's SHA-256 fingerprint equals the one the operator gave out of
  band (phone, signed mail, a meeting): that pin is the root of the participant's
  trust. It then checks that the CA is a CA of the named federation, that it issued
  the certificate, and that the certificate is for this request's key and id, for
  client authentication, and currently valid.
- ``Kit.load`` refuses a kit whose private keys are readable by group or others
  (``chmod 600 FILE``), whose ``ca.pem`` no longer matches the pinned fingerprint, or
  whose certificate belongs to another key; ``channel_credentials`` turns it into
  mTLS credentials that verify the coordinator against the pinned CA and the host in
  the coordinator address.
- ``check`` is the preflight: every check runs, and each failure says how to fix it.
  Online it dials the coordinator over mTLS, calls the standard health service
  (``grpc.health.v1.Health/Check``) and reads the clock skew from the ``date``
  initial metadata when the coordinator sends it.

Kit folder (``kit.toml`` starts with ``format_version``)::

    kit.toml       format_version, federation_id, participant_id, coordinator, ca_fingerprint
    tls.key  0600  TLS private key          tls.pem   client certificate
    identity.key 0600  Ed25519 (PKCS#8)     ca.pem    the federation's CA (pinned)
    ceremony.key 0600  X25519 (PKCS#8)      request.json  the public request, kept for renewal
"""

from __future__ import annotations

import datetime as dt
import email.utils
import enum
import hashlib
import json
import os
import re
import stat
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from accord.crypto import agreement, identity
from accord.crypto.agreement import encode_fields
from accord.errors import AccordError, ConfigError, IntegrityError, UsageError
from accord.transport import client_options

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 has no tomllib; tomli is the same parser
    import tomli as tomllib

__all__ = [
    "CA_CERT_FILE",
    "CEREMONY_KEY_FILE",
    "EXPIRY_WARNING",
    "FORMAT_VERSION",
    "IDENTITY_KEY_FILE",
    "KIT_FILE",
    "PRIVATE_FILES",
    "REQUEST_FILE",
    "TLS_CERT_FILE",
    "TLS_KEY_FILE",
    "Check",
    "CheckReport",
    "CheckStatus",
    "Kit",
    "KitManifest",
    "channel_credentials",
    "check",
    "package",
    "request",
    "request_statement",
    "secure_channel",
]

FORMAT_VERSION = 1
"""Version of ``kit.toml`` and ``request.json`` this code writes and reads."""

REQUEST_FORMAT = "accord/kit-request"
RESPONSE_FORMAT = "accord/kit-response"
REQUEST_DOMAIN = b"accord/v1/kit-request"
"""Prefix of the statement the identity key signs; equal to the coordinator's."""

PARTICIPANT_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"

KIT_FILE = "kit.toml"
REQUEST_FILE = "request.json"
TLS_KEY_FILE = "tls.key"
TLS_CERT_FILE = "tls.pem"
CA_CERT_FILE = "ca.pem"
IDENTITY_KEY_FILE = "identity.key"
CEREMONY_KEY_FILE = "ceremony.key"
PRIVATE_FILES = (TLS_KEY_FILE, IDENTITY_KEY_FILE, CEREMONY_KEY_FILE)
"""Files that hold private keys: mode 0600, and they never leave this machine."""

EXPIRY_WARNING = dt.timedelta(days=30)
"""``check`` warns when the certificate expires sooner than this."""

MAX_CLOCK_SKEW_S = 300.0
"""Skew beyond which ``check`` fails: certificates start only five minutes back-dated."""

WARN_CLOCK_SKEW_S = 60.0

_RENEW_FIX = (
    "ask the operator to approve your request.json again (`accord provision approve "
    "request.json --ca CA_DIR`), then `accord kit package` the new response"
)
_REPACKAGE_FIX = (
    "re-run `accord kit package REQUEST_DIR RESPONSE --ca-fingerprint FP --out KIT_DIR`"
)


def request_statement(
    participant_id: str, csr_der: bytes, identity_public: bytes, ceremony_public: bytes
) -> bytes:
    """The bytes the identity key signs in ``request.json``.

    ``"accord/v1/kit-request" || F(participant_id) || F(SHA-256(csr_der)) ||
    F(identity_public) || F(ceremony_public)``; the coordinator's
    ``provision.request_statement`` builds the same bytes.
    """
    return REQUEST_DOMAIN + encode_fields(
        participant_id, hashlib.sha256(csr_der).digest(), identity_public, ceremony_public
    )


# ---- request and package ----


def request(name: str, out_dir: Path) -> Path:
    """Make this participant's private keys and the request the operator signs.

    Args:
        name: the participant id (``[a-z0-9][a-z0-9_-]{0,62}``), e.g. ``energy``.
        out_dir: a new or empty folder; created 0700.

    Returns:
        The path of ``request.json``, the only file to send to the operator.

    Raises:
        ConfigError: ``name`` is not a valid participant id.
        UsageError: ``out_dir`` already holds a request or keys.
    """
    if not isinstance(name, str) or not re.fullmatch(PARTICIPANT_ID_PATTERN, name):
        raise ConfigError(
            f"--name {name!r}: must match {PARTICIPANT_ID_PATTERN} (lower case letters, digits, "
            "- and _, at most 63 characters)"
        )
    out_dir = Path(out_dir)
    existing = [n for n in (REQUEST_FILE, *PRIVATE_FILES) if (out_dir / n).exists()]
    if existing:
        raise UsageError(
            f"{out_dir} already holds {existing[0]}; choose another --out (private keys are "
            "never overwritten)"
        )
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    tls_key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .sign(tls_key, hashes.SHA256())
    )
    identity_pair = identity.generate_identity()
    ceremony_pair = agreement.generate_keypair()
    csr_der = csr.public_bytes(serialization.Encoding.DER)
    statement = request_statement(name, csr_der, identity_pair.public, ceremony_pair.public)
    document = {
        "format_version": FORMAT_VERSION,
        "format": REQUEST_FORMAT,
        "participant_id": name,
        "csr": csr.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        "identity_public_key": identity_pair.public.hex(),
        "ceremony_public_key": ceremony_pair.public.hex(),
        "signature": identity.sign(identity_pair.private, statement).hex(),
    }
    _write_private(out_dir / TLS_KEY_FILE, _pkcs8(tls_key))
    _write_private(out_dir / IDENTITY_KEY_FILE, identity.dump_private(identity_pair.private))
    _write_private(
        out_dir / CEREMONY_KEY_FILE,
        _pkcs8(X25519PrivateKey.from_private_bytes(ceremony_pair.private)),
    )
    path = out_dir / REQUEST_FILE
    _write_public(path, _json_bytes(document))
    return path


def package(
    request_dir: Path,
    response_path: Path,
    ca_fingerprint: str,
    out_dir: Path,
    *,
    now: dt.datetime | None = None,
) -> Path:
    """Check the operator's response against the pinned CA and assemble the startup kit.

    Args:
        request_dir: the folder ``request`` wrote (keys and ``request.json``).
        response_path: the response file the operator sent back.
        ca_fingerprint: the CA certificate's SHA-256 as the operator gave it out of
            band (hex; case, ``:`` separators and a ``sha256:`` prefix are accepted).
        out_dir: the kit folder (may be ``request_dir``); created 0700.
        now: the time certificates must be valid at (default: now).

    Returns:
        The kit folder.

    Raises:
        IntegrityError: the CA is not the pinned one (naming both fingerprints), did
            not issue the certificate, or the certificate is for another key.
        ConfigError: a file is malformed, of a newer version, for another participant,
            or the certificate is not valid now.
        UsageError: the fingerprint is not 64 hex digits, or ``out_dir`` holds other keys.
    """
    request_dir, response_path, out_dir = Path(request_dir), Path(response_path), Path(out_dir)
    expected = _normalize_fingerprint(ca_fingerprint)
    own = _read_json(
        request_dir / REQUEST_FILE, REQUEST_FORMAT, "a kit request", "accord kit request"
    )
    participant_id = str(own.get("participant_id", ""))
    private = {n: _read_private(request_dir / n) for n in PRIVATE_FILES}
    tls_key = _load_tls_key(private[TLS_KEY_FILE], request_dir / TLS_KEY_FILE)
    response = _read_json(
        response_path, RESPONSE_FORMAT, "a kit response", "ask the operator to re-send it"
    )
    if response.get("participant_id") != participant_id:
        raise ConfigError(
            f"{response_path}: the response is for {response.get('participant_id')!r}, but this "
            f"request is {participant_id!r}'s"
        )
    federation_id = response.get("federation_id")
    coordinator = response.get("coordinator")
    if not isinstance(federation_id, str) or not re.fullmatch(
        PARTICIPANT_ID_PATTERN, federation_id
    ):
        raise ConfigError(f"{response_path} federation_id = {federation_id!r}: not a valid id")
    if not isinstance(coordinator, str) or not _valid_address(coordinator):
        raise ConfigError(f"{response_path} coordinator = {coordinator!r}: must be host:port")
    ca_pem = _pem_field(response, "ca_certificate", response_path)
    cert_pem = _pem_field(response, "certificate", response_path)
    ca = _load_certificate(ca_pem, f"{response_path} ca_certificate")
    actual = _fingerprint(ca)
    if actual != expected:
        raise IntegrityError(
            f"the CA certificate in {response_path} has SHA-256 fingerprint {actual}, but the "
            f"operator's out-of-band fingerprint is {expected}: do not use this response; "
            "confirm the fingerprint with the operator and ask for the response again"
        )
    certificate = _load_certificate(cert_pem, f"{response_path} certificate")
    problems = _chain_problems(ca, certificate, participant_id, federation_id)
    if problems:
        raise IntegrityError(f"the certificate in {response_path}: {problems[0]}")
    if _public_der(certificate.public_key()) != _public_der(tls_key.public_key()):
        raise IntegrityError(
            f"the certificate in {response_path} is for another key than "
            f"{request_dir / TLS_KEY_FILE} (package the response to this request)"
        )
    moment = _now(now)
    validity = _validity_problem(certificate, moment) or _validity_problem(
        ca, moment, what="the CA"
    )
    if validity:
        raise ConfigError(f"{response_path}: {validity[0]} ({validity[1]})")

    separate = out_dir.resolve() != request_dir.resolve()
    to_copy = {n: d for n, d in private.items() if separate and not _holds(out_dir / n, d)}
    clashing = [n for n in to_copy if (out_dir / n).exists()]
    if clashing:
        raise UsageError(
            f"{out_dir / clashing[0]} holds another key; package into a new --out folder "
            "(private keys are never overwritten)"
        )
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name, data in to_copy.items():
        _write_private(out_dir / name, data)
    if separate:
        _write_public(out_dir / REQUEST_FILE, (request_dir / REQUEST_FILE).read_bytes())
    _write_public(out_dir / TLS_CERT_FILE, cert_pem)
    _write_public(out_dir / CA_CERT_FILE, ca_pem)
    _write_public(
        out_dir / KIT_FILE,
        _manifest_bytes(
            federation_id=federation_id,
            participant_id=participant_id,
            coordinator=coordinator,
            ca_fingerprint=actual,
        ),
    )
    return out_dir


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
        private = {n: _read_private(paths.root / n) for n in PRIVATE_FILES}
        tls_key = _load_tls_key(private[TLS_KEY_FILE], paths.tls_key)
        identity_key = identity.load_private(
            private[IDENTITY_KEY_FILE], what=str(paths.identity_key)
        )
        ceremony_key = _load_ceremony_key(private[CEREMONY_KEY_FILE], paths.ceremony_key)
        ca_pem = _read_public(paths.ca_cert)
        cert_pem = _read_public(paths.tls_cert)
        ca = _load_certificate(ca_pem, str(paths.ca_cert))
        if _fingerprint(ca) != manifest["ca_fingerprint"]:
            raise IntegrityError(
                f"{paths.ca_cert} has SHA-256 fingerprint {_fingerprint(ca)}, but kit.toml pins "
                f"{manifest['ca_fingerprint']} ({_REPACKAGE_FIX})"
            )
        certificate = _load_certificate(cert_pem, str(paths.tls_cert))
        problems = _chain_problems(
            ca, certificate, manifest["participant_id"], manifest["federation_id"]
        )
        if problems:
            raise IntegrityError(f"{paths.tls_cert}: {problems[0]} ({_REPACKAGE_FIX})")
        if _public_der(certificate.public_key()) != _public_der(tls_key.public_key()):
            raise IntegrityError(f"{paths.tls_cert} is for another key than {paths.tls_key}")
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


# ---- preflight ----


class CheckStatus(enum.Enum):
    """Outcome of one preflight check."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True)
class Check:
    """One line of the preflight report.

    Attributes:
        name: what was checked, e.g. ``"certificate validity"``.
        status: pass, warn, fail or skip.
        detail: what was found.
        fix: what to do about a warning or failure (empty when it passed).
    """

    name: str
    status: CheckStatus
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class CheckReport:
    """Every check ``check`` ran, in order."""

    kit_dir: Path
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        """True when no check failed (warnings and skips are allowed)."""
        return not any(c.status is CheckStatus.FAIL for c in self.checks)

    def failures(self) -> tuple[Check, ...]:
        """The checks that failed."""
        return tuple(c for c in self.checks if c.status is CheckStatus.FAIL)

    def get(self, name: str) -> Check:
        """The check called ``name``.

        Raises:
            UsageError: no check has that name.
        """
        for item in self.checks:
            if item.name == name:
                return item
        raise UsageError(f"no check named {name!r}")


def check(
    kit_dir: Path,
    *,
    timeout_s: float = 5.0,
    online: bool = True,
    clock: Callable[[], float] = time.time,
) -> CheckReport:
    """Preflight a kit: files, permissions, pin, chain, keys, expiry, then the coordinator.

    Every check runs even when an earlier one fails (a check that needs what failed is
    skipped), so one run lists everything to fix.

    Args:
        kit_dir: the kit folder.
        timeout_s: how long to wait for the coordinator's health answer.
        online: False skips the coordinator and clock-skew checks.
        clock: seconds since the epoch, for expiry and skew.

    Returns:
        The report; ``report.ok`` is False when any check failed.
    """
    paths = KitPaths(Path(kit_dir))
    checks: list[Check] = []
    now = dt.datetime.fromtimestamp(clock(), dt.timezone.utc)

    manifest: dict[str, Any] | None = None
    try:
        manifest = _read_manifest(paths.kit_file)
        checks.append(
            Check(
                "kit file",
                CheckStatus.PASS,
                f"{manifest['participant_id']} in federation {manifest['federation_id']}, "
                f"coordinator {manifest['coordinator']}",
            )
        )
    except AccordError as error:
        checks.append(Check("kit file", CheckStatus.FAIL, str(error), _REPACKAGE_FIX))

    checks.append(_check_private_files(paths))

    ca = _try_certificate(paths.ca_cert)
    certificate = _try_certificate(paths.tls_cert)
    checks.append(_check_pin(paths, manifest, ca))
    checks.append(_check_ca(paths, manifest, ca))
    checks.append(_check_chain(paths, manifest, ca, certificate))
    checks.append(_check_keys(paths, certificate))
    checks.append(_check_validity(certificate, ca, now))

    if not online:
        checks.append(Check("coordinator", CheckStatus.SKIP, "offline check (--offline)"))
        checks.append(Check("clock skew", CheckStatus.SKIP, "offline check (--offline)"))
        return CheckReport(paths.root, tuple(checks))
    try:
        kit = Kit.load(paths.root)
    except AccordError:
        # The offline checks above have already said why; they cover everything load checks.
        reason = "skipped until the kit loads"
        checks.append(Check("coordinator", CheckStatus.SKIP, reason, "fix the failures above"))
        checks.append(Check("clock skew", CheckStatus.SKIP, reason))
        return CheckReport(paths.root, tuple(checks))
    checks.extend(_check_coordinator(kit, timeout_s, clock))
    return CheckReport(paths.root, tuple(checks))


def _check_private_files(paths: KitPaths) -> Check:
    missing: list[str] = []
    exposed: list[tuple[Path, int]] = []
    for name in PRIVATE_FILES:
        path = paths.root / name
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            missing.append(name)
            continue
        if mode & 0o077:
            exposed.append((path, mode))
    if missing:
        return Check(
            "private keys",
            CheckStatus.FAIL,
            f"missing: {', '.join(missing)}",
            "copy the keys `accord kit request` made into the kit folder, or " + _REPACKAGE_FIX,
        )
    if exposed:
        listed = ", ".join(f"{path.name} (mode {mode:o})" for path, mode in exposed)
        files = " ".join(str(path) for path, _ in exposed)
        return Check(
            "private keys",
            CheckStatus.FAIL,
            f"readable by group or others: {listed}",
            f"chmod 600 {files}",
        )
    return Check("private keys", CheckStatus.PASS, "present, mode 600")


def _check_pin(
    paths: KitPaths, manifest: dict[str, Any] | None, ca: x509.Certificate | None
) -> Check:
    if ca is None:
        return Check(
            "CA fingerprint",
            CheckStatus.FAIL,
            f"{paths.ca_cert} missing or not PEM",
            _REPACKAGE_FIX,
        )
    if manifest is None:
        return Check("CA fingerprint", CheckStatus.SKIP, "kit.toml unreadable")
    actual = _fingerprint(ca)
    if actual != manifest["ca_fingerprint"]:
        return Check(
            "CA fingerprint",
            CheckStatus.FAIL,
            f"ca.pem is {actual}, kit.toml pins {manifest['ca_fingerprint']}",
            "ca.pem is not the CA you pinned: confirm the fingerprint with the operator out of "
            "band, then " + _REPACKAGE_FIX,
        )
    return Check("CA fingerprint", CheckStatus.PASS, f"ca.pem matches the pin {actual[:16]}…")


def _check_ca(
    paths: KitPaths, manifest: dict[str, Any] | None, ca: x509.Certificate | None
) -> Check:
    if ca is None or manifest is None:
        return Check("CA certificate", CheckStatus.SKIP, "no CA certificate or kit.toml")
    problem = _ca_problem(ca, manifest["federation_id"])
    if problem:
        return Check("CA certificate", CheckStatus.FAIL, problem, _REPACKAGE_FIX)
    return Check(
        "CA certificate", CheckStatus.PASS, f"CA of federation {manifest['federation_id']}"
    )


def _check_chain(
    paths: KitPaths,
    manifest: dict[str, Any] | None,
    ca: x509.Certificate | None,
    certificate: x509.Certificate | None,
) -> Check:
    if certificate is None:
        return Check(
            "certificate chain",
            CheckStatus.FAIL,
            f"{paths.tls_cert} missing or not PEM",
            _REPACKAGE_FIX,
        )
    if ca is None or manifest is None:
        return Check("certificate chain", CheckStatus.SKIP, "no CA certificate or kit.toml")
    problems = _chain_problems(
        ca, certificate, manifest["participant_id"], manifest["federation_id"]
    )
    if problems:
        return Check("certificate chain", CheckStatus.FAIL, "; ".join(problems), _REPACKAGE_FIX)
    return Check(
        "certificate chain",
        CheckStatus.PASS,
        f"tls.pem (CN={manifest['participant_id']}, clientAuth) issued by ca.pem",
    )


def _check_keys(paths: KitPaths, certificate: x509.Certificate | None) -> Check:
    # Permissions are the "private keys" check's business; here only the contents count.
    try:
        tls_key = _load_tls_key(_read_key_bytes(paths.tls_key), paths.tls_key)
        identity.load_private(_read_key_bytes(paths.identity_key), what=str(paths.identity_key))
        _load_ceremony_key(_read_key_bytes(paths.ceremony_key), paths.ceremony_key)
    except AccordError as error:
        return Check(
            "key pair",
            CheckStatus.FAIL,
            str(error),
            "restore the keys `accord kit request` made (they cannot be re-issued), or start "
            "over with `accord kit request`",
        )
    if certificate is None:
        return Check("key pair", CheckStatus.SKIP, "no certificate to match")
    if _public_der(certificate.public_key()) != _public_der(tls_key.public_key()):
        return Check(
            "key pair",
            CheckStatus.FAIL,
            "tls.pem is for another key than tls.key",
            "package the response that answers this kit's own request: " + _REPACKAGE_FIX,
        )
    return Check(
        "key pair", CheckStatus.PASS, "tls.key matches tls.pem; identity and ceremony keys read"
    )


def _check_validity(
    certificate: x509.Certificate | None, ca: x509.Certificate | None, now: dt.datetime
) -> Check:
    if certificate is None:
        return Check("certificate validity", CheckStatus.SKIP, "no certificate")
    problem = _validity_problem(certificate, now)
    if problem is None and ca is not None:
        problem = _validity_problem(ca, now, what="the CA")
    if problem is not None:
        return Check("certificate validity", CheckStatus.FAIL, problem[0], problem[1])
    left = certificate.not_valid_after_utc - now
    until = f"{certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    if left < EXPIRY_WARNING:
        return Check(
            "certificate validity",
            CheckStatus.WARN,
            f"expires in {left.days} days ({until})",
            "renew soon: " + _RENEW_FIX,
        )
    return Check(
        "certificate validity", CheckStatus.PASS, f"valid until {until} ({left.days} days)"
    )


def _check_coordinator(kit: Kit, timeout_s: float, clock: Callable[[], float]) -> list[Check]:
    channel = secure_channel(kit)
    try:
        stub = health_pb2_grpc.HealthStub(channel)
        started = clock()
        try:
            reply, call = stub.Check.with_call(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout_s
            )
        except grpc.RpcError as error:
            detail, fix = _diagnose(kit.coordinator, error, timeout_s)
            return [
                Check("coordinator", CheckStatus.FAIL, detail, fix),
                Check("clock skew", CheckStatus.SKIP, "unknown (the coordinator did not answer)"),
            ]
        finished = clock()
        metadata = dict(call.initial_metadata() or ())
    finally:
        channel.close()
    serving = reply.status == health_pb2.HealthCheckResponse.SERVING
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    coordinator = (
        Check("coordinator", CheckStatus.PASS, f"{kit.coordinator} answers over mTLS: {name}")
        if serving
        else Check(
            "coordinator",
            CheckStatus.FAIL,
            f"{kit.coordinator} answers over mTLS but is {name}",
            "the coordinator is starting or shutting down; retry, or ask the operator",
        )
    )
    return [coordinator, _clock_skew(metadata.get("date"), (started + finished) / 2)]


def _clock_skew(date_header: Any, local_s: float) -> Check:
    if not isinstance(date_header, str):
        return Check("clock skew", CheckStatus.SKIP, "unknown (the coordinator sends no `date`)")
    try:
        server_s = email.utils.parsedate_to_datetime(date_header).timestamp()
    except (TypeError, ValueError):
        return Check("clock skew", CheckStatus.SKIP, f"unknown (unreadable date {date_header!r})")
    skew = server_s - local_s
    detail = f"{skew:+.0f} s (coordinator minus this machine, ±1 s)"
    fix = "synchronise this machine's clock (NTP: `timedatectl set-ntp true`, chrony)"
    if abs(skew) > MAX_CLOCK_SKEW_S:
        return Check("clock skew", CheckStatus.FAIL, detail, fix)
    if abs(skew) > WARN_CLOCK_SKEW_S:
        return Check("clock skew", CheckStatus.WARN, detail, fix)
    return Check("clock skew", CheckStatus.PASS, detail)


def _diagnose(address: str, error: Any, timeout_s: float) -> tuple[str, str]:
    """Turn a failed health call into what went wrong and how to fix it."""
    code = error.code() if callable(getattr(error, "code", None)) else None
    details = str(error.details() if callable(getattr(error, "details", None)) else error)
    lowered = details.lower()
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return (
            f"no answer from {address} within {timeout_s:g} s",
            "check the address in kit.toml, the firewall, and that the coordinator runs",
        )
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return (
            f"{address} does not serve grpc.health.v1.Health",
            "this is not an Accord coordinator, or an old one: check the address and version",
        )
    if "connection refused" in lowered:
        return (
            f"nothing listens at {address} (connection refused)",
            "start the coordinator (`accord coordinator serve`), or correct `coordinator` "
            "in kit.toml",
        )
    if "dns" in lowered or "resolve" in lowered or "name or service not known" in lowered:
        return (
            f"cannot resolve the host of {address}",
            "correct `coordinator` in kit.toml, or fix this machine's DNS",
        )
    if "certificate_verify_failed" in lowered or "certificate verify failed" in lowered:
        return (
            f"{address} presents a certificate the pinned CA did not issue",
            "you are not talking to your federation's coordinator: check the address, and ask "
            "the operator which CA its server certificate comes from",
        )
    if "handshake" in lowered or "ssl" in lowered or "tls" in lowered:
        return (
            f"the TLS handshake with {address} failed ({details})",
            "check that the coordinator's certificate names this host and that it runs with "
            "this federation's CA",
        )
    if "socket closed" in lowered or "connection reset" in lowered:
        return (
            f"{address} closed the connection during the TLS handshake",
            "the coordinator does not accept this kit's certificate: check that it runs with "
            "this federation's CA and that you packaged the operator's current response",
        )
    return (
        f"{address}: {code.name if code is not None else 'error'}: {details}",
        "check that the coordinator runs and is reachable from this machine",
    )


# ---- certificates ----


def _chain_problems(
    ca: x509.Certificate, certificate: x509.Certificate, participant_id: str, federation_id: str
) -> list[str]:
    """Everything wrong with ``certificate`` as this participant's client certificate."""
    problems: list[str] = []
    ca_problem = _ca_problem(ca, federation_id)
    if ca_problem:
        problems.append(ca_problem)
    try:
        certificate.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        problems.append("not issued by the pinned CA")
    names = [a.value for a in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if names != [participant_id]:
        problems.append(f"its common name is {names!r}, not [{participant_id!r}]")
    try:
        usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
            problems.append("it is not for client authentication")
    except x509.ExtensionNotFound:
        problems.append("it has no extended key usage (clientAuth expected)")
    return problems


def _ca_problem(ca: x509.Certificate, federation_id: str) -> str | None:
    try:
        constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
        is_ca = constraints.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        return "ca.pem is not a CA certificate"
    organizations = [a.value for a in ca.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    if organizations != [federation_id]:
        return f"the CA belongs to federation {organizations!r}, not {federation_id!r}"
    return None


def _validity_problem(
    certificate: x509.Certificate, now: dt.datetime, *, what: str = "the certificate"
) -> tuple[str, str] | None:
    if now < certificate.not_valid_before_utc:
        return (
            f"{what} is not valid before {certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC",
            "this machine's clock is behind: synchronise it (NTP), then check again",
        )
    if now >= certificate.not_valid_after_utc:
        fix = (
            _RENEW_FIX
            if what == "the certificate"
            else "the federation's CA expired: ask the operator to re-provision"
        )
        return (f"{what} expired on {certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC", fix)
    return None


def _try_certificate(path: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None


def _load_certificate(pem: bytes, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise ConfigError(f"{what}: not a PEM certificate") from None


def _fingerprint(certificate: x509.Certificate) -> str:
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def _normalize_fingerprint(text: str) -> str:
    cleaned = str(text).strip().lower().removeprefix("sha256:")
    cleaned = re.sub(r"[\s:]", "", cleaned)
    if not re.fullmatch(r"[0-9a-f]{64}", cleaned):
        raise UsageError(
            f"--ca-fingerprint {text!r}: must be the CA's SHA-256, 64 hex digits (`:` allowed)"
        )
    return cleaned


def _public_der(key: Any) -> bytes:
    data: bytes = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return data


def _load_tls_key(data: bytes, path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(
            f"{path}: not an unencrypted EC private key (made by `accord kit request`)"
        )
    return key


def _load_ceremony_key(data: bytes, path: Path) -> bytes:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, X25519PrivateKey):
        raise ConfigError(f"{path}: not an X25519 private key (made by `accord kit request`)")
    return key.private_bytes_raw()


def _pkcs8(key: ec.EllipticCurvePrivateKey | X25519PrivateKey) -> bytes:
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


# ---- files ----


def _manifest_bytes(
    *, federation_id: str, participant_id: str, coordinator: str, ca_fingerprint: str
) -> bytes:
    lines = [
        f"format_version = {FORMAT_VERSION}",
        "# Accord startup kit, written by `accord kit package`. tls.key, identity.key and",
        "# ceremony.key are private (mode 600) and never leave this machine.",
        f"federation_id = {json.dumps(federation_id)}",
        f"participant_id = {json.dumps(participant_id)}",
        f"coordinator = {json.dumps(coordinator)}",
        "# SHA-256 of ca.pem, as the operator gave it out of band",
        f"ca_fingerprint = {json.dumps(ca_fingerprint)}",
    ]
    return ("\n".join(lines) + "\n").encode("utf-8")


def _read_manifest(path: Path) -> dict[str, Any]:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no kit file ({_REPACKAGE_FIX})") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read ({error})") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None
    version = document.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ConfigError(f"{path} format_version = {version!r}: must be a positive integer")
    if version > FORMAT_VERSION:
        raise ConfigError(
            f"{path} format_version = {version}: this accord reads up to {FORMAT_VERSION} "
            "(upgrade accord)"
        )
    expected = {
        "format_version",
        "federation_id",
        "participant_id",
        "coordinator",
        "ca_fingerprint",
    }
    unknown = sorted(set(document) - expected)
    if unknown:
        raise ConfigError(
            f"{path}: unknown setting {unknown[0]!r} (known: {', '.join(sorted(expected))})"
        )
    for name in sorted(expected - {"format_version"}):
        if not isinstance(document.get(name), str):
            raise ConfigError(f"{path} {name}: required string ({_REPACKAGE_FIX})")
    for name in ("federation_id", "participant_id"):
        if not re.fullmatch(PARTICIPANT_ID_PATTERN, document[name]):
            raise ConfigError(
                f"{path} {name} = {document[name]!r}: must match {PARTICIPANT_ID_PATTERN}"
            )
    if not _valid_address(document["coordinator"]):
        raise ConfigError(
            f"{path} coordinator = {document['coordinator']!r}: must be host:port, e.g. "
            "127.0.0.1:50051"
        )
    if not re.fullmatch(r"[0-9a-f]{64}", document["ca_fingerprint"]):
        raise ConfigError(f"{path} ca_fingerprint: must be 64 lower-case hex digits")
    return document


def _valid_address(address: str) -> bool:
    match = re.fullmatch(r"\[[0-9A-Fa-f:.]+\]:([0-9]{1,5})|[^\s:\[\]]+:([0-9]{1,5})", address)
    return match is not None and 1 <= int(match.group(1) or match.group(2)) <= 65535


def _read_json(path: Path, expected_format: str, what: str, source: str) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file ({source})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: not {what} ({error})") from None
    if not isinstance(document, dict) or document.get("format") != expected_format:
        raise ConfigError(f"{path}: not {what} (format must be {expected_format!r})")
    version = document.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ConfigError(f"{path} format_version = {version!r}: must be a positive integer")
    if version > FORMAT_VERSION:
        raise ConfigError(
            f"{path} format_version = {version}: this accord reads up to {FORMAT_VERSION} "
            "(upgrade accord)"
        )
    return document


def _pem_field(document: dict[str, Any], name: str, path: Path) -> bytes:
    value = document.get(name)
    if not isinstance(value, str) or "-----BEGIN CERTIFICATE-----" not in value:
        raise ConfigError(f"{path} {name}: must be a PEM certificate")
    return value.encode("ascii", "replace")


def _read_private(path: Path) -> bytes:
    """Read a private key file, refusing one that group or others may read."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: private key missing (restore it, or start over with `accord kit request`)"
        ) from None
    if mode & 0o077:
        raise ConfigError(
            f"{path} is readable by group or others (mode {mode:o}); run `chmod 600 {path}`"
        )
    return path.read_bytes()


def _holds(path: Path, data: bytes) -> bool:
    """True if ``path`` exists with exactly ``data`` (a kit packaged again, e.g. on renewal)."""
    try:
        return path.read_bytes() == data
    except OSError:
        return False


def _read_key_bytes(path: Path) -> bytes:
    """Read a private key file whatever its mode (for ``check``, which reports modes apart)."""
    try:
        return path.read_bytes()
    except OSError:
        raise ConfigError(
            f"{path}: private key missing (restore it, or start over with `accord kit request`)"
        ) from None


def _read_public(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: missing ({_REPACKAGE_FIX})") from None


def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` 0600; never follow a link, never replace an existing file."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        handle = os.open(path, flags, 0o600)
    except FileExistsError:
        raise UsageError(f"{path} exists; a private key is never overwritten") from None
    with os.fdopen(handle, "wb") as stream:
        os.fchmod(stream.fileno(), 0o600)
        stream.write(data)


def _write_public(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically, mode 0644 (public material only)."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _json_bytes(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=2) + "\n").encode("utf-8")


def _now(now: dt.datetime | None) -> dt.datetime:
    if now is None:
        return dt.datetime.now(dt.timezone.utc)
    if now.tzinfo is None:
        raise UsageError("now must be timezone-aware (UTC)")
    return now
