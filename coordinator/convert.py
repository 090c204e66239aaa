"""The coordinator's side of the wire: `*_to_proto` for what it sends, `*_from_proto` for
what it receives (the participant's mirror is `participant/convert.py`).

Stage and profile enums convert by name: `accord.crypto` and `accord.v1` spell every
member alike (`UPLOAD`, `CKKS_MASKS`), so no second table can drift.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from accord.coordinator.records import (
    Assignment,
    Header,
    KeyState,
    RoundRecord,
    SealedKey,
    Status,
)
from accord.coordinator.roster import RosterEntry
from accord.crypto.ceremony import CeremonyKey
from accord.crypto.lifecycle import Lifecycle
from accord.crypto.messages import (
    AdvertiseKeys,
    AggregateReady,
    ConfirmSurvivors,
    ConsistencyCall,
    NeighbourKeys,
    RelayedShares,
    RoundConfig,
    SealedShare,
    ShareKeys,
    Stage,
    SurvivorEvidence,
    SurvivorSet,
    UnmaskCall,
    UnmaskShares,
)
from accord.crypto.profile import Profile
from accord.errors import Malformed
from accord.proto.v1 import federation_pb2 as pb

_LIFECYCLE_STAGE = {
    Lifecycle.ENROLL: pb.ENROLL,
    Lifecycle.CEREMONY: pb.IDLE,
    Lifecycle.IDLE: pb.IDLE,
    Lifecycle.ROUND: pb.IDLE,
    Lifecycle.FINISHED: pb.FEDERATION_FINISHED,
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


MAX_ROUND = 2**63 - 1
"""The largest round number a request may name (the store keeps rounds as signed 64-bit)."""


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
    if config.client_noise is not None:
        message.client_noise.CopyFrom(
            pb.ClientNoise(
                noise_multiplier=config.client_noise.noise_multiplier,
                honest_fraction=config.client_noise.honest_fraction,
                delta=config.client_noise.delta,
            )
        )
    if config.packing is not None:
        message.fields_per_real = config.packing.fields_per_real
        message.field_bits = config.packing.field_bits
        message.scale_bits = config.packing.scale_bits
        message.poly_modulus_degree = config.packing.poly_modulus_degree
    return message


def roster_to_proto(
    identities: Mapping[str, bytes], entries: Sequence[RosterEntry] | None
) -> list[pb.RosterEntry]:
    """The members an Enroll response lists, sorted by id.

    With mTLS (`entries`, the active roster entries) each carries its ceremony key and
    the client certificate in which the CA certified both keys; a roster entry whose
    identity key is not the one the orchestrator verifies with is left out. Without
    (insecure plaintext), only the identity keys: participants then trust the coordinator.
    """
    if entries is None:
        return [
            pb.RosterEntry(participant_id=name, identity_public_key=key)
            for name, key in sorted(identities.items())
        ]
    return [
        pb.RosterEntry(
            participant_id=entry.participant_id,
            identity_public_key=entry.identity_public_key,
            ceremony_public_key=entry.ceremony_public_key,
            certificate=entry.certificate_der,
        )
        for entry in sorted(entries, key=lambda e: e.participant_id)
        if identities.get(entry.participant_id) == entry.identity_public_key
    ]


def assignment_to_proto(task: Assignment, *, stage_deadline_s: float) -> pb.Task:
    """What a participant should do now, with the round machine's message for it."""
    message = pb.Task(
        stage=stage_to_proto(task.stage, task.lifecycle),
        survivors=list(task.survivors),
        message=task.message,
        key_epoch=task.key_epoch,
        ledger_head=task.ledger_head,
        ledger_public_key=task.ledger_public_key,
    )
    if task.ceremony_keys:
        message.stage = pb.KEY_CEREMONY
        message.ceremony_keys.extend(
            pb.RosterEntry(
                participant_id=key.participant,
                ceremony_public_key=key.ceremony_public,
                ceremony_key_signature=key.signature,
            )
            for key in task.ceremony_keys
        )
    inbox = task.inbox
    if isinstance(inbox, NeighbourKeys):
        message.neighbour_keys.extend(signed_keys_to_proto(keys) for keys in inbox.keys)
    elif isinstance(inbox, RelayedShares):
        message.shares.extend(
            pb.SealedShare(sender_id=s.sender, recipient_id=s.recipient, envelope=s.envelope)
            for s in inbox.shares
        )
    elif isinstance(inbox, ConsistencyCall):
        message.survivors[:] = list(inbox.survivor_set.survivors)
        message.dropped[:] = list(inbox.survivor_set.dropped)
        message.evidence.CopyFrom(evidence_to_proto(inbox.survivor_set, ()))
    elif isinstance(inbox, UnmaskCall):
        message.survivors[:] = list(inbox.survivors)
        message.dropped[:] = list(inbox.dropped)
        message.evidence.CopyFrom(
            evidence_to_proto(SurvivorSet(inbox.survivors, inbox.dropped, ()), inbox.signatures)
        )
    elif isinstance(inbox, AggregateReady) and inbox.evidence is not None:
        message.dropped[:] = list(inbox.evidence.survivor_set.dropped)
        message.evidence.CopyFrom(
            evidence_to_proto(inbox.evidence.survivor_set, inbox.evidence.signatures)
        )
    if task.config is not None:
        message.config.CopyFrom(
            round_config_to_proto(task.config, stage_deadline_s=stage_deadline_s)
        )
    else:
        message.config.round = task.round
    return message


