"""A participant keeps only the members whose keys its pinned CA certified.

`certify_roster` reads the roster of an Enroll response as the coordinator builds it
(`accord.wire.enrol.roster_to_proto`) from a federation provisioned by `accord
provision`'s own code.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from accord.coordinator.live_roster import Roster
from accord.coordinator.operator.approve import approve
from accord.crypto.credential import MEMBER_KEYS_OID
from accord.errors import IntegrityError, ProtocolError
from accord.federation.provision import (
    FederationFile,
    FederationSection,
    ParticipantSection,
    ProvisionedFederation,
    provision_federation,
)
from accord.participant.kit import packaging
from accord.participant.kit.certificates import CertifiedRoster, certify_roster
from accord.proto.v1 import federation_pb2 as pb
from accord.wire.enrol import roster_to_proto

NAMES = ("energy", "residential", "urban")


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> ProvisionedFederation:
    return provision_federation(
        FederationFile(
            federation=FederationSection(id="city-safety", coordinator="127.0.0.1:50051"),
            participants=tuple(ParticipantSection(name=name) for name in NAMES),
        ),
        tmp_path_factory.mktemp("fed"),
    )


def ca_of(fed: ProvisionedFederation) -> x509.Certificate:
    return x509.load_pem_x509_certificate((fed.ca_dir / "ca.pem").read_bytes())


def enroll_roster(fed: ProvisionedFederation) -> list[pb.RosterEntry]:
    """The roster an mTLS coordinator puts in its Enroll response."""
    roster = Roster.load(fed.roster_path)
    return roster_to_proto(roster.identity_keys(), roster.snapshot().active())


def test_every_member_the_ca_certified_is_kept(fed: ProvisionedFederation) -> None:
    entries = enroll_roster(fed)
    assert [e.participant_id for e in entries] == list(NAMES)
    certified = certify_roster(entries, ca_of(fed), now=dt.datetime.now(dt.timezone.utc))
    assert certified.refused == {}
    assert certified.identities == {e.participant_id: e.identity_public_key for e in entries}


def test_a_substituted_key_drops_only_that_member_and_says_why(fed: ProvisionedFederation) -> None:
    entries = enroll_roster(fed)
    entries[2].identity_public_key = bytes(32)
    certified = certify_roster(entries, ca_of(fed), now=dt.datetime.now(dt.timezone.utc))
    assert set(certified.members) == {"energy", "residential"}
    reason = certified.refused["urban"]
    assert "roster entry of urban: its identity key is not the one the CA certified" in reason
    with pytest.raises(ProtocolError, match="round 4 refused: no keys of urban certified by"):
        certified.require(["energy", "urban"], what="round 4")
    certified.require(["energy", "residential"], what="round 4")


def test_a_member_listed_twice_is_refused(fed: ProvisionedFederation) -> None:
    entries = enroll_roster(fed)
    certified = certify_roster(
        [*entries, entries[0]], ca_of(fed), now=dt.datetime.now(dt.timezone.utc)
    )
    assert "energy" not in certified.members
    assert certified.refused["energy"] == "the coordinator's roster lists energy twice"


def test_a_member_missing_from_the_roster_is_named(fed: ProvisionedFederation) -> None:
    certified = certify_roster(
        enroll_roster(fed)[:2], ca_of(fed), now=dt.datetime.now(dt.timezone.utc)
    )
    with pytest.raises(ProtocolError, match="roster does not list urban"):
        certified.require(["urban"], what="round 1")


def test_ceremony_keys_must_be_the_certified_ones(fed: ProvisionedFederation) -> None:
    entries = enroll_roster(fed)
    certified = certify_roster(entries, ca_of(fed), now=dt.datetime.now(dt.timezone.utc))
    relayed = {e.participant_id: e.ceremony_public_key for e in entries}
    certified.check_ceremony_keys(relayed)
    with pytest.raises(ProtocolError, match="ceremony key relayed for residential is not the one"):
        certified.check_ceremony_keys({**relayed, "residential": bytes(32)})
    with pytest.raises(ProtocolError, match="no keys of water certified"):
        certified.check_ceremony_keys({**relayed, "water": bytes(32)})


def test_an_older_roster_without_certificates_is_refused_member_by_member(
    fed: ProvisionedFederation,
) -> None:
    entries = enroll_roster(fed)
    for entry in entries:
        entry.ClearField("certificate")
    certified = certify_roster(entries, ca_of(fed), now=dt.datetime.now(dt.timezone.utc))
    assert certified.members == {}
    assert all("carries no certificate" in reason for reason in certified.refused.values())
    assert CertifiedRoster().identities == {}


def test_a_kit_is_not_packaged_from_a_certificate_that_does_not_certify_its_keys(
    fed: ProvisionedFederation, tmp_path: Path
) -> None:
    request = packaging.request("water", tmp_path / "water")
    response_path = approve(request, fed.ca_dir, out_path=tmp_path / "water.json")
    response = json.loads(response_path.read_text())
    issued = x509.load_pem_x509_certificate(response["certificate"].encode())
    # What an operator's older accord issues: the same certificate without the extension.
    builder = (
        x509.CertificateBuilder()
        .subject_name(issued.subject)
        .issuer_name(issued.issuer)
        .public_key(issued.public_key())
        .serial_number(issued.serial_number)
        .not_valid_before(issued.not_valid_before_utc)
        .not_valid_after(issued.not_valid_after_utc)
    )
    for extension in issued.extensions:
        if extension.oid != MEMBER_KEYS_OID:
            builder = builder.add_extension(extension.value, extension.critical)
    ca_key = serialization.load_pem_private_key((fed.ca_dir / "ca.key").read_bytes(), password=None)
    bare = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    response["certificate"] = bare.public_bytes(serialization.Encoding.PEM).decode()
    response_path.write_text(json.dumps(response))
    with pytest.raises(IntegrityError, match="does not certify this request's identity"):
        packaging.package(tmp_path / "water", response_path, fed.ca_fingerprint, tmp_path / "kit")
