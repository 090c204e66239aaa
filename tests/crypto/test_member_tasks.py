"""The member's task decisions: facts in, the daemon's moves out (no I/O)."""

from __future__ import annotations

import itertools

import pytest

from accord.crypto.member_tasks import Move, Step, TaskFacts, TaskPlan, plan
from accord.crypto.messages import Stage

ADVERTISE, SHARE, UPLOAD = Stage.ADVERTISE, Stage.SHARE, Stage.UPLOAD
CONSISTENCY, UNMASK, AGGREGATE = Stage.CONSISTENCY, Stage.UNMASK, Stage.AGGREGATE


def facts(
    stage: Stage,
    machine: Stage | None,
    *,
    first: Stage = ADVERTISE,
    survivor: bool = True,
    round: int = 3,
    applied: int = 2,
) -> TaskFacts:
    return TaskFacts(
        stage=stage,
        round=round,
        first_stage=first,
        survivor=survivor,
        round_applied=applied,
        machine=machine,
    )


def steps(result: TaskPlan) -> list[Step]:
    return [move.step for move in result.moves]


def test_an_aborted_round_is_forgotten_whatever_else_holds() -> None:
    for machine in (None, UPLOAD, CONSISTENCY):
        assert plan(facts(Stage.ABORTED, machine)) == TaskPlan(forget=True, live=False, moves=())


def test_a_round_applied_before_a_restart_asks_nothing() -> None:
    for stage in (ADVERTISE, UPLOAD, AGGREGATE):
        result = plan(facts(stage, None, round=2, applied=2))
        assert result == TaskPlan(forget=False, live=False, moves=())


def test_the_masked_round_step_by_step() -> None:
    assert steps(plan(facts(ADVERTISE, None))) == [Step.START]
    assert steps(plan(facts(SHARE, ADVERTISE))) == [Step.SEND_SHARES]
    assert plan(facts(UPLOAD, SHARE)).moves == (
        Move(Step.TAKE_SHARES, SHARE),
        Move(Step.UPLOAD, UPLOAD),  # only if the shares moved the machine on
    )
    assert steps(plan(facts(CONSISTENCY, CONSISTENCY))) == [Step.CONFIRM]
    assert steps(plan(facts(UNMASK, UNMASK))) == [Step.UNMASK]
    assert steps(plan(facts(AGGREGATE, AGGREGATE))) == [Step.APPLY]


def test_without_masks_the_round_starts_in_upload_and_uploads_at_once() -> None:
    assert plan(facts(UPLOAD, None, first=UPLOAD)).moves == (
        Move(Step.START, None),
        Move(Step.UPLOAD, UPLOAD),
    )


def test_a_survivor_without_its_machine_rejoins_for_the_aggregate_only() -> None:
    assert steps(plan(facts(AGGREGATE, None))) == [Step.REJOIN]
    # One whose update is not in the aggregate catches up once the round has closed.
    assert steps(plan(facts(AGGREGATE, None, survivor=False))) == []
    # Missed the start of the round: nothing until the next one.
    for stage in (SHARE, UPLOAD, CONSISTENCY, UNMASK):
        result = plan(facts(stage, None))
        assert result.live and result.moves == ()


def test_only_survivors_confirm_unmask_and_apply() -> None:
    for stage in (CONSISTENCY, UNMASK, AGGREGATE):
        assert steps(plan(facts(stage, stage, survivor=False))) == []


def test_every_other_pairing_of_task_and_machine_asks_nothing() -> None:
    expected = {
        (SHARE, ADVERTISE): [Step.SEND_SHARES],
        (UPLOAD, SHARE): [Step.TAKE_SHARES, Step.UPLOAD],
        (UPLOAD, UPLOAD): [Step.UPLOAD],
        (CONSISTENCY, CONSISTENCY): [Step.CONFIRM],
        (UNMASK, UNMASK): [Step.UNMASK],
    }
    round_stages = (ADVERTISE, SHARE, UPLOAD, CONSISTENCY, UNMASK)
    for stage, machine in itertools.product(round_stages, (*round_stages, AGGREGATE, Stage.DONE)):
        want = expected.get((stage, machine), [])
        assert steps(plan(facts(stage, machine))) == want, (stage, machine)
    # The aggregate is fed to the machine whatever its stage; it refuses what it must.
    for machine in (CONSISTENCY, UNMASK, AGGREGATE, Stage.DONE):
        assert plan(facts(AGGREGATE, machine)).moves == (Move(Step.APPLY, machine),)


@pytest.mark.parametrize("stage", [ADVERTISE, UPLOAD])
def test_the_first_move_always_expects_the_machine_as_it_is(stage: Stage) -> None:
    for machine in (None, ADVERTISE, SHARE, UPLOAD):
        result = plan(facts(stage, machine, first=stage))
        if result.moves:
            assert result.moves[0].machine is machine
