"""The request header every participant request carries, and its typed form `Header`.

The participant writes it (signed round messages sign over what the header routes);
the coordinator reads it first, to authenticate and route the request.
"""

from __future__ import annotations

from dataclasses import dataclass

from accord.crypto.messages import ParticipantMessage, RoundConfig, Stage
from accord.errors import Malformed
from accord.proto.v1 import federation_pb2 as pb
from accord.wire.stages import stage_from_proto, stage_to_proto

MAX_ROUND = 2**63 - 1
"""The largest round number a request may name (the store keeps rounds as signed 64-bit)."""


@dataclass(frozen=True)
class Header:
    """The routing fields every participant request carries (`RequestHeader`)."""

    federation_id: str
    round: int
    stage: Stage | None
    participant: str
    sequence: int = 0
    signature: bytes = b""


def signed_header(message: ParticipantMessage, config: RoundConfig) -> Header:
    """The header of a signed round message: its sender, stage, sequence and signature."""
    return Header(
        federation_id=config.federation_id,
        round=config.round,
        stage=message.stage,
        participant=message.sender,
        sequence=message.sequence,
        signature=message.signature,
    )


def header_to_proto(header: Header) -> pb.RequestHeader:
    """The routing fields every request carries."""
    return pb.RequestHeader(
        federation_id=header.federation_id,
        round=header.round,
        stage=stage_to_proto(header.stage),
        participant_id=header.participant,
        sequence=header.sequence,
        signature=header.signature,
    )


def header_from_proto(header: pb.RequestHeader) -> Header:
    """The routing fields of a request.

    Raises:
        Malformed: the header is missing its federation or participant id, or names a
            round past any the store can hold (2**63 - 1).
    """
    if not header.federation_id or not header.participant_id:
        raise Malformed("request header: federation_id and participant_id are required")
    if header.round > MAX_ROUND:
        raise Malformed(f"request header: round {header.round} is out of range")
    return Header(
        federation_id=header.federation_id,
        round=header.round,
        stage=stage_from_proto(header.stage),
        participant=header.participant_id,
        sequence=header.sequence,
        signature=header.signature,
    )
