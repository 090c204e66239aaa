"""The benchmark-only synthetic trainer: a bare vector, seeded instant updates, checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from accord.core import configfile
from accord.demo.synthetic_trainer import SyntheticTrainer
from accord.participant.config import ParticipantConfig


def make_trainer(tmp_path: Path, **settings: object) -> SyntheticTrainer:
    config = configfile.validate(
        {
            "name": "energy",
            "state_dir": str(tmp_path),
            "trainer": "accord.demo.synthetic_trainer:SyntheticTrainer",
            "synthetic_parameters": 1000,
            **settings,
        },
        ParticipantConfig,
        "participant",
    )
    return SyntheticTrainer(config)


def test_rounds_are_seeded_small_and_leave_the_adapter(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, seed=1)
    assert trainer.parameter_count == 1000
    assert trainer.base_model_hash == make_trainer(tmp_path, seed=2).base_model_hash
    update = trainer.train_round(1)
    assert update.delta.dtype == np.float32 and update.delta.shape == (1000,)
    assert float(np.linalg.norm(update.delta)) <= 1.0
    np.testing.assert_array_equal(update.delta, make_trainer(tmp_path, seed=1).train_round(1).delta)
    assert not np.array_equal(update.delta, make_trainer(tmp_path, seed=2).train_round(1).delta)
    assert trainer.evaluate() == {"eval_loss": 0.0}


def test_apply_save_and_load_round_trip(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path)
    mean = trainer.train_round(1).delta
    trainer.apply(mean)
    trainer.save(tmp_path / "round-0001")
    assert (tmp_path / "round-0001" / "adapter_config.json").exists()
    other = make_trainer(tmp_path)
    other.load(tmp_path / "round-0001")
    np.testing.assert_array_equal(other._global, mean)


def test_the_synthetic_trainer_is_never_the_default(tmp_path: Path) -> None:
    config = configfile.validate(
        {"name": "energy", "state_dir": str(tmp_path)}, ParticipantConfig, "participant"
    )
    assert config.trainer == "multimodal"  # benchmarks name the synthetic one
