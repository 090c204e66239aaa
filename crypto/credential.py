"""Member credentials: the federation CA's certificate vouches for a member's keys.

Theory of operation (DESIGN.md guarantee 2, "identity keys, issued at provisioning,
sign every public key a participant advertises, so the coordinator cannot insert keys
of its own"; docs/provisioning.md, "Who vouches for whose keys"):

- A participant verifies every protocol message of another member with that member's
  Ed25519 identity key, and seals the CKKS secret to its X25519 ceremony key. The
  coordinator relays both keys (its Enroll response), so whoever runs the coordinator
  could hand out keys of its own and then read or forge what they protect. The keys
  must therefore carry proof from the one party every participant already trusts: the
  federation's CA, which each participant pins by fingerprint in its startup kit.
- ``accord provision approve`` checks the request's proofs of possession and then
  writes the member's id and both public keys into its client certificate, as a
  non-critical X.509 extension (``MEMBER_KEYS_OID``). The CA's signature over the
  certificate binds them; TLS stacks ignore an unknown non-critical extension.
- ``verify_member`` is the participant's check of one roster entry: the certificate is
  signed by the pinned CA, valid now, its common name and extension name the entry's
  participant, and the extension's keys are the entry's keys. Any failure raises,
  naming the member and what failed (``BadSignature`` for another CA's certificate,
  ``ProtocolError`` otherwise); the keys it returns come from the certificate.

Extension value (DER; every length is short, the sequence's may take one extra byte)::

    AccordMemberKeys ::= SEQUENCE {
        version        INTEGER (1),
        participantId  UTF8String,
        identityKey    OCTET STRING (SIZE (32)),   -- raw Ed25519 public key
        ceremonyKey    OCTET STRING (SIZE (32)) }  -- raw X25519 public key

The OID is ``1.3.6.1.4.1.32473.1.1``: every arc fits in 63 bits, so Go's crypto/x509
(grpcurl, grpc_health_probe, Kubernetes gRPC probes, Envoy) parses kit certificates. It
used to be ``2.25.<UUID>`` (ITU-T X.667), whose 128-bit arc Go refuses ("malformed
extension OID field"); certificates issued with that OID are not read (re-approve the
request). ``32473`` is IANA's enterprise number for documentation (RFC 5612), a
placeholder until the project registers a private enterprise number of its own: only the
federation's own CA writes this extension, and Accord reads it only from certificates
that CA signed, so no other issuer's use of the arc can make Accord accept a key.
Decoding accepts only the canonical encoding this module writes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID

from accord.crypto.agreement import KEY_BYTES
from accord.errors import BadSignature, Malformed, ProtocolError, UsageError

__all__ = [
    "FORMAT_VERSION",
    "MEMBER_KEYS_OID",
    "MemberKeys",
    "certified_keys",
    "extension",
    "verify_member",
]

MEMBER_KEYS_OID = x509.ObjectIdentifier("1.3.6.1.4.1.32473.1.1")
"""The Accord member-keys extension (arcs within 63 bits, so Go stacks parse it)."""

FORMAT_VERSION = 1
"""The ``version`` field of the extension this code writes, and the only one it reads."""

REISSUE_FIX = (
    "the operator approves its request.json again (`accord provision approve`) to issue a "
    "certificate that certifies its keys"
)

_SEQUENCE, _INTEGER, _UTF8_STRING, _OCTET_STRING = 0x30, 0x02, 0x0C, 0x04


@dataclass(frozen=True)
class MemberKeys:
    """A member's public keys, as its certificate states them.

    Attributes:
        participant_id: the member's id.
        identity_public: raw Ed25519 public key (32 bytes): verifies its messages.
        ceremony_public: raw X25519 public key (32 bytes): the CKKS secret is sealed to it.
    """

    participant_id: str
    identity_public: bytes
    ceremony_public: bytes

    def to_der(self) -> bytes:
        """The extension's value (DER ``AccordMemberKeys``).

        Raises:
            UsageError: a key is not 32 bytes, or the id is empty or over 63 bytes.
        """
        name = self.participant_id.encode("utf-8")
        if not 1 <= len(name) <= 63:
            raise UsageError(f"participant id {self.participant_id!r}: must be 1..63 bytes")
        for what, key in (("identity", self.identity_public), ("ceremony", self.ceremony_public)):
            if len(key) != KEY_BYTES:
                raise UsageError(f"the {what} public key must be {KEY_BYTES} raw bytes")
        content = (
            _tlv(_INTEGER, bytes([FORMAT_VERSION]))
            + _tlv(_UTF8_STRING, name)
            + _tlv(_OCTET_STRING, bytes(self.identity_public))
            + _tlv(_OCTET_STRING, bytes(self.ceremony_public))
        )
        return _tlv(_SEQUENCE, content)

    @classmethod
    def from_der(cls, data: bytes) -> MemberKeys:
        """Read an extension value written by ``to_der``.

        Raises:
            Malformed: not the canonical encoding of a version-1 ``AccordMemberKeys``.
        """
        data = bytes(data)
        try:
            content, rest = _read(data, _SEQUENCE)
            version, content = _read(content, _INTEGER)
            name, content = _read(content, _UTF8_STRING)
            identity_public, content = _read(content, _OCTET_STRING)
            ceremony_public, content = _read(content, _OCTET_STRING)
            if rest or content or version != bytes([FORMAT_VERSION]):
                raise ValueError
            keys = cls(name.decode("utf-8"), identity_public, ceremony_public)
            if keys.to_der() != data:
                raise ValueError
        except (ValueError, UsageError):
            raise Malformed("the Accord member-keys extension is malformed") from None
        return keys


def extension(keys: MemberKeys) -> x509.UnrecognizedExtension:
    """The extension ``approve`` adds (non-critical) to a member's client certificate."""
    return x509.UnrecognizedExtension(MEMBER_KEYS_OID, keys.to_der())


