"""`MultimodalTrainer`: the `Trainer` the participant daemon drives, on a multimodal model.

    MultimodalTrainer(config)            the base model wrapped with LoRA (adapted_model.py),
                                         its samples (items.py), the towers' features cached
                                         once (feature_cache.py)
    .train_round(round) -> LocalUpdate   one round of `local.train_local` from the global
                                         adapter; the delta, the sample count, metrics, the
                                         privacy spent, and the side models' trainings
    .apply(mean_delta)                   the server optimizer's step (server_optimizer.py)
    .evaluate()                          accuracy on the own test split and the shared test
                                         set: global, personal and local-only models
    .save(dir) / .load(dir)              PEFT format (+ accord.json, optimizer state)

Two ways to train, by `[participant.training] tune_towers`:

- false (default, the demo's): both towers stay frozen, so their features are computed
  once per participant and cached; a round trains only the fusion head on the cached
  features (with DP on the head when enabled), in seconds on a CPU. The tower adapters
  stay at B = 0 (the identity): the adapter folder is still a complete PEFT adapter.
- true: every round runs both towers; FFA-LoRA trains the towers' B matrices and the
  head. Slow on CPU; meant for a GPU or a small model.

Side models (side_models.py) train on the same records beside the rounds, with their own
DP accountants, their steps in the privacy ledger with the round: the local-only baseline
(`report_local_only`, the demo's comparison) and the personal model (`personalize_round`:
fine-tuned from the global adapter, for the member's own use). Neither is ever aggregated
or written into an adapter folder (which may be shared).
"""

from __future__ import annotations

import functools
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from peft import PeftModel, set_peft_model_state_dict
from safetensors.torch import load_file
from torch import nn

from accord.errors import ConfigError, InternalError
from accord.participant.config import ParticipantConfig
from accord.participant.data import folder as datasets
from accord.participant.training import adapted_model as adapted
from accord.participant.training import csprng, feature_cache, models, privacy, side_models
from accord.participant.training import local as train
from accord.participant.training.adapted_model import ACCORD_FILE, adapted_model
from accord.participant.training.items import Item, image_of, load_items, model_labels
from accord.participant.training.privacy import PrivacySpent, SideTraining
from accord.participant.training.protocol import LocalUpdate
from accord.participant.training.server_optimizer import (
    ServerOptimizer,
    ServerOptimizerSettings,
    ServerRule,
)
from accord.participant.training.side_models import SideModel

PRIVACY_FILE = "privacy_accountant.json"
"""In `state_dir`: the DP accountant's history, written before an update is returned."""


LOCAL_ONLY = "local_only"
"""The local-only baseline's side model (side_models.py): `state_dir/local_only.npy` and
`local_only_accountant.json`, never in an adapter folder."""

PERSONAL = "personalized"
"""The personal model's side model: `state_dir/personalized.npy` and
`personalized_accountant.json`, never in an adapter folder."""

PERSONAL_STREAM = 1_000_000
"""Offsets the personal runs' batch-sampling seeds from the rounds' (`_train_from`)."""

Vector = npt.NDArray[np.float32]


@dataclass(frozen=True)
class PrivateUpdate(LocalUpdate):
    """A `LocalUpdate` that also carries the sample-level privacy spent (None without DP)."""

    privacy: PrivacySpent | None = None
    side_training: tuple[SideTraining, ...] = ()


