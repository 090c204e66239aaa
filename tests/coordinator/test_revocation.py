"""Revoking a member rotates the CKKS key: the next round is preceded by a ceremony among the rest.

Issue 12 finding 5: revoking did not rotate the federation's CKKS key, so the revoked
member kept it. `Orchestrator.revoke` (called by the service from the roster) leaves
the revoked member out of every later round, and since it holds the current key, the
next round starts with a fresh ceremony whose key is sealed only to the others.
"""

from __future__ import annotations

from pathlib import Path

from accord.coordinator.orchestrator import Orchestrator
from accord.crypto.lifecycle import Lifecycle

from .plaintext_federation import json_logger, make_config
from .test_admission import KEYS, FakeClock, enroll, header, run_ceremony

NAMES = ("energy", "residential", "urban")


def test_revoking_a_key_holder_starts_a_new_ceremony_without_it(tmp_path: Path) -> None:
    clock = FakeClock()
    config = make_config(tmp_path, KEYS, profile="ckks", threshold=2, rounds=3)
    orchestrator = Orchestrator(config, log=json_logger(tmp_path), clock=clock)
    for name in NAMES:
        enroll(orchestrator, name)
    assert run_ceremony(orchestrator, "energy") == (1, NAMES)
    round_one = orchestrator.next_task(header("energy"), wait_s=0)
    assert round_one.config is not None and round_one.config.selected == NAMES

    assert orchestrator.revoke(["urban"]) == ["urban"]
    assert orchestrator.revoke(["urban"]) == []
    # Round 1 runs out of time; all three are still heard from (urban's calls would be
    # refused by the roster, but its last heartbeat is recent).
    clock.now += config.stage_deadline_s
    for name in NAMES:
        orchestrator.heartbeat(header(name), "waiting")
    assert orchestrator.status().lifecycle is Lifecycle.CEREMONY
    assert run_ceremony(orchestrator, "energy") == (2, ("energy", "residential"))
    round_two = orchestrator.next_task(header("residential"), wait_s=0)
    assert round_two.config is not None
    assert round_two.config.selected == ("energy", "residential")
    assert round_two.key_epoch == 2
    keys, sealed = orchestrator.fetch_ceremony(header("urban"))
    assert keys.epoch == 2 and sealed is None  # nothing for urban to open


def test_provision_revoke_signs_a_numbered_list_that_members_keep(tmp_path: Path) -> None:
    import pytest

    from accord.coordinator.operator.approve import REVOCATIONS_FILE, revoke
    from accord.errors import NotAllowed, Replayed
    from accord.federation.provision import (
        FederationFile,
        FederationSection,
        ParticipantSection,
        provision_federation,
    )
    from accord.participant.revocations import RevocationKeeper

    provisioned = provision_federation(
        FederationFile(
            federation=FederationSection(id="fed", coordinator="127.0.0.1:1"),
            participants=tuple(ParticipantSection(name=n) for n in NAMES),
        ),
        tmp_path / "fed",
    )
    lists = provisioned.coordinator_dir / REVOCATIONS_FILE
    ca_pem = (provisioned.coordinator_dir / "ca.pem").read_bytes()
    keeper = RevocationKeeper(tmp_path / "energy", ca_pem, "fed")
    (tmp_path / "energy").mkdir()
    revoke(provisioned.ca_dir, "urban")
    first = lists.read_bytes()
    revoke(provisioned.ca_dir, "residential")
    second = lists.read_bytes()
    keeper.offer(second)
    assert keeper.current is not None and keeper.current.number == 2
    assert keeper.current.revoked == ("residential", "urban")
    with pytest.raises(Replayed):
        keeper.offer(first)  # a coordinator cannot roll the revocation back
    with pytest.raises(NotAllowed, match="round 5 from the coordinator includes revoked member"):
        keeper.check(("energy", "urban"), what="round 5 from the coordinator")
    # A restart keeps the newest list.
    again = RevocationKeeper(tmp_path / "energy", ca_pem, "fed")
    assert again.current == keeper.current
