"""The tests' trainer: LoRA on a tiny MLP (`accord demo --trainer lora-mlp`).

A `Trainer` (participant/training/protocol.py) that exercises the protocol rather than
learning: seconds per round, no DP. A participant runs it when its config names it by
import path, `trainer = "accord.demo.lora_mlp:LoraMlpTrainer"`; the
participant package never imports it.

`LoraMlpTrainer` wraps a 2-layer MLP with peft LoRA on both Linear layers and fits a
regression task on synthetic data. The base model, the first adapter and the task's
teacher come from `model_seed` (the same everywhere, so all participants start from
one global adapter); each participant's inputs are shifted by its own `seed`, so the
data is heterogeneous like the enterprises' is.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from peft import LoraConfig, PeftModel, get_peft_model, set_peft_model_state_dict
from safetensors.torch import load_file

from accord.participant.config import ParticipantConfig
from accord.participant.training.protocol import LocalUpdate

INPUT_FEATURES = 16
HIDDEN_FEATURES = 32
OUTPUT_FEATURES = 4
TARGET_MODULES = ("fc1", "fc2")
EVAL_FRACTION = 0.25


class TinyMlp(torch.nn.Module):
    """The default base model: Linear -> ReLU -> Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(INPUT_FEATURES, HIDDEN_FEATURES)
        self.fc2 = torch.nn.Linear(HIDDEN_FEATURES, OUTPUT_FEATURES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def build_base_model(model_seed: int) -> TinyMlp:
    """The frozen base model every participant (and a test) rebuilds from `model_seed`."""
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(model_seed)
    model = TinyMlp()
    torch.random.set_rng_state(generator_state)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def lora_config(rank: int) -> LoraConfig:
    """The adapter's shape: rank-`rank` LoRA on both Linear layers."""
    return LoraConfig(
        r=rank, lora_alpha=2 * rank, target_modules=list(TARGET_MODULES), lora_dropout=0.0
    )


class LoraMlpTrainer:
    """LoRA fine-tuning of `TinyMlp` on synthetic regression data (see module docstring)."""

    def __init__(self, config: ParticipantConfig) -> None:
        torch.set_num_threads(1)
        self._config = config
        base = build_base_model(config.model_seed)
        self._base_model_hash = _hash_model(base, config.lora_rank)
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(config.model_seed + 1)
        self._model = get_peft_model(base, lora_config(config.lora_rank))
        torch.random.set_rng_state(generator_state)
        self._names = [n for n, p in self._model.named_parameters() if p.requires_grad]
        self._global = self._vector()
        self._train_x, self._train_y, self._eval_x, self._eval_y = _synthetic_data(config)

    @property
    def parameter_count(self) -> int:
        return int(self._global.size)

    @property
    def base_model_hash(self) -> str:
        return self._base_model_hash

    def train_round(self, round: int) -> LocalUpdate:
        before = self.evaluate()["eval_loss"]
        generator = torch.Generator().manual_seed(self._config.seed * 1_000_003 + round)
        optimizer = torch.optim.SGD(
            [p for p in self._model.parameters() if p.requires_grad],
            lr=self._config.learning_rate,
        )
        self._model.train()
        samples = self._train_x.shape[0]
        train_loss = 0.0
        for _ in range(self._config.local_steps):
            batch = torch.randint(0, samples, (self._config.batch_size,), generator=generator)
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(
                self._model(self._train_x[batch]), self._train_y[batch]
            )
            loss.backward()
            optimizer.step()
            train_loss = float(loss.detach())
        after = self._eval_loss()
        delta = self._vector() - self._global
        self._load_vector(self._global)
        metrics = {"eval_loss_before": before, "eval_loss_after": after, "train_loss": train_loss}
        return LocalUpdate(delta=delta, sample_count=samples, metrics=metrics)

    def apply(self, mean_delta: npt.NDArray[np.float32]) -> None:
        if mean_delta.shape != self._global.shape:
            raise ValueError(
                f"mean delta of shape {mean_delta.shape}, adapter {self._global.shape}"
            )
        self._global = (self._global + mean_delta).astype(np.float32)
        self._load_vector(self._global)

    def evaluate(self) -> dict[str, float]:
        return {"eval_loss": self._eval_loss()}

    def save(self, directory: Path) -> None:
        staging = directory.with_name(directory.name + ".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        self._model.save_pretrained(str(staging))
        (staging / "accord.json").write_text(
            json.dumps(
                {"base_model_hash": self._base_model_hash, "model_seed": self._config.model_seed}
            ),
            encoding="utf-8",
        )
        shutil.rmtree(directory, ignore_errors=True)
        staging.rename(directory)

    def load(self, directory: Path) -> None:
        weights = load_file(str(directory / "adapter_model.safetensors"))
        set_peft_model_state_dict(self._model, weights)
        self._global = self._vector()

    # ---- helpers ----

    def _parameters(self) -> list[torch.nn.Parameter]:
        named = dict(self._model.named_parameters())
        return [named[name] for name in self._names]

    def _vector(self) -> npt.NDArray[np.float32]:
        with torch.no_grad():
            flat = torch.cat([p.detach().reshape(-1) for p in self._parameters()])
        return flat.numpy().astype(np.float32, copy=True)

    def _load_vector(self, vector: npt.NDArray[np.float32]) -> None:
        offset = 0
        with torch.no_grad():
            for parameter in self._parameters():
                count = parameter.numel()
                piece = torch.from_numpy(vector[offset : offset + count].copy())
                parameter.copy_(piece.reshape(parameter.shape))
                offset += count

    def _eval_loss(self) -> float:
        self._model.eval()
        with torch.no_grad():
            return float(torch.nn.functional.mse_loss(self._model(self._eval_x), self._eval_y))


def load_adapter_model(directory: Path, model_seed: int) -> PeftModel:
    """Load a saved global adapter onto a freshly built base model (for checks and tests)."""
    return PeftModel.from_pretrained(build_base_model(model_seed), str(directory))


def _hash_model(model: torch.nn.Module, rank: int) -> str:
    digest = hashlib.sha256(
        f"TinyMlp/{INPUT_FEATURES}/{HIDDEN_FEATURES}/{OUTPUT_FEATURES}".encode()
    )
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().numpy().tobytes())
    digest.update(f"lora/{rank}/{','.join(TARGET_MODULES)}".encode())
    return digest.hexdigest()


def _synthetic_data(
    config: ParticipantConfig,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs shifted by the participant's seed; targets from a teacher shared by all."""
    teacher_rng = np.random.default_rng(config.model_seed + 2)
    teacher = teacher_rng.normal(0.0, 0.5, size=(INPUT_FEATURES, OUTPUT_FEATURES))
    rng = np.random.default_rng(config.seed)
    shift = rng.normal(0.0, 0.5, size=INPUT_FEATURES)
    total = config.samples + max(1, int(config.samples * EVAL_FRACTION))
    x = rng.normal(0.0, 1.0, size=(total, INPUT_FEATURES)) + shift
    y = np.tanh(x @ teacher) + rng.normal(0.0, 0.05, size=(total, OUTPUT_FEATURES))
    xs = torch.from_numpy(x.astype(np.float32))
    ys = torch.from_numpy(y.astype(np.float32))
    n = config.samples
    return xs[:n], ys[:n], xs[n:], ys[n:]
