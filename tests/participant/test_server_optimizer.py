"""The server optimizer every participant runs: the same global adapter everywhere, bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from accord.core import configfile
from accord.errors import ConfigError, IntegrityError
from accord.participant.config import ParticipantConfig
from accord.participant.data import city_safety
from accord.participant.data import incident_sets as benchmarks
from accord.participant.training import models
from accord.participant.training.multimodal import MultimodalTrainer
from accord.participant.training.server_optimizer import (
    ServerOptimizer,
    ServerOptimizerSettings,
    ServerRule,
)


def aggregates(rounds: int, size: int) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [rng.normal(0, 0.1, size).astype(np.float32) for _ in range(rounds)]


def test_fedavg_adds_the_mean_change() -> None:
    optimizer = ServerOptimizer(ServerOptimizerSettings(), 4)
    x = np.array([1, 2, 3, 4], dtype=np.float32)
    np.testing.assert_array_equal(optimizer.step(x, np.full(4, 0.5, np.float32)), x + 0.5)


def test_fedavgm_and_fedadam_follow_their_formulas() -> None:
    delta = np.array([0.2, -0.4], dtype=np.float32)
    momentum = ServerOptimizer(
        ServerOptimizerSettings(ServerRule.FEDAVGM, learning_rate=1.0, beta1=0.5), 2
    )
    x = momentum.step(np.zeros(2, np.float32), delta)
    x = momentum.step(x, delta)
    np.testing.assert_allclose(x, delta + (0.5 * delta + delta), rtol=1e-6)
    adam = ServerOptimizer(
        ServerOptimizerSettings(ServerRule.FEDADAM, learning_rate=0.1, beta1=0.9, beta2=0.99), 2
    )
    y = adam.step(np.zeros(2, np.float32), delta)
    m, v = 0.1 * delta, 0.01 * delta**2
    np.testing.assert_allclose(y, 0.1 * m / (np.sqrt(v) + 1e-3), rtol=1e-5)


@pytest.mark.parametrize("rule", list(ServerRule))
def test_two_participants_hold_bit_identical_adapters(tmp_path: Path, rule) -> None:
    settings = ServerOptimizerSettings(rule, learning_rate=0.3)
    one, two = ServerOptimizer(settings, 1000), ServerOptimizer(settings, 1000)
    x1 = x2 = np.random.default_rng(0).normal(size=1000).astype(np.float32)
    for index, mean in enumerate(aggregates(6, 1000)):
        x1 = one.step(x1, mean)
        x2 = two.step(x2, mean)
        if index == 2:  # the second one restarts from its saved state midway
            two.save(tmp_path)
            two = ServerOptimizer(settings, 1000)
            two.load(tmp_path)
    assert x1.tobytes() == x2.tobytes()


def test_state_of_another_rule_and_bad_aggregates_are_refused(tmp_path: Path) -> None:
    ServerOptimizer(ServerOptimizerSettings(ServerRule.FEDADAM), 3).save(tmp_path)
    with pytest.raises(ConfigError, match="keep server_optimizer fixed"):
        ServerOptimizer(ServerOptimizerSettings(ServerRule.FEDAVGM), 3).load(tmp_path)
    optimizer = ServerOptimizer(ServerOptimizerSettings(), 3)
    with pytest.raises(IntegrityError):
        optimizer.step(np.zeros(3, np.float32), np.array([0, np.nan, 0], np.float32))
    with pytest.raises(ValueError, match="expected"):
        optimizer.step(np.zeros(3, np.float32), np.zeros(4, np.float32))


def test_trainers_of_different_enterprises_stay_identical(tmp_path: Path) -> None:
    bench = city_safety.city_safety_benchmark(2, train_per_enterprise=30, test_per_enterprise=6)
    folders = benchmarks.write_benchmark(bench, tmp_path / "data")
    trainers = []
    for index, enterprise in enumerate(bench.enterprises):
        config = configfile.validate(
            {
                "name": f"p{index}",
                "insecure_plaintext": True,
                "seed": index,
                "state_dir": str(tmp_path / f"s{index}"),
                "data_dir": str(folders[enterprise.name]),
                "base_model": models.TINY_MODEL,
                "local_steps": 3,
                "batch_size": 8,
                "training": {
                    "server_optimizer": "fedadam",
                    "server_learning_rate": 0.05,
                    "report_local_only": False,
                },
            },
            ParticipantConfig,
            "participant",
        )
        trainers.append(MultimodalTrainer(config))
    for round_ in (1, 2, 3):
        updates = [t.train_round(round_) for t in trainers]
        mean = (sum(u.delta for u in updates) / len(updates)).astype(np.float32)
        for trainer in trainers:
            trainer.apply(mean)
        assert trainers[0]._global.tobytes() == trainers[1]._global.tobytes()
    assert not np.array_equal(updates[0].delta, updates[1].delta)
