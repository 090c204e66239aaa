"""The consistency round against a coordinator that lies about who survived.

Each test plays the active coordinator by hand against the real `ParticipantRound`s
(driven through the real pipeline by `FederationHarness` up to the uploads): it sends
different members different survivor sets, forwards too few or foreign signatures, drops
or swaps upload commitments, or announces an aggregate without evidence. Honest members
must refuse, with nothing changed, before any share leaves them.
"""

from __future__ import annotations

import dataclasses

import pytest

from accord.crypto import consistency
from accord.crypto.messages import (
    AggregateReady,
    ConfirmSurvivors,
    ConsistencyCall,
    Stage,
    SurvivorEvidence,
    SurvivorSet,
    UnmaskCall,
    UnmaskShares,
)
from accord.crypto.participant_round import ParticipantRound
from accord.crypto.profile import Profile
from accord.errors import BadSignature, IntegrityError, Malformed, OutOfStage, ProtocolError
from tests.crypto.harness import FederationHarness
from tests.crypto.test_round import state_of


def _uploaded(
    profile: Profile = Profile.MASKS, n: int = 5
) -> tuple[FederationHarness, SurvivorSet]:
    """Every participant uploaded; return the harness and the honest survivor set."""
    harness = FederationHarness(n, profile=profile, element_count=40)
    calls = harness.through_uploads()
    assert isinstance(calls, list)
    assert harness.coordinator.stage is Stage.CONSISTENCY
    call = calls[0]
    assert isinstance(call, ConsistencyCall)
    return harness, call.survivor_set


def _lying_set(harness: FederationHarness, honest: SurvivorSet, victim: str) -> SurvivorSet:
    """The honest set, except that `victim` is declared dropped."""
    return SurvivorSet(
        survivors=tuple(p for p in honest.survivors if p != victim),
        dropped=(*honest.dropped, victim),
        commitments=tuple(c for c in honest.commitments if c.sender != victim),
    )


def _confirm(
    harness: FederationHarness, member: str, survivor_set: SurvivorSet
) -> ConfirmSurvivors:
    [signed] = harness.participants[member].receive(ConsistencyCall(member, survivor_set))
    assert isinstance(signed, ConfirmSurvivors)
    return signed


def test_double_reveal_split_view_gets_no_masking_key_share() -> None:
    """Bonawitz et al.'s attack: "victim survived" to some members, "victim dropped" to others.

    With t = 3 of 5, the coordinator shows the honest set to p00 and p01 (who then reveal
    the victim's self-mask shares) and a set without the victim to p02 and p03 (who would
    reveal shares of the victim's masking key). Holding both secrets would unmask the
    victim's update. The second group never sees t signatures over its set, and refuses
    the first group's signatures: no masking-key share of the victim leaves anyone.
    """
    harness, honest = _uploaded()
    victim = "p04"
    lying = _lying_set(harness, honest, victim)
    honest_signatures = tuple(_confirm(harness, p, honest) for p in ("p00", "p01", victim))
    lying_signatures = tuple(_confirm(harness, p, lying) for p in ("p02", "p03"))

    # The first group reveals b_victim shares: that alone is the protocol working.
    for member in ("p00", "p01"):
        [answer] = harness.participants[member].receive(
            UnmaskCall(member, honest.survivors, honest.dropped, honest_signatures)
        )
        assert isinstance(answer, UnmaskShares)
        assert victim in dict(answer.self_mask_shares)

    for member in ("p02", "p03"):
        machine = harness.participants[member]
        before = state_of(machine)
        # Only the two signatures over its own set: below the threshold.
        with pytest.raises(IntegrityError, match="only 2 of the 3"):
            machine.receive(UnmaskCall(member, lying.survivors, lying.dropped, lying_signatures))
        # The other group's t signatures are over another statement.
        with pytest.raises(IntegrityError, match="signed another survivor set"):
            machine.receive(UnmaskCall(member, lying.survivors, lying.dropped, honest_signatures))
        # And the honest set with its signatures is not the set this member signed.
        with pytest.raises(ProtocolError, match="another survivor set"):
            machine.receive(UnmaskCall(member, honest.survivors, honest.dropped, honest_signatures))
        assert state_of(machine) == before
        assert machine.stage is Stage.UNMASK


def test_a_member_signs_one_survivor_set_per_round() -> None:
    harness, honest = _uploaded()
    machine = harness.participants["p00"]
    _confirm(harness, "p00", honest)
    with pytest.raises(OutOfStage):
        machine.receive(ConsistencyCall("p00", _lying_set(harness, honest, "p04")))


def test_unmask_needs_threshold_valid_distinct_signatures() -> None:
    harness, honest = _uploaded()
    signatures = tuple(_confirm(harness, p, honest) for p in harness.ids)
    machine = harness.participants["p00"]
    before = state_of(machine)
    call = UnmaskCall("p00", honest.survivors, honest.dropped, signatures[:2])
    with pytest.raises(IntegrityError, match="only 2 of the 3"):
        machine.receive(call)
    forged = dataclasses.replace(signatures[2], signature=bytes(64))
    with pytest.raises(BadSignature):
        machine.receive(dataclasses.replace(call, signatures=(*signatures[:2], forged)))
    with pytest.raises(Malformed, match="two survivor-set signatures"):
        machine.receive(dataclasses.replace(call, signatures=(*signatures[:2], signatures[1])))
    assert state_of(machine) == before
    [answer] = machine.receive(dataclasses.replace(call, signatures=signatures[:3]))
    assert isinstance(answer, UnmaskShares)


