"""Members' keys come with the CA's word, and members may join a running federation.

DESIGN.md guarantee 2: the coordinator cannot insert keys of its own. The real mTLS
coordinator hands out each member's certificate in its Enroll response; a participant
keeps only the keys its pinned CA certified. A coordinator that substitutes a key is
modelled by doctoring a genuine Enroll response before the daemon sees it.

docs/provisioning.md: adding a participant needs no coordinator restart. A participant
approved while the coordinator runs enrols, the members that enrolled before it learn
its certified keys, and the next round that selects it begins with a fresh key
ceremony that seals the CKKS key to it too. It cannot apply the aggregates of rounds
made under the earlier key, so (issue 12, finding 6) it stops, saying so, rather than
take part with a diverged adapter; the round goes on without it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from accord.coordinator import server
from accord.coordinator.config import CoordinatorConfig
from accord.coordinator.operator.approve import approve
from accord.core import configfile, logs
from accord.crypto import agreement, ceremony
from accord.demo.synthetic_trainer import SyntheticTrainer
from accord.errors import Expired, ProtocolError
from accord.participant.config import ParticipantConfig
from accord.participant.daemon import ParticipantDaemon
from accord.participant.kit import packaging
from accord.participant.kit import startup_kit as kits
from accord.participant.kit.certificates import certify_roster, load_certificate
from accord.participant.training.protocol import LocalUpdate
from accord.proto.v1 import federation_pb2 as pb
from accord.proto.v1 import federation_pb2_grpc as pb_grpc
from tests.support import free_port
from tests.support.federation import (
    FEDERATION,
    kit_participant,
    provision_loopback,
    stop_daemons,
    wait_until,
    write_coordinator_config,
)

from .test_mtls import NAMES, Federation, enroll, fake_trainer, federation

__all__ = ["federation"]  # the running mTLS coordinator of test_mtls, as a fixture here

pytestmark = pytest.mark.e2e

ATTACKER_KEY = agreement.generate_keypair().public  # any 32 bytes the CA never certified


class DoctoredCoordinator:
    """A stub whose Enroll answers `response` and which records every other call."""

    def __init__(self, response: pb.EnrollResponse) -> None:
        self.response = response
        self.calls: list[str] = []

    def Enroll(self, request: pb.EnrollRequest, timeout: float) -> pb.EnrollResponse:
        self.calls.append("Enroll")
        return self.response

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            raise AssertionError(f"the daemon called {name} after refusing the roster")

        return call


def genuine_response(federation: Federation) -> pb.EnrollResponse:
    with federation.channel("energy") as channel:
        return enroll(channel, "energy")


def kit_daemon(federation: Federation, name: str, tmp_path: Path) -> ParticipantDaemon:
    config = configfile.validate(
        {"kit": str(federation.provisioned.kits[name]), "state_dir": str(tmp_path / name)},
        ParticipantConfig,
        "participant",
    )
    log = logs.configure("participant", tmp_path / "participant.log")
    return ParticipantDaemon(config, log=log, trainer=fake_trainer())


def events(log_file: Path, name: str) -> list[dict[str, Any]]:
    lines = log_file.read_text(encoding="utf-8").splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == name]


def test_the_enroll_response_carries_certificates_the_kits_ca_accepts(
    federation: Federation,
) -> None:
    response = genuine_response(federation)
    assert all(entry.certificate for entry in response.roster)
    ca = load_certificate(federation.kit("energy").ca_pem, "ca.pem")
    certified = certify_roster(response.roster, ca, now=dt.datetime.now(dt.timezone.utc))
    assert certified.refused == {}
    assert certified.identities == {n: federation.kit(n).identity_public_key for n in NAMES}
    assert {n: k.ceremony_public for n, k in certified.members.items()} == {
        n: federation.kit(n).ceremony_public_key for n in NAMES
    }


def test_a_substituted_identity_key_is_refused_and_never_used(
    federation: Federation, tmp_path: Path
) -> None:
    response = genuine_response(federation)
    doctored = pb.EnrollResponse()
    doctored.CopyFrom(response)
    urban = next(e for e in doctored.roster if e.participant_id == "urban")
    urban.identity_public_key = ATTACKER_KEY
    daemon = kit_daemon(federation, "energy", tmp_path)
    coordinator = DoctoredCoordinator(doctored)
    daemon._session.stub = coordinator  # type: ignore[assignment]

    daemon._session.enroll()

    assert "urban" not in daemon._session.identities
    assert set(daemon._session.identities) == {"energy", "residential"}
    (refused,) = events(tmp_path / "participant.log", "member_refused")
    assert refused["participant"] == "urban"
    assert "its identity key is not the one the CA certified" in refused["reason"]
    # A round with urban is refused before this participant signs or sends anything.
    with pytest.raises(ProtocolError, match="round 1 refused: no keys of urban certified"):
        daemon._session.know(["energy", "residential", "urban"], what="round 1")
    assert set(coordinator.calls) == {"Enroll"}


def test_the_maker_seals_the_ckks_key_to_no_key_the_ca_did_not_certify(
    federation: Federation, tmp_path: Path
) -> None:
    daemon = kit_daemon(federation, "energy", tmp_path)
    coordinator = DoctoredCoordinator(genuine_response(federation))
    daemon._session.stub = coordinator  # type: ignore[assignment]
    daemon._session.enroll()
    # The key-ceremony task relays each member's signed ceremony key; for residential
    # the coordinator slips in a key of its own (it cannot sign it as residential).
    task = pb.Task(stage=pb.KEY_CEREMONY, key_epoch=1)
    for name in NAMES:
        member = federation.kit(name)
        public, signature = (
            member.ceremony_public_key,
            ceremony.sign_ceremony_key(
                member.identity_key,
                federation_id=FEDERATION,
                participant=name,
                ceremony_public=member.ceremony_public_key,
            ),
        )
        if name == "residential":
            public, signature = ATTACKER_KEY, bytes(64)
        task.ceremony_keys.add(
            participant_id=name, ceremony_public_key=public, ceremony_key_signature=signature
        )
    with pytest.raises(ProtocolError, match="ceremony key relayed for residential is not the one"):
        daemon._keys.make(task)
    assert "PostCeremony" not in coordinator.calls


# ---- a participant approved while the coordinator runs ----


class GatedTrainer:
    """The synthetic trainer, holding `round` until `gate` opens."""

    def __init__(self, inner: SyntheticTrainer, gate: threading.Event, round: int) -> None:
        self._inner, self._gate, self._round = inner, gate, round

    def train_round(self, round: int) -> LocalUpdate:
        if round == self._round:
            assert self._gate.wait(120), "the gate never opened"
        return self._inner.train_round(round)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _status(address_kit: Path) -> pb.StatusResponse:
    with kits.secure_channel(kits.Kit.load(address_kit)) as channel:
        return pb_grpc.CoordinatorStub(channel).GetStatus(pb.StatusRequest(), timeout=5)


def test_a_participant_approved_while_the_coordinator_runs_joins_the_next_round(
    tmp_path: Path,
) -> None:
    port = free_port()
    provisioned = provision_loopback(tmp_path, port, ("energy", "urban"))
    config_file = write_coordinator_config(
        tmp_path,
        port,
        profile="ckks+masks",
        settings="rounds = 2\nthreshold = 2\nheartbeat_interval_s = 0.5\n",
    )
    log_file = tmp_path / "federation.log"
    log = logs.configure("coordinator", log_file)
    running = server.start(configfile.load(config_file, CoordinatorConfig, "coordinator"), log=log)
    gate = threading.Event()
    workers: dict[str, tuple[ParticipantDaemon, threading.Thread]] = {}
    stopped: dict[str, str] = {}

    def start(name: str, kit_dir: Path, *, gated: bool = False) -> None:
        config = kit_participant(kit_dir, tmp_path / name)
        trainer: Any = SyntheticTrainer(config)
        if gated:
            trainer = GatedTrainer(trainer, gate, round=1)
        daemon = ParticipantDaemon(
            config, log=logging.getLogger("accord.participant"), trainer=trainer
        )

        def run() -> None:
            try:
                daemon.run()
            except Expired as error:
                stopped[name] = str(error)

        worker = threading.Thread(target=run, name=f"daemon-{name}", daemon=True)
        worker.start()
        workers[name] = (daemon, worker)

    energy_kit = provisioned.kits["energy"]
    try:
        start("energy", energy_kit, gated=True)
        start("urban", provisioned.kits["urban"])
        wait_until("round 1 runs", lambda: _status(energy_kit).round == 1)

        request = packaging.request("water", tmp_path / "water-request")
        response = approve(request, provisioned.ca_dir)
        water_kit = packaging.package(
            tmp_path / "water-request", response, provisioned.ca_fingerprint, tmp_path / "water-kit"
        )
        start("water", water_kit)
        wait_until(
            "water enrolled",
            lambda: any(
                p.participant_id == "water" and p.state != "not enrolled"
                for p in _status(energy_kit).participants
            ),
        )
        gate.set()
        wait_until("the federation finished", lambda: _status(energy_kit).rounds_completed >= 2)

        summary = {r.round: r for r in _status(energy_kit).recent_rounds}
        assert list(summary[1].selected) == ["energy", "urban"]
        assert list(summary[2].selected) == ["energy", "urban", "water"]
        assert summary[2].outcome == pb.DONE
        # water holds the key of epoch 2 but not round 1's aggregate (epoch 1): it stops
        # instead of training on a diverged adapter, and the round completes without it.
        assert list(summary[2].survivors) == ["energy", "urban"]
        assert "round 1's aggregate cannot be applied" in stopped["water"]
        ceremonies = [
            (e["key_epoch"], e["recipients"]) for e in events(log_file, "key_ceremony_done")
        ]
        assert ceremonies == [(1, ["energy", "urban"]), (2, ["energy", "urban", "water"])]
        assert events(log_file, "participants_admitted")[0]["participants"] == ["water"]
        assert not events(log_file, "member_refused")
    finally:
        gate.set()
        stop_daemons(workers.values())
        running.stop(grace_s=0)
