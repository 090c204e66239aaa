"""A coordinator restarted from its store resumes: nothing finished is lost or applied twice.

Each test drives an orchestrator over a real store (SQLite, and PostgreSQL when a server
can be started), drops it as a `kill -9` would, and builds a new one on the same store.
"""

from __future__ import annotations

import numpy as np
import pytest

from accord.coordinator.orchestrator import Orchestrator
from accord.coordinator.store.database import open_store
from accord.coordinator.store.persistence import (
    FederationRecords,
    round_config_from_json,
    round_config_to_json,
)
from accord.coordinator.store.rows import RoundStatus
from accord.crypto.lifecycle import Lifecycle
from accord.crypto.messages import Stage
from accord.errors import Expired, IntegrityError, RoundAborted

from .plaintext_federation import ADAPTER_PARAMETERS, MODEL_HASH, NAMES, make_config
from .test_orchestrator import FakeClock, header, upload


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "coordinator.sqlite")
    return request.getfixturevalue("postgres_schema_url")


def start(tmp_path, keys, store_url, log, clock=None, **settings):
    """A coordinator process: a fresh orchestrator over the shared store."""
    store = open_store(store_url)
    config = make_config(tmp_path, keys, **settings)
    orchestrator = Orchestrator(
        config,
        log=log,
        clock=clock or FakeClock(),
        records=FederationRecords(store, keep_aggregates=config.keep_aggregates),
    )
    return orchestrator, store


def enrol_everyone(orchestrator: Orchestrator) -> None:
    for name in NAMES:
        orchestrator.enroll(
            header(name), base_model_hash=MODEL_HASH, adapter_parameters=ADAPTER_PARAMETERS
        )


@pytest.fixture
def log(tmp_path):
    from .plaintext_federation import json_logger

    return json_logger(tmp_path)


def test_a_restart_during_upload_aborts_that_round_and_goes_on_with_a_new_number(
    tmp_path, keys, store_url, log
) -> None:
    first, store = start(tmp_path, keys, store_url, log)
    enrol_everyone(first)
    upload(first, keys, "energy", np.ones(ADAPTER_PARAMETERS, np.float32) * 0.1)
    store.close()  # the process dies here

    second, store = start(tmp_path, keys, store_url, log)
    rows = store.rounds()
    assert [(r.round, r.status) for r in rows] == [(1, RoundStatus.ABORTED)]
    assert "restarted" in (rows[0].abort_reason or "")
    aborted = second.status().recent_rounds[0]
    assert (aborted.outcome, aborted.selected, aborted.survivors) == (Stage.ABORTED, NAMES, ())
    # Members come back from the store: no re-enrolment is needed to start round 2.
    for name in NAMES:
        second.heartbeat(header(name), "waiting")
    status = second.status()
    assert (status.round, status.stage, status.rounds_completed) == (2, Stage.UPLOAD, 0)
    store.close()


def test_a_restart_while_serving_the_aggregate_serves_the_same_aggregate(
    tmp_path, keys, store_url, log
) -> None:
    first, store = start(tmp_path, keys, store_url, log)
    enrol_everyone(first)
    for i, name in enumerate(NAMES):
        upload(first, keys, name, np.full(ADAPTER_PARAMETERS, 0.01 * (i + 1), np.float32))
    _, before, _ = first.aggregate_for(header("energy", 1, Stage.AGGREGATE))
    first.download_done(header("energy", 1, Stage.AGGREGATE), sum(map(len, before)))
    first.applied(header("energy", 1, Stage.AGGREGATE))  # energy applied it
    for name in NAMES[1:]:  # sent to the others, who have not confirmed yet
        first.download_done(header(name, 1, Stage.AGGREGATE), sum(map(len, before)))
    assert first.status().stage is Stage.AGGREGATE
    store.close()  # the process dies here; nobody knows whether the others have it

    clock = FakeClock()
    second, store = start(tmp_path, keys, store_url, log, clock=clock)
    assert second.status().stage is Stage.AGGREGATE
    for name in NAMES[1:]:
        _, again, _ = second.aggregate_for(header(name, 1, Stage.AGGREGATE))
        assert again == before
        second.download_done(header(name, 1, Stage.AGGREGATE), sum(map(len, again)))
        second.applied(header(name, 1, Stage.AGGREGATE))
    # Who applied before the restart is not recorded: until energy says so again, or the
    # deadline passes, the stage stays open.
    assert second.status().stage is Stage.AGGREGATE
    # The tasks name the survivors again, so a daemon that waited through the restart
    # (or lost its download) knows it may fetch the aggregate.
    task = second.next_task(header("energy", 1, Stage.UPLOAD), wait_s=0)
    assert (task.round, task.stage, task.survivors) == (1, Stage.AGGREGATE, NAMES)
    clock.now += 61.0
    second.tick()
    assert [(r.round, r.status) for r in store.rounds()] == [(1, RoundStatus.FINISHED)]
    # The sum stays for `keep_aggregates` rounds, for members that missed the round.
    config, kept, _ = second.aggregate_for(header("urban", 1, Stage.AGGREGATE))
    assert config.round == 1 and list(kept) == before
    store.close()


