"""A step that fails aborts its round cleanly; the federation goes on (issue 12, finding 6).

Over a real SQLite store: a full disk while storing the aggregate (a store whose
`put_aggregate` raises ENOSPC, a double of the disk, not of the protocol) must not
leave memory serving an aggregate the store lacks; an exception while a round starts
(MemoryError, e.g. from a huge adapter) aborts that round and later calls still answer.
"""

from __future__ import annotations

import errno
from collections.abc import Iterable

import numpy as np
import pytest

from accord.coordinator import lifecycle_driver as driver_module
from accord.coordinator.orchestrator import Orchestrator
from accord.coordinator.store.database import Store
from accord.coordinator.store.dialects import dialect_for_url
from accord.coordinator.store.persistence import FederationRecords
from accord.coordinator.store.rows import RoundStatus
from accord.crypto.messages import Stage
from accord.errors import RoundAborted

from .plaintext_federation import ADAPTER_PARAMETERS, NAMES, json_logger, make_config
from .test_orchestrator import FakeClock, header, upload
from .test_persistence import enrol_everyone, finish_round


class DiskThatFills(Store):
    """A real SQLite store on a disk that is full while `full` is set."""

    full = False

    def put_aggregate(self, round: int, chunks: Iterable[bytes]):  # type: ignore[no-untyped-def]
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().put_aggregate(round, chunks)


def start(tmp_path, keys, store: Store, **settings) -> Orchestrator:
    config = make_config(tmp_path, keys, **settings)
    return Orchestrator(
        config,
        log=json_logger(tmp_path),
        clock=FakeClock(),
        records=FederationRecords(store, keep_aggregates=config.keep_aggregates),
    )


def test_a_full_disk_while_storing_the_aggregate_aborts_the_round_in_memory_and_store(
    tmp_path, keys
) -> None:
    store = DiskThatFills(dialect_for_url(str(tmp_path / "coordinator.sqlite"), busy_timeout_s=5))
    orchestrator = start(tmp_path, keys, store, rounds=3)
    enrol_everyone(orchestrator)
    store.full = True
    for name in NAMES:  # the last upload closes the stage: the aggregate cannot be stored
        upload(orchestrator, keys, name, np.full(ADAPTER_PARAMETERS, 0.1, np.float32))
    # Memory and store agree: round 1 aborted, no aggregate served from either.
    row = store.round_row(1)
    assert row is not None and row.status is RoundStatus.ABORTED
    assert store.aggregate_rounds() == []
    with pytest.raises(RoundAborted, match="round 1 was aborted"):
        orchestrator.aggregate_for(header("urban", 1, Stage.AGGREGATE))
    last = orchestrator.status().recent_rounds[-1]
    assert last.round == 1 and last.outcome is Stage.ABORTED
    assert "storing the aggregate failed" in last.message
    # The disk has room again: the next round completes, and a late member catches up.
    store.full = False
    second = finish_round(orchestrator, keys, 2)
    config, kept, _ = orchestrator.aggregate_for(header("urban", 2, Stage.AGGREGATE))
    assert config.round == 2 and list(kept) == second
    assert store.aggregate_rounds() == [2]
    store.close()


def test_an_exception_while_a_round_starts_aborts_it_and_calls_still_answer(
    tmp_path, keys, monkeypatch
) -> None:
    real = driver_module.RoundSum
    failures = [MemoryError("cannot allocate the round's sum")]

    def round_sum(*args, **kwargs):  # type: ignore[no-untyped-def]
        if failures:
            raise failures.pop()
        return real(*args, **kwargs)

    monkeypatch.setattr(driver_module, "RoundSum", round_sum)
    store = DiskThatFills(dialect_for_url(str(tmp_path / "coordinator.sqlite"), busy_timeout_s=5))
    orchestrator = start(tmp_path, keys, store, rounds=2)
    enrol_everyone(orchestrator)  # the third enrolment starts round 1, which fails
    orchestrator.tick()
    for name in NAMES:  # every later call answers, and round 2 runs
        assert orchestrator.heartbeat(header(name), "idle")[0] == 2
    row = store.round_row(1)
    assert row is not None and row.status is RoundStatus.ABORTED
    with pytest.raises(RoundAborted, match="round 1 was aborted"):
        orchestrator.aggregate_for(header("urban", 1, Stage.AGGREGATE))
    second = finish_round(orchestrator, keys, 2)
    assert second and store.aggregate_rounds() == [2]
    store.close()
