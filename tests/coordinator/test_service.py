"""Over real gRPC: refused messages get their precise status and change no state."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from accord.coordinator import server
from accord.errors import ConfigError
from accord.proto.v1 import federation_pb2 as pb
from accord.proto.v1 import federation_pb2_grpc as pb_grpc
from accord.wire.round_config import round_config_from_proto

from .plaintext_federation import (
    ADAPTER_PARAMETERS,
    MODEL_HASH,
    NAMES,
    json_logger,
    make_config,
    upload_chunks,
)


@pytest.fixture
def running(tmp_path, keys) -> Iterator[server.RunningServer]:
    started = server.start(make_config(tmp_path, keys), log=json_logger(tmp_path))
    yield started
    started.stop(grace_s=0)


@pytest.fixture
def stub(running) -> Iterator[pb_grpc.CoordinatorStub]:
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        yield pb_grpc.CoordinatorStub(channel)


def header(name: str, federation: str = "accord-demo", round: int = 0, stage: int = 0):
    return pb.RequestHeader(federation_id=federation, participant_id=name, round=round, stage=stage)


def enroll(stub, name: str, federation: str = "accord-demo") -> pb.EnrollResponse:
    return stub.Enroll(
        pb.EnrollRequest(
            header=header(name, federation),
            base_model_hash=MODEL_HASH,
            adapter_parameters=ADAPTER_PARAMETERS,
        ),
        timeout=5,
    )


def status_code(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code(), caught.value.details()


def comparable(status: pb.StatusResponse) -> pb.StatusResponse:
    """The status without liveness, which time changes on its own."""
    copy = pb.StatusResponse()
    copy.CopyFrom(status)
    for entry in copy.participants:
        entry.online = False
    return copy


def test_serving_health_reflection_and_port_file(running, tmp_path) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        answer = health.Check(health_pb2.HealthCheckRequest(service="accord.v1.Coordinator"))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    assert (tmp_path / "coordinator" / "port").read_text().strip() == str(running.port)


def test_wrong_federation_and_unknown_participant_are_permission_denied(stub) -> None:
    before = comparable(stub.GetStatus(pb.StatusRequest()))
    code, details = status_code(lambda: enroll(stub, "energy", federation="elsewhere"))
    assert code is grpc.StatusCode.PERMISSION_DENIED
    assert details.startswith("NotAllowed: federation 'elsewhere' is not served here")
    code, details = status_code(lambda: enroll(stub, "mallory"))
    assert code is grpc.StatusCode.PERMISSION_DENIED
    assert "'mallory' is not a participant" in details
    assert comparable(stub.GetStatus(pb.StatusRequest())) == before


def test_an_upload_out_of_stage_is_failed_precondition(stub, keys) -> None:
    for name in NAMES:
        enroll(stub, name)
    task = stub.NextTask(pb.TaskRequest(header=header("energy"), wait_s=0), timeout=5)
    assert task.stage == pb.UPLOAD
    config = round_config_from_proto(task.config, federation_id="accord-demo")
    chunks, sequence, signature = upload_chunks(config, "energy", keys, np.ones(10))
    before = comparable(stub.GetStatus(pb.StatusRequest()))

    def send(round: int, signature: bytes = signature) -> pb.UploadReceipt:
        messages = [
            pb.UpdateChunk(
                header=pb.RequestHeader(
                    federation_id="accord-demo",
                    participant_id="energy",
                    round=round,
                    stage=pb.UPLOAD,
                    sequence=sequence,
                    signature=signature,
                ),
                chunk=chunk,
            )
            for chunk in chunks
        ]
        return stub.UploadUpdate(iter(messages), timeout=5)

    code, details = status_code(lambda: send(round=2))
    assert code is grpc.StatusCode.FAILED_PRECONDITION
    assert details.startswith("OutOfStage: upload for round 2 refused")
    code, details = status_code(lambda: send(round=1, signature=bytes(64)))
    assert code is grpc.StatusCode.UNAUTHENTICATED
    assert comparable(stub.GetStatus(pb.StatusRequest())) == before
    receipt = send(round=1)
    assert receipt.chunks == len(chunks) and receipt.bytes == sum(map(len, chunks))
    code, _ = status_code(lambda: send(round=1))
    assert code is grpc.StatusCode.ALREADY_EXISTS
    after = stub.GetStatus(pb.StatusRequest())
    assert {p.participant_id: p.bytes_up for p in after.participants}["energy"] == receipt.bytes


def test_a_masking_stage_message_in_a_profile_without_masks_is_out_of_stage(stub) -> None:
    enroll(stub, "energy")
    before = comparable(stub.GetStatus(pb.StatusRequest()))
    code, details = status_code(
        lambda: stub.AdvertiseKeys(
            pb.AdvertiseKeysRequest(
                header=header("energy", stage=pb.ADVERTISE),
                keys=pb.SignedKeys(
                    participant_id="energy",
                    encryption_public_key=bytes(32),
                    masking_public_key=bytes(32),
                ),
            )
        )
    )
    assert code is grpc.StatusCode.FAILED_PRECONDITION and "advertise" in details
    assert comparable(stub.GetStatus(pb.StatusRequest())) == before


def test_without_the_flag_the_coordinator_needs_its_tls_files(tmp_path, keys) -> None:
    with pytest.raises(ConfigError, match=r"tls_dir: required unless insecure_plaintext = true"):
        make_config(tmp_path, keys, profile="masks", insecure_plaintext=False, identity_keys={})


def test_prometheus_metrics_follow_the_events(tmp_path, keys) -> None:
    import urllib.request

    started = server.start(make_config(tmp_path, keys, metrics_port=0), log=json_logger(tmp_path))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{started.port}") as channel:
            enroll(pb_grpc.CoordinatorStub(channel), "energy")
        port = (tmp_path / "coordinator" / "metrics_port").read_text().strip()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            text = answer.read().decode()
        assert "accord_enrolments_total" in text
    finally:
        started.stop(grace_s=0)


def test_confirm_applied_closes_the_round_and_the_last_task_says_federation_finished(
    tmp_path, keys
) -> None:
    started = server.start(make_config(tmp_path, keys, rounds=1), log=json_logger(tmp_path))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{started.port}") as channel:
            stub = pb_grpc.CoordinatorStub(channel)
            for name in NAMES:
                enroll(stub, name)
            task = stub.NextTask(pb.TaskRequest(header=header("energy"), wait_s=0), timeout=5)
            config = round_config_from_proto(task.config, federation_id="accord-demo")
            for name in NAMES:
                chunks, sequence, signature = upload_chunks(config, name, keys, np.ones(10))
                routed = pb.RequestHeader(
                    federation_id="accord-demo",
                    participant_id=name,
                    round=1,
                    stage=pb.UPLOAD,
                    sequence=sequence,
                    signature=signature,
                )
                stub.UploadUpdate(iter([pb.UpdateChunk(header=routed, chunk=c) for c in chunks]))

            def applied(name: str, stage: int = pb.AGGREGATE) -> pb.Ack:
                notice = pb.AggregateApplied(header=header(name, round=1, stage=stage))
                return stub.ConfirmApplied(notice, timeout=5)

            code, details = status_code(lambda: applied("energy", stage=pb.DONE))
            assert code is grpc.StatusCode.FAILED_PRECONDITION and "names done" in details
            # A poll naming DONE is no longer a confirmation.
            stub.NextTask(pb.TaskRequest(header=header("energy", round=1, stage=pb.DONE)))
            for name in NAMES:
                assert stub.GetStatus(pb.StatusRequest()).stage == pb.AGGREGATE
                applied(name)
            applied("energy")  # a repeat (e.g. after the member restarted) changes nothing
            status = stub.GetStatus(pb.StatusRequest())
            assert status.rounds_completed == 1 and status.stage == pb.DONE
            last = stub.NextTask(pb.TaskRequest(header=header("urban"), wait_s=0), timeout=5)
            assert last.stage == pb.FEDERATION_FINISHED
    finally:
        started.stop(grace_s=0)
