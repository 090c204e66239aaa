"""Every protocol message survives the wire: what `accord.wire` writes, it reads back equal.

Each case sends a typed value through one module's `*_to_proto`, serialises and parses
it as gRPC does, and reads it back with the same module's `*_from_proto` (or, where
the reader takes the fields as they are, checks the fields). A field added to one
direction only, or spelt differently by the two, fails here; and so does a converter
that no case calls (`test_every_converter_is_in_a_round_trip_case`).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import accord.wire
from accord.crypto.ceremony import Ceremony, CeremonyKey
from accord.crypto.client_dp import ClientNoise
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
    UploadDone,
)
from accord.crypto.packing import choose_packing
from accord.crypto.profile import Profile
from accord.crypto.quantize import QuantSpec
from accord.errors import Malformed
from accord.proto.v1 import federation_pb2 as pb
from accord.wire import (
    ceremony,
    enrol,
    evidence,
    headers,
    keys,
    round_config,
    stages,
    status,
    tasks,
)

FEDERATION = "fed-wire"
NAMES = ("energy", "residential", "urban")


def a_round_config(profile: Profile) -> RoundConfig:
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


def an_evidence() -> SurvivorEvidence:
    return SurvivorEvidence(
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


# ---- stages and profiles ----


@pytest.mark.parametrize("stage", [None, *Stage])
def test_a_round_stage_reads_back_as_itself(stage: Stage | None) -> None:
    assert stages.stage_from_proto(stages.stage_to_proto(stage)) is stage


@pytest.mark.parametrize("lifecycle", list(Lifecycle))
def test_outside_a_round_a_participant_sees_the_lifecycle_it_may_act_on(
    lifecycle: Lifecycle,
) -> None:
    shown = stages.waiting_stage_to_proto(lifecycle)
    # A round or key ceremony without this participant looks like any other wait.
    busy = lifecycle in (Lifecycle.CEREMONY, Lifecycle.ROUND)
    assert stages.waiting_stage_from_proto(shown) is (Lifecycle.IDLE if busy else lifecycle)
    assert stages.stage_from_proto(shown) is None


def test_a_task_shows_the_round_stage_else_the_lifecycle() -> None:
    shown = stages.shown_stage(Stage.UNMASK, Lifecycle.ROUND)
    assert stages.stage_from_proto(shown) is Stage.UNMASK
    assert stages.waiting_stage_from_proto(shown) is None
    finished = stages.shown_stage(None, Lifecycle.FINISHED)
    assert stages.waiting_stage_from_proto(finished) is Lifecycle.FINISHED


def test_every_profile_reads_back_as_itself() -> None:
    for profile in Profile:
        assert stages.profile_from_proto(stages.profile_to_proto(profile)) is profile


def test_an_unknown_profile_is_malformed() -> None:
    with pytest.raises(Malformed):
        stages.profile_from_proto(pb.PROFILE_UNSPECIFIED)
    with pytest.raises(Malformed):
        stages.profile_from_proto(99)


# ---- headers ----


@pytest.mark.parametrize("stage", [None, *Stage])
def test_a_request_header_reads_back_equal(stage: Stage | None) -> None:
    header = headers.Header(FEDERATION, 9, stage, "urban", sequence=4, signature=b"s" * 64)
    assert headers.header_from_proto(over_the_wire(headers.header_to_proto(header))) == header


@given(
    federation_id=st.text(min_size=1, max_size=20),
    participant=st.text(min_size=1, max_size=20),
    round_number=st.integers(min_value=0, max_value=headers.MAX_ROUND),
    stage=st.sampled_from([None, *Stage]),
    sequence=st.integers(min_value=0, max_value=2**64 - 1),
    signature=st.binary(max_size=80),
)
def test_any_header_reads_back_equal(
    federation_id: str,
    participant: str,
    round_number: int,
    stage: Stage | None,
    sequence: int,
    signature: bytes,
) -> None:
    header = headers.Header(federation_id, round_number, stage, participant, sequence, signature)
    assert headers.header_from_proto(over_the_wire(headers.header_to_proto(header))) == header


def test_a_header_without_ids_or_past_the_last_round_is_malformed() -> None:
    with pytest.raises(Malformed):
        headers.header_from_proto(pb.RequestHeader(federation_id=FEDERATION))
    with pytest.raises(Malformed):
        headers.header_from_proto(
            pb.RequestHeader(federation_id=FEDERATION, participant_id="urban", round=2**63)
        )


# ---- round config ----


@pytest.mark.parametrize("profile", list(Profile))
def test_a_round_config_reads_back_equal(profile: Profile) -> None:
    config = a_round_config(profile)
    sent = round_config.round_config_to_proto(config, stage_deadline_s=30.0)
    received = over_the_wire(sent)
    assert received.stage_deadline_s == 30.0
    assert round_config.round_config_from_proto(received, federation_id=FEDERATION) == config


def test_a_client_noise_setting_reads_back_equal() -> None:
    noise = ClientNoise(noise_multiplier=1.1, honest_fraction=0.75, delta=1e-5)
    sent = round_config.client_noise_to_proto(noise)
    assert round_config.client_noise_from_proto(over_the_wire(sent)) == noise


# ---- the participant's round messages ----


def _signed(sent):  # type: ignore[no-untyped-def]
    received = over_the_wire(sent)
    return received, headers.header_from_proto(received.header)


def test_the_participants_round_messages_read_back_equal() -> None:
    config = a_round_config(Profile.CKKS_MASKS)
    advertise = AdvertiseKeys("energy", b"e" * 32, b"m" * 32, sequence=1, signature=b"a" * 64)
    received, header = _signed(keys.advertise_to_proto(advertise, config))
    assert keys.advertise_from_proto(received, header) == advertise
    assert (header.federation_id, header.round, header.stage) == (FEDERATION, 7, Stage.ADVERTISE)

    shares = ShareKeys(
        "energy",
        (SealedShare("energy", "urban", b"x" * 80), SealedShare("energy", "residential", b"y")),
        sequence=2,
        signature=b"b" * 64,
    )
    received, header = _signed(keys.share_keys_to_proto(shares, config))
    assert keys.share_keys_from_proto(received, header) == shares

    unmask = UnmaskShares(
        "energy",
        self_mask_shares=(("urban", b"s1"),),
        masking_key_shares=(("residential", b"k1"),),
        sequence=4,
        signature=b"c" * 64,
    )
    received, header = _signed(keys.unmask_to_proto(unmask, config))
    assert keys.unmask_from_proto(received, header) == unmask

    confirm = ConfirmSurvivors("energy", b"statement", sequence=3, signature=b"d" * 64)
    received, header = _signed(evidence.confirm_survivors_to_proto(confirm, config))
    assert evidence.confirm_survivors_from_proto(received, header) == confirm


def test_keys_advertised_for_another_participant_are_malformed() -> None:
    config = a_round_config(Profile.MASKS)
    advertise = AdvertiseKeys("energy", b"e" * 32, b"m" * 32, sequence=1, signature=b"a" * 64)
    received, header = _signed(keys.advertise_to_proto(advertise, config))
    received.keys.participant_id = "urban"
    with pytest.raises(Malformed):
        keys.advertise_from_proto(received, header)


def test_relayed_keys_and_shares_read_back_equal() -> None:
    advertise = AdvertiseKeys("urban", b"e" * 32, b"m" * 32, sequence=1, signature=b"a" * 64)
    sent_keys = over_the_wire(keys.signed_keys_to_proto(advertise))
    assert keys.signed_keys_from_proto(sent_keys) == advertise
    share = SealedShare("urban", "energy", b"z" * 48)
    assert keys.sealed_share_from_proto(over_the_wire(keys.sealed_share_to_proto(share))) == share


# ---- evidence ----


def test_survivor_evidence_reads_back_equal() -> None:
    signed = an_evidence()
    sent = evidence.evidence_to_proto(signed)
    assert evidence.evidence_from_proto(over_the_wire(sent)) == signed


_names = st.text(alphabet="abcdefghij", min_size=1, max_size=8)


@given(
    survivors=st.lists(_names, max_size=5, unique=True),
    dropped=st.lists(_names, max_size=3),
    receipts=st.lists(
        st.tuples(_names, st.binary(max_size=32), st.integers(0, 2**32 - 1), st.binary()),
        max_size=4,
    ),
    signatures=st.lists(st.tuples(_names, st.binary(max_size=32), st.binary()), max_size=4),
)
def test_any_survivor_evidence_reads_back_equal(
    survivors: list[str],
    dropped: list[str],
    receipts: list[tuple[str, bytes, int, bytes]],
    signatures: list[tuple[str, bytes, bytes]],
) -> None:
    signed = SurvivorEvidence(
        SurvivorSet(
            tuple(survivors),
            tuple(dropped),
            tuple(
                UploadDone(name, digest, count, sequence=9, signature=signature)
                for name, digest, count, signature in receipts
            ),
        ),
        tuple(
            ConfirmSurvivors(name, statement, sequence=10, signature=signature)
            for name, statement, signature in signatures
        ),
    )
    sent = evidence.evidence_to_proto(signed)
    assert evidence.evidence_from_proto(over_the_wire(sent)) == signed


# ---- tasks ----


def _task(inbox, stage: Stage, **fields):  # type: ignore[no-untyped-def]
    """An assignment in round 7 with `inbox`, as the participant receives it."""
    assignment = tasks.Assignment(
        lifecycle=Lifecycle.ROUND,
        round=7,
        stage=stage,
        config=a_round_config(Profile.CKKS_MASKS),
        inbox=inbox,
        **fields,
    )
    received = over_the_wire(tasks.assignment_to_proto(assignment, stage_deadline_s=12.0))
    assert stages.stage_from_proto(received.stage) is stage
    assert received.config.stage_deadline_s == 12.0
    assert (
        round_config.round_config_from_proto(received.config, federation_id=FEDERATION)
        == assignment.config
    )
    return received


def test_a_share_task_carries_the_neighbours_keys() -> None:
    inbox = NeighbourKeys(
        "energy",
        (
            AdvertiseKeys("urban", b"e" * 32, b"m" * 32, sequence=1, signature=b"a" * 64),
            AdvertiseKeys("residential", b"f" * 32, b"n" * 32, sequence=1, signature=b"b" * 64),
        ),
    )
    received = _task(inbox, Stage.SHARE)
    assert tasks.neighbour_keys_from_proto(received, "energy") == inbox


def test_an_upload_task_carries_the_shares_sealed_to_the_participant() -> None:
    inbox = RelayedShares("energy", (SealedShare("urban", "energy", b"x" * 80),))
    received = _task(inbox, Stage.UPLOAD)
    assert tasks.relayed_shares_from_proto(received, "energy") == inbox


def test_a_consistency_task_carries_the_survivor_set_to_sign() -> None:
    inbox = ConsistencyCall("energy", an_evidence().survivor_set)
    received = _task(inbox, Stage.CONSISTENCY, survivors=("energy", "urban"))
    assert tasks.consistency_call_from_proto(received, "energy") == inbox


def test_an_unmask_task_carries_who_survived_and_their_signatures() -> None:
    inbox = UnmaskCall("energy", ("energy", "urban"), ("residential",), an_evidence().signatures)
    received = _task(inbox, Stage.UNMASK, survivors=("energy", "urban"))
    assert tasks.unmask_call_from_proto(received, "energy") == inbox


def test_an_aggregate_task_reads_back_with_its_evidence() -> None:
    inbox = AggregateReady("energy", ("energy", "urban"), an_evidence())
    received = _task(inbox, Stage.AGGREGATE, survivors=("energy", "urban"))
    assert tasks.aggregate_ready_from_proto(received, "energy") == inbox


def test_an_aggregate_task_of_the_plaintext_profile_has_no_evidence() -> None:
    inbox = AggregateReady("energy", ("energy", "urban"), None)
    received = _task(inbox, Stage.AGGREGATE, survivors=("energy", "urban"))
    assert tasks.aggregate_ready_from_proto(received, "energy") == inbox


def test_a_key_ceremony_task_carries_the_signed_ceremony_keys() -> None:
    ceremony_keys = (
        CeremonyKey("energy", b"c" * 32, b"s" * 64),
        CeremonyKey("urban", b"d" * 32, b"t" * 64),
    )
    assignment = tasks.Assignment(
        lifecycle=Lifecycle.CEREMONY, round=3, stage=None, ceremony_keys=ceremony_keys, key_epoch=2
    )
    received = over_the_wire(tasks.assignment_to_proto(assignment, stage_deadline_s=1.0))
    assert received.stage == pb.KEY_CEREMONY
    assert (received.key_epoch, received.config.round) == (2, 3)
    assert tasks.ceremony_keys_from_proto(received) == {k.participant: k for k in ceremony_keys}
    entry = over_the_wire(ceremony.ceremony_key_to_proto(ceremony_keys[0]))
    assert ceremony.ceremony_key_from_proto(entry) == ceremony_keys[0]


def test_a_waiting_task_shows_the_lifecycle_and_the_ledger_head() -> None:
    assignment = tasks.Assignment(
        lifecycle=Lifecycle.FINISHED,
        round=4,
        stage=None,
        message="the federation ran its rounds",
        ledger_head=b"h" * 40,
        ledger_public_key=b"k" * 32,
    )
    received = over_the_wire(tasks.assignment_to_proto(assignment, stage_deadline_s=1.0))
    assert stages.waiting_stage_from_proto(received.stage) is Lifecycle.FINISHED
    assert (received.config.round, received.message) == (4, assignment.message)
    assert (received.ledger_head, received.ledger_public_key) == (b"h" * 40, b"k" * 32)


def test_the_aggregate_applied_receipt_is_its_header() -> None:
    sent = tasks.aggregate_applied_to_proto(federation_id=FEDERATION, participant="urban", round=5)
    assert headers.header_from_proto(over_the_wire(sent).header) == headers.Header(
        FEDERATION, 5, Stage.AGGREGATE, "urban"
    )


# ---- the key ceremony and enrolment ----


def test_the_makers_post_reads_back_as_envelopes_by_recipient() -> None:
    made = Ceremony(
        key_epoch=3,
        secret=None,
        public=b"public context",
        sealed={"urban": b"u" * 90, "energy": b"e" * 90},
        signatures={"urban": b"x" * 64, "energy": b"y" * 64},
    )
    header = headers.header_to_proto(headers.Header(FEDERATION, 0, None, "energy"))
    received = over_the_wire(ceremony.ceremony_post_to_proto(made, header=header))
    assert (received.key_epoch, received.public_context) == (3, b"public context")
    assert headers.header_from_proto(received.header).participant == "energy"
    assert ceremony.sealed_keys_from_proto(received) == {
        name: ceremony.SealedKey(made.sealed[name], made.signatures[name]) for name in made.sealed
    }


def test_two_envelopes_for_one_recipient_are_malformed() -> None:
    secret = pb.SealedSecret(recipient_id="urban", envelope=b"u", signature=b"s")
    with pytest.raises(Malformed):
        ceremony.sealed_keys_from_proto(pb.CeremonyPost(secrets=[secret, secret]))


@pytest.mark.parametrize("sealed", [None, ceremony.SealedKey(b"u" * 90, b"s" * 64)])
def test_a_ceremony_bundle_carries_the_key_and_the_callers_envelope(
    sealed: ceremony.SealedKey | None,
) -> None:
    bundle = over_the_wire(
        ceremony.ceremony_bundle_to_proto(key_epoch=2, maker="energy", public=b"p", sealed=sealed)
    )
    assert (bundle.key_epoch, bundle.maker_id, bundle.public_context, bundle.ready) == (
        2,
        "energy",
        b"p",
        True,
    )
    received = ceremony.SealedKey(bundle.sealed_secret, bundle.signature)
    assert received == (sealed or ceremony.SealedKey(b"", b""))


def test_the_ceremony_key_of_an_enrolment_reads_back_when_sent() -> None:
    request = pb.EnrollRequest(ceremony_public_key=b"c" * 32, ceremony_key_signature=b"s" * 64)
    assert ceremony.enrolment_ceremony_key_from_proto(
        over_the_wire(request), "urban"
    ) == CeremonyKey("urban", b"c" * 32, b"s" * 64)
    assert ceremony.enrolment_ceremony_key_from_proto(pb.EnrollRequest(), "urban") is None


@dataclass(frozen=True)
class _Member:
    participant_id: str
    identity_public_key: bytes
    ceremony_public_key: bytes
    certificate_der: bytes


def test_the_enrolment_roster_reads_back_the_identity_keys() -> None:
    identities = {"urban": b"u" * 32, "energy": b"e" * 32, "residential": b"r" * 32}
    plain = [over_the_wire(e) for e in enrol.roster_to_proto(identities, None)]
    assert [e.participant_id for e in plain] == sorted(identities)
    assert enrol.roster_from_proto(plain) == identities

    members = [
        _Member("urban", b"u" * 32, b"c" * 32, b"cert-u"),
        _Member("energy", b"e" * 32, b"d" * 32, b"cert-e"),
        _Member("residential", b"x" * 32, b"f" * 32, b"cert-r"),  # not the key in use
    ]
    certified = [over_the_wire(e) for e in enrol.roster_to_proto(identities, members)]
    assert enrol.roster_from_proto(certified) == {"energy": b"e" * 32, "urban": b"u" * 32}
    assert [(e.ceremony_public_key, e.certificate) for e in certified] == [
        (b"d" * 32, b"cert-e"),
        (b"c" * 32, b"cert-u"),
    ]


# ---- status ----


def a_round_record(outcome: Stage | None) -> status.RoundRecord:
    return status.RoundRecord(
        round=3,
        started_s=0.0,
        stage_durations_s={"advertise": 0.5, "upload": 2.25},
        duration_s=4.0,
        outcome=outcome,
        selected=NAMES,
        survivors=("energy", "urban"),
        bytes_up={"energy": 100, "urban": 120},
        bytes_down={"energy": 90},
        message="",
    )


@pytest.mark.parametrize("outcome", [Stage.DONE, Stage.ABORTED, None])
def test_a_round_summary_reads_back_equal(outcome: Stage | None) -> None:
    record = a_round_record(outcome)
    sent = status.round_record_to_proto(record)
    assert status.round_record_from_proto(over_the_wire(sent)) == record


def test_the_status_lists_the_members_and_the_recent_rounds() -> None:
    snapshot = status.Status(
        lifecycle=Lifecycle.ROUND,
        round=3,
        stage=Stage.UPLOAD,
        rounds_completed=2,
        rounds_planned=5,
        members=(("energy", True, "training", 100, 90), ("urban", False, "", 0, 0)),
        recent_rounds=(a_round_record(Stage.DONE),),
    )
    sent = status.status_to_proto(snapshot, federation_id=FEDERATION, profile=Profile.MASKS)
    received = over_the_wire(sent)
    assert (received.federation_id, received.round) == (FEDERATION, 3)
    assert stages.stage_from_proto(received.stage) is Stage.UPLOAD
    assert stages.profile_from_proto(received.profile) is Profile.MASKS
    assert (received.rounds_completed, received.rounds_planned) == (2, 5)
    assert (
        tuple(
            (p.participant_id, p.online, p.state, p.bytes_up, p.bytes_down)
            for p in received.participants
        )
        == snapshot.members
    )
    assert (
        tuple(status.round_record_from_proto(r) for r in received.recent_rounds)
        == snapshot.recent_rounds
    )


# ---- the cases cover every converter ----


def _converters() -> set[str]:
    """Every public `*_to_proto` / `*_from_proto` of `accord.wire`, as `module.name`."""
    found = set()
    for info in pkgutil.iter_modules(accord.wire.__path__):
        module = importlib.import_module(f"accord.wire.{info.name}")
        for name, value in inspect.getmembers(module, inspect.isfunction):
            ours = value.__module__ == module.__name__
            if ours and name.endswith(("_to_proto", "_from_proto")):
                found.add(f"{info.name}.{name}")
    return found


def _called_in_cases() -> set[str]:
    """Every `module.function` a `test_*` function (or a helper of this file) calls."""
    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    return {
        f"{node.func.value.id}.{node.func.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
    }


def test_every_converter_is_in_a_round_trip_case() -> None:
    converters = _converters()
    assert len(converters) > 30  # the package is found and read
    missing = sorted(converters - _called_in_cases())
    assert not missing, f"converters no round-trip case calls: {missing}"


def test_every_writer_has_its_reader() -> None:
    """Each `*_to_proto` has a `*_from_proto` of the same message, or a reason here."""
    readers_elsewhere = {
        # The reader takes the header (or the fields) as they are; see each module.
        "tasks.assignment_to_proto": "per-stage *_from_proto in tasks",
        "tasks.aggregate_applied_to_proto": "headers.header_from_proto",
        "ceremony.ceremony_post_to_proto": "ceremony.sealed_keys_from_proto",
        "ceremony.ceremony_bundle_to_proto": "the participant reads the fields",
        "status.status_to_proto": "displays read the fields",
    }
    converters = _converters()
    for name in sorted(c for c in converters if c.endswith("_to_proto")):
        if name in readers_elsewhere:
            continue
        assert name.replace("_to_proto", "_from_proto") in converters, name
