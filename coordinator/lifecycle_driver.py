"""The orchestrator's side of the lifecycle machine: feed it events, carry out its effects.

A mixin of `orchestrator.Orchestrator` (it shares its lock and state). `_advance` feeds
a `Tick` with the time and the online members; `_deliver` takes the round machine's
replies and feeds the stage changes they bring (`RoundRun.take`); `_carry_out` does what
the machine's effects ask: open a key ceremony, start a round (its config, machine and
running sum), close a stage past its deadline, abort a round, log the end. A step that
raises is reported to the machine as `StepFailed`, which aborts the broken round so
that memory and store agree and the federation goes on. What each member should do
now (`_assignment`) is read from the two machines' states.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace

from accord.coordinator.aggregation.round_sum import RoundSum, round_config
from accord.coordinator.aggregation.sum_workers import SumWorkers
from accord.coordinator.config import CoordinatorConfig
from accord.coordinator.key_ceremony import KeyCeremony
from accord.coordinator.membership import Membership
from accord.coordinator.round_run import RECENT_ROUNDS, RoundRun, RoundServices
from accord.core import logs
from accord.crypto.ckks import PublicContext
from accord.crypto.lifecycle import (
    Lifecycle,
    LifecycleRules,
    LifecycleState,
    step,
)
from accord.crypto.lifecycle_events import (
    AbortRound,
    CeremonyOpened,
    CloseStage,
    Effect,
    Event,
    FinishFederation,
    MarkRoundAborted,
    PassOverMaker,
    StageOpened,
    StartCeremony,
    StartRound,
    StepFailed,
    Tick,
)
from accord.crypto.messages import Aborted, AggregateReady, CoordinatorMessage, Stage
from accord.crypto.round import CoordinatorRound
from accord.crypto.terms import FederationTerms, check_round_config, required_threshold
from accord.wire.status import RoundRecord
from accord.wire.tasks import Assignment


class LifecycleDriver:
    """Feeds the lifecycle machine and carries out its effects; mixed into `Orchestrator`."""

    config: CoordinatorConfig
    _changed: threading.Condition
    _clock: Callable[[], float]
    _random_bytes: Callable[[int], bytes]
    _log: logging.Logger
    _members: Membership
    _ceremony: KeyCeremony
    _identities: dict[str, bytes]
    _terms: FederationTerms | None
    _sum_workers: SumWorkers | None
    _services: RoundServices
    _rules: LifecycleRules
    _state: LifecycleState
    _run: RoundRun | None
    _history: list[RoundRecord]

    # ---- feeding the machine ----

    def _apply(self, event: Event) -> tuple[Effect, ...]:
        """Step the machine; keep its new state (a refusal raises and keeps the old one)."""
        self._state, effects = step(self._state, event, self._rules)
        return effects

    def _feed(self, event: Event) -> None:
        """Step the machine and carry out its effects."""
        self._carry_out(self._apply(event))

    def _online(self) -> tuple[str, ...]:
        return tuple(self._members.online())

    def _advance(self) -> None:
        """Tell the machine the time and who is online; do what it says."""
        self._feed(Tick(self._clock(), self._online()))

    def _carry_out(self, effects: tuple[Effect, ...]) -> None:
        """Do what the machine's effects ask; a step that raises is reported to it."""
        for effect in effects:
            try:
                self._carry_out_one(effect)
            except Exception as error:
                self._step_failed(f"the coordinator failed: {type(error).__name__}: {error}")
                return
        self._changed.notify_all()

    def _carry_out_one(self, effect: Effect) -> None:
        if isinstance(effect, StartCeremony):
            self._ceremony.start(effect.members, now=self._clock())
            self._apply(CeremonyOpened(self._ceremony.maker))
        elif isinstance(effect, PassOverMaker):
            self._ceremony.abandon()
        elif isinstance(effect, StartRound):
            self._start_round(effect)
        elif isinstance(effect, CloseStage):
            assert self._run is not None and self._run.number == effect.round
            logs.event(
                self._log,
                "stage_deadline",
                round=effect.round,
                stage=effect.stage.value,
                level=logging.WARNING,
            )
            self._deliver(self._run.machine.close_stage())
        elif isinstance(effect, AbortRound):
            self._abort_round(effect)
        elif isinstance(effect, MarkRoundAborted):
            if self._run is not None and self._run.number == effect.round:
                self._run.mark_aborted(effect.reason)
        elif isinstance(effect, FinishFederation):
            logs.event(self._log, "federation_finished", rounds=effect.rounds)

    def _step_failed(self, reason: str, *, abort_failed: bool = False) -> None:
        logs.event(
            self._log, "step_failed", round=self._state.round, reason=reason, level=logging.ERROR
        )
        self._feed(StepFailed(self._clock(), reason, abort_failed=abort_failed))

    def _abort_round(self, effect: AbortRound) -> None:
        assert self._run is not None and self._run.number == effect.round
        try:
            self._deliver(self._run.machine.abort(effect.reason))
        except Exception as again:
            reason = f"{effect.reason}; then {type(again).__name__}: {again}"
            self._step_failed(reason, abort_failed=True)

    # ---- the round's stage changes ----

    def _deliver(self, replies: list[CoordinatorMessage]) -> None:
        """Take the round machine's replies; feed the lifecycle what they changed."""
        assert self._run is not None
        event = self._run.take(replies)
        if event is None or isinstance(event, StageOpened):
            if event is not None:
                self._feed(event)
            self._changed.notify_all()
            return
        # The round ended: the machine's state first, so that a failing write below
        # cannot leave it believing the round still runs.
        effects = self._apply(replace(event, online=self._online()))
        try:
            record = self._run.close(event.now, federation_size=len(self._identities))
            self._history.append(record)
            del self._history[:-RECENT_ROUNDS]
        finally:
            self._carry_out(effects)

    def _start_round(self, effect: StartRound) -> None:
        settings = self.config
        if self._terms is not None:
            # t > n/2 of the selected cohort, and never below the signed threshold.
            least = required_threshold(self._terms, len(effect.selected))
            settings = settings.model_copy(update={"threshold": max(settings.threshold, least)})
        config = round_config(
            settings,
            round=effect.round,
            selected=effect.selected,
            element_count=self._members.element_count(),
            graph_seed=self._random_bytes(32),
            key_epoch=self._ceremony.keys.epoch,
        )
        if self._terms is not None:
            check_round_config(self._terms, config, source="this coordinator's config")
        run = RoundRun(CoordinatorRound(config, self._identities), self._services)
        self._run = run
        if self._services.records is not None:
            self._services.records.round_started(config)
        keys = self._ceremony.keys
        public = PublicContext.from_bytes(keys.public) if config.profile.uses_ckks else None
        run.sum = RoundSum(
            config,
            public=public,
            max_chunk_bytes=self.config.max_message_bytes,
            workers=self._sum_workers,
        )
        if run.sum.fallback_reason:
            logs.event(
                self._log,
                "aggregation_workers_unavailable",
                round=effect.round,
                reason=run.sum.fallback_reason,
                level=logging.WARNING,
            )
        self._apply(StageOpened(run.stage, run.record.started_s))
        logs.event(
            self._log,
            "round_started",
            round=effect.round,
            stage=run.stage.value,
            selected=list(effect.selected),
            profile=config.profile.value,
            element_count=config.element_count,
            aggregation_workers=run.sum.workers,
        )

    # ---- what a member should do ----

    def _assignment(self, name: str) -> Assignment:
        lifecycle, number, run = self._state.lifecycle, self._state.round, self._run
        if lifecycle is Lifecycle.CEREMONY:
            return self._ceremony.task(name, round_number=number)
        if lifecycle is Lifecycle.FINISHED:
            return Assignment(
                Lifecycle.FINISHED,
                number,
                None,
                message=f"federation finished after {number} rounds",
            )
        if run is None or name not in run.machine.config.selected:
            why = "waiting for participants" if run is None else "not selected"
            return Assignment(lifecycle, number, None, message=why)
        stage = run.stage
        if stage is Stage.DONE:
            return Assignment(lifecycle, number, None, message="waiting for the next round")
        if stage is Stage.AGGREGATE and name in run.machine.applied_by:
            return Assignment(
                lifecycle, number, None, message="waiting for the others to apply the aggregate"
            )
        inbox = run.inbox.get(name)
        survivors = inbox.survivors if isinstance(inbox, AggregateReady) else ()
        message = inbox.reason if isinstance(inbox, Aborted) else ""
        return Assignment(
            Lifecycle.ROUND,
            number,
            stage,
            run.machine.config,
            survivors,
            message,
            inbox=inbox,
            key_epoch=self._ceremony.keys.epoch,
        )
