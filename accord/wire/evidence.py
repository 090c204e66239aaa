"""The signed survivor set: who survived, their upload receipts, the signatures over it.

CONSISTENCY: each survivor signs the round's survivor statement
(`confirm_survivors_*`). The coordinator then sends the set with the signatures
(`evidence_*`) in the UNMASK and AGGREGATE tasks and with the aggregate's first chunk;
the participant checks it (`accord.crypto.consistency.verify_evidence`).
"""

from __future__ import annotations

from accord.crypto.messages import (
    ConfirmSurvivors,
    RoundConfig,
    SurvivorEvidence,
    SurvivorSet,
    UploadDone,
)
from accord.proto.v1 import federation_pb2 as pb
from accord.wire.headers import Header, header_to_proto, signed_header


def evidence_to_proto(evidence: SurvivorEvidence) -> pb.SurvivorEvidence:
    """A survivor set, its signed upload receipts and the members' signatures over it."""
    survivor_set = evidence.survivor_set
    return pb.SurvivorEvidence(
        survivors=list(survivor_set.survivors),
        dropped=list(survivor_set.dropped),
        commitments=[
            pb.UploadCommitment(
                participant_id=c.sender,
                digest=c.digest,
                chunk_count=c.chunk_count,
                sequence=c.sequence,
                signature=c.signature,
            )
            for c in survivor_set.commitments
        ],
        signatures=[
            pb.SurvivorSignature(
                participant_id=s.sender,
                statement=s.statement,
                sequence=s.sequence,
                signature=s.signature,
            )
            for s in evidence.signatures
        ],
    )


def evidence_from_proto(message: pb.SurvivorEvidence) -> SurvivorEvidence:
    """A survivor set, its upload receipts and the signatures over it (checked by the caller)."""
    return SurvivorEvidence(
        survivor_set=SurvivorSet(
            survivors=tuple(message.survivors),
            dropped=tuple(message.dropped),
            commitments=tuple(
                UploadDone(
                    sender=c.participant_id,
                    digest=c.digest,
                    chunk_count=c.chunk_count,
                    sequence=c.sequence,
                    signature=c.signature,
                )
                for c in message.commitments
            ),
        ),
        signatures=tuple(
            ConfirmSurvivors(
                sender=s.participant_id,
                statement=s.statement,
                sequence=s.sequence,
                signature=s.signature,
            )
            for s in message.signatures
        ),
    )


def confirm_survivors_to_proto(
    message: ConfirmSurvivors, config: RoundConfig
) -> pb.ConsistencyRequest:
    """The participant's signature over the round's survivor statement."""
    return pb.ConsistencyRequest(
        header=header_to_proto(signed_header(message, config)), statement=message.statement
    )


def confirm_survivors_from_proto(
    request: pb.ConsistencyRequest, header: Header
) -> ConfirmSurvivors:
    """A member's signature over the round's survivor statement; the header carries it."""
    return ConfirmSurvivors(
        sender=header.participant,
        statement=request.statement,
        sequence=header.sequence,
        signature=header.signature,
    )
