"""The round machines, driven end to end in memory: they read as the protocol's specification."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accord.crypto import agreement, identity, masks, prg, shamir
from accord.crypto.messages import (
    AdvertiseKeys,
    NeighbourKeys,
    RelayedShares,
    ShareKeys,
    Stage,
    UnmaskCall,
    UnmaskShares,
    UploadDone,
    sign,
)
from accord.crypto.profile import Profile
from accord.errors import (
    BadSignature,
    Malformed,
    NotAllowed,
    OutOfStage,
    ProtocolError,
    Replayed,
)

from .harness import FederationHarness, seeded_bytes

SECURE = [Profile.CKKS_MASKS, Profile.CKKS, Profile.MASKS]


def state_of(machine: Any) -> dict[str, Any]:
    """Everything a machine remembers, for "a refused message changes nothing" checks."""
    return copy.deepcopy(
        {k: v for k, v in vars(machine).items() if k not in ("_table", "_random_bytes")}
    )


def assert_exact(result: Any) -> None:
    assert result.stage is Stage.AGGREGATE, result.abort_reason
    np.testing.assert_array_equal(result.aggregate, result.expected)


@pytest.mark.parametrize("profile", [*SECURE, Profile.NONE])
def test_round_with_everyone_sums_every_input(profile: Profile) -> None:
    harness = FederationHarness(4, profile=profile, element_count=9000)
    result = harness.run()
    assert result.survivors == harness.ids
    if profile is Profile.NONE:
        np.testing.assert_allclose(result.aggregate, result.expected, rtol=1e-6)
    else:
        assert_exact(result)
    assert all(m.stage is Stage.DONE for m in harness.participants.values())


@pytest.mark.parametrize("profile", [Profile.CKKS_MASKS, Profile.MASKS])
def test_round_completes_when_two_of_five_drop_after_sharing_keys(profile: Profile) -> None:
    harness = FederationHarness(5, profile=profile, threshold=3, element_count=5000)
    result = harness.run({Stage.UPLOAD: {"p01", "p03"}})
    assert result.survivors == ("p00", "p02", "p04")
    assert_exact(result)


@pytest.mark.parametrize("stage", [Stage.ADVERTISE, Stage.SHARE, Stage.UPLOAD, Stage.UNMASK])
def test_round_completes_after_a_dropout_at_each_stage(stage: Stage) -> None:
    harness = FederationHarness(5, profile=Profile.MASKS, threshold=3, element_count=777)
    result = harness.run({stage: {"p02"}})
    assert_exact(result)
    expected_survivors = set(harness.ids) - ({"p02"} if stage is not Stage.UNMASK else set())
    assert set(result.survivors) == expected_survivors


def test_aggregate_stage_closes_once_every_survivor_applied_it() -> None:
    harness = FederationHarness(5, profile=Profile.MASKS, threshold=3, element_count=100)
    assert_exact(harness.run({Stage.UPLOAD: {"p01"}}))
    machine = harness.coordinator
    with pytest.raises(NotAllowed):
        machine.applied("p01")  # dropped: its update is not in the sum
    survivors = machine.outcome.survivors
    for name in survivors[:-1]:
        assert machine.applied(name) == []
    before = state_of(machine)
    with pytest.raises(Replayed):
        machine.applied(survivors[0])
    assert state_of(machine) == before and machine.stage is Stage.AGGREGATE
    assert machine.applied(survivors[-1]) == []
    assert machine.stage is Stage.DONE and machine.applied_by == set(survivors)
    with pytest.raises(OutOfStage):
        machine.applied(survivors[0])


def test_round_aborts_below_threshold_and_says_why() -> None:
    harness = FederationHarness(5, profile=Profile.MASKS, threshold=4, element_count=100)
    result = harness.run({Stage.UPLOAD: {"p00", "p01"}})
    assert result.stage is Stage.ABORTED
    assert "3 of 4" in result.abort_reason
    assert all(
        m.stage is Stage.ABORTED
        for p, m in harness.participants.items()
        if p not in harness.dropped
    )


def test_round_aborts_when_too_few_answer_the_unmask_call() -> None:
    harness = FederationHarness(4, profile=Profile.MASKS, threshold=3, element_count=100)
    result = harness.run({Stage.UNMASK: {"p00", "p01"}})
    assert result.stage is Stage.ABORTED
    assert "unmask" in result.abort_reason


def test_sparse_secagg_plus_graph_round_is_exact() -> None:
    harness = FederationHarness(
        12, profile=Profile.MASKS, threshold=3, neighbour_degree=4, element_count=2000
    )
    result = harness.run({Stage.UPLOAD: {"p05"}, Stage.UNMASK: {"p09"}})
    assert_exact(result)
    assert "p05" not in result.survivors


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_dropout_pattern_within_threshold_sums_exactly_the_survivors(
    data: st.DataObject,
) -> None:
    profile = data.draw(st.sampled_from(SECURE))
    n = data.draw(st.integers(2, 12 if profile is Profile.MASKS else 6))
    threshold = data.draw(st.integers(2, n))
    elements = data.draw(st.integers(1, 20000))
    harness = FederationHarness(
        n, profile=profile, threshold=threshold, element_count=elements, seed=n
    )
    stages = (
        [Stage.ADVERTISE, Stage.SHARE, Stage.UPLOAD, Stage.UNMASK]
        if profile.uses_masks
        else [Stage.UPLOAD]
    )
    budget = n - threshold
    drops: dict[Stage, set[str]] = {}
    remaining = list(harness.ids)
    for stage in stages:
        k = data.draw(st.integers(0, budget))
        chosen = set(data.draw(st.permutations(remaining))[:k])
        drops[stage] = chosen
        remaining = [p for p in remaining if p not in chosen]
        budget -= k
    result = harness.run(drops)
    assert_exact(result)


def test_default_hypothesis_run_covers_every_secure_profile_with_random_dropouts() -> None:
    """A fast, seeded sweep in the default run; the slow test above explores more."""
    rng = np.random.default_rng(7)
    for profile in SECURE:
        n = 6
        harness = FederationHarness(
            n, profile=profile, threshold=3, element_count=int(rng.integers(1, 9000))
        )
        victims = [str(v) for v in rng.permutation(harness.ids)[:3]]
        stages = (
            [Stage.SHARE, Stage.UPLOAD, Stage.UNMASK] if profile.uses_masks else [Stage.UPLOAD] * 3
        )
        drops: dict[Stage, set[str]] = {}
        for stage, victim in zip(stages, victims, strict=True):
            drops.setdefault(stage, set()).add(victim)
        assert_exact(harness.run(drops))


def test_late_upload_after_being_declared_dropped_is_refused() -> None:
    harness = FederationHarness(4, profile=Profile.MASKS, threshold=3, element_count=100)
    harness.run({Stage.UPLOAD: {"p03"}, Stage.UNMASK: {"p00", "p01", "p02"}})
    # The coordinator declared p03 dropped and moved on; nothing may add its input now.
    assert harness.coordinator.stage in (Stage.UNMASK, Stage.ABORTED)
    with pytest.raises((OutOfStage, NotAllowed)):
        harness.coordinator.may_upload("p03")


def test_dropped_participant_self_mask_is_never_requested() -> None:
    harness = FederationHarness(4, profile=Profile.MASKS, threshold=3, element_count=100)
    result = harness.run({Stage.UPLOAD: {"p03"}})
    assert_exact(result)
    # Each survivor answered one call: s^SK shares for p03, and never a share of its b.
    answered = harness.coordinator._unmasked  # the coordinator's own record of what it got
    for message in answered.values():
        assert "p03" not in dict(message.self_mask_shares)
        assert "p03" in dict(message.masking_key_shares)


def test_coordinator_with_t_minus_1_colluders_cannot_unmask_an_honest_update() -> None:
    n, t = 5, 3
    harness = FederationHarness(n, profile=Profile.MASKS, threshold=t, element_count=4096)
    result = harness.run()
    assert_exact(result)
    honest = "p00"
    colluders = ["p01", "p02"]  # t - 1 of them, plus the coordinator
    held = [harness.participants[c]._held[honest] for c in colluders]
    with pytest.raises(Exception, match="2 of 3"):
        shamir.combine([pair[1] for pair in held], t, 16)
    with pytest.raises(Exception, match="2 of 3"):
        shamir.combine([pair[0] for pair in held], t, 32)
    # Strip every mask the colluders know from the honest participant's masked input.
    machine = harness.participants[honest]
    masked = masks.apply(
        harness.inputs[honest],
        0,
        masks.participant_terms(honest, machine._self_mask_seed, machine._pairwise_seeds),
        16,
    )
    known = [
        masks.MaskTerm(
            seed=harness.participants[c]._pairwise_seeds[honest], sign=-1 if c > honest else 1
        )
        for c in colluders
    ]
    stripped = masks.apply(masked, 0, known, 16)
    assert not np.array_equal(stripped, harness.inputs[honest])
    # What is left is still masked: the difference from the input looks uniform.
    residue = (stripped.astype(np.int64) - harness.inputs[honest].astype(np.int64)) % (1 << 16)
    assert abs(residue.mean() / (1 << 16) - 0.5) < 0.03
    assert np.mean(residue == 0) < 0.01


def test_coordinator_substituting_a_public_key_is_detected_and_changes_nothing() -> None:
    harness = FederationHarness(3, profile=Profile.CKKS_MASKS, threshold=2, element_count=10)
    starts = [m for p in harness.ids for m in harness.participants[p].start()]
    to_send = harness._to_coordinator(starts)
    victim = harness.participants["p00"]
    message = next(m for m in to_send if m.recipient == "p00")
    assert isinstance(message, NeighbourKeys)
    own = agreement.generate_keypair(seeded_bytes("evil"))
    forged = dataclasses.replace(message.keys[0], masking_public=own.public)
    before = state_of(victim)
    with pytest.raises(BadSignature):
        victim.receive(dataclasses.replace(message, keys=(forged, *message.keys[1:])))
    assert state_of(victim) == before
    assert victim.receive(message)  # the genuine keys still go through


def _started(profile: Profile = Profile.MASKS) -> tuple[FederationHarness, list[Any]]:
    harness = FederationHarness(4, profile=profile, threshold=3, element_count=50)
    return harness, [m for p in harness.ids for m in harness.participants[p].start()]


def test_replayed_unsigned_missigned_and_foreign_messages_are_refused_without_change() -> None:
    harness, starts = _started()
    coordinator = harness.coordinator
    coordinator.receive(starts[0])
    before = state_of(coordinator)
    keys = identity.generate_identity(seeded_bytes("stranger"))
    cases = [
        (starts[0], Replayed),
        (dataclasses.replace(starts[0], sequence=99), Replayed),
        (dataclasses.replace(starts[1], signature=b""), BadSignature),
        (sign(starts[1], harness.config, keys.private), BadSignature),
        (dataclasses.replace(starts[1], sender="intruder"), NotAllowed),
        (dataclasses.replace(starts[1], masking_public=b"short"), Malformed),
        (UploadDone(sender="p01", digest=b"\0" * 32, chunk_count=1), OutOfStage),
        (ShareKeys(sender="p01", shares=()), OutOfStage),
        (UnmaskShares(sender="p01", self_mask_shares=(), masking_key_shares=()), OutOfStage),
    ]
    for message, error in cases:
        with pytest.raises(error):
            coordinator.receive(message)
        assert state_of(coordinator) == before, f"{type(message).__name__} changed state"


def test_every_message_in_every_stage_is_legal_or_refused_without_change() -> None:
    """Record every legal message of a full round, then replay each into every stage."""
    recorded: dict[Stage, list[Any]] = {}
    harness = FederationHarness(4, profile=Profile.MASKS, threshold=3, element_count=64)
    original = harness.coordinator.receive

    def recording(message: Any) -> Any:
        recorded.setdefault(message.stage, []).append(message)
        return original(message)

    harness.coordinator.receive = recording  # type: ignore[method-assign]
    assert_exact(harness.run())
    catalogue = [m for messages in recorded.values() for m in messages]
    for stop in (Stage.ADVERTISE, Stage.SHARE, Stage.UPLOAD, Stage.UNMASK, Stage.AGGREGATE):
        fresh = FederationHarness(4, profile=Profile.MASKS, threshold=3, element_count=64)
        coordinator = fresh.coordinator
        for message in catalogue:
            if coordinator.stage is stop:
                break
            if message.stage is coordinator.stage:
                coordinator.receive(message)
        for message in catalogue:
            before = state_of(coordinator)
            stage_before = coordinator.stage
            try:
                coordinator.receive(message)
            except ProtocolError:
                assert state_of(coordinator) == before
            else:
                assert message.stage is stage_before


def test_unmask_call_naming_one_id_as_survivor_and_dropped_is_refused() -> None:
    harness = FederationHarness(3, profile=Profile.MASKS, threshold=2, element_count=10)
    harness.run({Stage.UNMASK: set(harness.ids)})
    machine = harness.participants["p00"]
    assert machine.stage is Stage.UNMASK
    before = state_of(machine)
    with pytest.raises(ProtocolError, match="both"):
        machine.receive(UnmaskCall(recipient="p00", survivors=("p00", "p01"), dropped=("p01",)))
    assert state_of(machine) == before
    signatures = tuple(harness.coordinator._confirmed.values())
    answer = machine.receive(
        UnmaskCall(
            recipient="p00",
            survivors=("p00", "p01", "p02"),
            dropped=(),
            signatures=signatures,
        )
    )
    assert len(answer) == 1
    with pytest.raises(OutOfStage):
        machine.receive(UnmaskCall(recipient="p00", survivors=("p00", "p01"), dropped=("p02",)))


def test_relayed_share_with_an_altered_envelope_is_refused_without_change() -> None:
    harness, starts = _started()
    keys_out = harness._to_coordinator(starts)
    shares = harness._to_participants(keys_out)
    relays = harness._to_coordinator(shares)
    message = next(m for m in relays if isinstance(m, RelayedShares) and m.recipient == "p00")
    victim = harness.participants["p00"]
    bad = dataclasses.replace(message.shares[0], envelope=message.shares[0].envelope[:-1] + b"\0")
    before = state_of(victim)
    with pytest.raises(Exception, match="share envelope from"):
        victim.receive(dataclasses.replace(message, shares=(bad, *message.shares[1:])))
    assert state_of(victim) == before
    assert victim.receive(message) == []
    assert victim.stage is Stage.UPLOAD


def test_round_is_byte_for_byte_reproducible_with_seeded_randomness() -> None:
    first = FederationHarness(3, profile=Profile.MASKS, threshold=2, element_count=300).run()
    second = FederationHarness(3, profile=Profile.MASKS, threshold=2, element_count=300).run()
    np.testing.assert_array_equal(first.aggregate, second.aggregate)
    assert prg.expand(b"\1" * 16, 0, 4, 16).dtype == np.uint32


def test_advertise_messages_bind_round_and_federation() -> None:
    harness, starts = _started()
    other_round = dataclasses.replace(harness.config, round=2)
    message: AdvertiseKeys = starts[1]
    assert isinstance(message, AdvertiseKeys)
    signed_for_round_2 = sign(message, other_round, harness.identity_keys["p01"].private)
    with pytest.raises(BadSignature):
        harness.coordinator.receive(signed_for_round_2)
    other_federation = dataclasses.replace(harness.config, federation_id="another")
    with pytest.raises(BadSignature):
        harness.coordinator.receive(
            sign(message, other_federation, harness.identity_keys["p01"].private)
        )
    harness.coordinator.receive(message)