def certified_keys(certificate: x509.Certificate) -> MemberKeys:
    """The keys a certificate's member-keys extension states (its signature unchecked).

    Raises:
        ProtocolError: the certificate has no such extension (issued before accord
            certified keys), or it is malformed.
    """
    try:
        found = certificate.extensions.get_extension_for_oid(MEMBER_KEYS_OID).value
    except x509.ExtensionNotFound:
        raise ProtocolError("the certificate has no Accord member-keys extension") from None
    if not isinstance(found, x509.UnrecognizedExtension):  # pragma: no cover - unknown OID
        raise Malformed("the Accord member-keys extension is malformed")
    return MemberKeys.from_der(found.value)


def verify_member(
    ca: x509.Certificate,
    certificate_der: bytes,
    *,
    participant_id: str,
    identity_public: bytes,
    ceremony_public: bytes,
    now: dt.datetime,
) -> MemberKeys:
    """Check that the federation's CA certified these keys for ``participant_id``.

    Args:
        ca: the CA certificate the participant pins (its kit's ``ca.pem``).
        certificate_der: the member's client certificate as the coordinator relayed it.
        participant_id: the member the roster entry names.
        identity_public: the identity key the entry carries (32 raw bytes).
        ceremony_public: the ceremony key the entry carries (32 raw bytes).
        now: the moment the certificate must be valid at (timezone-aware).

    Returns:
        The certified keys (equal to the entry's).

    Raises:
        BadSignature: the certificate is not signed by ``ca``.
        ProtocolError: no certificate, not a certificate, not valid at ``now``, made out
            to another participant, without the extension, or certifying other keys.
            The message names the member and what failed.
    """
    who = f"the roster entry of {participant_id}"
    certificate = _signed_certificate(ca, certificate_der, who)
    _require_valid_at(certificate, now, who)
    names = [a.value for a in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if names != [participant_id]:
        raise ProtocolError(f"{who}: its certificate is made out to {names!r}")
    try:
        keys = certified_keys(certificate)
    except Malformed:
        raise ProtocolError(
            f"{who}: its certificate's member-keys extension is malformed"
        ) from None
    except ProtocolError:
        raise ProtocolError(
            f"{who}: its certificate has no Accord member-keys extension ({REISSUE_FIX})"
        ) from None
    if keys.participant_id != participant_id:
        raise ProtocolError(f"{who}: its certificate certifies the keys of {keys.participant_id}")
    if keys.identity_public != bytes(identity_public):
        raise ProtocolError(
            f"{who}: its identity key is not the one the CA certified (refused: the "
            "coordinator relayed another key)"
        )
    if keys.ceremony_public != bytes(ceremony_public):
        raise ProtocolError(
            f"{who}: its ceremony key is not the one the CA certified (refused: the "
            "coordinator relayed another key)"
        )
    return keys


def _signed_certificate(ca: x509.Certificate, certificate_der: bytes, who: str) -> x509.Certificate:
    """The member's certificate, once it parses and ``ca`` signed it.

    Raises:
        ProtocolError: no certificate, or not a DER X.509 certificate.
        BadSignature: not signed by ``ca``.
    """
    if not certificate_der:
        raise ProtocolError(f"{who} carries no certificate from the federation's CA")
    try:
        certificate = x509.load_der_x509_certificate(bytes(certificate_der))
    except ValueError:
        raise ProtocolError(f"{who}: its certificate is not a DER X.509 certificate") from None
    try:
        certificate.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise BadSignature(
            f"{who}: its certificate is not signed by the federation's CA (the pinned ca.pem)"
        ) from None
    return certificate


def _require_valid_at(certificate: x509.Certificate, now: dt.datetime, who: str) -> None:
    """Raise ``ProtocolError`` unless the certificate is valid at ``now``."""
    if now < certificate.not_valid_before_utc:
        raise ProtocolError(
            f"{who}: its certificate is not valid before "
            f"{certificate.not_valid_before_utc:%Y-%m-%d %H:%M} UTC (is this clock behind?)"
        )
    if now >= certificate.not_valid_after_utc:
        raise ProtocolError(
            f"{who}: its certificate expired on "
            f"{certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC ({REISSUE_FIX})"
        )


def _tlv(tag: int, value: bytes) -> bytes:
    length = len(value)
    if length < 0x80:
        return bytes([tag, length]) + value
    if length < 0x100:
        return bytes([tag, 0x81, length]) + value
    raise UsageError("an Accord member-keys field is too long")  # pragma: no cover - ids <= 63


def _read(data: bytes, tag: int) -> tuple[bytes, bytes]:
    """One TLV of ``tag`` at the front of ``data``: (its value, what follows)."""
    if len(data) < 2 or data[0] != tag:
        raise ValueError
    length, start = data[1], 2
    if length == 0x81:
        if len(data) < 3:
            raise ValueError
        length, start = data[2], 3
    elif length & 0x80:
        raise ValueError
    end = start + length
    if end > len(data):
        raise ValueError
    return data[start:end], data[end:]
