"""One round, driven: its machine, running sum, waiting replies, aggregate and record.

The orchestrator keeps one `RoundRun` for the current round. It carries out what the
round machine (`accord.crypto.round.CoordinatorRound`) decided: it keeps the reply each
member waits for, adds checked uploads to the running sum, finishes and stores the
aggregate when the machine enters AGGREGATE, and writes the round's record, store rows
and federation ledger entry when the round ends. It decides nothing itself, and reads
time only to measure stage durations. It holds no lock: the orchestrator calls it under
its own.

`take(replies)` turns the machine's stage changes into the events of the federation's
lifecycle machine (`accord.crypto.lifecycle_events`): `StageOpened`, `RoundDone`,
`RoundAborted`, which the orchestrator feeds on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeAlias

from accord.coordinator.aggregation.round_sum import RoundSum
from accord.coordinator.federation_ledger import FederationLedger
from accord.coordinator.records import Upload
from accord.coordinator.store.persistence import FederationRecords
from accord.core import logs
from accord.crypto.lifecycle_events import RoundAborted as RoundAbortedEvent
from accord.crypto.lifecycle_events import RoundDone, StageOpened
from accord.crypto.messages import AggregateReady, CoordinatorMessage, Stage, UploadDone
from accord.crypto.round import CoordinatorRound, RoundOutcome
from accord.errors import Oversized, RoundAborted
from accord.wire.status import RoundRecord

RECENT_ROUNDS = 100
"""How many round summaries `status()` keeps."""

StageEvent: TypeAlias = StageOpened | RoundDone | RoundAbortedEvent


@dataclass(frozen=True)
class RoundServices:
    """What every round writes to: the log, the store (None: nothing survives a restart),
    the federation ledger, and the clock that measures durations (monotonic seconds)."""

    log: logging.Logger
    records: FederationRecords | None
    ledger: FederationLedger
    clock: Callable[[], float]

    def store_write(self, round: int, what: str, write: Callable[[], None]) -> bool:
        """Run one store write; a failure (e.g. a full disk) is logged and answers False."""
        try:
            write()
        except Exception as error:
            logs.event(
                self.log,
                "store_write_failed",
                round=round,
                write=what,
                reason=f"{type(error).__name__}: {error}",
                level=logging.ERROR,
            )
            return False
        return True


class RoundRun:
    """The current round's machine and everything the driver keeps beside it.

    Args:
        machine: the round machine, in its first stage (or AGGREGATE after a restart).
        services: the log, store, ledger and clock.
    """

    def __init__(self, machine: CoordinatorRound, services: RoundServices) -> None:
        self.machine = machine
        self.sum: RoundSum | None = None
        self.inbox: dict[str, CoordinatorMessage] = {}
        self.aggregate: list[bytes] = []
        self._services = services
        self._stage_seen = machine.stage
        self._stage_started_s = services.clock()
        config = machine.config
        self.record = RoundRecord(
            round=config.round, started_s=self._stage_started_s, selected=config.selected
        )

    @classmethod
    def resumed(
        cls,
        machine: CoordinatorRound,
        services: RoundServices,
        aggregate: list[bytes],
        outcome: RoundOutcome,
    ) -> RoundRun:
        """A round whose stored aggregate a restarted coordinator serves again."""
        run = cls(machine, services)
        run.aggregate = aggregate
        # Tell the survivors again that the aggregate is ready (the tasks carry them).
        run.inbox = {
            name: AggregateReady(
                recipient=name, survivors=outcome.survivors, evidence=outcome.evidence
            )
            for name in outcome.survivors
        }
        return run

    @property
    def number(self) -> int:
        return self.machine.config.round

    @property
    def stage(self) -> Stage:
        return self.machine.stage

    @property
    def ended(self) -> bool:
        return self.machine.stage in (Stage.DONE, Stage.ABORTED)

    # ---- the machine's replies ----

    def take(self, replies: list[CoordinatorMessage]) -> StageEvent | None:
        """Keep the machine's replies; say what its stage change means for the lifecycle.

        Entering AGGREGATE finishes the sum and stores the aggregate first; when either
        fails, the round is aborted through its machine (and `RoundAborted` returned).
        Returns None while the stage is the same.
        """
        for reply in replies:
            self.inbox[reply.recipient] = reply
        stage = self.machine.stage
        if stage is self._stage_seen:
            return None
        now = self._services.clock()
        durations = self.record.stage_durations_s
        durations[self._stage_seen.value] = round(now - self._stage_started_s, 4)
        self._stage_seen = stage
        self._stage_started_s = now
        logs.event(self._services.log, "stage_opened", round=self.number, stage=stage.value)
        if stage is Stage.AGGREGATE:
            failed = self._finish_aggregate()
            if failed:
                return self.take(self.machine.abort(failed))
        elif stage is Stage.DONE:
            return RoundDone(now, ())
        elif stage is Stage.ABORTED:
            return RoundAbortedEvent(now, ())
        elif self._services.records is not None:
            write = partial(self._services.records.stage_opened, self.number, stage)
            self._services.store_write(self.number, "stage_opened", write)
        return StageOpened(stage, now)

    def _finish_aggregate(self) -> str:
        """Finish the sum and store the aggregate; return why that failed ("" if not)."""
        assert self.sum is not None
        outcome = self.machine.outcome
        try:
            self.aggregate = list(self.sum.finish(outcome.correction))
        except RoundAborted as error:  # an aggregation worker was lost
            return f"aggregation failed: {error}"
        records = self._services.records
        if records is not None and not self._services.store_write(
            self.number,
            "aggregate_ready",
            partial(records.aggregate_ready, self.number, outcome, self.aggregate),
        ):
            # Serve no aggregate the store lacks: late members could never catch up.
            self.aggregate = []
            return "storing the aggregate failed"
        return ""

    def close(self, now: float, *, federation_size: int) -> RoundRecord:
        """Write the ended round's record, store row and ledger entry; drop the sum."""
        record = self.record
        record.duration_s = round(now - record.started_s, 4)
        record.outcome = self.machine.stage
        records = self._services.records
        if self.machine.stage is Stage.DONE:
            record.survivors = self.machine.outcome.survivors
            if records is not None:
                # The aggregate is stored and applied: a restart closes the round again.
                evidence = self.machine.outcome.evidence
                write = partial(records.round_done, record, evidence)
                self._services.store_write(self.number, "round_done", write)
        else:
            record.message = self.machine.abort_reason
            if records is not None:
                write = partial(records.round_aborted, record.round, record.message)
                self._services.store_write(self.number, "round_aborted", write)
        self._services.ledger.round_finished(
            self.machine, self.aggregate, federation_size=federation_size
        )
        logs.event(
            self._services.log,
            "round_finished",
            round=record.round,
            stage=record.outcome.value,
            duration_s=record.duration_s,
            stage_durations_s=record.stage_durations_s,
            survivors=list(record.survivors),
            bytes_up=record.bytes_up,
            bytes_down=record.bytes_down,
            reason=record.message,
        )
        self.sum = None
        self.aggregate = []
        return record

    def mark_aborted(self, reason: str) -> None:
        """The round broke while starting or aborting: abort its machine and its store row."""
        self.machine.abort(reason)
        records = self._services.records
        if records is not None:
            write = partial(records.round_aborted, self.number, reason)
            self._services.store_write(self.number, "round_aborted", write)
        self.sum = None
        self.aggregate = []

    # ---- uploads ----

    def check_chunk(self, upload: Upload, chunk: bytes) -> None:
        """Check one chunk of `upload` against the round's vector (nothing is added).

        Raises:
            Oversized: more chunks than the round's vector needs.
            IntegrityError, Malformed: the chunk fails the wire-format checks.
        """
        assert self.sum is not None
        if len(upload.chunks) >= self.sum.chunk_count:
            raise Oversized(
                f"upload from {upload.participant}: more than the "
                f"{self.sum.chunk_count} chunks of round {upload.round}"
            )
        self.sum.check(chunk, index=len(upload.chunks))

    def add_upload(self, upload: Upload, receipt: UploadDone) -> list[CoordinatorMessage]:
        """Give the machine `upload`'s signed receipt, then add its chunks to the sum.

        Returns:
            The machine's replies (the upload stage may have closed).

        Raises:
            BadSignature, Malformed: from the machine's checks; nothing was added.
            RoundAborted: an aggregation worker was lost, and the round's sum with it:
                the caller aborts the round.
        """
        assert self.sum is not None
        self.sum.check_complete(upload.chunks)
        self.sum.stage(upload.chunks)  # the payloads, in the sum workers
        replies = self.machine.receive(receipt)
        self.sum.add(upload.chunks)
        self.record.bytes_up[upload.participant] = upload.bytes
        return replies
