"""A participant's startup kit: make keys and a request, package the operator's answer,
and load the kit.

Theory of operation (DESIGN.md section 1 and section 3, "Provision";
docs/provisioning.md):

- ``request`` makes every private key of the enterprise on its own machine: the TLS
  key (ECDSA P-256) with a PKCS#10 request for CN = participant id, the Ed25519
  identity key that signs every protocol message, and the X25519 ceremony key to
  which the federation's CKKS secret is later sealed. Each is written 0600 in a 0700
  folder and never overwritten. ``request.json`` holds only public material: the
  request, both public keys and the identity key's signature over
  ``identity.request_statement`` (which binds the three keys to the id).
- The operator answers with a response file (certificate and CA certificate). The
  file travels over channels nobody vouches for, so ``package`` trusts it only after
  the CA certificate's SHA-256 fingerprint equals the one the operator gave out of
  band (phone, signed mail, a meeting): that pin is the root of the participant's
  trust. It then checks that the CA is a CA of the named federation, that it issued
  the certificate, and that the certificate is for this request's key and id, for
  client authentication, and currently valid (``participant/kit/certificates.py``).
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

import base64
import datetime as dt
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.x509.oid import NameOID

from accord.core.configfile import check_format_version, dump_versioned_json, read_versioned_json
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
from accord.core.transport import client_options
from accord.crypto import agreement, credential, identity, ledger_key
from accord.crypto import terms as signed_terms
from accord.errors import (
    BadSignature,
    ConfigError,
    IntegrityError,
    ProtocolError,
    UsageError,
)
from accord.participant.kit.certificates import (
    chain_problems,
    fingerprint,
    is_for_key,
    load_ceremony_key,
    load_certificate,
    load_tls_key,
    normalize_fingerprint,
    pkcs8_pem,
    validity_problem,
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
    "package",
    "request",
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
    statement = identity.request_statement(
        participant_id=name,
        csr_der=csr_der,
        identity_public=identity_pair.public,
        ceremony_public=ceremony_pair.public,
    )
    document = {
        "participant_id": name,
        "csr": csr.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        "identity_public_key": identity_pair.public.hex(),
        "ceremony_public_key": ceremony_pair.public.hex(),
        "signature": identity.sign(identity_pair.private, statement).hex(),
    }
    write_private(out_dir / TLS_KEY_FILE, pkcs8_pem(tls_key))
    write_private(out_dir / IDENTITY_KEY_FILE, identity.dump_private(identity_pair.private))
    write_private(
        out_dir / CEREMONY_KEY_FILE,
        pkcs8_pem(X25519PrivateKey.from_private_bytes(ceremony_pair.private)),
    )
    path = out_dir / REQUEST_FILE
    write_public(
        path,
        dump_versioned_json(
            document, document_format=REQUEST_FORMAT, version=EXCHANGE_FORMAT_VERSION
        ),
    )
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
    expected = normalize_fingerprint(ca_fingerprint, what="--ca-fingerprint")
    own = read_versioned_json(
        request_dir / REQUEST_FILE,
        expected_format=REQUEST_FORMAT,
        what="a kit request",
        max_version=EXCHANGE_FORMAT_VERSION,
        fix="accord kit request",
    )
    participant_id = str(own.get("participant_id", ""))
    private = {n: _read_private(request_dir / n) for n in PRIVATE_FILES}
    tls_key = load_tls_key(private[TLS_KEY_FILE], request_dir / TLS_KEY_FILE)
    response = read_versioned_json(
        response_path,
        expected_format=RESPONSE_FORMAT,
        what="a kit response",
        max_version=EXCHANGE_FORMAT_VERSION,
        fix="ask the operator to re-send it",
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
    ca = load_certificate(ca_pem, f"{response_path} ca_certificate")
    actual = fingerprint(ca)
    if actual != expected:
        raise IntegrityError(
            f"the CA certificate in {response_path} has SHA-256 fingerprint {actual}, but the "
            f"operator's out-of-band fingerprint is {expected}: do not use this response; "
            "confirm the fingerprint with the operator and ask for the response again"
        )
    certificate = load_certificate(cert_pem, f"{response_path} certificate")
    problems = chain_problems(ca, certificate, participant_id, federation_id)
    if problems:
        raise IntegrityError(f"the certificate in {response_path}: {problems[0]}")
    if not is_for_key(certificate, tls_key):
        raise IntegrityError(
            f"the certificate in {response_path} is for another key than "
            f"{request_dir / TLS_KEY_FILE} (package the response to this request)"
        )
    own_keys = credential.MemberKeys(
        participant_id,
        identity.public_from_private(
            identity.load_private(private[IDENTITY_KEY_FILE], what=IDENTITY_KEY_FILE)
        ),
        agreement.public_key(
            load_ceremony_key(private[CEREMONY_KEY_FILE], request_dir / CEREMONY_KEY_FILE)
        ),
    )
    try:
        certified: credential.MemberKeys | None = credential.certified_keys(certificate)
    except ProtocolError:
        certified = None
    if certified != own_keys:
        # Every other member checks these keys against the certificate (DESIGN.md
        # guarantee 2) and would refuse this participant.
        raise IntegrityError(
            f"the certificate in {response_path} does not certify this request's identity "
            "and ceremony keys; ask the operator to approve this request.json again"
        )
    moment = utc_now(now)
    validity = validity_problem(certificate, moment) or validity_problem(ca, moment, what="the CA")
    if validity:
        raise ConfigError(f"{response_path}: {validity[0]} ({validity[1]})")
    ledger_public, ledger_signature = _certified_ledger_key(response, response_path)
    try:
        ledger_key.check(ca, federation_id, ledger_public, ledger_signature)
    except BadSignature:
        raise IntegrityError(
            f"the coordinator ledger key in {response_path} is not certified by the pinned CA: "
            "do not use this response; ask the operator for it again"
        ) from None

    terms = _signed_terms(response, response_path, ca_pem)

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
        write_private(out_dir / name, data)
    if separate:
        write_public(out_dir / REQUEST_FILE, (request_dir / REQUEST_FILE).read_bytes())
    write_public(out_dir / TLS_CERT_FILE, cert_pem)
    write_public(out_dir / CA_CERT_FILE, ca_pem)
    write_public(out_dir / LEDGER_KEY_FILE, ledger_key.to_pem(ledger_public))
    if terms is not None:
        write_public(out_dir / TERMS_FILE, terms)
    write_public(
        out_dir / KIT_FILE,
        _manifest_bytes(
            federation_id=federation_id,
            participant_id=participant_id,
            coordinator=coordinator,
            ca_fingerprint=actual,
            ledger_key=ledger_public,
            ledger_key_signature=ledger_signature,
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
        private = {n: _read_private(paths.root / n) for n in PRIVATE_FILES}
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


def _manifest_bytes(
    *,
    federation_id: str,
    participant_id: str,
    coordinator: str,
    ca_fingerprint: str,
    ledger_key: bytes,
    ledger_key_signature: bytes,
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
    if not _valid_address(document["coordinator"]):
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


def _signed_terms(response: dict[str, Any], path: Path, ca_pem: bytes) -> bytes | None:
    """The federation's signed terms the response carries, verified by the pinned CA."""
    if "terms" not in response:
        return None
    try:
        signed = base64.b64decode(str(response["terms"]), validate=True)
    except ValueError:
        raise ConfigError(f"{path} terms: must be base64 ({REPACKAGE_FIX})") from None
    try:
        signed_terms.verify_terms(signed, ca_pem)
    except ProtocolError as error:
        raise IntegrityError(
            f"the federation terms in {path} are not signed by the pinned CA ({error}): do not "
            "use this response; ask the operator for it again"
        ) from None
    return signed


