"""The orchestrator drives plaintext rounds: enrol, upload, aggregate, deadlines, refusals."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from accord.coordinator.orchestrator import Orchestrator
from accord.core import logs
from accord.crypto import pipeline
from accord.crypto.lifecycle import Lifecycle
from accord.crypto.messages import Stage
from accord.errors import (
    BadSignature,
    ConfigError,
    IntegrityError,
    Malformed,
    NotAllowed,
    OutOfStage,
    Replayed,
)
from accord.wire.headers import Header
from tests.support import FakeClock

from .plaintext_federation import (
    ADAPTER_PARAMETERS,
    MODEL_HASH,
    NAMES,
    json_logger,
    make_config,
    upload_chunks,
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def log(tmp_path: Path) -> logging.Logger:
    return json_logger(tmp_path)


def header(name: str, round: int = 0, stage: Stage | None = None, **fields) -> Header:
    return Header(federation_id="accord-demo", round=round, stage=stage, participant=name, **fields)


def enrolled(tmp_path, keys, clock, log, **settings) -> Orchestrator:
    orchestrator = Orchestrator(make_config(tmp_path, keys, **settings), log=log, clock=clock)
    for name in NAMES:
        orchestrator.enroll(
            header(name), base_model_hash=MODEL_HASH, adapter_parameters=ADAPTER_PARAMETERS
        )
    return orchestrator


def upload(orchestrator: Orchestrator, keys, name: str, delta: np.ndarray) -> bytes:
    task = orchestrator.next_task(header(name), wait_s=0)
    assert task.config is not None
    chunks, sequence, signature = upload_chunks(task.config, name, keys, delta)
    route = header(name, task.round, Stage.UPLOAD)
    session = orchestrator.open_upload(route)
    for chunk in chunks:
        orchestrator.take_chunk(session, route, chunk)
    return orchestrator.finish_upload(
        session, replace(route, sequence=sequence, signature=signature)
    )


def test_a_round_starts_once_everyone_enrolled(tmp_path, keys, clock, log) -> None:
    orchestrator = Orchestrator(make_config(tmp_path, keys), log=log, clock=clock)
    for name in NAMES[:2]:
        orchestrator.enroll(header(name), base_model_hash=MODEL_HASH, adapter_parameters=10)
        assert orchestrator.status().lifecycle is Lifecycle.ENROLL
    orchestrator.enroll(header(NAMES[2]), base_model_hash=MODEL_HASH, adapter_parameters=10)
    task = orchestrator.next_task(header("energy"), wait_s=0)
    assert (task.round, task.stage) == (1, Stage.UPLOAD)
    assert task.config is not None and task.config.element_count == ADAPTER_PARAMETERS + 1


def test_two_rounds_of_fedavg_end_with_the_weighted_mean(tmp_path, keys, clock, log) -> None:
    orchestrator = enrolled(tmp_path, keys, clock, log)
    for round_number in (1, 2):
        deltas = {
            name: np.full(ADAPTER_PARAMETERS, i * 0.01, np.float32) for i, name in enumerate(NAMES)
        }
        for name in NAMES:
            upload(orchestrator, keys, name, deltas[name])
        task = orchestrator.next_task(header("energy", round_number, Stage.UPLOAD), wait_s=0)
        assert task.stage is Stage.AGGREGATE and task.survivors == NAMES
        assert task.config is not None
        for name in NAMES:
            route = header(name, round_number, Stage.AGGREGATE)
            _, chunks, _ = orchestrator.aggregate_for(route)
            orchestrator.download_done(route, sum(map(len, chunks)))
            assert orchestrator.status().stage is Stage.AGGREGATE  # sent, not yet applied
        for name in NAMES:
            orchestrator.applied(header(name, round_number, Stage.AGGREGATE))
        sums = pipeline.reveal(
            chunks,
            profile=task.config.profile,
            element_count=11,
            modulus_bits=16,
            packing=None,
            secret=None,
        )
        np.testing.assert_allclose(sums[:-1] / sums[-1], 0.01, rtol=1e-5)
    status = orchestrator.status()
    assert status.lifecycle is Lifecycle.FINISHED and status.rounds_completed == 2
    assert [r.outcome for r in status.recent_rounds] == [Stage.DONE, Stage.DONE]
    assert all(
        r.bytes_up[name] > 0 and r.bytes_down[name] > 0
        for r in status.recent_rounds
        for name in NAMES
    )
    finished = orchestrator.next_task(header("urban", 2, Stage.AGGREGATE), wait_s=0)
    assert finished.lifecycle is Lifecycle.FINISHED


def test_a_stage_deadline_with_too_few_uploads_aborts_the_round(tmp_path, keys, clock, log) -> None:
    orchestrator = enrolled(tmp_path, keys, clock, log, threshold=2, rounds=1)
    upload(orchestrator, keys, "energy", np.zeros(ADAPTER_PARAMETERS, np.float32))
    clock.now += 61.0
    for name in NAMES:  # keep them online
        orchestrator.heartbeat(header(name), "waiting")
    status = orchestrator.status()
    assert status.recent_rounds[-1].outcome is Stage.ABORTED
    assert "only 1 of 2" in status.recent_rounds[-1].message
    # An aborted round does not count: the federation tries again with a fresh number.
    assert status.lifecycle is Lifecycle.ROUND and status.round == 2
    assert status.rounds_completed == 0


def test_the_round_closes_once_every_survivor_applied_the_aggregate(
    tmp_path, keys, clock, log
) -> None:
    orchestrator = enrolled(tmp_path, keys, clock, log)
    for name in NAMES:
        upload(orchestrator, keys, name, np.zeros(ADAPTER_PARAMETERS, np.float32))
    for name in NAMES:
        route = header(name, 1, Stage.AGGREGATE)
        orchestrator.download_done(route, sum(map(len, orchestrator.aggregate_for(route)[1])))
    assert orchestrator.status().stage is Stage.AGGREGATE  # sent is not received
    # A notice for another round confirms nothing; nor does a poll, even one naming DONE.
    orchestrator.applied(header("energy", 2, Stage.AGGREGATE))
    orchestrator.next_task(header("energy", 1, Stage.DONE), wait_s=0)
    orchestrator.next_task(header("energy", 1, Stage.AGGREGATE), wait_s=0)
    with pytest.raises(OutOfStage):
        orchestrator.applied(header("energy", 1, Stage.DONE))
    assert orchestrator.status().stage is Stage.AGGREGATE
    orchestrator.applied(header("energy", 1, Stage.AGGREGATE))
    task = orchestrator.next_task(header("energy", 1, Stage.AGGREGATE), wait_s=0)
    # Confirmed: it waits for the others instead of being handed the aggregate again.
    assert (task.round, task.stage) == (1, None) and "apply" in task.message
    orchestrator.applied(header("residential", 1, Stage.AGGREGATE))
    assert orchestrator.status().rounds_completed == 0
    orchestrator.applied(header("urban", 1, Stage.AGGREGATE))
    status = orchestrator.status()
    assert status.rounds_completed == 1 and status.recent_rounds[0].outcome is Stage.DONE


def test_a_deadline_with_enough_uploads_closes_the_stage(tmp_path, keys, clock, log) -> None:
    orchestrator = enrolled(tmp_path, keys, clock, log, threshold=2)
    for name in NAMES[:2]:
        upload(orchestrator, keys, name, np.ones(ADAPTER_PARAMETERS, np.float32) * 0.1)
    clock.now += 61.0
    orchestrator.tick()
    task = orchestrator.next_task(header("energy", 1, Stage.UPLOAD), wait_s=0)
    assert task.stage is Stage.AGGREGATE and task.survivors == ("energy", "residential")
    # urban's update is not in the sum, but it downloads the aggregate all the same, so
    # that its global adapter stays the federation's.
    config, chunks, _ = orchestrator.aggregate_for(header("urban", 1, Stage.AGGREGATE))
    assert config == task.config and chunks


def test_refused_requests_change_nothing(tmp_path, keys, clock, log) -> None:
    orchestrator = enrolled(tmp_path, keys, clock, log)
    before = orchestrator.status()
    task = orchestrator.next_task(header("energy"), wait_s=0)
    assert task.config is not None
    chunks, sequence, signature = upload_chunks(task.config, "energy", keys, np.ones(10))
    with pytest.raises(NotAllowed, match="federation 'other'"):
        orchestrator.open_upload(replace(header("energy", 1, Stage.UPLOAD), federation_id="other"))
    with pytest.raises(NotAllowed, match="'mallory' is not a participant"):
        orchestrator.open_upload(header("mallory", 1, Stage.UPLOAD))
    with pytest.raises(OutOfStage, match="round 1"):
        orchestrator.open_upload(header("energy", 2, Stage.UPLOAD))
    with pytest.raises(OutOfStage, match="in stage upload"):
        orchestrator.aggregate_for(header("energy", 1, Stage.AGGREGATE))
    route = header("energy", 1, Stage.UPLOAD)
    session = orchestrator.open_upload(route)
    corrupted = chunks[0][:-1] + bytes([chunks[0][-1] ^ 1])
    with pytest.raises(IntegrityError):
        orchestrator.take_chunk(session, route, corrupted)
    for chunk in chunks:
        orchestrator.take_chunk(session, route, chunk)
    forged = replace(route, sequence=sequence, signature=bytes(64))
    with pytest.raises(BadSignature):
        orchestrator.finish_upload(session, forged)
    assert orchestrator.status() == before
    orchestrator.finish_upload(session, replace(route, sequence=sequence, signature=signature))
    with pytest.raises(Replayed):
        orchestrator.open_upload(route)


def test_a_participant_with_another_base_model_is_refused(tmp_path, keys, clock, log) -> None:
    orchestrator = Orchestrator(make_config(tmp_path, keys), log=log, clock=clock)
    orchestrator.enroll(header("energy"), base_model_hash=MODEL_HASH, adapter_parameters=10)
    with pytest.raises(ConfigError, match="base model hash"):
        orchestrator.enroll(header("urban"), base_model_hash="cd" * 32, adapter_parameters=10)
    with pytest.raises(ConfigError, match="adapter of 11 parameters"):
        orchestrator.enroll(header("urban"), base_model_hash=MODEL_HASH, adapter_parameters=11)
    assert not orchestrator.status().members[2][1]  # urban stayed offline


def test_a_ckks_federation_refuses_enrolment_without_a_ceremony_key(
    tmp_path, keys, clock, log
) -> None:
    config = make_config(tmp_path, keys, profile="ckks+masks", insecure_plaintext=True)
    orchestrator = Orchestrator(config, log=log, clock=clock)
    with pytest.raises(Malformed, match="ceremony key"):
        orchestrator.enroll(header("energy"), base_model_hash=MODEL_HASH, adapter_parameters=10)
    assert not orchestrator.status().members[0][1]


def test_logs_are_structured_and_hold_no_payload(tmp_path, keys, clock, log) -> None:
    orchestrator = enrolled(tmp_path, keys, clock, log, rounds=1)
    secret = np.full(ADAPTER_PARAMETERS, 0.123456, np.float32)
    for name in NAMES:
        upload(orchestrator, keys, name, secret)
    lines = [json.loads(line) for line in (tmp_path / "coordinator.log").read_text().splitlines()]
    assert {"upload_received", "round_started", "stage_opened"} <= {line["event"] for line in lines}
    text = (tmp_path / "coordinator.log").read_bytes()
    assert secret.tobytes()[:8] not in text and b"0.123" not in text
    with pytest.raises(TypeError, match="not loggable"):
        logs.event(log, "oops", chunk=b"\x00payload")
