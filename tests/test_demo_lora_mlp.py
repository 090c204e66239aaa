"""The default trainer: a stable adapter vector, local rounds, PEFT checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from accord.core import configfile
from accord.demo.lora_mlp import LoraMlpTrainer, load_adapter_model
from accord.participant.config import ParticipantConfig


def make_trainer(tmp_path: Path, **settings: object) -> LoraMlpTrainer:
    config = configfile.validate(
        {"name": "energy", "state_dir": str(tmp_path), **settings},
        ParticipantConfig,
        "participant",
    )
    return LoraMlpTrainer(config)


@pytest.fixture(scope="module")
def trainer(tmp_path_factory: pytest.TempPathFactory) -> LoraMlpTrainer:
    return make_trainer(tmp_path_factory.mktemp("trainer"))


def test_everyone_starts_from_the_same_global_adapter(tmp_path, trainer) -> None:
    other = make_trainer(tmp_path, seed=7)
    assert other.base_model_hash == trainer.base_model_hash
    assert other.parameter_count == trainer.parameter_count == 336
    np.testing.assert_array_equal(other._global, trainer._global)
    assert make_trainer(tmp_path, model_seed=1).base_model_hash != trainer.base_model_hash


def test_a_round_returns_a_delta_and_leaves_the_global_adapter(trainer) -> None:
    before = trainer._global.copy()
    update = trainer.train_round(1)
    assert update.delta.dtype == np.float32 and update.delta.shape == (336,)
    assert np.abs(update.delta).max() > 0
    assert update.sample_count == 256
    assert update.metrics["eval_loss_after"] < update.metrics["eval_loss_before"]
    np.testing.assert_array_equal(trainer._global, before)


def test_applying_the_mean_and_saving_in_peft_format(tmp_path, trainer) -> None:
    update = trainer.train_round(2)
    trainer.apply(update.delta)
    assert trainer.evaluate()["eval_loss"] == pytest.approx(update.metrics["eval_loss_after"])
    trainer.save(tmp_path / "round-0001")
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {
        p.name for p in (tmp_path / "round-0001").iterdir()
    }
    model = load_adapter_model(tmp_path / "round-0001", model_seed=0)
    loaded = torch.cat(
        [p.detach().reshape(-1) for n, p in model.named_parameters() if "lora_" in n]
    ).numpy()
    np.testing.assert_allclose(loaded, trainer._global)
    restored = make_trainer(tmp_path)
    restored.load(tmp_path / "round-0001")
    np.testing.assert_array_equal(restored._global, trainer._global)
