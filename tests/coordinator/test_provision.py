"""Provisioning from the operator's side, over real mTLS on loopback: who gets in, who not.

Each test provisions a small federation in a temporary folder, starts a gRPC server
on 127.0.0.1 with `tls.server_credentials`, the standard health service and one
method that answers with the participant id `tls.authenticate` grants, and dials it
with a participant's kit.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import stat
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
import typer
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from typer.testing import CliRunner

from accord.cli.provision import kit_app, provision_app
from accord.coordinator import tls
from accord.coordinator.interceptors import DateHeaderInterceptor
from accord.coordinator.live_roster import Roster
from accord.coordinator.operator.approve import approve, revoke
from accord.coordinator.operator.ca import create_ca, load_ca
from accord.coordinator.operator.server_certs import issue_server_cert
from accord.coordinator.roster import FORMAT_VERSION as ROSTER_FORMAT_VERSION
from accord.coordinator.roster import RosterSnapshot
from accord.core.pki import fingerprint, normalize_fingerprint
from accord.crypto import credential
from accord.errors import BadSignature, ConfigError, NotAllowed, UsageError
from accord.federation.provision import (
    FederationFile,
    FederationSection,
    ParticipantSection,
    ProvisionedFederation,
    load_federation,
    provision_federation,
)
from accord.participant.kit import packaging, preflight
from accord.participant.kit import startup_kit as kits
from tests.support import free_port

WHO = "/accord.test.Who/Call"


def _federation(port: int, names: tuple[str, ...] = ("energy", "urban")) -> FederationFile:
    return FederationFile(
        federation=FederationSection(id="city-safety", coordinator=f"127.0.0.1:{port}"),
        participants=tuple(ParticipantSection(name=name) for name in names),
    )


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def fed(tmp_path: Path, port: int) -> ProvisionedFederation:
    return provision_federation(_federation(port), tmp_path / "fed")


@contextlib.contextmanager
def serve(coordinator_dir: Path, port: int) -> Iterator[Roster]:
    """A coordinator stand-in: mTLS, health, and `Who` answering the authorized id."""
    roster = Roster.load(coordinator_dir / "roster.json")

    def who(request: bytes, context: grpc.ServicerContext) -> bytes:
        claimed = request.decode() or None
        try:
            return tls.authenticate(context, roster, claimed).encode()
        except NotAllowed as error:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, str(error))
            raise  # unreachable: abort raises

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4), interceptors=[DateHeaderInterceptor()]
    )
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "accord.test.Who", {"Call": grpc.unary_unary_rpc_method_handler(who)}
            ),
        )
    )
    server.add_secure_port(f"127.0.0.1:{port}", tls.server_credentials(coordinator_dir))
    server.start()
    try:
        yield roster
    finally:
        server.stop(None)


def call_who(channel: grpc.Channel, claimed: str = "") -> str:
    method = channel.unary_unary(WHO)
    return bytes(method(claimed.encode(), timeout=5)).decode()


def health_status(channel: grpc.Channel) -> int:
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    return int(reply.status)


def kit_channel(kit_dir: Path) -> grpc.Channel:
    return kits.secure_channel(kits.Kit.load(kit_dir))


# ---- mTLS and the roster ----


def test_a_kit_connects_over_mtls_and_the_coordinator_knows_who_it_is(
    fed: ProvisionedFederation, port: int
) -> None:
    with serve(fed.coordinator_dir, port), kit_channel(fed.kits["energy"]) as channel:
        assert health_status(channel) == health_pb2.HealthCheckResponse.SERVING
        assert call_who(channel) == "energy"
        assert call_who(channel, "energy") == "energy"


def test_a_certificate_from_another_ca_is_refused_in_the_handshake(
    fed: ProvisionedFederation, port: int, tmp_path: Path
) -> None:
    stranger = provision_federation(_federation(port, ("energy",)), tmp_path / "other")
    other = kits.Kit.load(stranger.kits["energy"])
    own = kits.Kit.load(fed.kits["energy"])
    # Trusts the right CA (so the server verifies), but presents the other CA's certificate.
    credentials = grpc.ssl_channel_credentials(
        root_certificates=own.ca_pem,
        private_key=other.tls_key_pem,
        certificate_chain=other.tls_cert_pem,
    )
    _assert_handshake_refused(fed, port, credentials)


def _assert_handshake_refused(
    fed: ProvisionedFederation, port: int, credentials: grpc.ChannelCredentials
) -> None:
    with (
        serve(fed.coordinator_dir, port),
        grpc.secure_channel(f"127.0.0.1:{port}", credentials) as channel,
    ):
        with pytest.raises(grpc.RpcError) as refused:
            health_status(channel)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_client_without_a_certificate_is_refused(fed: ProvisionedFederation, port: int) -> None:
    own = kits.Kit.load(fed.kits["energy"])
    credentials = grpc.ssl_channel_credentials(root_certificates=own.ca_pem)
    _assert_handshake_refused(fed, port, credentials)


def test_a_certificate_cannot_speak_for_another_participant(
    fed: ProvisionedFederation, port: int
) -> None:
    roster = Roster.load(fed.roster_path)
    energy = kits.Kit.load(fed.kits["energy"])
    assert roster.authorize(energy.tls_cert_pem, "energy") == "energy"
    with pytest.raises(NotAllowed, match="certificate of energy cannot speak for urban"):
        roster.authorize(energy.tls_cert_pem, "urban")
    with pytest.raises(NotAllowed, match="certificate of energy cannot speak for urban"):
        roster.authorize(fingerprint(energy.tls_cert_pem), "urban")
    assert NotAllowed.grpc_status == "PERMISSION_DENIED"
    with serve(fed.coordinator_dir, port), kits.secure_channel(energy) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            call_who(channel, "urban")
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "cannot speak for urban" in str(refused.value.details())


def test_revocation_takes_effect_without_restarting_the_coordinator(
    fed: ProvisionedFederation, port: int
) -> None:
    with (
        serve(fed.coordinator_dir, port),
        kit_channel(fed.kits["energy"]) as energy,
        kit_channel(fed.kits["urban"]) as urban,
    ):
        assert call_who(energy, "energy") == "energy"
        entry = revoke(fed.ca_dir, "energy")
        assert entry.revoked_at is not None
        with pytest.raises(grpc.RpcError) as refused:
            call_who(energy, "energy")
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "energy is revoked" in str(refused.value.details())
        assert call_who(urban, "urban") == "urban"


def test_adding_a_participant_leaves_existing_kits_valid(
    fed: ProvisionedFederation, port: int, tmp_path: Path
) -> None:
    with serve(fed.coordinator_dir, port), kit_channel(fed.kits["energy"]) as energy:
        assert call_who(energy) == "energy"
        request = packaging.request("water", tmp_path / "water")
        response = approve(request, fed.ca_dir)
        packaging.package(tmp_path / "water", response, fed.ca_fingerprint, tmp_path / "water-kit")
        with kit_channel(tmp_path / "water-kit") as water:
            assert call_who(water, "water") == "water"
        assert call_who(energy, "energy") == "energy"
    assert preflight.check(fed.kits["energy"], online=False).ok


def test_an_unknown_certificate_is_refused(fed: ProvisionedFederation) -> None:
    roster = Roster.load(fed.roster_path)
    with pytest.raises(NotAllowed, match="not in the roster"):
        roster.authorize("00" * 32, None)
    with pytest.raises(NotAllowed, match="no usable client certificate"):
        roster.authorize(b"not a certificate", None)


def test_an_unreadable_roster_refuses_everyone_until_it_is_fixed(
    fed: ProvisionedFederation,
) -> None:
    roster = Roster.load(fed.roster_path)
    energy = kits.Kit.load(fed.kits["energy"]).tls_cert_pem
    good = fed.roster_path.read_bytes()
    fed.roster_path.write_text("{ not json")
    with pytest.raises(NotAllowed, match="roster is unreadable"):
        roster.authorize(energy, "energy")
    assert isinstance(roster.error, ConfigError)
    fed.roster_path.write_bytes(good)
    assert roster.authorize(energy, "energy") == "energy"
    assert roster.error is None


def test_a_busy_roster_stats_its_file_at_most_once_per_interval(
    fed: ProvisionedFederation,
) -> None:
    now = [0.0]
    roster = Roster.load(fed.roster_path, check_interval_s=1.0, clock=lambda: now[0])
    energy = kits.Kit.load(fed.kits["energy"]).tls_cert_pem
    assert roster.authorize(energy, "energy") == "energy"
    revoke(fed.ca_dir, "energy")
    now[0] = 0.5
    assert roster.authorize(energy, "energy") == "energy"  # not looked at again yet
    now[0] = 1.0
    with pytest.raises(NotAllowed, match="participant energy is revoked"):
        roster.authorize(energy, "energy")
    # Fail closed holds between checks too.
    fed.roster_path.write_text("{ not json")
    now[0] = 2.0
    with pytest.raises(NotAllowed, match="roster is unreadable"):
        roster.authorize(energy, "energy")
    now[0] = 2.5
    with pytest.raises(NotAllowed, match="roster is unreadable"):
        roster.authorize(energy, "energy")


def test_a_participant_approved_a_moment_ago_is_not_refused_by_the_cache(
    fed: ProvisionedFederation, tmp_path: Path
) -> None:
    now = [0.0]
    roster = Roster.load(fed.roster_path, check_interval_s=60.0, clock=lambda: now[0])
    assert roster.active_ids() == ["energy", "urban"]
    request = packaging.request("water", tmp_path / "water")
    packaging.package(
        tmp_path / "water",
        approve(request, fed.ca_dir),
        fed.ca_fingerprint,
        tmp_path / "k",
    )
    water = kits.Kit.load(tmp_path / "k").tls_cert_pem
    assert roster.authorize(water, "water") == "water"  # within the interval: looked at now
    assert roster.active_ids() == ["energy", "urban", "water"]


def test_roster_files_round_trip_and_refuse_newer_versions(fed: ProvisionedFederation) -> None:
    snapshot = Roster.load(fed.roster_path).snapshot()
    assert RosterSnapshot.from_bytes(snapshot.to_bytes()) == snapshot
    assert next(iter(json.loads(snapshot.to_bytes()))) == "format_version"
    document = json.loads(snapshot.to_bytes())
    document["format_version"] = ROSTER_FORMAT_VERSION + 1
    with pytest.raises(ConfigError, match=f"reads up to {ROSTER_FORMAT_VERSION}"):
        RosterSnapshot.from_bytes(json.dumps(document).encode())
    assert Roster.load(fed.roster_path).active_ids() == ["energy", "urban"]
    assert set(Roster.load(fed.roster_path).identity_keys()) == {"energy", "urban"}


def test_the_roster_keeps_each_certificate_in_which_the_ca_certified_the_keys(
    fed: ProvisionedFederation,
) -> None:
    ca = x509.load_pem_x509_certificate((fed.ca_dir / "ca.pem").read_bytes())
    for entry in Roster.load(fed.roster_path).snapshot().entries:
        kit = kits.Kit.load(fed.kits[entry.participant_id])
        assert entry.certificate is not None
        assert entry.certificate.encode() == kit.tls_cert_pem
        assert fingerprint(entry.certificate_der) == entry.cert_sha256
        certified = credential.verify_member(
            ca,
            entry.certificate_der,
            participant_id=entry.participant_id,
            identity_public=kit.identity_public_key,
            ceremony_public=kit.ceremony_public_key,
            now=dt.datetime.now(dt.timezone.utc),
        )
        assert certified.identity_public == entry.identity_public_key


def test_a_version_1_roster_without_certificates_still_reads(fed: ProvisionedFederation) -> None:
    document = json.loads(fed.roster_path.read_bytes())
    document["format_version"] = 1
    for item in document["participants"]:
        del item["certificate"]
    snapshot = RosterSnapshot.from_bytes(json.dumps(document).encode())
    assert [e.certificate for e in snapshot.entries] == [None, None]
    assert snapshot.entries[0].certificate_der == b""  # participants refuse such a member


def test_a_roster_certificate_other_than_the_fingerprinted_one_is_refused(
    fed: ProvisionedFederation,
) -> None:
    document = json.loads(fed.roster_path.read_bytes())
    energy, urban = document["participants"]
    energy["certificate"], urban["certificate"] = urban["certificate"], energy["certificate"]
    with pytest.raises(ConfigError, match=r"participants\[0\] certificate: must be the PEM"):
        RosterSnapshot.from_bytes(json.dumps(document).encode())


# ---- the CA and approvals ----


def test_private_keys_are_written_0600(fed: ProvisionedFederation) -> None:
    private = [
        fed.ca_dir / "ca.key",
        fed.coordinator_dir / "server.key",
        *(folder / name for folder in fed.kits.values() for name in kits.PRIVATE_FILES),
    ]
    for path in private:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    request = json.loads((fed.kits["energy"] / "request.json").read_text())
    assert next(iter(request)) == "format_version"
    assert "PRIVATE" not in json.dumps(request)


def test_the_server_certificate_names_the_coordinator_hosts(tmp_path: Path) -> None:
    create_ca(tmp_path / "ca", "fed", coordinator="coord.example.com:443")
    files = issue_server_cert(tmp_path / "ca", tmp_path / "srv", ["10.0.0.7"])
    certificate = x509.load_pem_x509_certificate(files.cert.read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["coord.example.com"]
    assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == ["10.0.0.7"]
    with pytest.raises(ConfigError, match="DNS name or an IP address"):
        issue_server_cert(tmp_path / "ca", tmp_path / "srv2", ["bad host"])


def test_a_ca_is_never_overwritten(fed: ProvisionedFederation) -> None:
    with pytest.raises(UsageError, match="already holds a CA"):
        create_ca(fed.ca_dir, "city-safety")


def test_approve_refuses_an_id_active_with_another_key(
    fed: ProvisionedFederation, tmp_path: Path
) -> None:
    impostor = packaging.request("energy", tmp_path / "impostor")
    with pytest.raises(UsageError, match="already active with another identity key"):
        approve(impostor, fed.ca_dir)


def test_approve_refuses_a_tampered_request(fed: ProvisionedFederation, tmp_path: Path) -> None:
    path = packaging.request("water", tmp_path / "water")
    document = json.loads(path.read_text())
    document["ceremony_public_key"] = "11" * 32  # swap in a key the identity key never signed
    path.write_text(json.dumps(document))
    with pytest.raises(BadSignature, match="the request of water"):
        approve(path, fed.ca_dir)
    document["participant_id"] = "Water!"
    path.write_text(json.dumps(document))
    with pytest.raises(ConfigError, match="participant_id"):
        approve(path, fed.ca_dir)


def test_reapproving_the_same_key_renews_and_retires_the_old_certificate(
    fed: ProvisionedFederation,
) -> None:
    old = kits.Kit.load(fed.kits["energy"]).tls_cert_pem
    response = approve(fed.kits["energy"] / "request.json", fed.ca_dir)
    packaging.package(fed.kits["energy"], response, fed.ca_fingerprint, fed.kits["energy"])
    roster = Roster.load(fed.roster_path)
    assert roster.authorize(kits.Kit.load(fed.kits["energy"]).tls_cert_pem, "energy") == "energy"
    with pytest.raises(NotAllowed, match="not in the roster"):
        roster.authorize(old, "energy")


def test_a_revoked_identity_key_stays_revoked(fed: ProvisionedFederation) -> None:
    revoke(fed.ca_dir, "energy")
    with pytest.raises(UsageError, match="stays revoked"):
        approve(fed.kits["energy"] / "request.json", fed.ca_dir)
    with pytest.raises(UsageError, match="no participant 'water'"):
        revoke(fed.ca_dir, "water")


def test_server_credentials_refuse_a_key_others_can_read(fed: ProvisionedFederation) -> None:
    key = fed.coordinator_dir / "server.key"
    os.chmod(key, 0o644)
    with pytest.raises(ConfigError, match=f"chmod 600 {key}"):
        tls.server_credentials(fed.coordinator_dir)


def test_an_expired_ca_approves_nothing(tmp_path: Path) -> None:
    long_ago = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    create_ca(tmp_path / "ca", "fed", validity_days=1, now=long_ago)
    request = packaging.request("energy", tmp_path / "energy")
    with pytest.raises(ConfigError, match="the CA expired"):
        approve(request, tmp_path / "ca")


def test_fingerprints_are_accepted_as_people_paste_them(fed: ProvisionedFederation) -> None:
    pasted = "SHA256:" + ":".join(fed.ca_fingerprint[i : i + 2].upper() for i in range(0, 64, 2))
    assert normalize_fingerprint(pasted) == fed.ca_fingerprint
    ca = x509.load_pem_x509_certificate((fed.ca_dir / "ca.pem").read_bytes())
    assert fingerprint(ca.public_bytes(serialization.Encoding.DER)) == fed.ca_fingerprint


# ---- the federation file and the CLI ----


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


GOOD_FILE = """
[federation]
id = "city-safety"
coordinator = "127.0.0.1:50051"
profile = "ckks+masks"

