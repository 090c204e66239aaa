"""The federation's lifecycle around its rounds, as a pure state machine.

Theory of operation. `round.CoordinatorRound` runs the stages of one round; this machine
decides everything around them: when a federation that waits for its members starts a
round, when a key ceremony must come first, when a silent ceremony maker is passed
over, when a round stage has run past its deadline, and when the federation is done.

    ENROLL    wait until every member is online (or `enroll_deadline_s` passed with at
              least the least cohort online), then begin
    CEREMONY  a secure round would select a member without the current key (or a revoked
              member holds it): one member makes a fresh key for the cohort
    ROUND     a round runs; its stages are the round machine's, this machine only
              watches their deadlines
    IDLE      between rounds (and after a ceremony), like ENROLL
    FINISHED  after `rounds` completed rounds, or `rounds * max_attempts_per_round`
              round numbers (aborted rounds are retried)

`step(state, event, rules) -> (state, effects)` is a pure function: states, events and
effects (the latter two in `lifecycle_events.py`) are frozen values, time comes in with
the events (`now`, monotonic seconds),
and nothing here reads a clock, logs, or touches a store. The driver
(`coordinator/orchestrator.py`) feeds the events and carries out the effects.

Invariants:
  * An event the current state does not allow raises `OutOfStage` (the round machines'
    class) and changes nothing: the caller keeps its old state.
  * Revoked members are never selected; a key held by a revoked member is made anew.
  * Round numbers only grow; each `StartRound` effect names a fresh one.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from accord.crypto.lifecycle_events import (
    AbortRound,
    Admitted,
    CeremonyOpened,
    CeremonyPosted,
    CloseStage,
    Effect,
    Event,
    FinishFederation,
    MarkRoundAborted,
    PassOverMaker,
    Resumed,
    Revoked,
    RoundAborted,
    RoundDone,
    StageOpened,
    StartCeremony,
    StartRound,
    StepFailed,
    Tick,
)
from accord.crypto.messages import Stage
from accord.errors import OutOfStage

MAX_ATTEMPTS_PER_ROUND = 3
"""A federation gives up after this many round numbers per planned round."""

RUNNING = frozenset(
    {
        Stage.ADVERTISE,
        Stage.SHARE,
        Stage.UPLOAD,
        Stage.CONSISTENCY,
        Stage.UNMASK,
        Stage.AGGREGATE,
    }
)
"""Round stages that end at a deadline (DONE and ABORTED are final)."""


class Lifecycle(enum.Enum):
    """Where the federation is, outside the stages of one round."""

    ENROLL = "enroll"
    CEREMONY = "ceremony"
    ROUND = "round"
    IDLE = "idle"
    FINISHED = "finished"


@dataclass(frozen=True)
class LifecycleRules:
    """The settings the machine decides by (from the coordinator's config and terms).

    `least_cohort` is the fewest online members a round starts with: the threshold,
    and the signed terms' `min_cohort` when that is larger. `secure` says that a round
    needs the ceremony's key (every profile but plaintext `none`).
    """

    rounds: int
    threshold: int
    least_cohort: int
    enroll_deadline_s: float
    stage_deadline_s: float
    secure: bool
    max_attempts_per_round: int = MAX_ATTEMPTS_PER_ROUND


@dataclass(frozen=True)
class LifecycleState:
    """Everything the machine remembers.

    `members` counts the federation's participants (configured and admitted);
    `waiting_since_s` is when ENROLL or IDLE last opened; `round_stage` is the current
    round's stage as the driver last reported it (None before its first stage opened);
    `key_holders` received the current ceremony key.
    """

    members: int
    lifecycle: Lifecycle = Lifecycle.ENROLL
    round: int = 0
    rounds_completed: int = 0
    waiting_since_s: float = 0.0
    round_stage: Stage | None = None
    stage_opened_s: float = 0.0
    ceremony_members: tuple[str, ...] = ()
    ceremony_maker: str = ""
    ceremony_started_s: float = 0.0
    key_holders: frozenset[str] = frozenset()
    revoked: frozenset[str] = frozenset()


Step = tuple[LifecycleState, tuple[Effect, ...]]


# ---- the machine ----


def step(state: LifecycleState, event: Event, rules: LifecycleRules) -> Step:
    """Apply `event` to `state`; return the new state and the effects to carry out.

    Raises:
        OutOfStage: the event is not allowed in `state` (the state is then unchanged:
            the caller keeps the one it passed in).
    """
    handler = _HANDLERS[type(event)]
    return handler(state, event, rules)


def is_finished(state: LifecycleState, rules: LifecycleRules) -> bool:
    """Done after `rounds` completed rounds; aborted ones are retried, up to a limit."""
    attempts = rules.rounds * rules.max_attempts_per_round
    return state.rounds_completed >= rules.rounds or state.round >= attempts


def _tick(state: LifecycleState, event: Tick, rules: LifecycleRules) -> Step:
    if state.round_stage in RUNNING and event.now - state.stage_opened_s >= rules.stage_deadline_s:
        assert state.round_stage is not None
        return state, (CloseStage(state.round, state.round_stage),)
    if state.lifecycle in (Lifecycle.ENROLL, Lifecycle.IDLE):
        everyone = len(event.online) == state.members
        waited = event.now - state.waiting_since_s >= rules.enroll_deadline_s
        if len(event.online) >= rules.least_cohort and (everyone or waited):
            return _begin(state, event.online, event.now, rules)
        return state, ()
    if (
        state.lifecycle is Lifecycle.CEREMONY
        and event.now - state.ceremony_started_s >= rules.stage_deadline_s
    ):
        # The maker went silent: let the next online member make the key.
        others = tuple(name for name in event.online if name != state.ceremony_maker)
        passed = PassOverMaker(state.ceremony_maker)
        idle = replace(state, lifecycle=Lifecycle.IDLE, ceremony_maker="")
        if len(others) < rules.threshold:
            return idle, (passed,)
        after, effects = _start_ceremony(idle, others, event.now)
        return after, (passed, *effects)
    return state, ()


def _admitted(state: LifecycleState, event: Admitted, rules: LifecycleRules) -> Step:
    return replace(state, members=state.members + len(set(event.names))), ()


def _revoked(state: LifecycleState, event: Revoked, rules: LifecycleRules) -> Step:
    return replace(state, revoked=state.revoked | frozenset(event.names)), ()


def _ceremony_opened(state: LifecycleState, event: CeremonyOpened, rules: LifecycleRules) -> Step:
    if state.lifecycle is not Lifecycle.CEREMONY or state.ceremony_maker:
        raise OutOfStage(f"no key ceremony is being opened ({state.lifecycle.value})")
    if event.maker not in state.ceremony_members:
        raise OutOfStage(f"{event.maker} is not a member of the key ceremony")
    return replace(state, ceremony_maker=event.maker), ()


def _ceremony_posted(state: LifecycleState, event: CeremonyPosted, rules: LifecycleRules) -> Step:
    if state.lifecycle is not Lifecycle.CEREMONY or event.sender != state.ceremony_maker:
        raise OutOfStage(f"{event.sender} is not running a key ceremony now")
    members = state.ceremony_members
    idle = replace(
        state,
        lifecycle=Lifecycle.IDLE,
        key_holders=frozenset(members),
        ceremony_maker="",
    )
    return _begin(idle, members, event.now, rules)


def _stage_opened(state: LifecycleState, event: StageOpened, rules: LifecycleRules) -> Step:
    _check_round(state, f"stage {event.stage.value}")
    if event.stage not in RUNNING:
        raise OutOfStage(f"stage {event.stage.value} ends a round: send RoundDone or RoundAborted")
    return replace(state, round_stage=event.stage, stage_opened_s=event.now), ()


def _round_done(state: LifecycleState, event: RoundDone, rules: LifecycleRules) -> Step:
    _check_round(state, "a finished round")
    if state.round_stage is not Stage.AGGREGATE:
        named = state.round_stage.value if state.round_stage else "no stage"
        raise OutOfStage(f"round {state.round} cannot be done from {named}")
    done = replace(state, round_stage=Stage.DONE, rounds_completed=state.rounds_completed + 1)
    return _after_round(done, event.online, event.now, rules)


def _round_aborted(state: LifecycleState, event: RoundAborted, rules: LifecycleRules) -> Step:
    _check_round(state, "an aborted round")
    aborted = replace(state, round_stage=Stage.ABORTED)
    return _after_round(aborted, event.online, event.now, rules)


def _step_failed(state: LifecycleState, event: StepFailed, rules: LifecycleRules) -> Step:
    """Leave the broken step: abort its round, so that the federation goes on."""
    if state.lifecycle is not Lifecycle.ROUND:
        return state, ()
    if state.round_stage in RUNNING and not event.abort_failed:
        return state, (AbortRound(state.round, event.reason),)
    if state.round_stage in (Stage.DONE, Stage.ABORTED):
        return replace(state, lifecycle=Lifecycle.IDLE), ()
    # Failed while the round was being started, or while it was being aborted.
    marked = replace(state, round_stage=Stage.ABORTED, waiting_since_s=event.now)
    effects: tuple[Effect, ...] = (MarkRoundAborted(state.round, event.reason),)
    if is_finished(marked, rules):
        return replace(marked, lifecycle=Lifecycle.FINISHED), (
            *effects,
            FinishFederation(marked.round),
        )
    return replace(marked, lifecycle=Lifecycle.IDLE), effects


def _resumed(state: LifecycleState, event: Resumed, rules: LifecycleRules) -> Step:
    if state.lifecycle is not Lifecycle.ENROLL or state.round or state.rounds_completed:
        raise OutOfStage("a federation resumes from its store only before its first round")
    resumed = replace(
        state,
        round=event.last_round,
        rounds_completed=event.rounds_completed,
        key_holders=event.key_holders,
        waiting_since_s=event.now,
    )
    if event.aggregate_pending:
        return replace(
            resumed,
            lifecycle=Lifecycle.ROUND,
            round_stage=Stage.AGGREGATE,
            stage_opened_s=event.now,
        ), ()
    if is_finished(resumed, rules):
        return replace(resumed, lifecycle=Lifecycle.FINISHED), ()
    return resumed, ()


_HANDLERS: dict[type, Callable[[LifecycleState, Any, LifecycleRules], Step]] = {
    Tick: _tick,
    Admitted: _admitted,
    Revoked: _revoked,
    CeremonyOpened: _ceremony_opened,
    CeremonyPosted: _ceremony_posted,
    StageOpened: _stage_opened,
    RoundDone: _round_done,
    RoundAborted: _round_aborted,
    StepFailed: _step_failed,
    Resumed: _resumed,
}


# ---- shared moves ----


def _check_round(state: LifecycleState, what: str) -> None:
    if state.lifecycle is not Lifecycle.ROUND or state.round_stage not in RUNNING | {None}:
        raise OutOfStage(f"{what} refused: no round is running ({state.lifecycle.value})")


def _begin(
    state: LifecycleState, candidates: tuple[str, ...], now: float, rules: LifecycleRules
) -> Step:
    """Start a round with `candidates`, after a key ceremony when some lack the key.

    Every secure profile needs one: the ceremony's secret holds the integrity key (and,
    for CKKS, the CKKS key). Revoked members are left out; if one of them holds the
    current key, the key is made anew among the rest first.
    """
    selected = tuple(sorted(name for name in candidates if name not in state.revoked))
    if len(selected) < rules.least_cohort:
        return state, ()
    stale = bool(state.key_holders & state.revoked)
    if rules.secure and (stale or not set(selected) <= state.key_holders):
        return _start_ceremony(state, selected, now)
    number = state.round + 1
    started = replace(
        state, lifecycle=Lifecycle.ROUND, round=number, round_stage=None, stage_opened_s=now
    )
    return started, (StartRound(number, selected),)


def _start_ceremony(state: LifecycleState, members: tuple[str, ...], now: float) -> Step:
    opened = replace(
        state,
        lifecycle=Lifecycle.CEREMONY,
        ceremony_members=tuple(sorted(members)),
        ceremony_maker="",
        ceremony_started_s=now,
    )
    return opened, (StartCeremony(opened.ceremony_members),)


def _after_round(
    state: LifecycleState, online: tuple[str, ...], now: float, rules: LifecycleRules
) -> Step:
    """The round ended: finish the federation, or wait, starting the next round at once
    when enough members are online."""
    if is_finished(state, rules):
        return replace(state, lifecycle=Lifecycle.FINISHED), (FinishFederation(state.round),)
    idle = replace(state, lifecycle=Lifecycle.IDLE, waiting_since_s=now)
    if len(online) >= rules.least_cohort:
        return _begin(idle, online, now, rules)
    return idle, ()