def test_a_survivor_set_that_leaves_out_or_alters_my_upload_is_not_signed() -> None:
    harness, honest = _uploaded()
    machine = harness.participants["p04"]
    before = state_of(machine)
    with pytest.raises(Malformed, match="does not list it as a survivor"):
        machine.receive(ConsistencyCall("p04", _lying_set(harness, honest, "p04")))
    # A commitment swapped for another upload of the same member cannot carry its signature.
    swapped = tuple(
        dataclasses.replace(c, digest=bytes(32)) if c.sender == "p04" else c
        for c in honest.commitments
    )
    with pytest.raises(BadSignature):
        machine.receive(ConsistencyCall("p04", dataclasses.replace(honest, commitments=swapped)))
    assert state_of(machine) == before


def test_a_survivor_set_below_the_threshold_is_not_signed() -> None:
    """A round of just {victim, colluder} is refused by the victim."""
    harness, honest = _uploaded()
    pair = SurvivorSet(
        survivors=("p00", "p01"),
        dropped=("p02", "p03", "p04"),
        commitments=honest.commitments[:2],
    )
    machine = harness.participants["p00"]
    before = state_of(machine)
    with pytest.raises(IntegrityError, match="below the threshold"):
        machine.receive(ConsistencyCall("p00", pair))
    assert state_of(machine) == before


def test_the_coordinator_refuses_a_signature_over_another_set_without_change() -> None:
    harness, honest = _uploaded()
    lying = _lying_set(harness, honest, "p04")
    coordinator = harness.coordinator
    before = state_of(coordinator)
    with pytest.raises(Malformed, match="another survivor set"):
        coordinator.receive(_confirm(harness, "p00", lying))
    assert state_of(coordinator) == before


@pytest.mark.parametrize("profile", [Profile.CKKS, Profile.CKKS_MASKS, Profile.MASKS])
def test_an_aggregate_notice_needs_the_signed_survivor_set(profile: Profile) -> None:
    harness = FederationHarness(4, profile=profile, element_count=40)
    result = harness.run()
    assert result.stage is Stage.AGGREGATE
    evidence = harness.coordinator.outcome.evidence
    assert evidence is not None
    assert len(evidence.signatures) >= harness.config.threshold
    assert consistency.verify_evidence(harness.config, evidence, harness.identities)
    fresh = ParticipantRound(
        harness.config, "p00", harness.identity_keys["p00"].private, harness.identities
    )
    # A member that took no part checks the evidence alone (e.g. catching up).
    short = SurvivorEvidence(evidence.survivor_set, evidence.signatures[:1])
    with pytest.raises(IntegrityError, match="only 1 of the 3"):
        consistency.verify_evidence(harness.config, short, harness.identities)
    pair = SurvivorSet(("p00", "p01"), (), evidence.survivor_set.commitments[:2])
    with pytest.raises(IntegrityError, match="below the threshold"):
        consistency.verify_evidence(
            harness.config, SurvivorEvidence(pair, evidence.signatures), harness.identities
        )
    assert fresh.stage is harness.config.first_stage


def test_aggregate_notice_without_evidence_is_refused_by_a_survivor() -> None:
    harness, honest = _uploaded(Profile.CKKS, n=4)
    machine = harness.participants["p00"]
    _confirm(harness, "p00", honest)
    assert machine.stage is Stage.AGGREGATE
    before = state_of(machine)
    with pytest.raises(IntegrityError, match="no signed survivor set"):
        machine.receive(AggregateReady("p00", honest.survivors))
    signatures = (_confirm(harness, "p01", honest),)
    with pytest.raises(IntegrityError, match="only 1 of the 3"):
        machine.receive(
            AggregateReady("p00", honest.survivors, SurvivorEvidence(honest, signatures))
        )
    assert state_of(machine) == before


def test_a_restarted_member_has_no_share_to_reveal() -> None:
    """Shares live in memory only: a new machine for the same round reveals nothing."""
    harness, honest = _uploaded()
    signatures = tuple(_confirm(harness, p, honest) for p in harness.ids)
    restarted = ParticipantRound(
        harness.config, "p00", harness.identity_keys["p00"].private, harness.identities
    )
    with pytest.raises(OutOfStage):
        restarted.receive(UnmaskCall("p00", honest.survivors, honest.dropped, signatures))


def test_the_statement_binds_the_whole_round_config() -> None:
    harness, honest = _uploaded()
    base = consistency.statement_digest(harness.config, honest)
    lowered = dataclasses.replace(harness.config, threshold=2)
    other_graph = dataclasses.replace(harness.config, graph_seed=bytes(32))
    assert consistency.statement_digest(lowered, honest) != base
    assert consistency.statement_digest(other_graph, honest) != base
    assert consistency.round_config_digest(harness.config) == consistency.round_config_digest(
        dataclasses.replace(harness.config)
    )