class MultimodalTrainer:
    """LoRA fine-tuning of an image-text classifier; implements `trainer.Trainer`.

    Args:
        config: the participant's settings (base_model, training, dp, data_quality, ...).
        noise_source: CSPRNG for DP noise; None draws a fresh `os.urandom` key (tests pass
            a keyed one to be reproducible).
        with_data: False builds the model only, reading no data (labels from the settings,
            `labels.json` in data_dir, or the benchmark's): enough for `load`, `embed` and
            `label_probabilities` (`accord participant check-data`, which must also run on
            a folder whose manifest has problems), not for training or evaluation.
    """

    def __init__(
        self,
        config: ParticipantConfig,
        *,
        noise_source: csprng.CsprngGaussian | None = None,
        with_data: bool = True,
    ) -> None:
        self._config = config
        training = config.training
        if training.torch_threads is not None:
            torch.set_num_threads(training.torch_threads)
        self._noise_source = noise_source
        train_items, test_items, eval_items, labels = (
            load_items(config) if with_data else ([], [], [], model_labels(config))
        )
        self._labels = labels

        self._preprocess, self._model, self._base_model_hash = adapted_model(config, labels)
        self._cached = not training.tune_towers
        self._names = train.trainable_names(self._model)
        self._global = train.get_vector(self._model, self._names)
        self._initial = self._global.copy()
        self._server = ServerOptimizer(
            ServerOptimizerSettings(
                rule=ServerRule(training.server_optimizer),
                learning_rate=training.server_learning_rate,
                beta1=training.server_momentum,
            ),
            self._global.size,
        )
        self._dp_settings, self._settings = train.round_settings(config, len(train_items))
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self._history: privacy.History = (
            privacy.load_history(config.state_dir / PRIVACY_FILE, config.dp.accountant)
            if self._dp_settings is not None
            else []
        )
        size = self._global.size
        self._local_only = SideModel(LOCAL_ONLY, config.state_dir, config.dp.accountant, size=size)
        self._personal = SideModel(PERSONAL, config.state_dir, config.dp.accountant, size=size)

        # ---- data as tensors (cached features, or tower inputs) ----
        self._train = self._tensors(train_items, "train") if with_data else []
        self._test = self._tensors(test_items, "test") if with_data else []
        self._eval = self._tensors(eval_items, "eval") if eval_items else None

    # ---- the Trainer protocol ----

    @property
    def parameter_count(self) -> int:
        return int(self._global.size)

    @property
    def base_model_hash(self) -> str:
        return self._base_model_hash

    @property
    def labels(self) -> tuple[str, ...]:
        return self._labels

    @property
    def model(self) -> PeftModel:
        """The PEFT model (holding the global adapter between calls)."""
        return self._model

    def train_round(self, round: int) -> PrivateUpdate:
        self._require_data()
        before = self._scores(self._global, self._test)
        result = self._train_from(self._global, round, self._history)
        after = self._scores(self._global + result.delta, self._test)
        if self._dp_settings is not None:
            # Recorded before the update is returned, so before it can leave the machine.
            self._history = result.history
            privacy.save_history(
                self._config.state_dir / PRIVACY_FILE, self._dp_settings.accountant, self._history
            )
        side = self._train_side_models(round)
        train.set_vector(self._model, self._names, self._global)
        metrics = {
            "train_loss": result.train_loss,
            "eval_loss_before": before["loss"],
            "eval_loss_after": after["loss"],
            "accuracy_before": before["accuracy"],
            "accuracy_after": after["accuracy"],
            "delta_l2": float(np.linalg.norm(result.delta.astype(np.float64))),
            "local_steps": float(result.steps),
        }
        if result.privacy is not None and self._dp_settings is not None:
            metrics.update(result.privacy.as_metrics())
            side_runs = self._local_only.history + self._personal.history
            if side_runs:
                # Everything trained on these records: the updates and the side models.
                metrics["dp_epsilon_composed"] = privacy.epsilon(
                    self._dp_settings.accountant, self._history + side_runs, self._dp_settings.delta
                )
        return PrivateUpdate(
            delta=result.delta,
            sample_count=int(self._train[-1].shape[0]),
            metrics=metrics,
            privacy=result.privacy,
            side_training=side,
        )

    def _train_side_models(self, round: int) -> tuple[SideTraining, ...]:
        """This round's side trainings (side_models.py), each persisted before it returns.

        The local-only model trains one round on from its own weights; the personal model,
        in `personalize_round` only, `personal_rounds` rounds' worth from the global adapter.
        """
        training, dp = self._config.training, self._dp_settings is not None
        side = []
        if training.report_local_only:
            start = self._local_only.vector
            alone = functools.partial(self._side_run, round, dp)
            side.append(
                self._local_only.train(self._initial if start is None else start, [alone], dp=dp)
            )
        if training.personalize_round == round:
            runs = [
                functools.partial(self._side_run, PERSONAL_STREAM + round * 1000 + i, dp)
                for i in range(training.personal_rounds)
            ]
            side.append(self._personal.train(self._global, runs, dp=dp))
        return tuple(side)

    def _side_run(
        self, stream: int, dp: bool, vector: Vector, history: privacy.History
    ) -> train.RoundResult:
        """One round's worth of a side model's training (`stream` seeds its batches)."""
        return self._train_from(vector, stream, history, report_privacy=dp)

    def apply(self, mean_delta: npt.NDArray[np.float32]) -> None:
        self._global = self._server.step(self._global, np.asarray(mean_delta, dtype=np.float32))
        train.set_vector(self._model, self._names, self._global)

    def evaluate(self) -> dict[str, float]:
        self._require_data()
        training = self._config.training
        side = [(self._personal, PERSONAL, training.personal_global_weight)]
        side = side if training.personalize_round is not None else []
        if training.report_local_only:
            side.append((self._local_only, LOCAL_ONLY, 0.0))
        metrics: dict[str, float] = {}
        right: dict[str, torch.Tensor] = {}  # own test split: which records each side model gets
        for split, data in (("", self._test), ("pooled_", self._eval)):
            if data is None:
                continue
            shared = self._logits(self._global, data)  # once per split, for every model
            scores = train.accuracy_and_loss(shared, data[-1])
            metrics[f"{split or 'eval_'}loss"] = scores["loss"]
            metrics[f"{split}accuracy"] = scores["accuracy"]
            for model, name, weight in side:
                if model.vector is not None:
                    logits = side_models.mixed(self._logits(model.vector, data), shared, weight)
                    scores = train.accuracy_and_loss(logits, data[-1])
                    metrics[f"{name}_{split}accuracy"] = scores["accuracy"]
                    if not split:
                        right[name] = logits.argmax(dim=-1) == data[-1]
        if PERSONAL in right and LOCAL_ONLY in right:
            metrics.update(side_models.paired(right[PERSONAL], right[LOCAL_ONLY]))
        return metrics

    def save(self, directory: Path) -> None:
        staging = directory.with_name(directory.name + ".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        train.set_vector(self._model, self._names, self._global)
        self._model.save_pretrained(str(staging))
        (staging / ACCORD_FILE).write_text(
            json.dumps(
                {
                    "version": 1,
                    "base_model": self._config.base_model,
                    "base_model_hash": self._base_model_hash,
                    "model_seed": self._config.model_seed,
                    "labels": list(self._labels),
                    "parameters": self.parameter_count,
                    "trained": self.trained_parts(),
                }
            ),
            encoding="utf-8",
        )
        self._server.save(staging)
        shutil.rmtree(directory, ignore_errors=True)
        staging.rename(directory)

    def trained_parts(self) -> dict[str, Any]:
        """What the exchanged adapter trains (`adapted_model.trained_parts`)."""
        return adapted.trained_parts(self._model, self._names)

    def check_clip_norm(self, clip_norm: float) -> None:
        """Refuse (ConfigError) tower settings whose update would exceed the federation's
        `clip_norm` (`adapted_model.check_clip_norm`)."""
        steps = self._settings.steps_for(int(self._train[-1].shape[0]) if self._train else 0)
        adapted.check_clip_norm(self._config, self.trained_parts(), steps, clip_norm)

    def load(self, directory: Path) -> None:
        meta_path = directory / ACCORD_FILE
        if meta_path.exists():
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if meta.get("base_model_hash") != self._base_model_hash:
                raise ConfigError(
                    f"{directory}: adapter for base model {meta.get('base_model_hash')}, this "
                    f"participant's base model is {self._base_model_hash}"
                )
        weights = load_file(str(directory / "adapter_model.safetensors"))
        set_peft_model_state_dict(self._model, weights)
        self._global = train.get_vector(self._model, self._names)
        self._server.load(directory)

    # ---- for data quality checks (data_quality.QualityModel) ----

    def embed(self, records: Sequence[datasets.Record]) -> npt.NDArray[np.float32]:
        """Unit-length joint embeddings of manifest records: (len(records), text + image dims)."""
        text, image = self._record_features(records)
        parts = [
            nn.functional.layer_norm(f, (f.shape[-1],)) / float(np.sqrt(f.shape[-1]))
            for f in (text, image)
        ]
        joint = torch.cat(parts, dim=-1) / float(np.sqrt(2.0))
        return joint.numpy().astype(np.float32)

    def label_probabilities(
        self, records: Sequence[datasets.Record]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """The global model's label probabilities from both modalities, text only, image only.

        A modality is left out by feeding zeros where its standardised features go, which
        is what the fusion head sees for a feature vector at the mean.
        """
        text, image = self._record_features(records)
        train.set_vector(self._model, self._names, self._global)
        head = models.fusion_head(self._model)
        head.eval()
        with torch.no_grad():
            outputs = [
                torch.softmax(head(t, i), dim=-1).numpy().astype(np.float32)
                for t, i in (
                    (text, image),
                    (text, torch.zeros_like(image)),
                    (torch.zeros_like(text), image),
                )
            ]
        return outputs[0], outputs[1], outputs[2]

    def _record_features(
        self, records: Sequence[datasets.Record]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        index = {name: i for i, name in enumerate(self._labels)}
        items = [Item(r.id, r.image, r.text, index.get(r.label, -1), r.split) for r in records]
        if self._cached:
            return self._features(items, "check")
        train.set_vector(self._model, self._names, self._global)
        return self._features(items, "check", use_cache=False)

    # ---- helpers ----

    def _require_data(self) -> None:
        if not self._train:
            raise InternalError("this MultimodalTrainer was built with_data=False: it cannot train")

    def _trained_module(self) -> tuple[nn.Module, train.Forward]:
        """What a round trains: the head on cached features, or the whole PEFT model."""
        if self._cached:
            return models.fusion_head(self._model), train.call_module
        return self._model, train.call_module

    def _train_from(
        self,
        start: npt.NDArray[np.float32],
        round: int,
        history: privacy.History,
        *,
        report_privacy: bool = True,
    ) -> train.RoundResult:
        train.set_vector(self._model, self._names, start)
        module, forward = self._trained_module()
        generator = torch.Generator().manual_seed(self._config.seed * 1_000_003 + round)
        result = train.train_local(
            module,
            self._train,
            self._settings,
            generator=generator,
            forward=forward,
            history=history,
            noise_source=self._noise_source,
            report_privacy=report_privacy,
        )
        if result.delta.size != start.size:
            raise AssertionError("the trained module's parameters are not the adapter's")
        return result

    def _scores(
        self, vector: Vector, data: Sequence[torch.Tensor], *, global_weight: float = 0.0
    ) -> dict[str, float]:
        """Accuracy and loss of the model `vector`; with `global_weight` > 0, of its
        prediction mixed with the global adapter's (the personal model's use)."""
        logits = self._logits(vector, data)
        if global_weight > 0:
            logits = side_models.mixed(logits, self._logits(self._global, data), global_weight)
        return train.accuracy_and_loss(logits, data[-1])

    def _logits(self, vector: Vector, data: Sequence[torch.Tensor]) -> torch.Tensor:
        train.set_vector(self._model, self._names, vector.astype(np.float32))
        module, forward = self._trained_module()
        logits = train.predict(module, data[:-1], forward=forward)
        train.set_vector(self._model, self._names, self._global)
        return logits

    def _tensors(self, items: Sequence[Item], split: str) -> list[torch.Tensor]:
        labels = torch.tensor([item.label for item in items], dtype=torch.int64)
        if self._cached:
            text, image = self._features(items, split)
            return [text, image, labels]
        ids, mask = self._preprocess.texts([item.text for item in items])
        pixels = self._preprocess.images([image_of(item) for item in items])
        return [ids, mask, pixels, labels]

    def _features(
        self, items: Sequence[Item], split: str, *, use_cache: bool = True
    ) -> feature_cache.Features:
        """The towers' features of `items`, from the cache when it has them (frozen towers)."""
        if not use_cache:
            return self._compute_features(items)
        folder = self._config.training.feature_cache_dir or self._config.state_dir / "features"
        cache = feature_cache.cache_file(folder, split, self._base_model_hash, items)
        return feature_cache.cached_features(items, cache, self._compute_features)

    def _compute_features(self, items: Sequence[Item]) -> tuple[torch.Tensor, torch.Tensor]:
        """The frozen towers' features of `items`, in batches of `feature_batch_size`."""
        network: Any = self._model.base_model.model  # the DualEncoder PEFT wraps
        network.eval()
        batch = self._config.training.feature_batch_size
        texts, images = [], []
        with torch.no_grad():
            for begin in range(0, len(items), batch):
                chunk = items[begin : begin + batch]
                ids, mask = self._preprocess.texts([item.text for item in chunk])
                pixels = self._preprocess.images([image_of(item) for item in chunk])
                text, image = network.encode(ids, mask, pixels)
                texts.append(text)
                images.append(image)
        text_all = torch.cat(texts) if texts else torch.zeros(0, network.text_tower.dim)
        image_all = torch.cat(images) if images else torch.zeros(0, network.image_tower.dim)
        return text_all, image_all