def _certified_ledger_key(response: dict[str, Any], path: Path) -> tuple[bytes, bytes]:
    """The coordinator's ledger key and the CA's signature on it, from a response."""
    key, signature = (
        response.get("coordinator_ledger_key"),
        response.get("coordinator_ledger_key_signature"),
    )
    if key is None and signature is None:
        raise ConfigError(
            f"{path}: the response carries no coordinator ledger key (its CA folder has none); "
            "ask the operator to run `accord provision ledger-key --ca CA_DIR --coordinator-dir "
            "DIR` and approve the request again"
        )
    try:
        raw_key, raw_signature = bytes.fromhex(str(key)), bytes.fromhex(str(signature))
    except ValueError:
        raise ConfigError(f"{path} coordinator_ledger_key: must be hex digits") from None
    if len(raw_key) != 32:
        raise ConfigError(f"{path} coordinator_ledger_key: must be 32 bytes (Ed25519)")
    return raw_key, raw_signature


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


def _valid_address(address: str) -> bool:
    try:
        split_address(address)
    except ConfigError:
        return False
    return True


def _pem_field(document: dict[str, Any], name: str, path: Path) -> bytes:
    value = document.get(name)
    if not isinstance(value, str) or "-----BEGIN CERTIFICATE-----" not in value:
        raise ConfigError(f"{path} {name}: must be a PEM certificate")
    return value.encode("ascii", "replace")


def _read_private(path: Path) -> bytes:
    """Read a private key file, refusing one that group or others may read."""
    try:
        refuse_if_readable(path, "the private key")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: private key missing (restore it, or start over with `accord kit request`)"
        ) from None
    return path.read_bytes()


def _holds(path: Path, data: bytes) -> bool:
    """True if ``path`` exists with exactly ``data`` (a kit packaged again, e.g. on renewal)."""
    try:
        return path.read_bytes() == data
    except OSError:
        return False


def _read_public(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: missing ({REPACKAGE_FIX})") from None
