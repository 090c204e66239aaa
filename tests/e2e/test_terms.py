"""Signed federation terms over real gRPC and mTLS (issue 12, finding 2).

A hostile member that enrols first with a fake base-model hash and an adapter of 2^40
parameters is refused, naming it, and fixes nothing: the honest members enrol with the
signed values and complete their round. A coordinator whose own config departs from
the signed terms does not start.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import grpc
import pytest

from accord.coordinator import server
from accord.coordinator.config import CoordinatorConfig
from accord.core import configfile, logs
from accord.crypto import ceremony
from accord.crypto.profile import Profile
from accord.demo.synthetic_trainer import SyntheticTrainer
from accord.errors import TermsDeparted
from accord.federation.provision import (
    TermsSection,
)
from accord.participant.config import ParticipantConfig
from accord.participant.daemon import ParticipantDaemon
from accord.participant.kit import startup_kit as kits
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

pytestmark = pytest.mark.e2e

NAMES = ("energy", "residential", "urban")


def _provision(tmp_path: Path, port: int) -> tuple[Path, Path]:
    # The signed model is the synthetic trainer's (the same for every member).
    probe = SyntheticTrainer(ParticipantConfig.model_construct(synthetic_parameters=64))
    terms = TermsSection(
        threshold=2,
        min_cohort=2,
        base_model_hash=probe.base_model_hash,
        adapter_parameters=probe.parameter_count,
        rounds=1,
    )
    provisioned = provision_loopback(tmp_path, port, NAMES, profile=Profile.MASKS, terms=terms)
    config_file = write_coordinator_config(
        tmp_path,
        port,
        settings="rounds = 1\n"
        "threshold = 2\n"
        "enroll_deadline_s = 2\n"
        "heartbeat_interval_s = 0.5\n"
        'terms = "fed/coordinator/terms.signed"\n',
    )
    return config_file, provisioned.root


def test_a_hostile_first_enrolee_is_refused_and_the_honest_members_finish(
    tmp_path: Path,
) -> None:
    port = free_port()
    config_file, root = _provision(tmp_path, port)
    running = server.start(
        configfile.load(config_file, CoordinatorConfig, "coordinator"),
        log=logs.configure("coordinator", tmp_path / "c.log"),
    )
    workers: list[tuple[ParticipantDaemon, threading.Thread]] = []
    urban_kit = kits.Kit.load(root / "kits" / "urban")
    try:
        with kits.secure_channel(urban_kit) as channel:
            stub = pb_grpc.CoordinatorStub(channel)
            for fake_hash, size in (("cd" * 32, 64), ("ab" * 32, 2**40)):
                request = pb.EnrollRequest(
                    header=pb.RequestHeader(federation_id=FEDERATION, participant_id="urban"),
                    base_model_hash=fake_hash,
                    adapter_parameters=size,
                    ceremony_public_key=urban_kit.ceremony_public_key,
                    ceremony_key_signature=ceremony.sign_ceremony_key(
                        urban_kit.identity_key,
                        federation_id=FEDERATION,
                        participant="urban",
                        ceremony_public=urban_kit.ceremony_public_key,
                    ),
                )
                with pytest.raises(grpc.RpcError) as caught:
                    stub.Enroll(request, timeout=5)
                assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
                assert caught.value.details().startswith("TermsDeparted: urban: ")
                assert "departs from the signed terms" in caught.value.details()
        for name in NAMES[:2]:
            config = kit_participant(root / "kits" / name, tmp_path / name, poll_s=0.3)
            daemon = ParticipantDaemon(
                config,
                log=logging.getLogger("accord.participant"),
                trainer=SyntheticTrainer(config),
            )
            worker = threading.Thread(target=daemon.run, name=f"daemon-{name}", daemon=True)
            worker.start()
            workers.append((daemon, worker))

        def status() -> pb.StatusResponse:
            with kits.secure_channel(kits.Kit.load(root / "kits" / "energy")) as channel:
                return pb_grpc.CoordinatorStub(channel).GetStatus(pb.StatusRequest(), timeout=5)

        wait_until("the honest round completed", lambda: status().rounds_completed >= 1)
        (summary,) = [r for r in status().recent_rounds if r.outcome == pb.DONE]
        assert list(summary.selected) == ["energy", "residential"]
        states = {p.participant_id: p.state for p in status().participants}
        assert states["urban"] == "not enrolled"
    finally:
        stop_daemons(workers)
        running.stop(grace_s=0)


def test_a_coordinator_whose_config_departs_from_the_terms_does_not_start(
    tmp_path: Path,
) -> None:
    config_file, _ = _provision(tmp_path, free_port())
    config_file.write_text(config_file.read_text().replace("rounds = 1", "rounds = 5"))
    with pytest.raises(TermsDeparted, match=r"rounds = 5 departs from the signed terms \(1\)"):
        server.start(
            configfile.load(config_file, CoordinatorConfig, "coordinator"),
            log=logs.configure("coordinator", tmp_path / "c.log"),
        )
