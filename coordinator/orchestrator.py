"""Round orchestration: the one place where the coordinator decides what happens next.

The services (`service.py`) own gRPC and translate messages; this module owns the
federation's lifecycle and drives the round state machine of `accord.crypto.round`:

    ENROLL  wait until every participant enrolled (or `enroll_deadline_s` passed with
            at least `threshold` online), then start round 1
    CEREMONY before a CKKS round that would select a member without the federation's
            key, run a key ceremony among them (`key_ceremony.KeyCeremony`)
    ROUND   select the online participants, build the `RoundConfig`, feed each message
            to `CoordinatorRound`, close a stage when its deadline passes, add uploads to
            the running sum, serve the aggregate until every survivor confirmed that it
            applied it (or the deadline passed), then start the next round
    FINISHED after `rounds` rounds; every task then says so

All protocol decisions (which stage, who may upload, when a stage closes) are made by
`CoordinatorRound`; this driver only supplies time (`clock`, monotonic seconds), the
deadlines and the sum. Every public method is called from gRPC worker threads and holds
one lock; `NextTask` long-polls wait on its condition.

Validate, then mutate: an upload is checked chunk by chunk as it streams in and kept
aside; only when its signed receipt verifies are its chunks added to the sum. A refused
request changes nothing.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from functools import partial

from accord.coordinator.aggregation.round_sum import RoundSum, round_config
from accord.coordinator.aggregation.spool import Spool
from accord.coordinator.aggregation.sum_workers import SumWorkers
from accord.coordinator.config import CoordinatorConfig
from accord.coordinator.federation_ledger import FederationLedger
from accord.coordinator.key_ceremony import KeyCeremony
from accord.coordinator.membership import Membership
from accord.coordinator.records import (
    Assignment,
    Header,
    KeyState,
    RoundRecord,
    SealedKey,
    Status,
    Upload,
)
from accord.coordinator.store.persistence import FederationRecords
from accord.coordinator.terms import check_coordinator_config
from accord.core import logs
from accord.crypto.ceremony import CeremonyKey
from accord.crypto.ckks import PublicContext
from accord.crypto.lifecycle import Lifecycle
from accord.crypto.messages import (
    Aborted,
    AggregateReady,
    CoordinatorMessage,
    ParticipantMessage,
    RoundConfig,
    Stage,
    SurvivorEvidence,
    UploadDone,
)
from accord.crypto.round import CoordinatorRound
from accord.crypto.terms import FederationTerms, check_round_config, required_threshold
from accord.errors import Expired, NotAllowed, OutOfStage, Oversized, RoundAborted

RECENT_ROUNDS = 100
"""How many round summaries `status()` keeps."""
MAX_ATTEMPTS_PER_ROUND = 3
"""A federation gives up after this many round numbers per planned round."""


class Orchestrator:
    """Drives the federation's rounds; thread-safe.

    Args:
        config: the coordinator's settings.
        log: structured logger (see `accord.core.logs`).
        clock: monotonic seconds; injected so tests control deadlines.
        random_bytes: source of the public per-round graph seed.
        identities: each participant's Ed25519 identity public key (from the provisioning
            roster); the config's `identity_keys` when None.
        records: the durable store's side; without it nothing survives a restart.
        sum_workers: the aggregation worker pool (`sum_workers`, closed by the server);
            None sums every round in this process.
    """

    def __init__(
        self,
        config: CoordinatorConfig,
        *,
        log: logging.Logger,
        clock: Callable[[], float] = time.monotonic,
        random_bytes: Callable[[int], bytes] = os.urandom,
        identities: Mapping[str, bytes] | None = None,
        records: FederationRecords | None = None,
        sum_workers: SumWorkers | None = None,
        terms: FederationTerms | None = None,
    ) -> None:
        if terms is not None:
            check_coordinator_config(terms, config)
        self.config = config
        self._terms = terms
        self._sum_workers = sum_workers
        self._log = log
        self._clock = clock
        self._random_bytes = random_bytes
        self._changed = threading.Condition()
        self._members = Membership(config, clock=clock, terms=terms)
        self._lifecycle = Lifecycle.ENROLL
        self._enroll_opened_s = clock()
        self._round_number = 0
        self._round: CoordinatorRound | None = None
        self._sum: RoundSum | None = None
        self._inbox: dict[str, CoordinatorMessage] = {}
        self._aggregate: list[bytes] = []
        self._applied: set[str] = set()
        self._stage_started_s = 0.0
        self._stage_seen: Stage | None = None
        self._record: RoundRecord | None = None
        self._history: list[RoundRecord] = []
        self._rounds_completed = 0
        self._identities = dict(identities) if identities is not None else config.identities()
        self._revoked: frozenset[str] = frozenset()
        self._ceremony = KeyCeremony(
            federation_id=config.federation_id,
            members=self._members,
            log=log,
            with_ckks=config.profile.uses_ckks,
        )
        self._records = records
        self._ledger = FederationLedger(
            config.state_dir, config.federation_id, key_file=config.ledger_key_file
        )
        if records is not None:
            self._resume(records)

    def _resume(self, records: FederationRecords) -> None:
        """Pick up where the store says the federation was (after a restart)."""
        members = records.load_members()
        if members is not None:
            self._members.restore(members)
        self._ceremony.restore(records.load_keys())
        # A round the restart aborts gets its federation ledger entry, saying why.
        resumed = records.resume(
            on_abort=lambda config, reason: self._ledger.round_aborted(
                config, reason, federation_size=len(self._identities)
            )
        )
        self._round_number = resumed.last_round
        self._rounds_completed = resumed.rounds_completed
        self._history = list(resumed.history[-RECENT_ROUNDS:])
        if resumed.aggregate is not None:
            config, outcome = resumed.aggregate
            self._round = CoordinatorRound.resume_aggregate(config, self._identities, outcome)
            self._aggregate = records.aggregate_chunks(config.round)
            # Tell the survivors again that the aggregate is ready (the tasks carry them).
            self._inbox = {
                name: AggregateReady(
                    recipient=name, survivors=outcome.survivors, evidence=outcome.evidence
                )
                for name in outcome.survivors
            }
            self._lifecycle = Lifecycle.ROUND
            self._stage_started_s = self._clock()
            self._stage_seen = Stage.AGGREGATE
            self._record = RoundRecord(
                round=config.round, started_s=self._stage_started_s, selected=config.selected
            )
        elif self._finished():
            self._lifecycle = Lifecycle.FINISHED
        logs.event(
            self._log,
            "resumed",
            round=self._round_number,
            rounds_completed=self._rounds_completed,
            stage=self._round.stage.value if self._round else None,
            key_epoch=self._ceremony.keys.epoch,
        )

    @property
    def identities(self) -> dict[str, bytes]:
        """Each participant's Ed25519 identity public key (read-only use)."""
        return dict(self._identities)

    def admit(self, identities: Mapping[str, bytes]) -> list[str]:
        """Add the participants approved since the start (the roster grew); return them.

        A newcomer is a member like any other from then on: it may enrol, it counts in
        `n_max` of the next round's config, and since it holds no CKKS key yet, the next
        round that selects it starts with a fresh key ceremony. Members already known
        keep their identity key (a changed key needs a restart).
        """
        with self._changed:
            new = {n: bytes(k) for n, k in identities.items() if n not in self._identities}
            if not new:
                return []
            names = sorted(new)
            self._identities.update(new)
            self._members.add(names)
            participants = [*self.config.participants, *names]
            self.config = self.config.model_copy(update={"participants": participants})
            logs.event(self._log, "participants_admitted", participants=names)
            self._changed.notify_all()
            return names

    def revoke(self, revoked: Iterable[str]) -> list[str]:
        """Note members revoked since the start (the roster says so); return the new ones.

        A revoked member is never selected again, and since it holds the current CKKS key,
        the next CKKS round starts with a fresh key ceremony among the rest (the revoked
        member cannot open the new key). The service calls this on every request.
        """
        names = frozenset(revoked)
        if names <= self._revoked:
            return []
        with self._changed:
            new = sorted(names - self._revoked)
            if not new:
                return []
            self._revoked = self._revoked | names
            logs.event(self._log, "participants_revoked", participants=new)
            self._changed.notify_all()
            return new

    # ---- enrolment and liveness ----

    def enroll(
        self,
        header: Header,
        *,
        base_model_hash: str,
        adapter_parameters: int,
        ceremony_key: CeremonyKey | None = None,
    ) -> int:
        """Admit a participant (again, after a restart); return the current round.

        Raises:
            NotAllowed: wrong federation or unknown participant.
            ProtocolError: its base model or adapter size differs from the federation's.
            Malformed: a CKKS profile and no ceremony key to seal the CKKS key to.
            BadSignature: the ceremony key is not signed by the participant's identity key.
        """
        with self._changed:
            self._check_identity(header)
            self._ceremony.check_ceremony_key(
                header.participant,
                ceremony_key,
                identity_public=self._identities[header.participant],
                profile=self.config.profile,
            )
            self._members.enroll(
                header.participant,
                base_model_hash=base_model_hash,
                adapter_parameters=adapter_parameters,
                ceremony_key=ceremony_key,
            )
            if self._records is not None:
                self._records.save_members(self._members.snapshot())
            logs.event(self._log, "enrolled", participant=header.participant)
            self._advance()
            return self._round_number

    def heartbeat(self, header: Header, state: str) -> tuple[int, Stage | None]:
        """Note that a participant is alive and what it is doing."""
        with self._changed:
            self._check_identity(header)
            self._members.seen(header.participant, state=state[:64])
            self._advance()
            return self._round_number, self._round.stage if self._round else None

    def next_task(
        self, header: Header, *, wait_s: float, active: Callable[[], bool] | None = None
    ) -> Assignment:
        """Return the participant's assignment once it differs from what it last saw.

        `header.round` and `header.stage` say what the participant saw last; the call
        returns at once if that is stale, else waits up to `wait_s` for a change. Stage
        DONE for the current round in its aggregate stage says the participant applied
        the aggregate: the round closes once every survivor said so. `active` (the
        call's `is_active`) ends the wait early once the caller has gone, so that its
        long-poll slot (`call_limits.py`) frees at once.
        """
        deadline = self._clock() + max(0.0, min(wait_s, 60.0))
        with self._changed:
            self._check_identity(header)
            self._members.seen(header.participant)
            self._confirm_applied(header)
            while True:
                self._advance()
                task = self._assignment(header.participant)
                # The maker's ceremony task has no round stage of its own, so it would look
                # like the waiting it replaces: it is always news.
                unchanged = (
                    task.round == header.round
                    and task.stage == header.stage
                    and not task.ceremony_keys
                )
                remaining = deadline - self._clock()
                gone = active is not None and not active()
                if not unchanged or remaining <= 0 or gone or task.lifecycle is Lifecycle.FINISHED:
                    return self._ledger.stamp(task)
                self._changed.wait(timeout=min(remaining, 0.5))

    # ---- key ceremony ----

    def post_ceremony(
        self, header: Header, *, key_epoch: int, public: bytes, sealed: Mapping[str, SealedKey]
    ) -> None:
        """Take the maker's new CKKS key: the public context and one envelope per recipient.

        Raises:
            OutOfStage: no ceremony is running, or `header`'s sender is not its maker.
            Malformed: wrong epoch, wrong recipients, or a public context that does not load.
        """
        with self._changed:
            self._check_identity(header)
            if (
                self._lifecycle is not Lifecycle.CEREMONY
                or header.participant != self._ceremony.maker
            ):
                raise OutOfStage(f"{header.participant} is not running a key ceremony now")
            keys = self._ceremony.accept(key_epoch=key_epoch, public=public, sealed=sealed)
            if self._records is not None:
                self._records.save_keys(keys)
            self._ceremony.log_done()
            self._lifecycle = Lifecycle.IDLE
            self._begin(self._ceremony.recipients)
            self._changed.notify_all()

    def fetch_ceremony(self, header: Header) -> tuple[KeyState, SealedKey | None]:
        """The current key's public parts and the envelope sealed to `header`'s sender."""
        with self._changed:
            self._check_identity(header)
            return self._ceremony.envelope_for(header.participant)

    # ---- the masking stages ----

    def receive(self, header: Header, message: ParticipantMessage) -> None:
        """Feed a participant's signed round message to the round machine.

        Raises:
            OutOfStage, NotAllowed, Replayed, BadSignature, Malformed: from the checks of
                `CoordinatorRound.receive`; nothing changes.
        """
        with self._changed:
            current = self._current_round(header, message.stage)
            replies = current.receive(message)
            logs.event(
                self._log,
                "message_received",
                round=header.round,
                stage=message.stage.value,
                participant=header.participant,
            )
            self._deliver(replies)

    # ---- uploads ----

    def open_upload(self, header: Header) -> Upload:
        """Check that `header`'s sender may upload now; nothing changes.

        Raises:
            NotAllowed, OutOfStage, Replayed: see `CoordinatorRound.may_upload`.
        """
        with self._changed:
            current = self._current_round(header, Stage.UPLOAD)
            current.may_upload(header.participant)
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
            self._current_round(header, Stage.UPLOAD)
            assert self._sum is not None
            if len(upload.chunks) >= self._sum.chunk_count:
                raise Oversized(
                    f"upload from {upload.participant}: more than the "
                    f"{self._sum.chunk_count} chunks of round {upload.round}"
                )
            self._sum.check(chunk, index=len(upload.chunks))
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
            current = self._current_round(header, Stage.UPLOAD)
            assert self._sum is not None
            digest = upload.digest.digest()
            receipt = UploadDone(
                sender=upload.participant,
                digest=digest,
                chunk_count=len(upload.chunks),
                sequence=header.sequence,
                signature=header.signature,
            )
            self._sum.check_complete(upload.chunks)
            try:
                self._sum.stage(upload.chunks)  # the payloads, in the sum workers
            except RoundAborted as error:
                self._deliver(current.abort(f"aggregation failed: {error}"))
                raise
            replies = current.receive(receipt)
            try:
                self._sum.add(upload.chunks)
            except RoundAborted as error:
                # An aggregation worker was lost, and the round's sum with it.
                self._deliver(current.abort(f"aggregation failed: {error}"))
                raise
            self._ledger.note_upload(upload.round, upload.participant, digest)
            self._members.add_bytes(upload.participant, up=upload.bytes)
            assert self._record is not None
            self._record.bytes_up[upload.participant] = upload.bytes
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
            current = self._round
            if current is not None and header.round == self._round_number:
                if current.stage is Stage.AGGREGATE:
                    return current.config, list(self._aggregate), current.outcome.evidence
                if current.stage is Stage.ABORTED:
                    raise RoundAborted(f"round {header.round} was aborted: no aggregate")
                if current.stage is not Stage.DONE:
                    raise OutOfStage(
                        f"round {header.round} is in stage {current.stage.value}; its aggregate "
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
        applied the aggregate (`next_task` with stage DONE), so that a coordinator killed
        while the last bytes are on their way still holds the aggregate after a restart.
        """
        with self._changed:
            if self._round is None or header.round != self._round_number:
                return
            self._members.add_bytes(header.participant, down=sent_bytes)
            assert self._record is not None
            self._record.bytes_down[header.participant] = sent_bytes
            logs.event(
                self._log,
                "aggregate_sent",
                round=header.round,
                stage=Stage.AGGREGATE.value,
                participant=header.participant,
                bytes=sent_bytes,
            )
            self._changed.notify_all()

    def _confirm_applied(self, header: Header) -> None:
        """Note a survivor that says it applied the aggregate; close the round after the last.

        A participant says so by polling `NextTask` with stage DONE for the current round.
        Anything else a header names is only what its sender saw last.
        """
        current = self._round
        if (
            header.stage is not Stage.DONE
            or current is None
            or header.round != self._round_number
            or current.stage is not Stage.AGGREGATE
            or header.participant not in current.outcome.survivors
            or header.participant in self._applied
        ):
            return
        self._applied.add(header.participant)
        logs.event(
            self._log,
            "aggregate_applied",
            round=header.round,
            stage=Stage.AGGREGATE.value,
            participant=header.participant,
        )
        if self._applied >= set(current.outcome.survivors):
            self._deliver(current.close_stage())

    # ---- time ----

    def tick(self) -> None:
        """Close stages whose deadline passed and start rounds that may start."""
        with self._changed:
            self._advance()

    def status(self) -> Status:
        """A consistent snapshot of the federation for displays."""
        with self._changed:
            self._advance()
            return Status(
                lifecycle=self._lifecycle,
                round=self._round_number,
                stage=self._round.stage if self._round else None,
                rounds_completed=self._rounds_completed,
                rounds_planned=self.config.rounds,
                members=self._members.rows(),
                recent_rounds=tuple(self._history[-RECENT_ROUNDS:]),
            )

    # ---- checks (never mutate) ----

    def _check_identity(self, header: Header) -> None:
        if header.federation_id != self.config.federation_id:
            raise NotAllowed(
                f"federation {header.federation_id!r} is not served here "
                f"(this is {self.config.federation_id!r})"
            )
        if header.participant not in self._identities:
            raise NotAllowed(f"{header.participant!r} is not a participant of this federation")

    def _check_member(self, header: Header) -> None:
        """Refuse (`NotAllowed`) a sender that is not an enrolled member of this federation."""
        self._check_identity(header)
        if not self._members.is_enrolled(header.participant):
            raise NotAllowed(f"{header.participant} has not enrolled")

    def _current_round(self, header: Header, stage: Stage) -> CoordinatorRound:
        self._check_member(header)
        if header.stage is not stage:
            named = header.stage.value if header.stage else "no stage"
            raise OutOfStage(f"a {stage.value} request whose header names {named}")
        if self._round is None or header.round != self._round_number:
            raise OutOfStage(
                f"{stage.value} for round {header.round} refused: the federation is in round "
                f"{self._round_number} ({self._lifecycle.value})"
            )
        if self._round.stage is not stage:
            raise OutOfStage(
                f"{stage.value} for round {header.round} refused: the round is in "
                f"{self._round.stage.value}"
            )
        return self._round

    # ---- transitions ----

    def _assignment(self, name: str) -> Assignment:
        if self._lifecycle is Lifecycle.CEREMONY:
            return self._ceremony.task(name, round_number=self._round_number)
        if self._lifecycle is Lifecycle.FINISHED:
            return Assignment(
                Lifecycle.FINISHED,
                self._round_number,
                None,
                message=f"federation finished after {self._round_number} rounds",
            )
        if self._round is None or name not in self._round.config.selected:
            why = "waiting for participants" if self._round is None else "not selected"
            return Assignment(self._lifecycle, self._round_number, None, message=why)
        stage = self._round.stage
        if stage is Stage.DONE:
            return Assignment(
                self._lifecycle, self._round_number, None, message="waiting for the next round"
            )
        if stage is Stage.AGGREGATE and name in self._applied:
            return Assignment(
                self._lifecycle,
                self._round_number,
                None,
                message="waiting for the others to apply the aggregate",
            )
        inbox = self._inbox.get(name)
        survivors = inbox.survivors if isinstance(inbox, AggregateReady) else ()
        message = inbox.reason if isinstance(inbox, Aborted) else ""
        return Assignment(
            Lifecycle.ROUND,
            self._round_number,
            stage,
            self._round.config,
            survivors,
            message,
            inbox=inbox,
            key_epoch=self._ceremony.keys.epoch,
        )

    def _advance(self) -> None:
        """`_transitions`; a step that fails aborts its round, the federation goes on."""
        try:
            self._transitions()
        except Exception as error:
            self._abort_failed_step(error)

    def _abort_failed_step(self, error: Exception) -> None:
        """Abort the round whose step raised `error`, so that memory and store agree.

        A failure inside a running round aborts it through the round machine; one while
        a round was being started marks that round aborted. Either way the lifecycle
        leaves the broken step: the next round is tried (at most `MAX_ATTEMPTS_PER_ROUND`
        numbers per planned round), and calls keep being answered.
        """
        reason = f"the coordinator failed: {type(error).__name__}: {error}"
        logs.event(
            self._log, "step_failed", round=self._round_number, reason=reason, level=logging.ERROR
        )
        current = self._round
        if current is None or current.stage in (Stage.DONE, Stage.ABORTED):
            if self._lifecycle is Lifecycle.ROUND:
                self._lifecycle = Lifecycle.IDLE
            return
        if self._lifecycle is Lifecycle.ROUND and self._record is not None:
            try:
                self._deliver(current.abort(reason))
                return
            except Exception as again:
                reason = f"{reason}; then {type(again).__name__}: {again}"
        # Failed while the round was being started, or while it was being aborted.
        current.abort(reason)
        self._store_write("round_aborted", partial(self._records_round_aborted, current, reason))
        self._sum = None
        self._aggregate = []
        self._lifecycle = Lifecycle.FINISHED if self._finished() else Lifecycle.IDLE
        self._enroll_opened_s = self._clock()
        self._changed.notify_all()

    def _records_round_aborted(self, current: CoordinatorRound, reason: str) -> None:
        if self._records is not None:
            self._records.round_aborted(current.config.round, reason)

    def _store_write(self, what: str, write: Callable[[], None]) -> bool:
        """Run one store write; a failure (e.g. a full disk) is logged and answers False."""
        try:
            write()
        except Exception as error:
            logs.event(
                self._log,
                "store_write_failed",
                round=self._round_number,
                write=what,
                reason=f"{type(error).__name__}: {error}",
                level=logging.ERROR,
            )
            return False
        return True

    def _transitions(self) -> None:
        """Apply every transition that time or membership now allows."""
        now = self._clock()
        current = self._round
        if (
            current is not None
            and current.stage not in (Stage.DONE, Stage.ABORTED)
            and now - self._stage_started_s >= self.config.stage_deadline_s
        ):
            logs.event(
                self._log,
                "stage_deadline",
                round=self._round_number,
                stage=current.stage.value,
                level=logging.WARNING,
            )
            self._deliver(current.close_stage())
        if self._lifecycle in (Lifecycle.ENROLL, Lifecycle.IDLE):
            online = self._members.online()
            everyone = len(online) == len(self.config.participants)
            waited = now - self._enroll_opened_s >= self.config.enroll_deadline_s
            if len(online) >= self._least_cohort() and (everyone or waited):
                self._begin(tuple(sorted(online)))
        elif self._lifecycle is Lifecycle.CEREMONY and self._ceremony.overdue(
            now, deadline_s=self.config.stage_deadline_s
        ):
            # The maker went silent: let the next online participant make the key.
            others = self._ceremony.abandon()
            self._lifecycle = Lifecycle.IDLE
            if len(others) >= self.config.threshold:
                self._start_ceremony(others)

    def _finished(self) -> bool:
        """Done after `rounds` completed rounds; aborted ones are retried, up to a limit."""
        attempts = self.config.rounds * MAX_ATTEMPTS_PER_ROUND
        return self._rounds_completed >= self.config.rounds or self._round_number >= attempts

    def _least_cohort(self) -> int:
        """Fewest online members a round starts with (the signed terms' min_cohort too)."""
        if self._terms is None:
            return self.config.threshold
        return max(self.config.threshold, self._terms.min_cohort)

    def _begin(self, selected: tuple[str, ...]) -> None:
        """Start a round with `selected`, after a key ceremony when some lack the key.

        Every secure profile needs one: the ceremony's secret holds the integrity key
        (and, for CKKS, the CKKS key). Revoked members are left out; if one of them holds
        the current key, the key is made anew among the rest first.
        """
        selected = tuple(name for name in selected if name not in self._revoked)
        if len(selected) < self._least_cohort():
            return
        stale = bool(self._ceremony.keys.holders & self._revoked)
        if self.config.profile.is_secure and (stale or not self._ceremony.all_hold_key(selected)):
            self._start_ceremony(selected)
        else:
            self._start_round(selected)

    def _start_ceremony(self, members: tuple[str, ...]) -> None:
        self._lifecycle = Lifecycle.CEREMONY
        self._ceremony.start(members, now=self._clock())
        self._changed.notify_all()

    def _start_round(self, selected: tuple[str, ...]) -> None:
        self._round_number += 1
        settings = self.config
        if self._terms is not None:
            # t > n/2 of the selected cohort, and never below the signed threshold.
            least = required_threshold(self._terms, len(selected))
            settings = settings.model_copy(update={"threshold": max(settings.threshold, least)})
        config = round_config(
            settings,
            round=self._round_number,
            selected=selected,
            element_count=self._members.element_count(),
            graph_seed=self._random_bytes(32),
            key_epoch=self._ceremony.keys.epoch,
        )
        if self._terms is not None:
            check_round_config(self._terms, config, source="this coordinator's config")
        self._round = CoordinatorRound(config, self._identities)
        if self._records is not None:
            self._records.round_started(config)
        keys = self._ceremony.keys
        public = PublicContext.from_bytes(keys.public) if config.profile.uses_ckks else None
        self._sum = RoundSum(
            config,
            public=public,
            max_chunk_bytes=self.config.max_message_bytes,
            workers=self._sum_workers,
        )
        if self._sum.fallback_reason:
            logs.event(
                self._log,
                "aggregation_workers_unavailable",
                round=self._round_number,
                reason=self._sum.fallback_reason,
                level=logging.WARNING,
            )
        self._inbox = {}
        self._aggregate = []
        self._applied = set()
        self._lifecycle = Lifecycle.ROUND
        self._stage_started_s = self._clock()
        self._stage_seen = self._round.stage
        self._record = RoundRecord(
            round=self._round_number, started_s=self._stage_started_s, selected=selected
        )
        logs.event(
            self._log,
            "round_started",
            round=self._round_number,
            stage=self._round.stage.value,
            selected=list(selected),
            profile=config.profile.value,
            element_count=config.element_count,
            aggregation_workers=self._sum.workers,
        )
        self._changed.notify_all()

    def _deliver(self, replies: list[CoordinatorMessage]) -> None:
        """Take the round machine's output after a transition; start what follows."""
        assert self._round is not None and self._record is not None
        for reply in replies:
            self._inbox[reply.recipient] = reply
        stage = self._round.stage
        if stage is not self._stage_seen:
            now = self._clock()
            durations = self._record.stage_durations_s
            if self._stage_seen is not None:
                durations[self._stage_seen.value] = round(now - self._stage_started_s, 4)
            self._stage_seen = stage
            self._stage_started_s = now
            logs.event(self._log, "stage_opened", round=self._round_number, stage=stage.value)
            if stage is Stage.AGGREGATE:
                assert self._sum is not None
                outcome = self._round.outcome
                try:
                    self._aggregate = list(self._sum.finish(outcome.correction))
                except RoundAborted as error:  # an aggregation worker was lost
                    self._deliver(self._round.abort(f"aggregation failed: {error}"))
                    return
                records = self._records
                if records is not None and not self._store_write(
                    "aggregate_ready",
                    partial(records.aggregate_ready, self._round_number, outcome, self._aggregate),
                ):
                    # Serve no aggregate the store lacks: late members could never catch up.
                    self._aggregate = []
                    self._deliver(self._round.abort("storing the aggregate failed"))
                    return
            elif stage in (Stage.DONE, Stage.ABORTED):
                self._finish_round(now)
            elif self._records is not None:
                records, number = self._records, self._round_number
                self._store_write("stage_opened", partial(records.stage_opened, number, stage))
        self._changed.notify_all()

    def _finish_round(self, now: float) -> None:
        assert self._round is not None and self._record is not None
        record = self._record
        record.duration_s = round(now - record.started_s, 4)
        record.outcome = self._round.stage
        if self._round.stage is Stage.DONE:
            record.survivors = self._round.outcome.survivors
            self._rounds_completed += 1
            records = self._records
            if records is not None:
                # The aggregate is stored and applied: a restart closes the round again.
                self._store_write(
                    "round_done",
                    partial(records.round_done, record, self._round.outcome.evidence),
                )
        else:
            reason = self._round.abort_reason
            records = self._records
            if records is not None:
                self._store_write(
                    "round_aborted", partial(records.round_aborted, record.round, reason)
                )
            record.message = self._round.abort_reason
        self._ledger.round_finished(
            self._round, self._aggregate, federation_size=len(self._identities)
        )
        self._history.append(record)
        del self._history[:-RECENT_ROUNDS]
        logs.event(
            self._log,
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
        self._sum = None
        self._aggregate = []
        if self._finished():
            self._lifecycle = Lifecycle.FINISHED
            logs.event(self._log, "federation_finished", rounds=self._round_number)
            return
        # The next round starts at once when enough participants are online.
        self._lifecycle = Lifecycle.IDLE
        self._enroll_opened_s = now
        online = self._members.online()
        if len(online) >= self._least_cohort():
            self._begin(tuple(sorted(online)))
