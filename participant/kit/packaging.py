"""The enterprise's side of provisioning: make the keys and the request the operator
signs, then check the operator's answer against the pinned CA and package the startup kit.

Theory of operation (DESIGN.md section 3, "Provision"; docs/provisioning.md):

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
  The coordinator's ledger key is taken from the response only with the CA's signature
  over it (``accord.crypto.ledger_key``), and the terms only signed by the CA.

The kit's files and how it is loaded: ``participant/kit/startup_kit.py``.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.x509.oid import NameOID

from accord.core.configfile import dump_versioned_json, read_versioned_json
from accord.core.kitformat import (
    EXCHANGE_FORMAT_VERSION,
    PARTICIPANT_ID_PATTERN,
    REQUEST_FORMAT,
    RESPONSE_FORMAT,
    TERMS_FILE,
    check_id,
    utc_now,
    write_private,
    write_public,
)
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
from accord.participant.kit.startup_kit import (
    CA_CERT_FILE,
    CEREMONY_KEY_FILE,
    IDENTITY_KEY_FILE,
    KIT_FILE,
    LEDGER_KEY_FILE,
    PRIVATE_FILES,
    REPACKAGE_FIX,
    REQUEST_FILE,
    TLS_CERT_FILE,
    TLS_KEY_FILE,
    is_address,
    manifest_bytes,
    read_private_key,
)

__all__ = ["package", "request"]


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
    out_dir = Path(out_dir)
    _check_new_request(name, out_dir)
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


def _check_new_request(name: str, out_dir: Path) -> None:
    """A valid id, and a folder that holds no request or keys yet."""
    check_id(name, "--name")
    existing = [n for n in (REQUEST_FILE, *PRIVATE_FILES) if (out_dir / n).exists()]
    if existing:
        raise UsageError(
            f"{out_dir} already holds {existing[0]}; choose another --out (private keys are "
            "never overwritten)"
        )


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
    private = {n: read_private_key(request_dir / n) for n in PRIVATE_FILES}
    tls_key = load_tls_key(private[TLS_KEY_FILE], request_dir / TLS_KEY_FILE)
    answer = _checked_answer(
        request_dir, response_path, expected, participant_id, tls_key, private, now
    )
    _write_kit(out_dir, request_dir, private, participant_id, answer)
    return out_dir


@dataclass(frozen=True)
class _Answer:
    """What the operator's response says, once checked against the pinned CA."""

    federation_id: str
    coordinator: str
    ca_pem: bytes
    cert_pem: bytes
    ca_fingerprint: str
    ledger_public: bytes
    ledger_signature: bytes
    terms: bytes | None


def _checked_answer(
    request_dir: Path,
    response_path: Path,
    expected: str,
    participant_id: str,
    tls_key: Any,
    private: dict[str, bytes],
    now: dt.datetime | None,
) -> _Answer:
    """Read the response and check it: the pinned CA, its certificate, the ledger key, terms."""
    response = read_versioned_json(
        response_path,
        expected_format=RESPONSE_FORMAT,
        what="a kit response",
        max_version=EXCHANGE_FORMAT_VERSION,
        fix="ask the operator to re-send it",
    )
    federation_id, coordinator = _addressee(response, response_path, participant_id)
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
    _check_certificate(
        ca,
        certificate,
        request_dir,
        response_path,
        participant_id,
        federation_id,
        tls_key,
        private,
        now,
    )
    ledger_public, ledger_signature = _certified_ledger_key(response, response_path)
    try:
        ledger_key.check(ca, federation_id, ledger_public, ledger_signature)
    except BadSignature:
        raise IntegrityError(
            f"the coordinator ledger key in {response_path} is not certified by the pinned CA: "
            "do not use this response; ask the operator for it again"
        ) from None

    return _Answer(
        federation_id=federation_id,
        coordinator=coordinator,
        ca_pem=ca_pem,
        cert_pem=cert_pem,
        ca_fingerprint=actual,
        ledger_public=ledger_public,
        ledger_signature=ledger_signature,
        terms=_signed_terms(response, response_path, ca_pem),
    )


def _addressee(
    response: dict[str, Any], response_path: Path, participant_id: str
) -> tuple[str, str]:
    """The response's federation and coordinator, once it is this request's."""
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
    if not isinstance(coordinator, str) or not is_address(coordinator):
        raise ConfigError(f"{response_path} coordinator = {coordinator!r}: must be host:port")
    return federation_id, coordinator


def _check_certificate(
    ca: x509.Certificate,
    certificate: x509.Certificate,
    request_dir: Path,
    response_path: Path,
    participant_id: str,
    federation_id: str,
    tls_key: Any,
    private: dict[str, bytes],
    now: dt.datetime | None,
) -> None:
    """The certificate chains to the CA, is this request's key and member keys, valid now."""
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


def _write_kit(
    out_dir: Path,
    request_dir: Path,
    private: dict[str, bytes],
    participant_id: str,
    answer: _Answer,
) -> None:
    """Write the kit's files; private keys are copied, never overwritten."""
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
    write_public(out_dir / TLS_CERT_FILE, answer.cert_pem)
    write_public(out_dir / CA_CERT_FILE, answer.ca_pem)
    write_public(out_dir / LEDGER_KEY_FILE, ledger_key.to_pem(answer.ledger_public))
    if answer.terms is not None:
        write_public(out_dir / TERMS_FILE, answer.terms)
    write_public(
        out_dir / KIT_FILE,
        manifest_bytes(
            federation_id=answer.federation_id,
            participant_id=participant_id,
            coordinator=answer.coordinator,
            ca_fingerprint=answer.ca_fingerprint,
            ledger_key=answer.ledger_public,
            ledger_key_signature=answer.ledger_signature,
        ),
    )


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


def _pem_field(document: dict[str, Any], name: str, path: Path) -> bytes:
    value = document.get(name)
    if not isinstance(value, str) or "-----BEGIN CERTIFICATE-----" not in value:
        raise ConfigError(f"{path} {name}: must be a PEM certificate")
    return value.encode("ascii", "replace")


def _holds(path: Path, data: bytes) -> bool:
    """True if ``path`` exists with exactly ``data`` (a kit packaged again, e.g. on renewal)."""
    try:
        return path.read_bytes() == data
    except OSError:
        return False