[[participants]]
name = "energy"

[[participants]]
name = "urban"
"""


def test_the_example_federation_file_is_valid() -> None:
    example = Path(__file__).resolve().parents[2] / "deploy" / "federation.example.toml"
    federation = load_federation(example)
    assert federation.federation.coordinator == "127.0.0.1:50051"
    assert [p.name for p in federation.participants] == ["energy", "residential", "urban"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            GOOD_FILE.replace('profile = "ckks+masks"', 'profile = "rot13"'),
            'federation.toml [federation] profile = "rot13": must be one of',
        ),
        (
            GOOD_FILE.replace('name = "urban"', 'name = "Urban Ops"'),
            'name = "Urban Ops": must match',
        ),
        (
            GOOD_FILE.replace('coordinator = "127.0.0.1:50051"', 'coordinator = "0.0.0.0:50051"'),
            "not a wildcard address",
        ),
        (GOOD_FILE.replace("profile", "profil"), "unknown setting (did you mean 'profile'?)"),
        (GOOD_FILE.replace('name = "urban"', 'name = "energy"'), "appears twice"),
        (GOOD_FILE.split("[[participants]]")[0], "no [[participants]]"),
        (GOOD_FILE + "\n[extra]\n", "unknown table or setting 'extra'"),
    ],
)
def test_a_bad_federation_file_names_field_value_and_fix(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as error:
        load_federation(_write(tmp_path / "federation.toml", text))
    assert message in str(error.value)


def test_cli_provisions_approves_and_revokes(tmp_path: Path) -> None:
    runner = CliRunner()
    federation = _write(tmp_path / "federation.toml", GOOD_FILE)
    result = runner.invoke(provision_app, [str(federation), "--out", str(tmp_path / "fed")])
    assert result.exit_code == 0, result.output
    ca_fingerprint = load_ca(tmp_path / "fed" / "ca").fingerprint
    assert ca_fingerprint in result.output
    assert (tmp_path / "fed" / "kits" / "urban" / "kit.toml").exists()

    result = runner.invoke(kit_app, ["request", "--name", "water", "--out", str(tmp_path / "w")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        provision_app,
        ["approve", str(tmp_path / "w" / "request.json"), "--ca", str(tmp_path / "fed" / "ca")],
    )
    assert result.exit_code == 0, result.output
    assert ca_fingerprint in result.output
    assert (tmp_path / "w" / "water.response.json").exists()

    result = runner.invoke(provision_app, ["revoke", "water", "--ca", str(tmp_path / "fed" / "ca")])
    assert result.exit_code == 0, result.output
    assert "water revoked" in result.output
    roster = Roster.load(tmp_path / "fed" / "coordinator" / "roster.json")
    assert roster.active_ids() == ["energy", "urban"]

    again = runner.invoke(provision_app, [str(federation), "--out", str(tmp_path / "fed")])
    assert again.exit_code == 2
    assert "UsageError:" in again.stderr and "is not empty" in again.stderr


def test_cli_reports_a_bad_federation_file_as_a_config_error(tmp_path: Path) -> None:
    federation = _write(tmp_path / "federation.toml", GOOD_FILE.replace("50051", "99999"))
    result = CliRunner().invoke(provision_app, [str(federation), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert result.stderr.startswith("ConfigError: federation.toml [federation] coordinator")
    assert "port must be 1..65535" in result.stderr


def test_cli_ca_command_sets_up_an_operator(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        provision_app,
        [
            "ca",
            str(tmp_path / "op"),
            "--federation",
            "city-safety",
            "--coordinator",
            "coord.example.com:50051",
            "--host",
            "10.1.2.3",
        ],
    )
    assert result.exit_code == 0, result.output
    authority = load_ca(tmp_path / "op" / "ca")
    assert authority.fingerprint in result.output
    assert authority.roster_path.resolve() == (tmp_path / "op/coordinator/roster.json").resolve()
    tls.server_credentials(tmp_path / "op" / "coordinator")


def test_the_apps_work_when_mounted_under_accord(tmp_path: Path) -> None:
    accord = typer.Typer()
    accord.add_typer(provision_app, name="provision")
    accord.add_typer(kit_app, name="kit")
    federation = _write(tmp_path / "federation.toml", GOOD_FILE)
    runner = CliRunner()
    result = runner.invoke(accord, ["provision", str(federation), "--out", str(tmp_path / "f")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(accord, ["kit", "check", str(tmp_path / "f/kits/energy"), "--offline"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(accord, ["provision", "--help"])
    assert result.exit_code == 0 and "approve" in result.output
