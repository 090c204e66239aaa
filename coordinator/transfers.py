"""The bulk transfers of a round: uploads streaming in, the aggregate going out.

A mixin of `orchestrator.Orchestrator` (it shares its lock, its current `RoundRun` and its
checks). Validate, then mutate: an upload is checked chunk by chunk as it streams in and
kept aside; only when its signed receipt verifies are its chunks added to the sum. A
refused request changes nothing. Whether an upload or a download is allowed is the
round machine's decision (`CoordinatorRound.may_upload`, its stage); so is the end of
the aggregate stage once every survivor applied the aggregate (`CoordinatorRound.applied`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from accord.coordinator.aggregation.spool import Spool
from accord.coordinator.config import CoordinatorConfig
from accord.coordinator.federation_ledger import FederationLedger
from accord.coordinator.membership import Membership
from accord.coordinator.records import Upload
from accord.coordinator.round_run import RoundRun
from accord.coordinator.store.persistence import FederationRecords
from accord.core import logs
from accord.crypto.lifecycle import LifecycleState
from accord.crypto.messages import (
    CoordinatorMessage,
    RoundConfig,
    Stage,
    SurvivorEvidence,
    UploadDone,
)
from accord.errors import Expired, NotAllowed, OutOfStage, Replayed, RoundAborted
from accord.wire.headers import Header


class Transfers:
    """Uploads and aggregate downloads; mixed into `Orchestrator`, under its lock."""

    config: CoordinatorConfig
    _changed: threading.Condition
    _clock: Callable[[], float]
    _log: logging.Logger
    _members: Membership
    _ledger: FederationLedger
    _records: FederationRecords | None
    _run: RoundRun | None
    _state: LifecycleState

    if TYPE_CHECKING:

        def _check_member(self, header: Header) -> None: ...

        def _current_run(self, header: Header, stage: Stage) -> RoundRun: ...

        def _deliver(self, replies: list[CoordinatorMessage]) -> None: ...

    # ---- uploads ----

    def open_upload(self, header: Header) -> Upload:
        """Check that `header`'s sender may upload now; nothing changes.

        Raises:
            NotAllowed, OutOfStage, Replayed: see `CoordinatorRound.may_upload`.
        """
        with self._changed:
            run = self._current_run(header, Stage.UPLOAD)
            run.machine.may_upload(header.participant)
            return Upload(
                participant=header.participant,
                round=header.round,
                chunks=Spool(self.config.state_dir / "spool"),
                started_s=self._clock(),
            )

    def take_chunk(self, upload: Upload, header: Header, chunk: bytes) -> None:
        """Check one chunk of `upload` and keep it aside (the sum is not touched).

        Raises:
            Oversized: more chunks or bytes than the round's vector needs.
            IntegrityError, Malformed: the chunk fails the wire-format checks.
        """
        with self._changed:
            if header.participant != upload.participant or header.round != upload.round:
                raise NotAllowed(
                    "every chunk of an upload must name the same participant and round"
                )
            self._current_run(header, Stage.UPLOAD).check_chunk(upload, chunk)
        upload.chunks.append(chunk)
        upload.digest.update(chunk)
        upload.bytes += len(chunk)

    def finish_upload(self, upload: Upload, header: Header) -> bytes:
        """Verify the signed receipt in the last chunk's header, then add the upload.

        Returns:
            The SHA-256 digest over the chunks, in order.

        Raises:
            BadSignature: the receipt's signature does not verify; nothing was added.
            Malformed: the upload is incomplete.
        """
        with self._changed:
            run = self._current_run(header, Stage.UPLOAD)
            digest = upload.digest.digest()
            receipt = UploadDone(
                sender=upload.participant,
                digest=digest,
                chunk_count=len(upload.chunks),
                sequence=header.sequence,
                signature=header.signature,
            )
            try:
                replies = run.add_upload(upload, receipt)
            except RoundAborted as error:
                # An aggregation worker was lost, and the round's sum with it.
                self._deliver(run.machine.abort(f"aggregation failed: {error}"))
                raise
            self._ledger.note_upload(upload.round, upload.participant, digest)
            self._members.add_bytes(upload.participant, up=upload.bytes)
            logs.event(
                self._log,
                "upload_received",
                round=upload.round,
                stage=Stage.UPLOAD.value,
                participant=upload.participant,
                bytes=upload.bytes,
                chunks=len(upload.chunks),
                duration_s=round(self._clock() - upload.started_s, 4),
            )
            upload.chunks.close()  # added in: the coordinator keeps no per-participant upload
            self._deliver(replies)
            self._changed.notify_all()
            return digest

    # ---- aggregate download ----

    def aggregate_for(
        self, header: Header
    ) -> tuple[RoundConfig, Iterable[bytes], SurvivorEvidence | None]:
        """Round `header.round`'s config, aggregate and signed survivor set, for any member.

        The current round's while it serves its aggregate; a finished round's from the
        store while it is kept (`keep_aggregates`). Members whose update is not in the
        sum (not selected, dropped, restarted) download it too, so that every member's
        global adapter stays the same: the aggregate is ciphertext under the federation's
        key in the CKKS profiles, and the coordinator's to see in `masks` anyway.

        Raises:
            NotAllowed: the sender is not an enrolled member.
            OutOfStage: the round has no aggregate yet (or was never begun).
            RoundAborted: the round was aborted.
            Expired: the round's aggregate is no longer kept.
        """
        with self._changed:
            self._check_member(header)
            run = self._run
            if run is not None and header.round == run.number:
                if run.stage is Stage.AGGREGATE:
                    evidence = run.machine.outcome.evidence
                    return run.machine.config, list(run.aggregate), evidence
                if run.stage is Stage.ABORTED:
                    raise RoundAborted(f"round {header.round} was aborted: no aggregate")
                if run.stage is not Stage.DONE:
                    raise OutOfStage(
                        f"round {header.round} is in stage {run.stage.value}; its aggregate "
                        "is not ready"
                    )
            if self._records is None:
                raise Expired(
                    f"round {header.round} is not the current round and this coordinator "
                    "keeps no store"
                )
            return self._records.finished_aggregate(header.round)

    def download_done(self, header: Header, sent_bytes: int) -> None:
        """Record that the aggregate went out to a survivor (its bytes, for the summary).

        Sent is not received: the round closes only once each survivor confirmed that it
        applied the aggregate (`applied`), so that a coordinator killed while the last
        bytes are on their way still holds the aggregate after a restart.
        """
        with self._changed:
            run = self._run
            if run is None or header.round != run.number:
                return
            self._members.add_bytes(header.participant, down=sent_bytes)
            run.record.bytes_down[header.participant] = sent_bytes
            logs.event(
                self._log,
                "aggregate_sent",
                round=header.round,
                stage=Stage.AGGREGATE.value,
                participant=header.participant,
                bytes=sent_bytes,
            )
            self._changed.notify_all()

    def applied(self, header: Header) -> None:
        """Note that `header`'s sender applied round `header.round`'s aggregate (`ConfirmApplied`).

        The round machine ends the aggregate stage after the last survivor. A notice the
        machine has no use for (a round that already closed, a member whose update is not
        in the sum, a repeat after a restart) changes nothing and is no error: the member
        did apply the aggregate.

        Raises:
            NotAllowed: the sender is not an enrolled member.
            OutOfStage: the header does not name the aggregate stage.
        """
        with self._changed:
            self._check_member(header)
            if header.stage is not Stage.AGGREGATE:
                named = header.stage.value if header.stage else "no stage"
                raise OutOfStage(f"an applied aggregate whose header names {named}")
            self._members.seen(header.participant)
            self._note_applied(header)
            self._changed.notify_all()

    def _note_applied(self, header: Header) -> None:
        run = self._run
        if run is None or header.round != run.number:
            return
        try:
            replies = run.machine.applied(header.participant)
        except (NotAllowed, OutOfStage, Replayed):
            return
        logs.event(
            self._log,
            "aggregate_applied",
            round=header.round,
            stage=Stage.AGGREGATE.value,
            participant=header.participant,
        )
        self._deliver(replies)
