"""Specification of accord.crypto.credential: the CA vouches for a member's keys.

A participant accepts another member's identity and ceremony keys only when the
federation's CA certified exactly those keys for that member's id. Each way a roster
entry can fail is refused with an error that names the member and what failed.
"""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from accord.crypto.credential import (
    MEMBER_KEYS_OID,
    MemberKeys,
    certified_keys,
    extension,
    verify_member,
)
from accord.errors import BadSignature, Malformed, ProtocolError
from tests.support import pki

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
URBAN = MemberKeys("urban", identity_public=bytes(range(32)), ceremony_public=bytes(32 * [7]))
OTHER_KEY = bytes(32 * [0xEE])


def make_ca(federation: str = "city-safety") -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    before = NOW - dt.timedelta(days=10)
    return pki.make_ca(
        f"Accord CA {federation}", organization=federation, not_before=before, days=3660
    )


CA_KEY, CA = make_ca()


def issue(
    common_name: str = "urban",
    keys: MemberKeys | None = URBAN,
    *,
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate] = (CA_KEY, CA),
    not_before: dt.datetime = NOW - dt.timedelta(days=1),
    not_after: dt.datetime = NOW + dt.timedelta(days=365),
) -> bytes:
    """A client certificate as `accord provision approve` issues it, in DER."""
    ca_key, ca_certificate = ca
    builder = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "city-safety"),
                    x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                ]
            )
        )
        .issuer_name(ca_certificate.subject)
        .public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    if keys is not None:
        builder = builder.add_extension(extension(keys), critical=False)
    return builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def check(
    certificate: bytes,
    *,
    participant_id: str = "urban",
    identity_public: bytes = URBAN.identity_public,
    ceremony_public: bytes = URBAN.ceremony_public,
    now: dt.datetime = NOW,
) -> MemberKeys:
    return verify_member(
        CA,
        certificate,
        participant_id=participant_id,
        identity_public=identity_public,
        ceremony_public=ceremony_public,
        now=now,
    )


def test_keys_the_ca_certified_for_the_member_are_accepted() -> None:
    assert check(issue()) == URBAN


def test_the_extension_is_non_critical_der_under_the_accord_oid() -> None:
    certificate = x509.load_der_x509_certificate(issue())
    found = certificate.extensions.get_extension_for_oid(MEMBER_KEYS_OID)
    assert not found.critical
    assert certified_keys(certificate) == URBAN
    assert MemberKeys.from_der(URBAN.to_der()) == URBAN
    assert URBAN.to_der()[:5] == bytes([0x30, 73 + 5, 0x02, 0x01, 0x01])  # SEQUENCE, version 1


def test_a_long_participant_id_round_trips() -> None:
    keys = MemberKeys("x" * 63, URBAN.identity_public, URBAN.ceremony_public)
    assert keys.to_der()[:3] == bytes([0x30, 0x81, 73 + 63])  # the long length form
    assert MemberKeys.from_der(keys.to_der()) == keys


@pytest.mark.parametrize(
    "mangle",
    [
        lambda der: der[:-1],  # truncated
        lambda der: der + b"\x00",  # trailing bytes
        lambda der: der[:4] + b"\x02" + der[5:],  # version 2
        lambda der: bytes([0x30, 0x81]) + der[1:],  # non-canonical length
        lambda der: b"",
    ],
)
def test_a_malformed_extension_value_is_refused(mangle) -> None:
    with pytest.raises(Malformed, match="member-keys extension is malformed"):
        MemberKeys.from_der(mangle(URBAN.to_der()))


def test_a_substituted_identity_key_is_refused_naming_the_member() -> None:
    with pytest.raises(ProtocolError, match="roster entry of urban: its identity key is not"):
        check(issue(), identity_public=OTHER_KEY)


def test_a_substituted_ceremony_key_is_refused_naming_the_member() -> None:
    with pytest.raises(ProtocolError, match="roster entry of urban: its ceremony key is not"):
        check(issue(), ceremony_public=OTHER_KEY)


def test_a_certificate_whose_keys_were_tampered_with_fails_the_ca_signature() -> None:
    der = issue()
    tampered = der.replace(URBAN.identity_public, OTHER_KEY)
    assert tampered != der
    with pytest.raises(
        BadSignature, match=r"roster entry of urban: .*not signed by the federation"
    ):
        check(tampered, identity_public=OTHER_KEY)


def test_a_certificate_from_another_ca_is_refused() -> None:
    # Same names as the federation's CA, another key: only the signature tells them apart.
    impostor = make_ca()
    with pytest.raises(
        BadSignature, match=r"roster entry of urban: .*not signed by the federation"
    ):
        check(issue(ca=impostor))


def test_another_members_certificate_is_refused() -> None:
    energy = MemberKeys("energy", OTHER_KEY, OTHER_KEY)
    with pytest.raises(ProtocolError, match=r"roster entry of urban: .*made out to \['energy'\]"):
        check(issue("energy", energy), identity_public=OTHER_KEY, ceremony_public=OTHER_KEY)
    with pytest.raises(
        ProtocolError, match=r"roster entry of urban: .*certifies the keys of energy"
    ):
        check(issue("urban", energy), identity_public=OTHER_KEY, ceremony_public=OTHER_KEY)


def test_an_expired_or_not_yet_valid_certificate_is_refused() -> None:
    expired = issue(not_before=NOW - dt.timedelta(days=400), not_after=NOW - dt.timedelta(days=1))
    with pytest.raises(ProtocolError, match="roster entry of urban: its certificate expired on"):
        check(expired)
    early = issue(not_before=NOW + dt.timedelta(days=1))
    with pytest.raises(ProtocolError, match=r"roster entry of urban: .*not valid before"):
        check(early)


def test_a_certificate_without_the_extension_is_refused() -> None:
    with pytest.raises(ProtocolError, match=r"roster entry of urban: .*no Accord member-keys"):
        check(issue(keys=None))


def test_a_missing_or_garbled_certificate_is_refused() -> None:
    with pytest.raises(ProtocolError, match="roster entry of urban carries no certificate"):
        check(b"")
    with pytest.raises(ProtocolError, match=r"roster entry of urban: .*not a DER X.509"):
        check(b"\x30\x03\x02\x01\x01")
