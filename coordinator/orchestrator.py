"""Round orchestration: the driver that carries out the federation's machines.

The services (`service.py`) own gRPC and translate messages; this module owns the I/O
around two pure machines and makes no protocol decision of its own:

    `accord.crypto.lifecycle`  the federation's lifecycle (ENROLL, CEREMONY, IDLE, ROUND,
                               FINISHED): when a round or a key ceremony starts, when a
                               stage ran past its deadline, when the federation is done
    `accord.crypto.round`      the stages of one round (`CoordinatorRound`)

The driver feeds the lifecycle machine events (`Tick` with the time and the online
members, `CeremonyPosted`, the round's `StageOpened`/`RoundDone`/`RoundAborted`, ...),
keeps the state it returns, and carries out its effects (`StartCeremony`, `StartRound`,
`CloseStage`, ...). It supplies time (`clock`, monotonic seconds), the store, the logs,
the key ceremony (`key_ceremony.KeyCeremony`) and the running sum (`round_run.RoundRun`);
uploads and downloads are in `transfers.py`. Every public method is called from gRPC
worker threads and holds one lock; `NextTask` long-polls wait on its condition.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping

from accord.coordinator.aggregation.sum_workers import SumWorkers
from accord.coordinator.config import CoordinatorConfig
from accord.coordinator.federation_ledger import FederationLedger
from accord.coordinator.key_ceremony import KeyCeremony
from accord.coordinator.lifecycle_driver import LifecycleDriver
from accord.coordinator.membership import Membership
from accord.coordinator.records import KeyState
from accord.coordinator.round_run import RECENT_ROUNDS, RoundRun, RoundServices
from accord.coordinator.store.persistence import FederationRecords
from accord.coordinator.terms import check_coordinator_config
from accord.coordinator.transfers import Transfers
from accord.core import logs
from accord.crypto.ceremony import CeremonyKey
from accord.crypto.lifecycle import (
    Lifecycle,
    LifecycleRules,
    LifecycleState,
    step,
)
from accord.crypto.lifecycle_events import (
    Admitted,
    CeremonyPosted,
    Resumed,
    Revoked,
)
from accord.crypto.messages import (
    ParticipantMessage,
    Stage,
)
from accord.crypto.round import CoordinatorRound
from accord.crypto.terms import FederationTerms
from accord.errors import NotAllowed, OutOfStage
from accord.wire.ceremony import SealedKey
from accord.wire.headers import Header
from accord.wire.status import RoundRecord, Status
from accord.wire.tasks import Assignment


class Orchestrator(LifecycleDriver, Transfers):
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
        self._rules = LifecycleRules(
            rounds=config.rounds,
            threshold=config.threshold,
            least_cohort=max(config.threshold, terms.min_cohort if terms else 0),
            enroll_deadline_s=config.enroll_deadline_s,
            stage_deadline_s=config.stage_deadline_s,
            secure=config.profile.is_secure,
        )
        self._state = LifecycleState(members=len(config.participants), waiting_since_s=clock())
        self._run: RoundRun | None = None
        self._history: list[RoundRecord] = []
        self._identities = dict(identities) if identities is not None else config.identities()
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
        self._services = RoundServices(log=log, records=records, ledger=self._ledger, clock=clock)
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
        self._history = list(resumed.history[-RECENT_ROUNDS:])
        if resumed.aggregate is not None:
            config, outcome = resumed.aggregate
            machine = CoordinatorRound.resume_aggregate(config, self._identities, outcome)
            chunks = records.aggregate_chunks(config.round)
            self._run = RoundRun.resumed(machine, self._services, chunks, outcome)
        self._apply(
            Resumed(
                now=self._clock(),
                last_round=resumed.last_round,
                rounds_completed=resumed.rounds_completed,
                key_holders=self._ceremony.keys.holders,
                aggregate_pending=resumed.aggregate is not None,
            )
        )
        logs.event(
            self._log,
            "resumed",
            round=self._state.round,
            rounds_completed=self._state.rounds_completed,
            stage=self._run.stage.value if self._run else None,
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
            self._feed(Admitted(tuple(names)))
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
        if names <= self._state.revoked:
            return []
        with self._changed:
            new = sorted(names - self._state.revoked)
            if not new:
                return []
            self._feed(Revoked(tuple(new)))
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
            return self._state.round

    def heartbeat(self, header: Header, state: str) -> tuple[int, Stage | None]:
        """Note that a participant is alive and what it is doing."""
        with self._changed:
            self._check_identity(header)
            self._members.seen(header.participant, state=state[:64])
            self._advance()
            return self._state.round, self._run.stage if self._run else None

    def next_task(
        self, header: Header, *, wait_s: float, active: Callable[[], bool] | None = None
    ) -> Assignment:
        """Return the participant's assignment once it differs from what it last saw.

        `header.round` and `header.stage` say what the participant saw last; the call
        returns at once if that is stale, else waits up to `wait_s` for a change. A member
        says that it applied an aggregate with `applied`, never here. `active` (the call's
        `is_active`) ends the wait early once the caller has gone, so that its long-poll
        slot (`call_limits.py`) frees at once.
        """
        deadline = self._clock() + max(0.0, min(wait_s, 60.0))
        with self._changed:
            self._check_identity(header)
            self._members.seen(header.participant)
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
            # Ask the machine first: a refused key changes nothing.
            state, effects = step(
                self._state, CeremonyPosted(header.participant, self._clock()), self._rules
            )
            keys = self._ceremony.accept(key_epoch=key_epoch, public=public, sealed=sealed)
            if self._records is not None:
                self._records.save_keys(keys)
            self._ceremony.log_done()
            self._state = state
            self._carry_out(effects)
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
            run = self._current_run(header, message.stage)
            replies = run.machine.receive(message)
            logs.event(
                self._log,
                "message_received",
                round=header.round,
                stage=message.stage.value,
                participant=header.participant,
            )
            self._deliver(replies)

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
                lifecycle=self._state.lifecycle,
                round=self._state.round,
                stage=self._run.stage if self._run else None,
                rounds_completed=self._state.rounds_completed,
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

    def _current_run(self, header: Header, stage: Stage) -> RoundRun:
        self._check_member(header)
        if header.stage != stage:  # `is not` would narrow `stage` to Optional for mypy
            named = header.stage.value if header.stage else "no stage"
            raise OutOfStage(f"a {stage.value} request whose header names {named}")
        run = self._run
        if run is None or header.round != self._state.round or run.number != header.round:
            raise OutOfStage(
                f"{stage.value} for round {header.round} refused: the federation is in round "
                f"{self._state.round} ({self._state.lifecycle.value})"
            )
        if run.stage is not stage:
            raise OutOfStage(
                f"{stage.value} for round {header.round} refused: the round is in {run.stage.value}"
            )
        return run
