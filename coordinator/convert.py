"""The coordinator's side of the wire: `*_to_proto` for what it sends, `*_from_proto` for
what it receives (the participant's mirror is `participant/convert.py`).

Stage and profile enums convert by name: `accord.crypto` and `accord.v1` spell every
member alike (`UPLOAD`, `CKKS_MASKS`), so no second table can drift.
"""

from __future__ import annotations

from accord.coordinator.records import Assignment, Header, Lifecycle, RoundRecord, Status
from accord.crypto.messages import RoundConfig, Stage
from accord.crypto.profile import Profile
from accord.errors import Malformed
from accord.proto.v1 import federation_pb2 as pb

_LIFECYCLE_STAGE = {
    Lifecycle.ENROLL: pb.ENROLL,
    Lifecycle.IDLE: pb.IDLE,
    Lifecycle.ROUND: pb.IDLE,
    Lifecycle.FINISHED: pb.DONE,
}
"""The stage shown to a participant that takes no part in the current round."""


def stage_to_proto(stage: Stage | None, lifecycle: Lifecycle) -> pb.Stage.ValueType:
    """A round stage by name, or the federation's lifecycle when outside a round."""
    if stage is None:
        return _LIFECYCLE_STAGE[lifecycle]
    return pb.Stage.Value(stage.name)


def stage_from_proto(value: int) -> Stage | None:
    """The round stage a header names; None for the stages outside a round."""
    name = pb.Stage.Name(value) if value in pb.Stage.values() else ""
    return Stage[name] if name in Stage.__members__ else None


def profile_to_proto(profile: Profile) -> pb.Profile.ValueType:
    """`Profile.CKKS_MASKS` -> `accord.v1.CKKS_MASKS`."""
    return pb.Profile.Value(profile.name)


def header_from_proto(header: pb.RequestHeader) -> Header:
    """The routing fields of a request.

    Raises:
        Malformed: the header is missing its federation or participant id.
    """
    if not header.federation_id or not header.participant_id:
        raise Malformed("request header: federation_id and participant_id are required")
    return Header(
        federation_id=header.federation_id,
        round=header.round,
        stage=stage_from_proto(header.stage),
        participant=header.participant_id,
        sequence=header.sequence,
        signature=header.signature,
    )


def round_config_to_proto(config: RoundConfig, *, stage_deadline_s: float) -> pb.RoundConfig:
    """Everything a participant needs to take part in the round."""
    message = pb.RoundConfig(
        round=config.round,
        profile=profile_to_proto(config.profile),
        selected=list(config.selected),
        threshold=config.threshold,
        neighbour_degree=config.neighbour_degree,
        graph_seed=config.graph_seed,
        modulus_bits=config.quant.modulus_bits,
        max_participants=config.quant.max_participants,
        clip_norm=config.quant.clip_norm,
        value_bound=config.quant.value_bound or 0.0,
        weight_cap=config.quant.weight_cap or 0,
        key_epoch=config.key_epoch,
        element_count=config.element_count,
        stage_deadline_s=stage_deadline_s,
    )
    if config.packing is not None:
        message.fields_per_real = config.packing.fields_per_real
        message.field_bits = config.packing.field_bits
        message.scale_bits = config.packing.scale_bits
        message.poly_modulus_degree = config.packing.poly_modulus_degree
    return message


def assignment_to_proto(task: Assignment, *, stage_deadline_s: float) -> pb.Task:
    """What a participant should do now."""
    message = pb.Task(
        stage=stage_to_proto(task.stage, task.lifecycle),
        survivors=list(task.survivors),
        message=task.message,
    )
    if task.config is not None:
        message.config.CopyFrom(
            round_config_to_proto(task.config, stage_deadline_s=stage_deadline_s)
        )
    else:
        message.config.round = task.round
    return message


def round_record_to_proto(record: RoundRecord) -> pb.RoundSummary:
    """Timings and sizes of one finished round."""
    return pb.RoundSummary(
        round=record.round,
        outcome=stage_to_proto(record.outcome, Lifecycle.ROUND),
        duration_s=record.duration_s,
        stage_durations_s=record.stage_durations_s,
        survivors=list(record.survivors),
        bytes_up=record.bytes_up,
        bytes_down=record.bytes_down,
        message=record.message,
    )


def status_to_proto(status: Status, *, federation_id: str, profile: Profile) -> pb.StatusResponse:
    """A snapshot of the federation for displays."""
    return pb.StatusResponse(
        federation_id=federation_id,
        round=status.round,
        stage=stage_to_proto(status.stage, status.lifecycle),
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
