"""A benchmark-only trainer: a plain float32 vector and instant, seeded "training".

`SyntheticTrainer` lets `bench/round_bench.py` measure what a federated round costs
without the training: the adapter is `synthetic_parameters` float32 values (all zero
at the start, the same everywhere), `train_round` returns a fixed small random change
(seeded by the participant's `seed`, L2 norm 0.5, under the default clip bound of 1)
scaled by the round, and `apply` adds the federation's mean. A participant runs it when
its config names it by import path, `trainer =
"accord.demo.synthetic_trainer:SyntheticTrainer"` (`accord demo
--bench-parameters N` writes that); the participant package never imports it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import numpy.typing as npt
from safetensors.numpy import load_file, save_file

from accord.participant.config import ParticipantConfig
from accord.participant.training.protocol import LocalUpdate

TENSOR_NAME = "synthetic.weight"
DELTA_NORM = 0.5


class SyntheticTrainer:
    """A `Trainer` whose adapter is a bare vector and whose rounds take no time."""

    def __init__(self, config: ParticipantConfig) -> None:
        self._config = config
        count = config.synthetic_parameters
        self._global = np.zeros(count, dtype=np.float32)
        rng = np.random.default_rng(config.seed)
        delta = rng.standard_normal(count, dtype=np.float32)
        delta *= np.float32(DELTA_NORM / float(np.linalg.norm(delta)))
        self._delta = delta
        self._hash = hashlib.sha256(
            f"accord-synthetic:{config.model_seed}:{count}".encode()
        ).hexdigest()

    @property
    def parameter_count(self) -> int:
        return int(self._global.size)

    @property
    def base_model_hash(self) -> str:
        return self._hash

    def train_round(self, round: int) -> LocalUpdate:
        scale = np.float32(1.0 if round % 2 else -0.5)
        return LocalUpdate(
            delta=self._delta * scale,
            sample_count=self._config.samples,
            metrics={"eval_loss_before": 0.0, "eval_loss_after": 0.0, "train_loss": 0.0},
        )

    def apply(self, mean_delta: npt.NDArray[np.float32]) -> None:
        if mean_delta.shape != self._global.shape:
            raise ValueError(
                f"mean delta of shape {mean_delta.shape}, adapter {self._global.shape}"
            )
        self._global += mean_delta.astype(np.float32, copy=False)

    def evaluate(self) -> dict[str, float]:
        return {"eval_loss": float(np.dot(self._global, self._global))}

    def save(self, directory: Path) -> None:
        staging = directory.with_name(directory.name + ".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        save_file({TENSOR_NAME: self._global}, str(staging / "adapter_model.safetensors"))
        (staging / "adapter_config.json").write_text(
            json.dumps({"peft_type": "SYNTHETIC", "parameters": self.parameter_count}),
            encoding="utf-8",
        )
        (staging / "accord.json").write_text(
            json.dumps({"base_model_hash": self._hash, "model_seed": self._config.model_seed}),
            encoding="utf-8",
        )
        shutil.rmtree(directory, ignore_errors=True)
        staging.rename(directory)

    def load(self, directory: Path) -> None:
        vector = load_file(str(directory / "adapter_model.safetensors"))[TENSOR_NAME]
        if vector.shape != self._global.shape:
            raise ValueError(
                f"saved adapter of shape {vector.shape}, expected {self._global.shape}"
            )
        self._global = vector.astype(np.float32)
