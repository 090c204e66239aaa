"""An active coordinator against real participant daemons, over gRPC with mTLS.

The coordinator process here is the real server with one change: its round machine is
`SplitViewRound`, which lies the way Bonawitz et al.'s consistency round exists to stop.
It tells one member that the victim dropped (so that member would reveal shares of the
victim's masking key) while telling the others the victim survived (so they reveal shares
of its self mask). Both secrets together would unmask the victim's update. The daemons
must refuse loudly and the coordinator must never receive a masking-key share of the
victim.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, ClassVar

import pytest

from accord.coordinator import lifecycle_driver as driver_module
from accord.coordinator import server
from accord.coordinator.config import CoordinatorConfig
from accord.core import configfile, logs
from accord.crypto import consistency
from accord.crypto.messages import (
    ConfirmSurvivors,
    ConsistencyCall,
    CoordinatorMessage,
    Stage,
    SurvivorSet,
    UnmaskCall,
    UnmaskShares,
)
from accord.crypto.round import CoordinatorRound
from accord.demo.synthetic_trainer import SyntheticTrainer
from accord.participant.daemon import ParticipantDaemon
from accord.participant.kit import startup_kit as kits
from accord.proto.v1 import federation_pb2 as pb
from accord.proto.v1 import federation_pb2_grpc as pb_grpc
from tests.support import free_port
from tests.support.federation import (
    kit_participant,
    provision_loopback,
    stop_daemons,
    wait_until,
    write_coordinator_config,
)

pytestmark = pytest.mark.e2e

NAMES = ("p0", "p1", "p2", "p3")
VICTIM = "p3"
LIED_TO = "p2"


class SplitViewRound(CoordinatorRound):
    """A round machine that shows `LIED_TO` a survivor set without the victim."""

    revealed: ClassVar[list[UnmaskShares]] = []

    def _close_upload(self) -> list[CoordinatorMessage]:
        calls = super()._close_upload()
        honest = self._survivor_set
        assert honest is not None
        self._lying_set = SurvivorSet(
            survivors=tuple(p for p in honest.survivors if p != VICTIM),
            dropped=(*honest.dropped, VICTIM),
            commitments=tuple(c for c in honest.commitments if c.sender != VICTIM),
        )
        self._sets = {
            consistency.statement_digest(self.config, s): s for s in (honest, self._lying_set)
        }
        return [
            ConsistencyCall(LIED_TO, self._lying_set)
            if isinstance(call, ConsistencyCall) and call.recipient == LIED_TO
            else call
            for call in calls
        ]

    def _check_confirm(self, message: ConfirmSurvivors) -> None:
        self._check_first(self._confirmed, message)  # accepts either statement

    def _close_consistency(self) -> list[CoordinatorMessage]:
        signers = set(self._confirmed)
        self._live = frozenset(signers)
        self._stage = Stage.UNMASK
        calls: list[CoordinatorMessage] = []
        for member in sorted(signers):
            statement = self._confirmed[member].statement
            shown = self._sets[statement]
            signatures = tuple(s for s in self._confirmed.values() if s.statement == statement)
            calls.append(UnmaskCall(member, shown.survivors, shown.dropped, signatures))
        return calls

    def _apply_unmask(self, message: UnmaskShares) -> None:
        SplitViewRound.revealed.append(message)
        super()._apply_unmask(message)


def _events(log_file: Path, name: str) -> list[dict[str, Any]]:
    if not log_file.exists():
        return []
    lines = log_file.read_text(encoding="utf-8").splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == name]


def test_a_split_view_of_the_survivors_gets_no_masking_key_share_of_the_victim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(driver_module, "CoordinatorRound", SplitViewRound)
    SplitViewRound.revealed = []
    port = free_port()
    provisioned = provision_loopback(tmp_path, port, NAMES)
    config_file = write_coordinator_config(
        tmp_path,
        port,
        settings="rounds = 1\nthreshold = 3\nstage_deadline_s = 4\nheartbeat_interval_s = 0.5\n",
    )
    config = configfile.load(config_file, CoordinatorConfig, "coordinator")
    running = server.start(config, log=logs.configure("coordinator", tmp_path / "c.log"))
    participant_log = tmp_path / "participants.log"
    log = logs.configure("participant", participant_log)
    workers: list[tuple[ParticipantDaemon, threading.Thread]] = []
    stopped: list[Exception] = []
    kit = kits.Kit.load(provisioned.kits["p0"])

    def rounds_done() -> bool:
        with kits.secure_channel(kit) as channel:
            status = pb_grpc.CoordinatorStub(channel).GetStatus(pb.StatusRequest(), timeout=5)
        return any(r.round == 1 for r in status.recent_rounds)

    try:
        for name in NAMES:
            participant = kit_participant(provisioned.kits[name], tmp_path / name)
            daemon = ParticipantDaemon(participant, log=log, trainer=SyntheticTrainer(participant))

            def run(daemon: ParticipantDaemon = daemon) -> None:
                try:
                    daemon.run()
                except Exception as error:  # a member that refuses the forged round stops
                    stopped.append(error)

            worker = threading.Thread(target=run, name=f"daemon-{name}", daemon=True)
            worker.start()
            workers.append((daemon, worker))
        wait_until("round 1 ended", rounds_done)
    finally:
        stop_daemons(workers)
        running.stop(grace_s=0)

    # The members shown the honest set revealed the victim's self-mask shares (that is the
    # protocol); nobody revealed a share of the victim's masking key.
    assert SplitViewRound.revealed, "no member answered the unmask call at all"
    assert {m.sender for m in SplitViewRound.revealed} <= set(NAMES) - {LIED_TO}
    for answer in SplitViewRound.revealed:
        assert VICTIM not in dict(answer.masking_key_shares)
    # The member that was lied to refused loudly, naming why.
    refusals = [
        e for e in _events(participant_log, "round_step_refused") if e.get("stage") == "unmask"
    ]
    assert any("signed the survivor set" in e["reason"] for e in refusals), refusals
    assert all(e["level"] == "error" for e in refusals if "IntegrityError" in e["reason"])
    # Members that catch up on the round see p2's signature over another set in the
    # aggregate's evidence: they refuse to apply it and stop, naming the IntegrityError.
    assert all("IntegrityError" in str(error) for error in stopped), stopped
