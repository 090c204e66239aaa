"""A participant approved while the coordinator runs joins without a restart.

The orchestrator starts with the members the roster listed then; `admit` adds one
approved since (the service calls it on every enrolment when the members are the
roster's). The newcomer holds no CKKS key, so the next round that selects it begins
with a fresh key ceremony sealed to every member, the newcomer included.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from accord.coordinator.orchestrator import Orchestrator
from accord.crypto import agreement, ceremony
from accord.crypto.ceremony import CeremonyKey
from accord.crypto.lifecycle import Lifecycle
from accord.errors import NotAllowed
from accord.wire.ceremony import SealedKey
from accord.wire.headers import Header
from tests.support import FakeClock

from .plaintext_federation import (
    ADAPTER_PARAMETERS,
    MODEL_HASH,
    json_logger,
    make_config,
    make_keys,
)

FEDERATION = "accord-demo"
FIRST, NEWCOMER = ("energy", "residential"), "urban"
KEYS = make_keys((*FIRST, NEWCOMER))
CEREMONY_PRIVATE = {name: agreement.generate_keypair().private for name in KEYS}


def header(name: str) -> Header:
    return Header(federation_id=FEDERATION, round=0, stage=None, participant=name)


def enroll(orchestrator: Orchestrator, name: str) -> None:
    public = agreement.public_key(CEREMONY_PRIVATE[name])
    signature = ceremony.sign_ceremony_key(
        KEYS[name].private, federation_id=FEDERATION, participant=name, ceremony_public=public
    )
    orchestrator.enroll(
        header(name),
        base_model_hash=MODEL_HASH,
        adapter_parameters=ADAPTER_PARAMETERS,
        ceremony_key=CeremonyKey(participant=name, ceremony_public=public, signature=signature),
    )


def run_ceremony(orchestrator: Orchestrator, maker: str) -> tuple[int, tuple[str, ...]]:
    """Make and post the CKKS key as `maker`; return its epoch and its recipients."""
    task = orchestrator.next_task(header(maker), wait_s=0)
    assert task.lifecycle is Lifecycle.CEREMONY and task.ceremony_keys
    made = ceremony.make(
        {key.participant: key for key in task.ceremony_keys},
        {name: pair.public for name, pair in KEYS.items()},
        federation_id=FEDERATION,
        key_epoch=task.key_epoch,
        maker=maker,
        maker_identity_private=KEYS[maker].private,
    )
    orchestrator.post_ceremony(
        header(maker),
        key_epoch=made.key_epoch,
        public=made.public,
        sealed={
            name: SealedKey(envelope=envelope, signature=made.signatures[name])
            for name, envelope in made.sealed.items()
        },
    )
    return made.key_epoch, tuple(sorted(made.sealed))


def test_a_newcomer_enrols_after_admission_and_gets_the_next_key(tmp_path: Path) -> None:
    clock = FakeClock()
    config = make_config(
        tmp_path,
        {name: KEYS[name] for name in FIRST},
        profile="ckks",
        threshold=2,
        rounds=3,
    )
    orchestrator = Orchestrator(config, log=json_logger(tmp_path), clock=clock)
    for name in FIRST:
        enroll(orchestrator, name)
    assert run_ceremony(orchestrator, "energy") == (1, FIRST)
    round_one = orchestrator.next_task(header("energy"), wait_s=0)
    assert round_one.config is not None and round_one.config.selected == FIRST
    assert round_one.config.quant.max_participants == 2

    # Approved while the coordinator runs: unknown until admitted, then a member.
    with pytest.raises(NotAllowed, match="'urban' is not a participant"):
        enroll(orchestrator, NEWCOMER)
    assert orchestrator.admit({NEWCOMER: KEYS[NEWCOMER].public}) == [NEWCOMER]
    assert orchestrator.admit({NEWCOMER: KEYS[NEWCOMER].public, "energy": b"\0" * 32}) == []
    assert orchestrator.identities["energy"] == KEYS["energy"].public  # known keys stay
    enroll(orchestrator, NEWCOMER)
    waiting = orchestrator.next_task(header(NEWCOMER), wait_s=0)
    assert (waiting.round, waiting.stage, waiting.message) == (1, None, "not selected")

    # Round 1 runs out of time; everyone is back, so round 2 selects the newcomer,
    # which holds no CKKS key: a fresh ceremony comes first, sealed to all three.
    clock.now += config.stage_deadline_s
    for name in (*FIRST, NEWCOMER):
        orchestrator.heartbeat(header(name), "waiting")
    assert orchestrator.status().lifecycle is Lifecycle.CEREMONY
    assert run_ceremony(orchestrator, "energy") == (2, (*FIRST, NEWCOMER))
    round_two = orchestrator.next_task(header(NEWCOMER), wait_s=0)
    assert round_two.config is not None
    assert round_two.config.selected == (*FIRST, NEWCOMER)
    assert (round_two.round, round_two.key_epoch) == (2, 2)
    assert round_two.config.quant.max_participants == 3
    keys, sealed = orchestrator.fetch_ceremony(header(NEWCOMER))
    assert keys.epoch == 2 and sealed is not None
    assert [row[0] for row in orchestrator.status().members] == ["energy", "residential", "urban"]
