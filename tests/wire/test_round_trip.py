"""Every protocol message survives the wire: what one role's converter writes, the other
role's converter reads back equal (`coordinator/convert.py` <-> `participant/convert.py`).

A field added to a message on one side only, or spelt differently by the two, fails here.
"""

from __future__ import annotations

import pytest

from accord.coordinator import convert as coordinator_side
from accord.crypto.client_dp import ClientNoise
from accord.crypto.messages import (
    AdvertiseKeys,
    AggregateReady,
    ConfirmSurvivors,
    RoundConfig,
    SealedShare,
    ShareKeys,
    Stage,
    SurvivorEvidence,
    SurvivorSet,
    UnmaskShares,
    UploadDone,
)
from accord.crypto.packing import choose_packing
from accord.crypto.profile import Profile
from accord.crypto.quantize import QuantSpec
from accord.participant import convert as participant_side
from accord.proto.v1 import federation_pb2 as pb

FEDERATION = "fed-wire"
NAMES = ("energy", "residential", "urban")


def round_config(profile: Profile) -> RoundConfig:
    return RoundConfig(
        federation_id=FEDERATION,
        round=7,
        profile=profile,
        selected=NAMES,
        threshold=2,
        quant=QuantSpec(modulus_bits=16, max_participants=3, clip_norm=40.0),
        element_count=1234,
        packing=choose_packing(16, 3) if profile.uses_ckks else None,
        neighbour_degree=3,
        graph_seed=bytes(range(32)) if profile.uses_masks else b"",
        key_epoch=2,
        client_noise=ClientNoise(noise_multiplier=0.05, honest_fraction=0.5, delta=1e-6)
        if profile.is_secure
        else None,
    )


def over_the_wire(message):  # type: ignore[no-untyped-def]
    """Serialise and parse, as gRPC does."""
    return type(message).FromString(message.SerializeToString())


@pytest.mark.parametrize("profile", list(Profile))
def test_a_round_config_reads_back_equal(profile: Profile) -> None:
    config = round_config(profile)
    sent = coordinator_side.round_config_to_proto(config, stage_deadline_s=30.0)
    assert (
        participant_side.round_config_from_proto(over_the_wire(sent), federation_id=FEDERATION)
        == config
    )


@pytest.mark.parametrize("stage", [None, *Stage])
def test_a_request_header_reads_back_equal(stage: Stage | None) -> None:
    sent = participant_side.header_to_proto(
        federation_id=FEDERATION,
        participant="urban",
        round=9,
        stage=stage,
        sequence=4,
        signature=b"s" * 64,
    )
    header = coordinator_side.header_from_proto(over_the_wire(sent))
    assert (header.federation_id, header.participant, header.round, header.stage) == (
        FEDERATION,
        "urban",
        9,
        stage,
    )
    assert (header.sequence, header.signature) == (4, b"s" * 64)


def test_every_profile_reads_back_as_itself() -> None:
    for profile in Profile:
        assert participant_side.profile_from_proto(coordinator_side.profile_to_proto(profile)) is (
            profile
        )


def _signed(sent):  # type: ignore[no-untyped-def]
    received = over_the_wire(sent)
    return received, coordinator_side.header_from_proto(received.header)


def test_the_participants_round_messages_read_back_equal() -> None:
    config = round_config(Profile.CKKS_MASKS)
    advertise = AdvertiseKeys("energy", b"e" * 32, b"m" * 32, sequence=1, signature=b"a" * 64)
    received, header = _signed(participant_side.advertise_to_proto(advertise, config))
    assert coordinator_side.advertise_from_proto(received, header) == advertise

    shares = ShareKeys(
        "energy",
        (SealedShare("energy", "urban", b"x" * 80), SealedShare("energy", "residential", b"y")),
        sequence=2,
        signature=b"b" * 64,
    )
    received, header = _signed(participant_side.share_keys_to_proto(shares, config))
    assert coordinator_side.share_keys_from_proto(received, header) == shares

    unmask = UnmaskShares(
        "energy",
        self_mask_shares=(("urban", b"s1"),),
        masking_key_shares=(("residential", b"k1"),),
        sequence=4,
        signature=b"c" * 64,
    )
    received, header = _signed(participant_side.unmask_to_proto(unmask, config))
    assert coordinator_side.unmask_from_proto(received, header) == unmask

    confirm = ConfirmSurvivors("energy", b"statement", sequence=3, signature=b"d" * 64)
    received, header = _signed(participant_side.confirm_survivors_to_proto(confirm, config))
    assert coordinator_side.confirm_survivors_from_proto(received, header) == confirm


def test_survivor_evidence_reads_back_equal() -> None:
    evidence = SurvivorEvidence(
        SurvivorSet(
            survivors=("energy", "urban"),
            dropped=("residential",),
            commitments=(
                UploadDone("energy", b"\x01" * 32, 3, sequence=5, signature=b"e" * 64),
                UploadDone("urban", b"\x02" * 32, 3, sequence=5, signature=b"u" * 64),
            ),
        ),
        (
            ConfirmSurvivors("energy", b"st", sequence=6, signature=b"f" * 64),
            ConfirmSurvivors("urban", b"st", sequence=6, signature=b"g" * 64),
        ),
    )
    sent = coordinator_side.aggregate_evidence_to_proto(evidence)
    assert sent is not None
    assert participant_side.evidence_from_proto(over_the_wire(sent)) == evidence


def test_an_aggregate_task_reads_back_with_its_evidence() -> None:
    evidence = SurvivorEvidence(SurvivorSet(("energy", "urban"), (), ()), ())
    task = pb.Task(stage=pb.AGGREGATE, survivors=["energy", "urban"])
    task.evidence.CopyFrom(coordinator_side.aggregate_evidence_to_proto(evidence))
    ready = participant_side.aggregate_ready_from_proto(over_the_wire(task), "energy")
    assert ready == AggregateReady("energy", ("energy", "urban"), evidence)
