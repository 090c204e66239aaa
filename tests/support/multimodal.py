"""The multimodal trainer's test setting: a small city-safety benchmark, the tiny model.

`small_city_benchmark(folder)` writes 3 enterprises of 80 training and 20 test samples
(and the pooled test set); `tiny_model_config(tmp_path, data, **settings)` is energy's
participant on the tiny dual encoder, evaluated on the pooled test set;
`checkpoint_trainer` tunes the towers of a local Hugging Face checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from accord.core import configfile
from accord.participant.config import ParticipantConfig
from accord.participant.data import city_safety
from accord.participant.data import incident_sets as benchmarks
from accord.participant.training import models
from accord.participant.training.multimodal import MultimodalTrainer


def small_city_benchmark(folder: Path) -> dict[str, Path]:
    """Write the small benchmark into `folder`; its data folders by enterprise (and pooled)."""
    bench = city_safety.city_safety_benchmark(3, train_per_enterprise=80, test_per_enterprise=20)
    return benchmarks.write_benchmark(bench, folder)


def tiny_model_config(tmp_path: Path, data: dict[str, Path], **settings: Any) -> ParticipantConfig:
    """energy on `data`, 5 local steps of 32 at 0.05; `settings` override, `training` merges."""
    table = {
        "name": "energy",
        "insecure_plaintext": True,
        "state_dir": str(tmp_path / "state"),
        "data_dir": str(data["energy"]),
        "base_model": models.TINY_MODEL,
        "local_steps": 5,
        "batch_size": 32,
        "learning_rate": 0.05,
        **settings,
    }
    table["training"] = {
        "eval_data_dir": str(data[benchmarks.POOLED_TEST]),
        **settings.get("training", {}),
    }
    return configfile.validate(table, ParticipantConfig, "participant")


def checkpoint_trainer(
    state_dir: Path, checkpoint: Path, data: Path, *, name: str = "p", seed: int = 0
) -> MultimodalTrainer:
    """A trainer tuning the towers of the local checkpoint `checkpoint`: 3 steps of 8, rank 2."""
    table = {
        "name": name,
        "insecure_plaintext": True,
        "state_dir": str(state_dir),
        "data_dir": str(data),
        "base_model": str(checkpoint),
        "seed": seed,
        "local_steps": 3,
        "batch_size": 8,
        "lora_rank": 2,
        "training": {"tune_towers": True},
    }
    return MultimodalTrainer(configfile.validate(table, ParticipantConfig, "participant"))
