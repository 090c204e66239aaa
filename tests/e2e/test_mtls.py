"""mTLS end to end: the real coordinator server, a provisioned federation, real kits.

Each test provisions a federation (`accord provision`'s own code) for a port picked
first, starts `coordinator.server.start` in this process with the provisioned TLS
folder and roster, and talks to it over loopback: as a participant with its startup
kit, as an impostor, as a revoked participant, and as `accord kit check`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import grpc
import pytest
from typer.testing import CliRunner

from accord.cli.main import app
from accord.coordinator import server
from accord.coordinator.config import CoordinatorConfig
from accord.coordinator.operator.approve import revoke
from accord.core import configfile, logs
from accord.errors import AccordError, ConfigError
from accord.federation.provision import ProvisionedFederation
from accord.participant.config import ParticipantConfig
from accord.participant.daemon import ParticipantDaemon
from accord.participant.kit.preflight import check
from accord.participant.kit.startup_kit import Kit, secure_channel
from accord.participant.rpc_errors import refusal
from accord.proto.v1 import federation_pb2 as pb
from accord.proto.v1 import federation_pb2_grpc as pb_grpc
from tests.support import free_port
from tests.support.federation import (
    FEDERATION,
    provision_loopback,
    serve,
    write_coordinator_config,
)
from tests.support.trainers import FakeTrainer

pytestmark = pytest.mark.e2e

NAMES = ("energy", "residential", "urban")
MODEL_HASH = "ab" * 32
ADAPTER_PARAMETERS = 10


@dataclass
class Federation:
    """A running mTLS coordinator and what was provisioned for it."""

    provisioned: ProvisionedFederation
    running: server.RunningServer
    address: str

    def kit(self, name: str) -> Kit:
        return Kit.load(self.provisioned.kits[name])

    def channel(self, name: str) -> grpc.Channel:
        return secure_channel(self.kit(name))


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[Federation]:
    port = free_port()
    provisioned = provision_loopback(tmp_path, port, NAMES)
    log = logs.configure("coordinator", tmp_path / "c.log")
    with serve(write_coordinator_config(tmp_path, port), log) as running:
        yield Federation(provisioned, running, f"127.0.0.1:{port}")


def header(name: str, federation: str = FEDERATION) -> pb.RequestHeader:
    return pb.RequestHeader(federation_id=federation, participant_id=name)


def enroll(channel: grpc.Channel, name: str, federation: str = FEDERATION) -> pb.EnrollResponse:
    request = pb.EnrollRequest(
        header=header(name, federation),
        base_model_hash=MODEL_HASH,
        adapter_parameters=ADAPTER_PARAMETERS,
    )
    return pb_grpc.CoordinatorStub(channel).Enroll(request, timeout=5)


def status(channel: grpc.Channel) -> pb.StatusResponse:
    answer = pb_grpc.CoordinatorStub(channel).GetStatus(pb.StatusRequest(), timeout=5)
    copy = pb.StatusResponse()
    copy.CopyFrom(answer)
    for entry in copy.participants:
        entry.online = False  # liveness changes with time alone
    return copy


def refused(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def test_a_kit_enrolls_over_mtls_with_the_rosters_identity_keys(federation: Federation) -> None:
    with federation.channel("energy") as channel:
        response = enroll(channel, "energy")
        assert response.federation_id == FEDERATION
        assert {e.participant_id: e.identity_public_key for e in response.roster} == {
            name: federation.kit(name).identity_public_key for name in NAMES
        }
        enrolled = {p.participant_id: p.state for p in status(channel).participants}
        assert enrolled["energy"] == "enrolled"
        assert set(enrolled) == set(NAMES)  # the roster named the members
        task = pb_grpc.CoordinatorStub(channel).NextTask(
            pb.TaskRequest(header=header("energy"), wait_s=0.1), timeout=5
        )
        # Waiting for the others.
        assert task.stage != pb.FEDERATION_FINISHED and task.config.round == 0


def test_a_client_certificate_of_another_ca_fails_the_handshake(
    federation: Federation, tmp_path: Path
) -> None:
    other = provision_loopback(tmp_path / "other", 1, NAMES, id="other")
    impostor = Kit.load(other.kits["energy"])
    trusted_ca = federation.kit("energy").ca_pem
    for credentials in (
        # It trusts the right coordinator, but shows a certificate of another CA ...
        grpc.ssl_channel_credentials(
            root_certificates=trusted_ca,
            private_key=impostor.tls_key_pem,
            certificate_chain=impostor.tls_cert_pem,
        ),
        # ... or none at all.
        grpc.ssl_channel_credentials(root_certificates=trusted_ca),
    ):
        with grpc.secure_channel(federation.address, credentials) as channel:
            error = refused(lambda channel=channel: enroll(channel, "energy"))
            assert error.code() is grpc.StatusCode.UNAVAILABLE
    with federation.channel("urban") as channel:
        assert all(p.state == "not enrolled" for p in status(channel).participants)


def test_a_kit_cannot_speak_for_another_participant(federation: Federation) -> None:
    with federation.channel("energy") as channel:
        before = status(channel)
        error = refused(lambda: enroll(channel, "urban"))
        assert error.code() is grpc.StatusCode.PERMISSION_DENIED
        assert "certificate of energy cannot speak for urban" in error.details()
        stub = pb_grpc.CoordinatorStub(channel)
        error = refused(
            lambda: stub.Heartbeat(pb.HeartbeatRequest(header=header("urban")), timeout=5)
        )
        assert error.code() is grpc.StatusCode.PERMISSION_DENIED
        assert status(channel) == before
        # The daemon would stop on it, naming the fix, instead of retrying.
        stop = refusal(error, kit=Path("energy-kit"))
        assert isinstance(stop, ConfigError)
        assert "`accord kit check energy-kit`" in str(stop) and "cannot speak for" in str(stop)


def test_a_revoked_participant_is_refused_without_a_restart(federation: Federation) -> None:
    with federation.channel("energy") as energy, federation.channel("urban") as urban:
        enroll(energy, "energy")
        revoke(federation.provisioned.ca_dir, "energy")
        deadline = time.monotonic() + 2 * server.ROSTER_CHECK_INTERVAL_S + 1
        while True:
            try:
                enroll(energy, "energy")
            except grpc.RpcError as error:
                assert error.code() is grpc.StatusCode.PERMISSION_DENIED
                assert "participant energy is revoked" in error.details()
                break
            assert time.monotonic() < deadline, "the revocation did not take effect"
            time.sleep(0.1)
        assert enroll(urban, "urban").federation_id == FEDERATION


def test_the_daemon_stops_at_once_when_its_kit_is_revoked(
    federation: Federation, tmp_path: Path
) -> None:
    revoke(federation.provisioned.ca_dir, "energy")
    time.sleep(server.ROSTER_CHECK_INTERVAL_S + 0.1)
    config = configfile.validate(
        {
            "kit": str(federation.provisioned.kits["energy"]),
            "state_dir": str(tmp_path / "energy"),
            "connect_timeout_s": 20,
        },
        ParticipantConfig,
        "participant",
    )
    daemon = ParticipantDaemon(
        config, log=logs.configure("participant", tmp_path / "p.log"), trainer=fake_trainer()
    )
    started = time.monotonic()
    with pytest.raises(AccordError, match="energy is revoked"):
        daemon.run()
    assert time.monotonic() - started < 5, "a refusal must not be retried"


def test_the_daemon_connects_with_its_kit(federation: Federation, tmp_path: Path) -> None:
    config = configfile.validate(
        {
            "kit": str(federation.provisioned.kits["urban"]),
            "coordinator": federation.address,  # as the demo overrides it
            "state_dir": str(tmp_path / "urban"),
            "poll_s": 0.2,
        },
        ParticipantConfig,
        "participant",
    )
    daemon = ParticipantDaemon(
        config, log=logs.configure("participant", tmp_path / "p.log"), trainer=fake_trainer()
    )
    worker = threading.Thread(target=daemon.run, daemon=True)
    worker.start()
    try:
        with federation.channel("energy") as channel:
            deadline = time.monotonic() + 10
            while not _enrolled(status(channel), "urban"):
                assert time.monotonic() < deadline, "the daemon did not enrol"
                time.sleep(0.05)
    finally:
        daemon.stop()
        worker.join(timeout=10)
    assert not worker.is_alive()


def test_kit_check_reaches_the_coordinator_and_reports_clock_skew(
    federation: Federation,
) -> None:
    kit_dir = federation.provisioned.kits["residential"]
    result = CliRunner().invoke(app, ["kit", "check", str(kit_dir)])
    assert result.exit_code == 0, result.output
    assert "kit OK" in result.output
    report = check(kit_dir)
    assert report.ok
    assert report.get("coordinator").status.value == "pass"
    skew = report.get("clock skew")
    assert skew.status.value == "pass"
    assert "unknown" not in skew.detail  # the coordinator sent its `date`


def test_a_plaintext_client_cannot_talk_to_the_tls_server(federation: Federation) -> None:
    with grpc.insecure_channel(federation.address) as channel:
        error = refused(lambda: status(channel))
        assert error.code() is grpc.StatusCode.UNAVAILABLE
    # A closed socket could be a restart: that is no refusal, so it is retried.
    assert refusal(error) is None


def test_a_coordinator_the_kit_does_not_trust_is_a_refusal(
    federation: Federation, tmp_path: Path
) -> None:
    other = provision_loopback(tmp_path / "other", 1, NAMES, id="other")
    mine = federation.kit("energy")
    foreign = Kit.load(other.kits["energy"])
    # The kit pins another CA than the one that signed the coordinator's certificate.
    credentials = grpc.ssl_channel_credentials(
        root_certificates=foreign.ca_pem,
        private_key=mine.tls_key_pem,
        certificate_chain=mine.tls_cert_pem,
    )
    with grpc.secure_channel(federation.address, credentials) as channel:
        error = refused(lambda: status(channel))
    stop = refusal(error, kit=Path("kit"))
    assert isinstance(stop, ConfigError)
    assert "TLS handshake with the coordinator failed" in str(stop)
    assert "`accord kit check kit`" in str(stop)


def _enrolled(answer: pb.StatusResponse, name: str) -> bool:
    return any(p.participant_id == name and p.state != "not enrolled" for p in answer.participants)


def fake_trainer() -> FakeTrainer:
    """Enough of a `Trainer` to enrol and wait: no round ever starts in these tests."""

    def no_round(round: int) -> NoReturn:
        raise AssertionError(f"no round runs in these tests, yet the daemon trained {round}")

    return FakeTrainer(
        parameter_count=ADAPTER_PARAMETERS, base_model_hash=MODEL_HASH, train=no_round
    )


def test_the_demo_writes_an_mtls_federation(tmp_path: Path) -> None:
    from accord.crypto.profile import Profile
    from accord.demo import setup as demo_setup

    names = list(NAMES)
    provisioned = demo_setup.provision_demo(tmp_path, names, Profile.MASKS, port=free_port())
    path = demo_setup.write_coordinator_config(
        tmp_path, names, Profile.MASKS, 1, provisioned=provisioned
    )
    config = configfile.load(path, CoordinatorConfig, "coordinator")
    assert not config.insecure_plaintext and config.identity_keys == {}
    assert not (tmp_path / "provision" / "kits").exists()
    running = server.start(config, log=logs.configure("coordinator", tmp_path / "c.log"))
    try:
        address = f"127.0.0.1:{running.port}"
        participant = configfile.load(
            demo_setup.write_participant_config(
                tmp_path, "energy", address, seed=0, index=0, kit=provisioned.kits["energy"]
            ),
            ParticipantConfig,
            "participant",
        )
        assert participant.kit == tmp_path / "participants" / "energy" / "kit"
        assert (participant.name, participant.coordinator) == ("energy", address)
        assert Kit.load(participant.kit).coordinator == address  # the port was picked first
        with secure_channel(Kit.load(participant.kit)) as channel:
            response = enroll(channel, "energy", federation=demo_setup.DEMO_FEDERATION)
            assert response.federation_id == demo_setup.DEMO_FEDERATION
    finally:
        running.stop(grace_s=0)
