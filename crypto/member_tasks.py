"""What a member does with a round task: the decisions of the participant daemon, pure.

The coordinator's long poll hands each member a task: a round's stage and what that stage
carries. What the task means for this member depends on a few facts only: the task's
stage and round, the round's first stage (ADVERTISE with masks, else UPLOAD), whether the
member is among the task's survivors, the last round it applied, and the stage of its
`ParticipantRound` for that round (None when it has none: it restarted, or missed the
round's start). `plan` maps those facts to the moves the daemon performs, in order; the
daemon owns the effects (gRPC, files, training, logs).

    ABORTED                                   forget the round
    round already applied                     nothing (never train or spend budget twice)
    no machine, AGGREGATE, a survivor         rejoin: download and apply the aggregate,
                                              which holds this member's update
    no machine, the round's first stage       start the round, then as below
    no machine otherwise                      nothing (missed the start: wait)
    SHARE, machine in ADVERTISE               send shares (feed the neighbours' keys)
    UPLOAD, machine in SHARE                  take the relayed shares, then upload
    UPLOAD, machine in UPLOAD                 upload
    CONSISTENCY, machine too, a survivor      confirm the survivor set
    UNMASK, machine too, a survivor           reveal unmask shares
    AGGREGATE, a survivor                     apply: feed AggregateReady, then download

Each move names the machine stage it expects; a move after the first is performed only
if the machine is then in that stage (taking shares the machine refuses aborts it, and
the upload does not follow).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from accord.crypto.messages import Stage

__all__ = ["Move", "Step", "TaskFacts", "TaskPlan", "plan"]


class Step(enum.Enum):
    """One thing the daemon does for a task."""

    REJOIN = "rejoin"  # download and apply the aggregate without a round machine
    START = "start"  # check the members, ask the privacy ledger, fetch the key, start()
    SEND_SHARES = "send shares"  # NeighbourKeys in, ShareKeys out
    TAKE_SHARES = "take shares"  # RelayedShares in (the masks are then known)
    UPLOAD = "upload"  # train, protect and stream the update
    CONFIRM = "confirm"  # ConsistencyCall in, ConfirmSurvivors out
    UNMASK = "unmask"  # UnmaskCall in, UnmaskShares out
    APPLY = "apply"  # AggregateReady in, then download and apply the aggregate


@dataclass(frozen=True)
class TaskFacts:
    """What `plan` decides from.

    Attributes:
        stage: the task's stage.
        round: the task's round.
        first_stage: the round's first stage (`RoundConfig.first_stage`).
        survivor: this member is among the task's survivors.
        round_applied: the last round whose aggregate this member applied (0: none).
        machine: the stage of this member's round machine for `round`; None: it has none.
    """

    stage: Stage
    round: int
    first_stage: Stage
    survivor: bool
    round_applied: int
    machine: Stage | None


@dataclass(frozen=True)
class Move:
    """A step and the machine stage it expects (None: no machine yet)."""

    step: Step
    machine: Stage | None


@dataclass(frozen=True)
class TaskPlan:
    """The task's meaning for this member.

    Attributes:
        forget: the round was aborted: drop its machine and wait.
        live: the round is not applied yet here (False: nothing at all to do).
        moves: what to do, in order.
    """

    forget: bool
    live: bool
    moves: tuple[Move, ...]


def plan(facts: TaskFacts) -> TaskPlan:
    """The moves a task asks of this member (see the module docstring)."""
    if facts.stage is Stage.ABORTED:
        return TaskPlan(forget=True, live=False, moves=())
    if facts.round <= facts.round_applied:
        return TaskPlan(forget=False, live=False, moves=())
    machine = facts.machine
    if machine is None and facts.stage is Stage.AGGREGATE and facts.survivor:
        return TaskPlan(forget=False, live=True, moves=(Move(Step.REJOIN, None),))
    moves: list[Move] = []
    if machine is None and facts.stage is facts.first_stage:
        moves.append(Move(Step.START, None))
        machine = facts.first_stage
    if machine is not None:
        moves.extend(_round_moves(facts.stage, machine, survivor=facts.survivor))
    return TaskPlan(forget=False, live=True, moves=tuple(moves))


def _round_moves(stage: Stage, machine: Stage, *, survivor: bool) -> list[Move]:
    if stage is Stage.SHARE and machine is Stage.ADVERTISE:
        return [Move(Step.SEND_SHARES, machine)]
    if stage is Stage.UPLOAD:
        if machine is Stage.SHARE:
            return [Move(Step.TAKE_SHARES, machine), Move(Step.UPLOAD, Stage.UPLOAD)]
        return [Move(Step.UPLOAD, machine)] if machine is Stage.UPLOAD else []
    if not survivor:
        return []
    if stage is Stage.CONSISTENCY and machine is Stage.CONSISTENCY:
        return [Move(Step.CONFIRM, machine)]
    if stage is Stage.UNMASK and machine is Stage.UNMASK:
        return [Move(Step.UNMASK, machine)]
    if stage is Stage.AGGREGATE:
        return [Move(Step.APPLY, machine)]
    return []
