"""No starvation over real gRPC + mTLS (issue 12, findings 4 and 5).

A hostile member with a valid certificate of the federation's CA, and a revoked one,
open many upload streams and long-polls and hold them silent; the honest members'
calls still answer at once. Every call is authenticated from the peer certificate
when it opens: a revoked certificate reads nothing, `GetStatus` included, and a
member's second parallel upload is refused before a message of it is read.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from accord.coordinator import server
from accord.coordinator.operator.approve import revoke
from accord.core import logs
from accord.participant.daemon import ParticipantDaemon
from accord.participant.kit.startup_kit import Kit, secure_channel
from accord.participant.rpc_errors import retryable
from accord.proto.v1 import federation_pb2 as pb
from accord.proto.v1 import federation_pb2_grpc as pb_grpc
from tests.support import free_port
from tests.support.federation import (
    FEDERATION,
    kit_participant,
    provision_loopback,
    serve,
    write_coordinator_config,
)

from .test_mtls import enroll, header

pytestmark = pytest.mark.e2e

HONEST = ("energy", "residential", "urban")
HOSTILE, REVOKED = "mallory", "oscar"
IDLE_S = 1.0


class Running:
    def __init__(self, kits: dict[str, Path], running: server.RunningServer, ca_dir: Path):
        self.kits, self.running, self.ca_dir = kits, running, ca_dir

    def channel(self, name: str) -> grpc.Channel:
        return secure_channel(Kit.load(self.kits[name]))


@contextlib.contextmanager
def _serve(tmp_path: Path, settings: str = "") -> Iterator[Running]:
    port = free_port()
    provisioned = provision_loopback(tmp_path, port, (*HONEST, HOSTILE, REVOKED))
    config_file = write_coordinator_config(
        tmp_path, port, settings=f"stream_idle_s = {IDLE_S}\n" + settings
    )
    with serve(config_file, logs.configure("coordinator", tmp_path / "c.log")) as running:
        yield Running(provisioned.kits, running, provisioned.ca_dir)


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[Running]:
    with _serve(tmp_path) as running:
        yield running


def _silent(until: threading.Event) -> Iterator[pb.UpdateChunk]:
    """A request stream that sends nothing until `until` is set."""
    until.wait()
    return
    yield pb.UpdateChunk()  # pragma: no cover


def _revoke(federation: Running, name: str) -> None:
    revoke(federation.ca_dir, name)
    time.sleep(2 * server.ROSTER_CHECK_INTERVAL_S + 0.2)


def test_get_status_is_refused_to_a_revoked_certificate(federation: Running) -> None:
    with federation.channel(REVOKED) as channel:
        stub = pb_grpc.CoordinatorStub(channel)
        assert stub.GetStatus(pb.StatusRequest(), timeout=5).federation_id == FEDERATION
        _revoke(federation, REVOKED)
        with pytest.raises(grpc.RpcError) as caught:
            stub.GetStatus(pb.StatusRequest(), timeout=5)
        assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
        assert f"participant {REVOKED} is revoked" in caught.value.details()
        # A silent stream is refused when it opens, before any message is read.
        hold = threading.Event()
        try:
            future = stub.UploadUpdate.future(_silent(hold), timeout=5)
            with pytest.raises(grpc.RpcError) as caught:
                future.result()
            assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
        finally:
            hold.set()


def test_a_second_parallel_upload_is_refused_before_it_sends_anything(
    federation: Running,
) -> None:
    hold = threading.Event()
    with federation.channel("energy") as channel:
        stub = pb_grpc.CoordinatorStub(channel)
        try:
            first = stub.UploadUpdate.future(_silent(hold), timeout=30)
            time.sleep(0.3)  # let the first stream open
            second = stub.UploadUpdate.future(_silent(hold), timeout=30)
            with pytest.raises(grpc.RpcError) as caught:
                second.result(timeout=IDLE_S / 2 + 5)
            assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "energy already holds 1 open UploadUpdate call" in caught.value.details()
            assert retryable(caught.value)  # the daemon waits and tries again
            assert not first.done()  # the first is still open, silent
        finally:
            hold.set()
    assert list((federation.running.orchestrator.config.state_dir / "spool").glob("*")) == []


def test_an_idle_upload_stream_is_ended_and_frees_its_slot(federation: Running) -> None:
    hold = threading.Event()
    with federation.channel("energy") as channel:
        stub = pb_grpc.CoordinatorStub(channel)
        try:
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as caught:
                stub.UploadUpdate(_silent(hold), timeout=30)
            assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
            assert "stream_idle_s" in caught.value.details()
            assert time.monotonic() - started < 30  # ended by the server, not the client
            # The slot is free again: the next upload is read (and refused on its merits).
            with pytest.raises(grpc.RpcError) as caught:
                stub.UploadUpdate(iter([pb.UpdateChunk(header=header("energy"))]), timeout=5)
            assert caught.value.code() is not grpc.StatusCode.RESOURCE_EXHAUSTED
        finally:
            hold.set()


def test_honest_calls_answer_while_a_hostile_and_a_revoked_member_hold_streams_open(
    federation: Running,
) -> None:
    _revoke(federation, REVOKED)
    hold = threading.Event()
    held: list[grpc.Future] = []
    channels = [federation.channel(HOSTILE) for _ in range(4)]
    channels += [federation.channel(REVOKED) for _ in range(4)]
    try:
        for channel in channels:
            stub = pb_grpc.CoordinatorStub(channel)
            for _ in range(10):  # 80 streams and 80 long-polls in all
                held.append(stub.UploadUpdate.future(_silent(hold), timeout=60))
                held.append(
                    stub.NextTask.future(
                        pb.TaskRequest(header=header(HOSTILE), wait_s=60), timeout=60
                    )
                )
        time.sleep(0.5)
        for name in HONEST:
            with federation.channel(name) as channel:
                assert enroll(channel, name).federation_id == FEDERATION
                stub = pb_grpc.CoordinatorStub(channel)
                for _ in range(3):
                    answer = stub.Heartbeat(
                        pb.HeartbeatRequest(header=header(name), state="idle"), timeout=5
                    )
                    assert answer.current_round >= 0
                task = stub.NextTask(pb.TaskRequest(header=header(name), wait_s=0), timeout=5)
                assert task is not None
        # All but one upload and one long-poll of the hostile member were refused at once
        # (its one silent upload may have been ended meanwhile, after `stream_idle_s`).
        refused = [f for f in held if f.done()]
        codes = {f.exception().code() for f in refused if f.exception() is not None}
        assert codes <= {
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            grpc.StatusCode.PERMISSION_DENIED,
            grpc.StatusCode.DEADLINE_EXCEEDED,
        }
        assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes  # the member's extra calls
        assert grpc.StatusCode.PERMISSION_DENIED in codes  # every call of the revoked one
        assert len(held) - len(refused) <= 2
    finally:
        hold.set()
        for future in held:
            future.cancel()
        for channel in channels:
            channel.close()


def _hold_streams(federation: Running, hold: threading.Event) -> list[grpc.Future]:
    """80 silent upload streams and 80 long-polls from a member and a revoked member."""
    held: list[grpc.Future] = []
    for name in (HOSTILE, REVOKED):
        for _ in range(4):
            stub = pb_grpc.CoordinatorStub(federation.channel(name))
            for _ in range(10):
                held.append(stub.UploadUpdate.future(_silent(hold), timeout=120))
                held.append(
                    stub.NextTask.future(
                        pb.TaskRequest(header=header(name), wait_s=60), timeout=120
                    )
                )
    return held


def test_honest_members_complete_a_round_while_a_hostile_member_holds_streams_open(
    tmp_path: Path,
) -> None:
    settings = "rounds = 1\nenroll_deadline_s = 3\nstage_deadline_s = 20\n"
    with _serve(tmp_path, settings) as federation:
        _revoke(federation, REVOKED)
        hold = threading.Event()
        held = _hold_streams(federation, hold)
        daemons = []
        for name in HONEST:
            config = kit_participant(
                federation.kits[name], tmp_path / name, poll_s=0.2, dp={"enabled": False}
            )
            daemon = ParticipantDaemon(
                config, log=logs.configure("participant", tmp_path / f"{name}.log")
            )
            worker = threading.Thread(target=daemon.run, daemon=True)
            worker.start()
            daemons.append((daemon, worker))
        try:
            orchestrator = federation.running.orchestrator
            deadline = time.monotonic() + 120
            while orchestrator.status().rounds_completed < 1:
                assert time.monotonic() < deadline, f"no round completed: {orchestrator.status()}"
                time.sleep(0.2)
            last = orchestrator.status().recent_rounds[-1]
            assert set(last.survivors) == set(HONEST)
        finally:
            hold.set()
            for future in held:
                future.cancel()
            for daemon, worker in daemons:
                daemon.stop()
                worker.join(timeout=10)


def test_a_long_poll_whose_caller_left_frees_its_slot(federation: Running) -> None:
    with federation.channel("energy") as channel:
        stub = pb_grpc.CoordinatorStub(channel)
        enroll(channel, "energy")
        with pytest.raises(grpc.RpcError) as caught:  # the caller gives up after 0.5 s
            stub.NextTask(pb.TaskRequest(header=header("energy"), wait_s=60), timeout=0.5)
        assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        # The coordinator stops waiting for it, long before its 60 s: the next poll answers.
        deadline = time.monotonic() + 10
        while True:
            try:
                stub.NextTask(pb.TaskRequest(header=header("energy"), wait_s=0), timeout=5)
                break
            except grpc.RpcError as error:
                assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
                assert time.monotonic() < deadline, "the abandoned long-poll kept its slot"
                time.sleep(0.2)
