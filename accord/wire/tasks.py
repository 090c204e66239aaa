"""The task `NextTask` answers with, its per-stage payloads, and the "applied" receipt.

The coordinator writes one task from an `Assignment` (`assignment_to_proto`); the
participant reads the payload of the task's stage into the message its round machine
takes: SHARE `neighbour_keys_from_proto`, UPLOAD `relayed_shares_from_proto`, CONSISTENCY
`consistency_call_from_proto`, UNMASK `unmask_call_from_proto`, AGGREGATE
`aggregate_ready_from_proto`, KEY_CEREMONY `ceremony_keys_from_proto`. Once it applied
the aggregate it says so (`aggregate_applied_to_proto`, read as a header).
"""

from __future__ import annotations

from dataclasses import dataclass

from accord.crypto.ceremony import CeremonyKey
from accord.crypto.lifecycle import Lifecycle
from accord.crypto.messages import (
    AggregateReady,
    ConsistencyCall,
    CoordinatorMessage,
    NeighbourKeys,
    RelayedShares,
    RoundConfig,
    Stage,
    SurvivorEvidence,
    SurvivorSet,
    UnmaskCall,
)
from accord.proto.v1 import federation_pb2 as pb
from accord.wire.ceremony import ceremony_key_from_proto, ceremony_key_to_proto
from accord.wire.evidence import evidence_from_proto, evidence_to_proto
from accord.wire.headers import Header, header_to_proto
from accord.wire.keys import (
    sealed_share_from_proto,
    sealed_share_to_proto,
    signed_keys_from_proto,
    signed_keys_to_proto,
)
from accord.wire.round_config import round_config_to_proto
from accord.wire.stages import shown_stage


@dataclass(frozen=True)
class Assignment:
    """What one participant should do now; `NextTask` answers with it.

    `stage` is the round's stage when the participant takes part in `round`, else
    None and `lifecycle` says why it waits.
    """

    lifecycle: Lifecycle
    round: int
    stage: Stage | None
    config: RoundConfig | None = None
    survivors: tuple[str, ...] = ()
    message: str = ""
    inbox: CoordinatorMessage | None = None
    ceremony_keys: tuple[CeremonyKey, ...] = ()
    key_epoch: int = 0
    ledger_head: bytes = b""
    ledger_public_key: bytes = b""


def assignment_to_proto(task: Assignment, *, stage_deadline_s: float) -> pb.Task:
    """What a participant should do now, with the round machine's message for it."""
    message = pb.Task(
        stage=shown_stage(task.stage, task.lifecycle),
        survivors=list(task.survivors),
        message=task.message,
        key_epoch=task.key_epoch,
        ledger_head=task.ledger_head,
        ledger_public_key=task.ledger_public_key,
    )
    if task.ceremony_keys:
        message.stage = pb.KEY_CEREMONY
        message.ceremony_keys.extend(ceremony_key_to_proto(key) for key in task.ceremony_keys)
    _add_inbox(message, task.inbox)
    if task.config is not None:
        message.config.CopyFrom(
            round_config_to_proto(task.config, stage_deadline_s=stage_deadline_s)
        )
    else:
        message.config.round = task.round
    return message


def _add_inbox(message: pb.Task, inbox: CoordinatorMessage | None) -> None:
    """Write the round machine's message for this stage into the task."""
    if isinstance(inbox, NeighbourKeys):
        message.neighbour_keys.extend(signed_keys_to_proto(keys) for keys in inbox.keys)
    elif isinstance(inbox, RelayedShares):
        message.shares.extend(sealed_share_to_proto(s) for s in inbox.shares)
    elif isinstance(inbox, ConsistencyCall):
        message.survivors[:] = list(inbox.survivor_set.survivors)
        message.dropped[:] = list(inbox.survivor_set.dropped)
        message.evidence.CopyFrom(evidence_to_proto(SurvivorEvidence(inbox.survivor_set, ())))
    elif isinstance(inbox, UnmaskCall):
        message.survivors[:] = list(inbox.survivors)
        message.dropped[:] = list(inbox.dropped)
        unmask_set = SurvivorSet(inbox.survivors, inbox.dropped, ())
        message.evidence.CopyFrom(evidence_to_proto(SurvivorEvidence(unmask_set, inbox.signatures)))
    elif isinstance(inbox, AggregateReady) and inbox.evidence is not None:
        message.dropped[:] = list(inbox.evidence.survivor_set.dropped)
        message.evidence.CopyFrom(evidence_to_proto(inbox.evidence))


def neighbour_keys_from_proto(task: pb.Task, me: str) -> NeighbourKeys:
    """The neighbours' key advertisements relayed in a SHARE task."""
    return NeighbourKeys(
        recipient=me, keys=tuple(signed_keys_from_proto(k) for k in task.neighbour_keys)
    )


def relayed_shares_from_proto(task: pb.Task, me: str) -> RelayedShares:
    """The sealed shares addressed to this participant, relayed in an UPLOAD task."""
    return RelayedShares(
        recipient=me, shares=tuple(sealed_share_from_proto(s) for s in task.shares)
    )


def unmask_call_from_proto(task: pb.Task, me: str) -> UnmaskCall:
    """Who survived and who dropped, and the members' signatures, from an UNMASK task."""
    return UnmaskCall(
        recipient=me,
        survivors=tuple(task.survivors),
        dropped=tuple(task.dropped),
        signatures=evidence_from_proto(task.evidence).signatures,
    )


def consistency_call_from_proto(task: pb.Task, me: str) -> ConsistencyCall:
    """The survivor set to check and sign, from a CONSISTENCY task."""
    return ConsistencyCall(
        recipient=me, survivor_set=evidence_from_proto(task.evidence).survivor_set
    )


def aggregate_ready_from_proto(task: pb.Task, me: str) -> AggregateReady:
    """The aggregate notice of an AGGREGATE task, with its signed survivor set."""
    evidence = evidence_from_proto(task.evidence) if task.HasField("evidence") else None
    return AggregateReady(recipient=me, survivors=tuple(task.survivors), evidence=evidence)


def ceremony_keys_from_proto(task: pb.Task) -> dict[str, CeremonyKey]:
    """The signed ceremony keys a KEY_CEREMONY task asks the maker to seal to."""
    return {e.participant_id: ceremony_key_from_proto(e) for e in task.ceremony_keys}


def aggregate_applied_to_proto(
    *, federation_id: str, participant: str, round: int
) -> pb.AggregateApplied:
    """The receipt that `participant` applied round `round`'s aggregate (`ConfirmApplied`).

    The header is the whole message: the coordinator reads it with `header_from_proto`.
    """
    header = Header(
        federation_id=federation_id, round=round, stage=Stage.AGGREGATE, participant=participant
    )
    return pb.AggregateApplied(header=header_to_proto(header))
