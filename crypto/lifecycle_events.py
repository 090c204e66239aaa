"""The events and effects of the federation's lifecycle machine (`accord.crypto.lifecycle`).

Events say what happened (time passed, a member was admitted or revoked, a ceremony key
arrived, a round's stage changed, a step failed, the store was read back after a
restart); effects say what the driver must do (open a ceremony, start a round, close a
stage, abort a round, finish). All are frozen values: `now` is monotonic seconds, as
the driver measured it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from accord.crypto.messages import Stage

# ---- events (what happened) ----


@dataclass(frozen=True)
class Tick:
    """Time passed, or the online members changed (an enrolment, a heartbeat, a poll).

    `online` lists the enrolled members heard from recently, sorted.
    """

    now: float
    online: tuple[str, ...]


@dataclass(frozen=True)
class Admitted:
    """`names` joined the federation (the roster grew)."""

    names: tuple[str, ...]


@dataclass(frozen=True)
class Revoked:
    """`names` were revoked: never selected again, and their key is made anew."""

    names: tuple[str, ...]


@dataclass(frozen=True)
class CeremonyOpened:
    """The driver opened the ceremony a `StartCeremony` asked for; `maker` makes the key."""

    maker: str


@dataclass(frozen=True)
class CeremonyPosted:
    """`sender` posted the ceremony's key; refused unless it is the ceremony's maker."""

    sender: str
    now: float


@dataclass(frozen=True)
class StageOpened:
    """The round machine entered `stage` (any but DONE and ABORTED)."""

    stage: Stage
    now: float


@dataclass(frozen=True)
class RoundDone:
    """The round machine reached DONE: every survivor applied the aggregate (or time ran out)."""

    now: float
    online: tuple[str, ...]


@dataclass(frozen=True)
class RoundAborted:
    """The round machine reached ABORTED."""

    now: float
    online: tuple[str, ...]


@dataclass(frozen=True)
class StepFailed:
    """Carrying out a step raised (a bug, a lost worker, a full disk): `reason` says what.

    `abort_failed` says that aborting the running round through its machine failed too.
    """

    now: float
    reason: str
    abort_failed: bool = False


@dataclass(frozen=True)
class Resumed:
    """The store says where the federation was before a restart (only from a fresh state).

    `aggregate_pending`: the last round stored its aggregate and waits in AGGREGATE.
    """

    now: float
    last_round: int
    rounds_completed: int
    key_holders: frozenset[str]
    aggregate_pending: bool


Event: TypeAlias = (
    Tick
    | Admitted
    | Revoked
    | CeremonyOpened
    | CeremonyPosted
    | StageOpened
    | RoundDone
    | RoundAborted
    | StepFailed
    | Resumed
)


# ---- effects (what the driver must do) ----


@dataclass(frozen=True)
class StartCeremony:
    """Open a key ceremony among `members`; answer with `CeremonyOpened(maker)`."""

    members: tuple[str, ...]


@dataclass(frozen=True)
class PassOverMaker:
    """The ceremony's `maker` sent no key before the deadline (log it; a new one may follow)."""

    maker: str


@dataclass(frozen=True)
class StartRound:
    """Start round `round` with `selected`; answer with `StageOpened` (or `StepFailed`)."""

    round: int
    selected: tuple[str, ...]


@dataclass(frozen=True)
class CloseStage:
    """Round `round`'s `stage` ran past its deadline: close it through the round machine."""

    round: int
    stage: Stage


@dataclass(frozen=True)
class AbortRound:
    """Abort the running round `round` through its machine, saying `reason`."""

    round: int
    reason: str


@dataclass(frozen=True)
class MarkRoundAborted:
    """Round `round` broke while starting (or while aborting): record it aborted."""

    round: int
    reason: str


@dataclass(frozen=True)
class FinishFederation:
    """The federation is done after `rounds` round numbers."""

    rounds: int


Effect: TypeAlias = (
    StartCeremony
    | PassOverMaker
    | StartRound
    | CloseStage
    | AbortRound
    | MarkRoundAborted
    | FinishFederation
)
