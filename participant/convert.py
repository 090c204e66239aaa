"""The participant's side of the wire: `*_to_proto` for what it sends, `*_from_proto` for
what it receives (the coordinator's mirror is `coordinator/convert.py`).

Stage and profile enums convert by name: `accord.crypto` and `accord.v1` spell every
member alike.
"""

from __future__ import annotations

from accord.crypto.ceremony import CeremonyKey
from accord.crypto.client_dp import ClientNoise
from accord.crypto.messages import (
    AdvertiseKeys,
    AggregateReady,
    ConfirmSurvivors,
    ConsistencyCall,
    NeighbourKeys,
    ParticipantMessage,
    RelayedShares,
    RoundConfig,
    SealedShare,
    ShareKeys,
    Stage,
    SurvivorEvidence,
    SurvivorSet,
    UnmaskCall,
    UnmaskShares,
    UploadDone,
)
from accord.crypto.packing import PackingSpec
from accord.crypto.profile import Profile
from accord.crypto.quantize import QuantSpec
from accord.errors import Malformed
from accord.proto.v1 import federation_pb2 as pb


def stage_to_proto(stage: Stage | None) -> pb.Stage.ValueType:
    """A round stage by name; None (outside a round) is `STAGE_UNSPECIFIED`."""
    return pb.STAGE_UNSPECIFIED if stage is None else pb.Stage.Value(stage.name)


def stage_from_proto(value: int) -> Stage | None:
    """The round stage of a task; None for the stages outside a round (ENROLL, IDLE...)."""
    name = pb.Stage.Name(value) if value in pb.Stage.values() else ""
    return Stage[name] if name in Stage.__members__ else None


def profile_from_proto(value: int) -> Profile:
    """`accord.v1.CKKS_MASKS` -> `Profile.CKKS_MASKS`.

    Raises:
        Malformed: the value names no profile.
    """
    name = pb.Profile.Name(value) if value in pb.Profile.values() else ""
    if name not in Profile.__members__:
        raise Malformed(f"profile {value} is not one this participant knows")
    return Profile[name]


def header_to_proto(
    *,
    federation_id: str,
    participant: str,
    round: int = 0,
    stage: Stage | None = None,
    sequence: int = 0,
    signature: bytes = b"",
) -> pb.RequestHeader:
    """The routing fields every request carries."""
    return pb.RequestHeader(
        federation_id=federation_id,
        round=round,
        stage=stage_to_proto(stage),
        participant_id=participant,
        sequence=sequence,
        signature=signature,
    )


def aggregate_applied_to_proto(
    *, federation_id: str, participant: str, round: int
) -> pb.AggregateApplied:
    """The receipt that `participant` applied round `round`'s aggregate (`ConfirmApplied`)."""
    header = header_to_proto(
        federation_id=federation_id, participant=participant, round=round, stage=Stage.AGGREGATE
    )
    return pb.AggregateApplied(header=header)


def round_config_from_proto(message: pb.RoundConfig, *, federation_id: str) -> RoundConfig:
    """The round's parameters as announced by the coordinator.

    Raises:
        ConfigError: the parameters are inconsistent (from `RoundConfig`'s own checks).
        Malformed: the profile is unknown.
    """
    quant = QuantSpec(
        modulus_bits=message.modulus_bits,
        max_participants=message.max_participants,
        clip_norm=message.clip_norm,
        value_bound=message.value_bound or None,
        weight_cap=message.weight_cap or None,
    )
    packing = None
    if message.fields_per_real:
        packing = PackingSpec(
            modulus_bits=message.modulus_bits,
            max_participants=message.max_participants,
            fields_per_real=message.fields_per_real,
            field_bits=message.field_bits,
            scale_bits=message.scale_bits,
            poly_modulus_degree=message.poly_modulus_degree,
        )
    return RoundConfig(
        federation_id=federation_id,
        round=message.round,
        profile=profile_from_proto(message.profile),
        selected=tuple(message.selected),
        threshold=message.threshold,
        quant=quant,
        element_count=message.element_count,
        packing=packing,
        neighbour_degree=message.neighbour_degree,
        graph_seed=message.graph_seed,
        key_epoch=message.key_epoch,
        client_noise=client_noise_from_proto(message),
    )


def client_noise_from_proto(message: pb.RoundConfig) -> ClientNoise | None:
    """The round's client-level noise setting; None when the coordinator sets none.

    Raises:
        ConfigError: the setting is out of range.
    """
    if not message.HasField("client_noise"):
        return None
    noise = message.client_noise
    return ClientNoise(
        noise_multiplier=noise.noise_multiplier,
        honest_fraction=noise.honest_fraction,
        delta=noise.delta,
    )


def _signed_header(message: ParticipantMessage, config: RoundConfig) -> pb.RequestHeader:
    return header_to_proto(
        federation_id=config.federation_id,
        participant=message.sender,
        round=config.round,
        stage=message.stage,
        sequence=message.sequence,
        signature=message.signature,
    )


def advertise_to_proto(message: AdvertiseKeys, config: RoundConfig) -> pb.AdvertiseKeysRequest:
    """The participant's signed key advertisement."""
    return pb.AdvertiseKeysRequest(
        header=_signed_header(message, config),
        keys=pb.SignedKeys(
            participant_id=message.sender,
            encryption_public_key=message.encryption_public,
            masking_public_key=message.masking_public,
            signature=message.signature,
            sequence=message.sequence,
        ),
    )


def share_keys_to_proto(message: ShareKeys, config: RoundConfig) -> pb.ShareKeysRequest:
    """The participant's sealed shares, one for each live neighbour."""
    return pb.ShareKeysRequest(
        header=_signed_header(message, config),
        shares=[
            pb.SealedShare(sender_id=s.sender, recipient_id=s.recipient, envelope=s.envelope)
            for s in message.shares
        ],
    )


def unmask_to_proto(message: UnmaskShares, config: RoundConfig) -> pb.UnmaskRequest:
    """The participant's answer to the unmask call."""
    return pb.UnmaskRequest(
        header=_signed_header(message, config),
        self_mask_shares=[pb.Share(owner_id=o, share=s) for o, s in message.self_mask_shares],
        masking_key_shares=[pb.Share(owner_id=o, share=s) for o, s in message.masking_key_shares],
    )


def neighbour_keys_from_proto(task: pb.Task, me: str) -> NeighbourKeys:
    """The neighbours' key advertisements relayed in a SHARE task."""
    return NeighbourKeys(
        recipient=me,
        keys=tuple(
            AdvertiseKeys(
                sender=k.participant_id,
                encryption_public=k.encryption_public_key,
                masking_public=k.masking_public_key,
                sequence=k.sequence,
                signature=k.signature,
            )
            for k in task.neighbour_keys
        ),
    )


def relayed_shares_from_proto(task: pb.Task, me: str) -> RelayedShares:
    """The sealed shares addressed to this participant, relayed in an UPLOAD task."""
    return RelayedShares(
        recipient=me,
        shares=tuple(
            SealedShare(sender=s.sender_id, recipient=s.recipient_id, envelope=s.envelope)
            for s in task.shares
        ),
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
        header=_signed_header(message, config), statement=message.statement
    )


def ceremony_keys_from_proto(task: pb.Task) -> dict[str, CeremonyKey]:
    """The signed ceremony keys a KEY_CEREMONY task asks the maker to seal to."""
    return {
        e.participant_id: CeremonyKey(
            participant=e.participant_id,
            ceremony_public=e.ceremony_public_key,
            signature=e.ceremony_key_signature,
        )
        for e in task.ceremony_keys
    }
