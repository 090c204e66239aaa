"""The federation lifecycle machine: every transition; a refusal leaves the state as it was."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accord.crypto.lifecycle import (
    Lifecycle,
    LifecycleRules,
    LifecycleState,
    is_finished,
    step,
)
from accord.crypto.lifecycle_events import (
    AbortRound,
    Admitted,
    CeremonyOpened,
    CeremonyPosted,
    CloseStage,
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

ABC = ("a", "b", "c")
RULES = LifecycleRules(
    rounds=2,
    threshold=2,
    least_cohort=2,
    enroll_deadline_s=30.0,
    stage_deadline_s=10.0,
    secure=True,
)
PLAIN = replace(RULES, secure=False)


def fresh() -> LifecycleState:
    return LifecycleState(members=3)


def in_round(stage: Stage = Stage.UPLOAD, *, round: int = 1) -> LifecycleState:
    return replace(
        fresh(),
        lifecycle=Lifecycle.ROUND,
        round=round,
        round_stage=stage,
        stage_opened_s=100.0,
        key_holders=frozenset(ABC),
    )


def in_ceremony(maker: str = "a") -> LifecycleState:
    return replace(
        fresh(),
        lifecycle=Lifecycle.CEREMONY,
        ceremony_members=ABC,
        ceremony_maker=maker,
        ceremony_started_s=100.0,
    )


# ---- ENROLL / IDLE ----


def test_enrol_waits_for_everyone_before_the_deadline() -> None:
    assert step(fresh(), Tick(5.0, ("a", "b")), RULES) == (fresh(), ())


def test_everyone_online_starts_a_ceremony_when_no_one_holds_the_key() -> None:
    state, effects = step(fresh(), Tick(5.0, ABC), RULES)
    assert effects == (StartCeremony(ABC),)
    assert state.lifecycle is Lifecycle.CEREMONY and state.ceremony_members == ABC
    assert state.ceremony_started_s == 5.0 and state.round == 0


def test_plaintext_profile_starts_round_one_without_a_ceremony() -> None:
    state, effects = step(fresh(), Tick(5.0, ABC), PLAIN)
    assert effects == (StartRound(1, ABC),)
    assert (state.lifecycle, state.round, state.round_stage) == (Lifecycle.ROUND, 1, None)


def test_after_the_enrol_deadline_the_least_cohort_suffices() -> None:
    _, effects = step(fresh(), Tick(30.0, ("a", "c")), PLAIN)
    assert effects == (StartRound(1, ("a", "c")),)


def test_fewer_than_the_least_cohort_never_start() -> None:
    rules = replace(PLAIN, least_cohort=3)
    assert step(fresh(), Tick(99.0, ("a", "b")), rules) == (fresh(), ())


def test_key_holders_start_a_round_directly() -> None:
    state = replace(fresh(), key_holders=frozenset(ABC))
    _, effects = step(state, Tick(1.0, ABC), RULES)
    assert effects == (StartRound(1, ABC),)


def test_revoked_members_are_left_out_and_a_key_they_hold_is_made_anew() -> None:
    state = replace(fresh(), key_holders=frozenset(ABC), members=4)
    state, effects = step(state, Revoked(("c",)), RULES)
    assert effects == () and state.revoked == {"c"}
    state, effects = step(state, Tick(1.0, ("a", "b", "c", "d")), RULES)
    assert effects == (StartCeremony(("a", "b", "d")),)


def test_admission_grows_the_federation_that_everyone_means() -> None:
    state, effects = step(fresh(), Admitted(("d",)), PLAIN)
    assert effects == () and state.members == 4
    assert step(state, Tick(1.0, ABC), PLAIN) == (state, ())
    _, effects = step(state, Tick(1.0, (*ABC, "d")), PLAIN)
    assert effects == (StartRound(1, (*ABC, "d")),)


# ---- CEREMONY ----


def test_ceremony_opened_names_the_maker_once() -> None:
    state = replace(in_ceremony(), ceremony_maker="")
    opened, effects = step(state, CeremonyOpened("b"), RULES)
    assert effects == () and opened.ceremony_maker == "b"
    with pytest.raises(OutOfStage):
        step(opened, CeremonyOpened("a"), RULES)
    with pytest.raises(OutOfStage):
        step(state, CeremonyOpened("z"), RULES)


def test_ceremony_posted_by_the_maker_starts_the_round_among_its_members() -> None:
    state, effects = step(in_ceremony(), CeremonyPosted("a", 101.0), RULES)
    assert effects == (StartRound(1, ABC),)
    assert state.key_holders == frozenset(ABC) and state.lifecycle is Lifecycle.ROUND


@pytest.mark.parametrize("state", [fresh(), in_ceremony("b"), in_round()])
def test_a_ceremony_key_from_anyone_else_or_at_another_time_is_refused(
    state: LifecycleState,
) -> None:
    with pytest.raises(OutOfStage):
        step(state, CeremonyPosted("a", 101.0), RULES)


def test_a_silent_maker_is_passed_over_and_another_member_makes_the_key() -> None:
    assert step(in_ceremony(), Tick(109.0, ABC), RULES) == (in_ceremony(), ())
    state, effects = step(in_ceremony(), Tick(110.0, ABC), RULES)
    assert effects == (PassOverMaker("a"), StartCeremony(("b", "c")))
    assert state.ceremony_started_s == 110.0 and state.ceremony_maker == ""


def test_a_silent_maker_with_too_few_others_leaves_the_federation_idle() -> None:
    state, effects = step(in_ceremony(), Tick(110.0, ("a", "b")), RULES)
    assert effects == (PassOverMaker("a"),)
    assert state.lifecycle is Lifecycle.IDLE


# ---- ROUND ----


def test_stage_opened_restarts_the_stage_clock() -> None:
    state, effects = step(in_round(), StageOpened(Stage.CONSISTENCY, 104.0), RULES)
    assert effects == () and (state.round_stage, state.stage_opened_s) == (
        Stage.CONSISTENCY,
        104.0,
    )


@pytest.mark.parametrize("stage", [Stage.DONE, Stage.ABORTED])
def test_final_stages_come_as_round_events_not_stage_opened(stage: Stage) -> None:
    with pytest.raises(OutOfStage):
        step(in_round(), StageOpened(stage, 1.0), RULES)


@pytest.mark.parametrize("stage", [Stage.ADVERTISE, Stage.UPLOAD, Stage.AGGREGATE])
def test_a_stage_past_its_deadline_is_closed(stage: Stage) -> None:
    assert step(in_round(stage), Tick(109.9, ABC), RULES) == (in_round(stage), ())
    assert step(in_round(stage), Tick(110.0, ABC), RULES) == (
        in_round(stage),
        (CloseStage(1, stage),),
    )


def test_a_done_round_counts_and_the_next_starts_at_once() -> None:
    state, effects = step(in_round(Stage.AGGREGATE), RoundDone(120.0, ABC), RULES)
    assert effects == (StartRound(2, ABC),)
    assert (state.rounds_completed, state.round, state.round_stage) == (1, 2, None)


def test_a_done_round_with_too_few_online_waits_idle() -> None:
    state, effects = step(in_round(Stage.AGGREGATE), RoundDone(120.0, ("a",)), RULES)
    assert effects == ()
    assert (state.lifecycle, state.waiting_since_s, state.round_stage) == (
        Lifecycle.IDLE,
        120.0,
        Stage.DONE,
    )


def test_only_a_round_in_aggregate_can_be_done() -> None:
    with pytest.raises(OutOfStage):
        step(in_round(Stage.UNMASK), RoundDone(120.0, ABC), RULES)


def test_the_last_round_finishes_the_federation() -> None:
    state = replace(in_round(Stage.AGGREGATE, round=2), rounds_completed=1)
    state, effects = step(state, RoundDone(120.0, ABC), RULES)
    assert effects == (FinishFederation(2),)
    assert state.lifecycle is Lifecycle.FINISHED and state.rounds_completed == 2


def test_an_aborted_round_is_retried_without_counting() -> None:
    state, effects = step(in_round(Stage.SHARE), RoundAborted(120.0, ABC), RULES)
    assert effects == (StartRound(2, ABC),) and state.rounds_completed == 0


def test_too_many_aborted_rounds_finish_the_federation() -> None:
    state = in_round(Stage.SHARE, round=6)
    state, effects = step(state, RoundAborted(120.0, ABC), RULES)
    assert effects == (FinishFederation(6),) and state.lifecycle is Lifecycle.FINISHED
    assert is_finished(state, RULES) and state.rounds_completed == 0


# ---- failures ----


def test_a_failed_step_in_a_running_round_aborts_it_through_its_machine() -> None:
    state = in_round(Stage.UPLOAD)
    assert step(state, StepFailed(101.0, "boom"), RULES) == (state, (AbortRound(1, "boom"),))


@pytest.mark.parametrize("abort_failed", [False, True])
def test_a_failed_start_or_abort_marks_the_round_aborted(abort_failed: bool) -> None:
    state = in_round(None if not abort_failed else Stage.UPLOAD)
    after, effects = step(state, StepFailed(101.0, "boom", abort_failed), RULES)
    assert effects == (MarkRoundAborted(1, "boom"),)
    assert (after.lifecycle, after.round_stage, after.waiting_since_s) == (
        Lifecycle.IDLE,
        Stage.ABORTED,
        101.0,
    )


def test_a_failed_step_outside_a_round_changes_nothing() -> None:
    for state in (fresh(), in_ceremony()):
        assert step(state, StepFailed(1.0, "boom"), RULES) == (state, ())


# ---- restart ----


def test_resume_with_a_stored_aggregate_serves_it_again() -> None:
    event = Resumed(7.0, 3, 2, frozenset(ABC), aggregate_pending=True)
    state, effects = step(fresh(), event, replace(RULES, rounds=5))
    assert effects == ()
    assert (state.lifecycle, state.round, state.round_stage, state.stage_opened_s) == (
        Lifecycle.ROUND,
        3,
        Stage.AGGREGATE,
        7.0,
    )
    assert state.rounds_completed == 2 and state.key_holders == frozenset(ABC)


def test_resume_after_the_last_round_is_finished_and_otherwise_enrols() -> None:
    done, _ = step(fresh(), Resumed(7.0, 2, 2, frozenset(), False), RULES)
    assert done.lifecycle is Lifecycle.FINISHED
    waiting, _ = step(fresh(), Resumed(7.0, 1, 1, frozenset(), False), RULES)
    assert (waiting.lifecycle, waiting.round) == (Lifecycle.ENROLL, 1)


def test_resume_is_refused_once_the_federation_ran() -> None:
    with pytest.raises(OutOfStage):
        step(in_round(), Resumed(7.0, 1, 1, frozenset(), False), RULES)


# ---- every refusal leaves the state as it was ----

STATES = st.sampled_from(
    [
        fresh(),
        in_ceremony(),
        replace(in_ceremony(), ceremony_maker=""),
        in_round(Stage.UPLOAD),
        in_round(Stage.AGGREGATE),
        replace(in_round(Stage.AGGREGATE), lifecycle=Lifecycle.FINISHED, round_stage=Stage.DONE),
    ]
)
EVENTS = st.one_of(
    st.builds(Tick, st.floats(0, 300), st.sampled_from([(), ("a",), ABC])),
    st.builds(CeremonyOpened, st.sampled_from(["a", "z"])),
    st.builds(CeremonyPosted, st.sampled_from(["a", "b"]), st.floats(0, 300)),
    st.builds(StageOpened, st.sampled_from(list(Stage)), st.floats(0, 300)),
    st.builds(RoundDone, st.floats(0, 300), st.just(ABC)),
    st.builds(RoundAborted, st.floats(0, 300), st.just(ABC)),
    st.builds(
        Resumed, st.floats(0, 300), st.just(1), st.just(0), st.just(frozenset()), st.booleans()
    ),
)


@given(STATES, EVENTS)
def test_every_event_is_a_legal_move_or_a_refusal_that_changes_nothing(
    state: LifecycleState, event: Event
) -> None:
    before = replace(state)
    try:
        after, effects = step(state, event, RULES)
    except OutOfStage:
        assert state == before
        return
    assert after.round >= state.round
    assert all(not isinstance(e, StartRound) or e.round == after.round for e in effects)
    if state.lifecycle is Lifecycle.FINISHED:
        assert after.lifecycle is Lifecycle.FINISHED and not effects
