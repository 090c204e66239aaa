"""The daemon drives the multimodal trainer by default; with DP on it sends nothing unaccounted.

A small federation over loopback gRPC (in-process coordinator, daemons in threads):
two participants with the tiny dual encoder on scikit-learn's 8x8 digits complete a
masked round with DP-SGD, and each one's privacy ledger holds the trainer's DP
parameters. Two participants whose trainer reports no DP accounting while DP is on
refuse to upload: the ledger records the refusal and the coordinator receives nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from pathlib import Path
from typing import Any

import pytest

from accord.core import configfile
from accord.crypto import identity
from accord.demo.lora_mlp import LoraMlpTrainer
from accord.errors import ConfigError, RoundAborted
from accord.participant import privacy_ledger as ledger
from accord.participant.config import ParticipantConfig
from accord.participant.daemon import ParticipantDaemon
from accord.participant.data import digit_incidents
from accord.participant.data import incident_sets as benchmarks
from accord.participant.training import models
from accord.participant.training.protocol import Trainer

NAMES = ("energy", "residential")
TARGET_EPSILON = 8.0


def keypair(name: str) -> identity.KeyPair:
    return identity.generate_identity(lambda n: hashlib.sha256(name.encode()).digest()[:n])


KEYS = {name: keypair(name) for name in NAMES}


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    bench = digit_incidents.digits_benchmark(len(NAMES), source="digits", limit=240, frame_size=32)
    written = benchmarks.write_benchmark(bench, tmp_path_factory.mktemp("digits"))
    folders = [written[e.name] for e in bench.enterprises]
    return {**dict(zip(NAMES, folders, strict=True)), "pooled": written[benchmarks.POOLED_TEST]}


def participant(tmp_path: Path, name: str, port: int, **extra: Any) -> ParticipantConfig:
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    (folder / "identity.pem").write_bytes(identity.dump_private(KEYS[name].private))
    table: dict[str, Any] = {
        "name": name,
        "state_dir": str(folder),
        "identity_key": str(folder / "identity.pem"),
        "insecure_plaintext": True,
        "coordinator": f"127.0.0.1:{port}",
        "poll_s": 1.0,
        **extra,
    }
    return configfile.validate(table, ParticipantConfig, "participant", base_dir=tmp_path)


def run_federation(
    tmp_path: Path, daemons: dict[str, ParticipantDaemon], running: Any
) -> tuple[dict[str, BaseException | None], Any]:
    """Run every daemon to its end in a thread; the outcomes and the coordinator's status."""
    outcomes: dict[str, BaseException | None] = {}

    def work(name: str, daemon: ParticipantDaemon) -> None:
        try:
            daemon.run()
            outcomes[name] = None
        except BaseException as error:
            outcomes[name] = error

    workers = [threading.Thread(target=work, args=item, daemon=True) for item in daemons.items()]
    try:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=120)
        return outcomes, running.orchestrator.status()
    finally:
        for daemon in daemons.values():
            daemon.stop()
        running.stop(grace_s=0)


def start_coordinator(tmp_path: Path, profile: str) -> Any:
    from accord.coordinator import server
    from accord.coordinator.config import CoordinatorConfig

    config = configfile.validate(
        {
            "participants": list(NAMES),
            "identity_keys": {name: pair.public.hex() for name, pair in KEYS.items()},
            "profile": profile,
            "insecure_plaintext": True,
            "state_dir": str(tmp_path / "coordinator"),
            "rounds": 1,
            "threshold": 2,
            "stage_deadline_s": 10.0,
            "heartbeat_interval_s": 0.2,
        },
        CoordinatorConfig,
        "coordinator",
    )
    config.state_dir.mkdir()
    return server.start(config, log=logging.getLogger("accord.test-multimodal-daemon"))


def entries(config: ParticipantConfig, kind: str) -> list[dict[str, Any]]:
    book = ledger.ParticipantLedger.open(config, KEYS[config.name].private).book
    return [dict(e.body) for e in book.entries if e.kind == kind]


# ---- settings ----


def test_the_multimodal_trainer_is_the_default_and_rdp_the_default_accountant() -> None:
    config = configfile.validate({"name": "energy"}, ParticipantConfig, "participant")
    assert config.trainer == "multimodal"
    assert config.dp.accountant == "rdp"


@pytest.mark.parametrize(
    "trainer",
    ["accord.demo.lora_mlp:LoraMlpTrainer", "accord.demo.synthetic_trainer:SyntheticTrainer"],
)
def test_dp_with_a_trainer_that_has_no_dp_is_a_config_error(trainer: str) -> None:
    table = {
        "name": "energy",
        "trainer": trainer,
        "dp": {"enabled": True, "target_epsilon": TARGET_EPSILON},
    }
    with pytest.raises(ConfigError, match=f"trainer = '{re.escape(trainer)}' trains without DP"):
        configfile.validate(table, ParticipantConfig, "participant")


@pytest.mark.parametrize(
    ("trainer", "why"),
    [
        ("lora-mlp", "expected 'multimodal' or the import path package.module:Class"),
        ("accord.demo.no_such_module:Trainer", "cannot import accord.demo.no_such_module"),
        ("accord.demo.lora_mlp:NoSuchTrainer", "accord.demo.lora_mlp has no class NoSuchTrainer"),
        ("accord.demo.lora_mlp:INPUT_FEATURES", "accord.demo.lora_mlp has no class INPUT_FEATURES"),
    ],
)
def test_a_trainer_that_names_no_importable_class_is_a_config_error(trainer: str, why: str) -> None:
    with pytest.raises(ConfigError, match=r"\[participant\] trainer") as raised:
        configfile.validate(
            {"name": "energy", "trainer": trainer}, ParticipantConfig, "participant"
        )
    assert why in str(raised.value)