def evidence_to_proto(
    survivor_set: SurvivorSet, signatures: Sequence[ConfirmSurvivors]
) -> pb.SurvivorEvidence:
    """A survivor set, its signed upload receipts and the members' signatures over it."""
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
            for s in signatures
        ],
    )


def aggregate_evidence_to_proto(evidence: SurvivorEvidence | None) -> pb.SurvivorEvidence | None:
    """The evidence sent with an aggregate download (None for the plaintext profile)."""
    if evidence is None:
        return None
    return evidence_to_proto(evidence.survivor_set, evidence.signatures)


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


def round_record_to_proto(record: RoundRecord) -> pb.RoundSummary:
    """Timings and sizes of one finished round."""
    return pb.RoundSummary(
        round=record.round,
        outcome=stage_to_proto(record.outcome, Lifecycle.ROUND),
        duration_s=record.duration_s,
        stage_durations_s=record.stage_durations_s,
        selected=list(record.selected),
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


def signed_keys_to_proto(keys: AdvertiseKeys) -> pb.SignedKeys:
    """A neighbour's key advertisement, relayed with its owner's signature."""
    return pb.SignedKeys(
        participant_id=keys.sender,
        encryption_public_key=keys.encryption_public,
        masking_public_key=keys.masking_public,
        signature=keys.signature,
        sequence=keys.sequence,
    )


def advertise_from_proto(request: pb.AdvertiseKeysRequest, header: Header) -> AdvertiseKeys:
    """A participant's key advertisement; the header carries its signature.

    Raises:
        Malformed: the keys name another participant than the header.
    """
    if request.keys.participant_id != header.participant:
        raise Malformed("advertised keys must be the sender's own")
    return AdvertiseKeys(
        encryption_public=request.keys.encryption_public_key,
        masking_public=request.keys.masking_public_key,
        sender=header.participant,
        sequence=header.sequence,
        signature=header.signature,
    )


def share_keys_from_proto(request: pb.ShareKeysRequest, header: Header) -> ShareKeys:
    """A participant's sealed shares, one for each live neighbour."""
    return ShareKeys(
        shares=tuple(
            SealedShare(sender=s.sender_id, recipient=s.recipient_id, envelope=s.envelope)
            for s in request.shares
        ),
        sender=header.participant,
        sequence=header.sequence,
        signature=header.signature,
    )


def unmask_from_proto(request: pb.UnmaskRequest, header: Header) -> UnmaskShares:
    """A survivor's answer to the unmask call."""
    return UnmaskShares(
        self_mask_shares=tuple((s.owner_id, s.share) for s in request.self_mask_shares),
        masking_key_shares=tuple((s.owner_id, s.share) for s in request.masking_key_shares),
        sender=header.participant,
        sequence=header.sequence,
        signature=header.signature,
    )


def ceremony_key_from_proto(request: pb.EnrollRequest, participant: str) -> CeremonyKey | None:
    """The signed ceremony key sent at enrolment, if any."""
    if not request.ceremony_public_key:
        return None
    return CeremonyKey(
        participant=participant,
        ceremony_public=request.ceremony_public_key,
        signature=request.ceremony_key_signature,
    )


def sealed_keys_from_proto(request: pb.CeremonyPost) -> dict[str, SealedKey]:
    """The maker's envelopes, by recipient.

    Raises:
        Malformed: two envelopes for one recipient.
    """
    sealed = {
        s.recipient_id: SealedKey(envelope=s.envelope, signature=s.signature)
        for s in request.secrets
    }
    if len(sealed) != len(request.secrets):
        raise Malformed("key ceremony: two envelopes for one recipient")
    return sealed


def ceremony_bundle_to_proto(keys: KeyState, sealed: SealedKey | None) -> pb.CeremonyBundle:
    """The current key's public parts, and the caller's envelope when it has one."""
    bundle = pb.CeremonyBundle(
        key_epoch=keys.epoch, maker_id=keys.maker, public_context=keys.public, ready=keys.epoch > 0
    )
    if sealed is not None:
        bundle.sealed_secret = sealed.envelope
        bundle.signature = sealed.signature
    return bundle
