"""The federation's status for displays (`GetStatus`) and its round summaries.

Only the coordinator writes these (the operator's displays, the demo's report read
the messages as they are); `RoundRecord` is also what the coordinator's store keeps of
each finished round. `round_record_from_proto` is the reverse the round-trip test reads.
Sizes and timings only: never a payload.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from accord.crypto.lifecycle import Lifecycle
from accord.crypto.messages import Stage
from accord.crypto.profile import Profile
from accord.proto.v1 import federation_pb2 as pb
from accord.wire.stages import profile_to_proto, shown_stage, stage_from_proto


@dataclass
class RoundRecord:
    """Timings and sizes of one round; sizes only, never a payload."""

    round: int
    started_s: float
    stage_durations_s: dict[str, float] = field(default_factory=dict)
    duration_s: float = 0.0
    outcome: Stage | None = None
    selected: tuple[str, ...] = ()
    survivors: tuple[str, ...] = ()
    bytes_up: dict[str, int] = field(default_factory=dict)
    bytes_down: dict[str, int] = field(default_factory=dict)
    message: str = ""


@dataclass(frozen=True)
class Status:
    """A snapshot for `GetStatus`."""

    lifecycle: Lifecycle
    round: int
    stage: Stage | None
    rounds_completed: int
    rounds_planned: int
    members: tuple[tuple[str, bool, str, int, int], ...]
    recent_rounds: tuple[RoundRecord, ...]


def round_record_to_proto(record: RoundRecord) -> pb.RoundSummary:
    """Timings and sizes of one finished round."""
    return pb.RoundSummary(
        round=record.round,
        outcome=shown_stage(record.outcome, Lifecycle.ROUND),
        duration_s=record.duration_s,
        stage_durations_s=record.stage_durations_s,
        selected=list(record.selected),
        survivors=list(record.survivors),
        bytes_up=record.bytes_up,
        bytes_down=record.bytes_down,
        message=record.message,
    )


def round_record_from_proto(summary: pb.RoundSummary) -> RoundRecord:
    """A round summary as a record; `started_s` (a coordinator's monotonic clock) is 0."""
    return RoundRecord(
        round=summary.round,
        started_s=0.0,
        stage_durations_s=dict(summary.stage_durations_s),
        duration_s=summary.duration_s,
        outcome=stage_from_proto(summary.outcome),
        selected=tuple(summary.selected),
        survivors=tuple(summary.survivors),
        bytes_up=dict(summary.bytes_up),
        bytes_down=dict(summary.bytes_down),
        message=summary.message,
    )


def status_to_proto(status: Status, *, federation_id: str, profile: Profile) -> pb.StatusResponse:
    """A snapshot of the federation for displays."""
    return pb.StatusResponse(
        federation_id=federation_id,
        round=status.round,
        stage=shown_stage(status.stage, status.lifecycle),
        profile=profile_to_proto(profile),
        participants=[
            pb.ParticipantStatus(
                participant_id=name, online=online, state=state, bytes_up=up, bytes_down=down
            )
            for name, online, state, up, down in status.members
        ],
        rounds_completed=status.rounds_completed,
        rounds_planned=status.rounds_planned,
        recent_rounds=[round_record_to_proto(record) for record in status.recent_rounds],
    )
