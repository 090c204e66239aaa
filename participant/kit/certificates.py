"""A startup kit's certificates and keys: reading them, and what is wrong with them.

Theory of operation (docs/provisioning.md): the participant's trust starts at the CA
certificate whose SHA-256 fingerprint the operator gave out of band. From there a
client certificate is good for this participant when the pinned CA is a CA of the
named federation (its O), the CA issued the certificate directly, the certificate's
CN is the participant id, it is for client authentication, it is valid now, and it
certifies the participant's own TLS key.

``accord kit package`` refuses a response with any such problem, ``Kit.load`` a kit
with one, and ``accord kit check`` lists them all; so the checks return what is wrong
(with the fix, where one applies) rather than raise, and each caller decides.

The same pinned CA vouches for the other members' keys (DESIGN.md guarantee 2). The
coordinator's Enroll response lists each member with its identity key, ceremony key
and client certificate; ``certify_roster`` keeps a member only when
``accord.crypto.credential.verify_member`` finds that the CA certified exactly those
keys for that id, and returns the reason for every member it refused. The daemon then
verifies messages and seals the CKKS key with certified keys only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from accord.core.pki import fingerprint, normalize_fingerprint
from accord.crypto.credential import MemberKeys, verify_member
from accord.errors import ConfigError, ProtocolError
from accord.proto.v1 import federation_pb2 as pb

__all__ = [
    "RENEW_FIX",
    "CertifiedRoster",
    "ca_problem",
    "certify_roster",
    "chain_problems",
    "fingerprint",
    "is_for_key",
    "load_ceremony_key",
    "load_certificate",
    "load_tls_key",
    "normalize_fingerprint",
    "pkcs8_pem",
    "validity_problem",
]

RENEW_FIX = (
    "ask the operator to approve your request.json again (`accord provision approve "
    "request.json --ca CA_DIR`), then `accord kit package` the new response"
)
"""What to do about an expired or expiring client certificate."""


def chain_problems(
    ca: x509.Certificate, certificate: x509.Certificate, participant_id: str, federation_id: str
) -> list[str]:
    """Everything wrong with ``certificate`` as this participant's client certificate."""
    problems: list[str] = []
    problem = ca_problem(ca, federation_id)
    if problem:
        problems.append(problem)
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


def ca_problem(ca: x509.Certificate, federation_id: str) -> str | None:
    """What is wrong with ``ca`` as the CA of ``federation_id``, or None."""
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


def validity_problem(
    certificate: x509.Certificate, now: dt.datetime, *, what: str = "the certificate"
) -> tuple[str, str] | None:
    """``(problem, fix)`` if ``certificate`` is not valid at ``now``, else None.

    Args:
        certificate: the client certificate, or the CA's.
        now: the moment (timezone-aware).
        what: names it in the problem; ``"the certificate"`` gets the renewal fix.
    """
    if now < certificate.not_valid_before_utc:
        return (
            f"{what} is not valid before {certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC",
            "this machine's clock is behind: synchronise it (NTP), then check again",
        )
    if now >= certificate.not_valid_after_utc:
        fix = (
            RENEW_FIX
            if what == "the certificate"
            else "the federation's CA expired: ask the operator to re-provision"
        )
        return (f"{what} expired on {certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC", fix)
    return None


def is_for_key(certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    """True if ``certificate`` certifies the public half of ``key``."""
    return _public_der(certificate.public_key()) == _public_der(key.public_key())


def load_certificate(pem: bytes, what: str) -> x509.Certificate:
    """Parse a PEM certificate.

    Raises:
        ConfigError: ``what`` is not a PEM certificate.
    """
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise ConfigError(f"{what}: not a PEM certificate") from None


def load_tls_key(data: bytes, path: Path) -> ec.EllipticCurvePrivateKey:
    """Read the TLS key (PKCS#8 PEM) from the contents of ``path``.

    Raises:
        ConfigError: not an unencrypted EC private key.
    """
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(
            f"{path}: not an unencrypted EC private key (made by `accord kit request`)"
        )
    return key


def load_ceremony_key(data: bytes, path: Path) -> bytes:
    """Read the ceremony key (PKCS#8 PEM) from the contents of ``path``; raw 32 bytes.

    Raises:
        ConfigError: not an X25519 private key.
    """
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, X25519PrivateKey):
        raise ConfigError(f"{path}: not an X25519 private key (made by `accord kit request`)")
    return key.private_bytes_raw()


def pkcs8_pem(key: ec.EllipticCurvePrivateKey | X25519PrivateKey) -> bytes:
    """Write a private key as unencrypted PKCS#8 PEM (what the ``load_*_key`` read)."""
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


@dataclass(frozen=True)
class CertifiedRoster:
    """The members whose keys the federation's CA certified, and why others were refused.

    Attributes:
        members: participant id -> its certified keys.
        refused: participant id -> why its entry was refused (names what failed).
    """

    members: Mapping[str, MemberKeys] = field(default_factory=dict)
    refused: Mapping[str, str] = field(default_factory=dict)

    @property
    def identities(self) -> dict[str, bytes]:
        """Participant id -> certified Ed25519 identity public key."""
        return {name: keys.identity_public for name, keys in self.members.items()}

    def require(self, names: Iterable[str], *, what: str) -> None:
        """Raise unless every one of ``names`` has certified keys.

        Args:
            names: the members a round or a key ceremony involves.
            what: names that round or ceremony in the error, e.g. ``"round 3"``.

        Raises:
            ProtocolError: the first member without certified keys, with the reason.
        """
        for name in sorted(names):
            if name not in self.members:
                reason = self.refused.get(name, f"the coordinator's roster does not list {name}")
                raise ProtocolError(
                    f"{what} refused: no keys of {name} certified by the federation's CA ({reason})"
                )

    def check_ceremony_keys(self, keys: Mapping[str, bytes]) -> None:
        """Raise unless each relayed ceremony key is the one the CA certified for its owner.

        Args:
            keys: participant id -> the raw X25519 key a key-ceremony task relays.

        Raises:
            ProtocolError: a member without certified keys, or a key other than certified.
        """
        self.require(keys, what="the key ceremony")
        for name, ceremony_public in sorted(keys.items()):
            if bytes(ceremony_public) != self.members[name].ceremony_public:
                raise ProtocolError(
                    f"the key ceremony refused: the ceremony key relayed for {name} is not the "
                    "one the federation's CA certified"
                )


def certify_roster(
    entries: Iterable[pb.RosterEntry], ca: x509.Certificate, *, now: dt.datetime
) -> CertifiedRoster:
    """Keep the members whose keys ``ca`` certified; say why each other one was refused.

    Args:
        entries: the roster of the coordinator's Enroll response.
        ca: the CA the kit pins (``ca.pem``).
        now: when the certificates must be valid (timezone-aware).

    Returns:
        The certified members and the refused ones (with the reason each failed). A
        participant id listed twice is refused.
    """
    members: dict[str, MemberKeys] = {}
    refused: dict[str, str] = {}
    seen: set[str] = set()
    for entry in entries:
        name = entry.participant_id
        if name in seen:
            members.pop(name, None)
            refused[name] = f"the coordinator's roster lists {name} twice"
            continue
        seen.add(name)
        try:
            members[name] = verify_member(
                ca,
                entry.certificate,
                participant_id=name,
                identity_public=entry.identity_public_key,
                ceremony_public=entry.ceremony_public_key,
                now=now,
            )
        except ProtocolError as error:
            refused[name] = str(error)
    return CertifiedRoster(members=members, refused=refused)


def _public_der(key: Any) -> bytes:
    data: bytes = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return data
