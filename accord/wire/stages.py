"""Round stages, the stage a participant sees outside a round, and protection profiles.

Stages and profiles convert by name: `accord.crypto` and `accord.v1` spell every member
alike, so no second table can drift. Outside a round a task shows the federation's
lifecycle instead (`waiting_stage_to_proto`): ENROLL, IDLE or FEDERATION_FINISHED.
"""

from __future__ import annotations

from typing import cast

from accord.crypto.lifecycle import Lifecycle
from accord.crypto.messages import Stage
from accord.crypto.profile import Profile
from accord.errors import Malformed
from accord.proto.v1 import federation_pb2 as pb

_WAITING_STAGE = {
    Lifecycle.ENROLL: pb.ENROLL,
    Lifecycle.CEREMONY: pb.IDLE,
    Lifecycle.IDLE: pb.IDLE,
    Lifecycle.ROUND: pb.IDLE,
    Lifecycle.FINISHED: pb.FEDERATION_FINISHED,
}
"""The stage shown to a participant that takes no part in the current round."""

_WAITING_LIFECYCLE: dict[int, Lifecycle] = {
    pb.ENROLL: Lifecycle.ENROLL,
    pb.IDLE: Lifecycle.IDLE,
    pb.FEDERATION_FINISHED: Lifecycle.FINISHED,
}


def stage_to_proto(stage: Stage | None) -> pb.Stage:
    """A round stage by name; None (outside a round) is `STAGE_UNSPECIFIED`."""
    return pb.STAGE_UNSPECIFIED if stage is None else cast(pb.Stage, pb.Stage.Value(stage.name))


def stage_from_proto(value: int) -> Stage | None:
    """The round stage a header or task names; None for the stages outside a round."""
    name = pb.Stage.Name(value) if value in pb.Stage.values() else ""
    return Stage[name] if name in Stage.__members__ else None


def waiting_stage_to_proto(lifecycle: Lifecycle) -> pb.Stage:
    """The stage shown outside a round: ENROLL, IDLE (between rounds, or in a round or
    key ceremony without this participant) or FEDERATION_FINISHED."""
    return _WAITING_STAGE[lifecycle]


def waiting_stage_from_proto(value: int) -> Lifecycle | None:
    """The lifecycle a stage outside a round shows (IDLE stands for every busy one);
    None for a round stage or KEY_CEREMONY."""
    return _WAITING_LIFECYCLE.get(value)


def shown_stage(stage: Stage | None, lifecycle: Lifecycle) -> pb.Stage:
    """The stage a task or status shows: the round's stage, else the lifecycle's."""
    return stage_to_proto(stage) if stage is not None else waiting_stage_to_proto(lifecycle)


def profile_to_proto(profile: Profile) -> pb.Profile:
    """`Profile.CKKS_MASKS` -> `accord.v1.CKKS_MASKS`."""
    return cast(pb.Profile, pb.Profile.Value(profile.name))


def profile_from_proto(value: int) -> Profile:
    """`accord.v1.CKKS_MASKS` -> `Profile.CKKS_MASKS`.

    Raises:
        Malformed: the value names no profile.
    """
    name = pb.Profile.Name(value) if value in pb.Profile.values() else ""
    if name not in Profile.__members__:
        raise Malformed(f"profile {value} is not one this participant knows")
    return Profile[name]
