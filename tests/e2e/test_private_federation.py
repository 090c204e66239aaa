"""A provisioned federation over mTLS with client-level noise: ledgers, pinned key, audit.

The real coordinator server and participant daemons (in threads, with a small trainer)
run rounds of the `masks` profile with `[coordinator.client_dp]` on. One participant's
trainer refuses round 2 for its own privacy budget: the refusal is in its ledger, it
stops, and the others finish the round while the quorum holds. The federation ledger
records each round's client-level noise, every participant kept heads signed by the
key its kit pins, and `accord audit` verifies it all and reports a finite client-level
epsilon. A coordinator whose ledger is signed by any other key is refused.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from accord.audit.ledgers import load
from accord.audit.reports import budget_summary
from accord.coordinator import federation_ledger, server
from accord.coordinator.config import CoordinatorConfig
from accord.core import configfile, logs
from accord.crypto import identity
from accord.errors import BudgetExhausted, IntegrityError
from accord.federation.provision import ProvisionedFederation
from accord.participant.config import ParticipantConfig
from accord.participant.daemon import ParticipantDaemon
from accord.participant.federation_head import FEDERATION_HEAD_FILE, read_federation_head
from accord.participant.kit.startup_kit import Kit
from accord.participant.training.protocol import LocalUpdate
from tests.support import free_port
from tests.support.federation import FEDERATION, provision_loopback
from tests.support.trainers import FakeTrainer

pytestmark = pytest.mark.e2e

NAMES = ("energy", "residential", "urban")
PARAMETERS = 64


def small_trainer(seed: int, refuse_from: int | None = None) -> FakeTrainer:
    """A trainer in miniature; with `refuse_from` its own budget runs out at that round."""

    def train(round: int) -> LocalUpdate:
        if refuse_from is not None and round >= refuse_from:
            raise BudgetExhausted(
                "privacy budget spent: 40 noisy steps of the 40 that target_epsilon = 8.0 covers"
            )
        return trainer.seeded_update()

    trainer = FakeTrainer(
        parameter_count=PARAMETERS, base_model_hash="cd" * 32, seed=seed, train=train
    )
    return trainer


def coordinator_config(tmp_path: Path, fed: ProvisionedFederation, port: int) -> CoordinatorConfig:
    config = configfile.validate(
        {
            "federation_id": FEDERATION,
            "listen_port": port,
            "state_dir": str(tmp_path / "coordinator"),
            "profile": "masks",
            "participants": list(NAMES),
            "tls_dir": str(fed.coordinator_dir),
            "roster": str(fed.roster_path),
            "rounds": 2,
            "threshold": 2,
            "stage_deadline_s": 3.0,
            "heartbeat_interval_s": 0.2,
            "client_dp": {"noise_multiplier": 1.0, "honest_fraction": 1.0, "delta": 1e-5},
        },
        CoordinatorConfig,
        "coordinator",
    )
    config.state_dir.mkdir()
    return config


def daemon(
    tmp_path: Path, fed: ProvisionedFederation, name: str, trainer: Any
) -> ParticipantDaemon:
    config = configfile.validate(
        {
            "kit": str(fed.kits[name]),
            "state_dir": str(tmp_path / "participants" / name),
            "poll_s": 1.0,
            "connect_timeout_s": 30.0,
        },
        ParticipantConfig,
        "participant",
    )
    log = logs.configure(f"participant-{name}", tmp_path / f"{name}.log")
    return ParticipantDaemon(config, log=log, trainer=trainer)


def run_all(daemons: dict[str, ParticipantDaemon]) -> dict[str, BaseException | None]:
    outcomes: dict[str, BaseException | None] = {}

    def work(name: str, target: ParticipantDaemon) -> None:
        try:
            target.run()
            outcomes[name] = None
        except BaseException as error:
            outcomes[name] = error

    threads = [
        threading.Thread(target=work, args=(name, target), daemon=True)
        for name, target in daemons.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return outcomes


def test_client_level_noise_a_trainer_refusal_and_pinned_heads_end_to_end(tmp_path) -> None:
    port = free_port()
    fed = provision_loopback(tmp_path, port, NAMES)
    running = server.start(
        coordinator_config(tmp_path, fed, port),
        log=logs.configure("coordinator", tmp_path / "coordinator.log"),
    )
    try:
        daemons = {
            name: daemon(
                tmp_path,
                fed,
                name,
                small_trainer(index, refuse_from=2 if name == "urban" else None),
            )
            for index, name in enumerate(NAMES)
        }
        outcomes = run_all(daemons)
        status = running.orchestrator.status()
    finally:
        running.stop(grace_s=0)

    assert outcomes["energy"] is None and outcomes["residential"] is None, outcomes
    stopped = outcomes["urban"]
    assert isinstance(stopped, BudgetExhausted) and "the trainer refused round 2" in str(stopped)
    assert status.rounds_completed == 2
    assert status.recent_rounds[-1].survivors == ("energy", "residential")
    # The masks profile runs the key ceremony too: every member received the integrity
    # key of epoch 1, and every aggregate it applied passed the integrity check.
    received = {
        (e["logger"], e["key_epoch"])
        for log in tmp_path.glob("*.log")
        for e in map(json.loads, log.read_text(encoding="utf-8").splitlines())
        if e.get("event") == "key_received"
    }
    assert received == {(f"accord.participant-{name}", 1) for name in NAMES}

    audit = load([tmp_path], ca_fingerprint=fed.ca_fingerprint)
    assert audit.ok, [(x.name, [str(f) for f in x.findings]) for x in audit.ledgers]
    assert audit.authenticated, audit.notes  # every key chains to the CA
    assert {x.key_source for x in audit.participants} == {"roster (certified by the CA)"}
    pinned = Kit.load(fed.kits["energy"]).coordinator_ledger_key
    certified = federation_ledger.certified_key(fed.ca_dir)
    assert certified is not None and pinned == certified.public_key
    (coordinator,) = audit.coordinators
    assert coordinator.key_source.startswith("a kit certified by the CA (")
    for name in NAMES:
        key, head, anomalies = read_federation_head(
            tmp_path / "participants" / name / FEDERATION_HEAD_FILE
        )
        assert key == pinned and head is not None and anomalies == []

    # The trainer's refusal is the participant's own record, like max_epsilon's.
    urban = next(x for x in audit.participants if x.name == "urban")
    (refusal,) = urban.bodies("refusal")
    assert refusal["round"] == 2 and refusal["by"] == "trainer"
    assert "target_epsilon" in refusal["reason"]
    assert [b["round"] for b in urban.bodies("round")] == [1]
    # Each participant recorded the share of client-level noise it added.
    share = urban.bodies("round")[0]["client_dp"]
    assert share["mechanism"] == "skellam" and share["participants"] == 3

    rounds = coordinator.bodies("round")
    assert [(b["round"], b["outcome"]) for b in rounds] == [(1, "done"), (2, "done")]
    first, second = (b["client_dp"] for b in rounds)
    assert first["mechanism"] == second["mechanism"] == "skellam"
    assert float(first["noise_multiplier"]) == 1.0 and float(first["honest_fraction"]) == 1.0
    assert first["share_mu"] == share["share_mu"]
    # Round 2 lost a survivor, so its aggregate is sure to carry only two of three shares.
    assert second["survivors"] == 2
    assert float(second["guaranteed_noise_multiplier"]) < float(
        first["guaranteed_noise_multiplier"]
    )

    client = budget_summary(audit, accountant="rdp")["federation"]["client_level"]
    assert client["status"] == "on" and client["rounds"] == 2
    assert client["epsilon"] is not None and 0 < client["epsilon"] < 100
    assert client["delta"] == 1e-5


def test_a_coordinator_signing_with_another_ledger_key_is_refused(tmp_path) -> None:
    port = free_port()
    fed = provision_loopback(tmp_path, port, NAMES)
    # The coordinator's folder gets another key than the one the CA certified.
    key_file = fed.coordinator_dir / federation_ledger.PROVISIONED_KEY_FILE
    key_file.unlink()
    federation_ledger.save_key(key_file, identity.generate_identity().private)
    running = server.start(
        coordinator_config(tmp_path, fed, port),
        log=logs.configure("coordinator", tmp_path / "coordinator.log"),
    )
    try:
        outcomes = run_all({"energy": daemon(tmp_path, fed, "energy", small_trainer(0))})
    finally:
        running.stop(grace_s=0)
    refused = outcomes["energy"]
    assert isinstance(refused, IntegrityError), refused
    assert "not by the coordinator ledger key the kit pins" in str(refused)
    assert not (tmp_path / "participants" / "energy" / FEDERATION_HEAD_FILE).exists()