def test_after_a_restart_the_survivors_confirmations_close_the_round_at_once(
    tmp_path, keys, store_url, log
) -> None:
    first, store = start(tmp_path, keys, store_url, log)
    enrol_everyone(first)
    for name in NAMES:
        upload(first, keys, name, np.zeros(ADAPTER_PARAMETERS, np.float32))
    for name in NAMES:  # sent to everyone; the process dies before anyone confirms
        _, chunks, _ = first.aggregate_for(header(name, 1, Stage.AGGREGATE))
        first.download_done(header(name, 1, Stage.AGGREGATE), sum(map(len, chunks)))
    store.close()

    second, store = start(tmp_path, keys, store_url, log)
    for name in NAMES:  # each daemon applied it (or does now) and says so
        second.applied(header(name, 1, Stage.AGGREGATE))
    status = second.status()
    assert status.rounds_completed == 1 and status.round == 2  # no deadline waited for
    finished = store.rounds()[0]
    assert (finished.round, finished.status) == (1, RoundStatus.FINISHED)
    store.close()


def test_finished_rounds_survive_and_a_finished_federation_stays_finished(
    tmp_path, keys, store_url, log
) -> None:
    first, store = start(tmp_path, keys, store_url, log, rounds=1)
    enrol_everyone(first)
    for name in NAMES:
        upload(first, keys, name, np.zeros(ADAPTER_PARAMETERS, np.float32))
    for name in NAMES:
        _, chunks, _ = first.aggregate_for(header(name, 1, Stage.AGGREGATE))
        first.download_done(header(name, 1, Stage.AGGREGATE), sum(map(len, chunks)))
        first.applied(header(name, 1, Stage.AGGREGATE))
    assert first.status().lifecycle is Lifecycle.FINISHED
    store.close()

    second, store = start(tmp_path, keys, store_url, log, rounds=1)
    status = second.status()
    assert status.lifecycle is Lifecycle.FINISHED and status.rounds_completed == 1
    assert [r.round for r in status.recent_rounds] == [1]
    assert status.recent_rounds[0].survivors == NAMES
    assert status.recent_rounds[0].selected == NAMES
    store.close()


def finish_round(orchestrator: Orchestrator, keys, round: int) -> list[bytes]:
    for name in NAMES:
        upload(orchestrator, keys, name, np.full(ADAPTER_PARAMETERS, 0.01 * round, np.float32))
    for name in NAMES:
        _, chunks, _ = orchestrator.aggregate_for(header(name, round, Stage.AGGREGATE))
        orchestrator.applied(header(name, round, Stage.AGGREGATE))
    return list(chunks)


def test_members_that_missed_a_round_download_its_aggregate_while_it_is_kept(
    tmp_path, keys, store_url, log
) -> None:
    orchestrator, store = start(tmp_path, keys, store_url, log, keep_aggregates=1, rounds=5)
    enrol_everyone(orchestrator)
    first = finish_round(orchestrator, keys, 1)
    config, kept, _ = orchestrator.aggregate_for(header("urban", 1, Stage.AGGREGATE))
    assert config.round == 1 and list(kept) == first  # round 1 is closed, and kept
    # Round 2 in flight: no aggregate yet; its uploads are not served to anyone.
    with pytest.raises(Exception, match="not ready"):
        orchestrator.aggregate_for(header("urban", 2, Stage.AGGREGATE))
    second = finish_round(orchestrator, keys, 2)
    assert store.aggregate_rounds() == [2]  # keep_aggregates = 1: round 1's sum is gone
    with pytest.raises(Expired, match=r"round 1 is no longer kept.*keep_aggregates"):
        orchestrator.aggregate_for(header("urban", 1, Stage.AGGREGATE))
    config, kept, _ = orchestrator.aggregate_for(header("urban", 2, Stage.AGGREGATE))
    assert config.round == 2 and list(kept) == second
    # A round aborted by a restart has no aggregate, and says so.
    upload(orchestrator, keys, "energy", np.ones(ADAPTER_PARAMETERS, np.float32) * 0.1)
    store.close()
    again, store = start(tmp_path, keys, store_url, log, keep_aggregates=1, rounds=5)
    with pytest.raises(RoundAborted, match="round 3 was aborted"):
        again.aggregate_for(header("urban", 3, Stage.AGGREGATE))
    store.close()


def test_round_config_records_round_trip_and_refuse_unknown_versions(tmp_path, keys) -> None:
    from accord.coordinator.aggregation.round_sum import round_config

    config = round_config(
        make_config(tmp_path, keys, profile="masks"),
        round=3,
        selected=NAMES,
        element_count=11,
        graph_seed=bytes(range(32)),
        key_epoch=2,
    )
    assert round_config_from_json(round_config_to_json(config)) == config
    with pytest.raises(IntegrityError):
        round_config_from_json('{"version": 99}')