# ---- a round over gRPC ----


# Two daemons train in threads of this one process here (each runs in its own process in
# use). `privacy.per_sample_gradients` silences this opacus warning with
# `warnings.catch_warnings`, whose filter list is process-wide and not thread-safe: one
# thread leaving the block takes the filter away from the other.
@pytest.mark.filterwarnings(
    "ignore:Full backward hook is firing when gradients are computed with respect to module "
    "outputs since no inputs require gradients:UserWarning"
)
@pytest.mark.e2e
def test_a_daemon_with_the_multimodal_trainer_completes_a_private_masked_round(
    tmp_path: Path, digits: dict[str, Path]
) -> None:
    running = start_coordinator(tmp_path, "masks")
    log = logging.getLogger("accord.test-multimodal-daemon")
    configs = {
        name: participant(
            tmp_path,
            name,
            running.port,
            base_model=models.TINY_MODEL,
            data_dir=str(digits[name]),
            seed=index + 1,
            local_steps=3,
            batch_size=16,
            training={
                "eval_data_dir": str(digits["pooled"]),
                **({"personalize_round": 1, "personal_rounds": 1} if index == 0 else {}),
            },
            dp={"enabled": True, "target_epsilon": TARGET_EPSILON, "rounds": 1},
        )
        for index, name in enumerate(NAMES)
    }
    # No trainer is passed: the daemon builds the one its settings name.
    daemons = {name: ParticipantDaemon(config, log=log) for name, config in configs.items()}
    outcomes, status = run_federation(tmp_path, daemons, running)

    assert outcomes == {name: None for name in NAMES}
    assert status.rounds_completed == 1
    adapters = set()
    for name, config in configs.items():
        (metrics,) = [json.loads(line) for line in config.metrics_file.read_text().splitlines()]
        personal = name == NAMES[0]  # only the first asked for a personal model
        keys = ["global_accuracy", "global_pooled_accuracy"]
        keys += ["global_personalized_accuracy", "global_personalized_pooled_accuracy"]
        for key in keys:
            assert (key in metrics) == (personal or "personalized" not in key), (name, key)
            assert 0.0 <= metrics.get(key, 0.0) <= 1.0, (name, key)
        assert "global_local_only_accuracy" not in metrics  # the baseline is off by default
        assert 0 < metrics["dp_epsilon"] <= TARGET_EPSILON
        (entry,) = entries(config, ledger.ROUND)
        sample_dp = entry["sample_dp"]
        assert sample_dp["mechanism"] == ledger.DP_SGD and sample_dp["accountant"] == "rdp"
        assert sample_dp["steps"] == sample_dp["steps_total"] == 3
        assert 0 < float(sample_dp["sample_rate"]) <= 1
        assert float(sample_dp["noise_multiplier"]) > 0
        assert float(sample_dp["max_grad_norm"]) == 1.0 and float(sample_dp["delta"]) == 1e-5
        assert float(sample_dp["epsilon"]) == pytest.approx(metrics["dp_epsilon"])
        assert entry["samples"] == metrics["sample_count"] > 0
        assert entry["local_steps"] == 3 and entry["profile"] == "masks"
        assert entry["data_quality"] == {"filter": "not run", "flagged": 0, "excluded": 0}
        # The personal model's steps are in the ledger with the round that trained it.
        side = [(s["purpose"], s["steps"]) for s in entry.get("side_dp", [])]
        assert side == ([("personalized", 3)] if personal else [])
        state = json.loads((config.state_dir / "state.json").read_text())
        adapters.add(
            (config.state_dir / state["adapter"] / "adapter_model.safetensors").read_bytes()
        )
    assert len(adapters) == 1  # the same global adapter at both


@pytest.mark.e2e
def test_with_dp_on_an_update_without_dp_accounting_is_refused_and_never_sent(
    tmp_path: Path,
) -> None:
    running = start_coordinator(tmp_path, "none")
    log = logging.getLogger("accord.test-multimodal-daemon")
    configs = {
        name: participant(
            tmp_path,
            name,
            running.port,
            dp={"enabled": True, "noise_multiplier": 1.0},
        )
        for name in NAMES
    }
    # A real trainer that trains without DP-SGD, where the settings ask for DP.
    trainers: dict[str, Trainer] = {name: LoraMlpTrainer(c) for name, c in configs.items()}
    daemons = {
        name: ParticipantDaemon(config, log=log, trainer=trainers[name])
        for name, config in configs.items()
    }
    outcomes, status = run_federation(tmp_path, daemons, running)

    for name, config in configs.items():
        refused = outcomes[name]
        assert isinstance(refused, RoundAborted), (name, refused)
        assert "reported no DP-SGD accounting for this update; it is not sent" in str(refused)
        (refusal,) = entries(config, ledger.REFUSAL)
        assert refusal["round"] == 1 and "enabled = true" in refusal["reason"]
        assert entries(config, ledger.ROUND) == []
        assert not config.metrics_file.exists()
    assert status.rounds_completed == 0
    assert all(bytes_up == 0 for _, _, _, bytes_up, _ in status.members)
