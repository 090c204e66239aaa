"""`MultimodalTrainer`: the `Trainer` the participant daemon drives, on a multimodal model.

    MultimodalTrainer(config)            load the base model (models.py), wrap it with LoRA
                                         (train.py), read the data (datasets.py), cache the
                                         towers' features once
    .train_round(round) -> LocalUpdate   one round of `train.train_local` from the global
                                         adapter; the delta, the sample count, metrics and
                                         (as `PrivateUpdate.privacy`) the privacy spent
    .apply(mean_delta)                   the server optimizer's step (server_optimizer.py)
    .evaluate()                          accuracy and loss on the own test split, on the
                                         shared test set, and of the local-only model
    .save(dir) / .load(dir)              PEFT format (+ accord.json, optimizer state)

Two ways to train, by `[participant.training] tune_towers`:

- false (default, the demo's): both towers stay frozen, so their features are computed
  once per participant and cached under `state_dir/features/`; a round trains only the
  fusion head on the cached features (with DP on the head when enabled). A round takes
  seconds on a CPU. The tower adapters stay at B = 0 (the identity), so the adapter
  folder is still a complete PEFT adapter of the whole model.
- true: every round runs both towers; FFA-LoRA trains the towers' B matrices and the
  head. Slow on CPU; meant for a GPU or a small model.

Data: `data_dir` in the manifest layout (datasets.py). Unset, the participant takes
enterprise `seed mod 3` of the synthetic city-safety
benchmark (benchmarks.py) generated from `model_seed`, and that benchmark's pooled test
set as the shared test set.

The local-only model (`training.report_local_only`, off by default; the demo turns it
on) is trained on the side with the same settings and never aggregated; its accuracy is
the baseline the federation must beat. It trains on the same private records, so its
DP-SGD steps have their own accountant, persisted in `state_dir/local_only_accountant.json`
before `train_round` returns, and are handed to the ledger with the round
(`PrivateUpdate.side_training`): its reported accuracy spends privacy too. Its weights
stay in `state_dir/local_only.npy`, never in an adapter folder (which may be shared).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from peft import PeftModel, set_peft_model_state_dict
from safetensors.torch import load_file, save_file
from torch import nn

from accord.errors import ConfigError, InternalError
from accord.participant.config import ParticipantConfig
from accord.participant.data import city_safety
from accord.participant.data import folder as datasets
from accord.participant.training import csprng, models, privacy
from accord.participant.training import local as train
from accord.participant.training.privacy import PrivacySpent, SideTraining
from accord.participant.training.protocol import LocalUpdate
from accord.participant.training.server_optimizer import (
    ServerOptimizer,
    ServerOptimizerSettings,
    ServerRule,
)

PRIVACY_FILE = "privacy_accountant.json"
"""In `state_dir`: the DP accountant's history, written before an update is returned."""

PERSONAL_FILE = "personalized.npy"
"""In `state_dir`: the personalized model (the global adapter plus this participant's own
latest DP update, before aggregation). Post-processing of the released update's training:
no privacy spent beyond it. Never in an adapter folder."""

LOCAL_ONLY_PRIVACY_FILE = "local_only_accountant.json"
"""In `state_dir`: the local-only model's DP accountant history (a side training)."""

ACCORD_FILE = "accord.json"
LOCAL_ONLY_FILE = "local_only.npy"
"""In `state_dir` (never in an adapter folder): the local-only model's weights."""
SYNTHETIC_ENTERPRISES = 3


@dataclass(frozen=True)
class PrivateUpdate(LocalUpdate):
    """A `LocalUpdate` that also carries the sample-level privacy spent (None without DP)."""

    privacy: PrivacySpent | None = None
    side_training: tuple[SideTraining, ...] = ()


@dataclass(frozen=True)
class Item:
    """A sample ready to preprocess: a way to get its image, its text, its label index."""

    id: str
    image: Any  # a Path, or a uint8 array from a generator
    text: str
    label: int
    split: str


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
            _items(config) if with_data else ([], [], [], _model_labels(config))
        )
        self._labels = labels

        # ---- load base, wrap with LoRA ----
        base = models.load_base_model(
            config.base_model,
            labels,
            seed=config.model_seed,
            head_hidden=training.head_hidden,
            image_size=training.image_size,
        )
        self._preprocess = base.preprocess
        lora = train.LoraSettings.from_config(config)
        self._model = train.wrap_with_lora(base, lora, seed=config.model_seed)
        self._cached = not training.tune_towers
        if self._cached:
            train.freeze_tower_adapters(self._model)
        self._names = train.trainable_names(self._model)
        descriptor = {
            **base.descriptor,
            "adapter": training.adapter,
            "lora_rank": lora.rank,
            "lora_alpha": lora.alpha,
            "lora_targets": lora.target_modules or base.lora_targets,
            "tune_towers": training.tune_towers,
        }
        self._base_model_hash = models.base_model_hash(self._model, descriptor)
        self._global = train.get_vector(self._model, self._names)
        self._local_only = self._global.copy()
        self._server = ServerOptimizer(
            ServerOptimizerSettings(
                rule=ServerRule(training.server_optimizer),
                learning_rate=training.server_learning_rate,
                beta1=training.server_momentum,
            ),
            self._global.size,
        )

        # ---- settings of a round ----
        self._dp_settings = None
        if config.dp.enabled:
            self._dp_settings = privacy.DpSettings(
                max_grad_norm=config.dp.max_grad_norm,
                noise_multiplier=config.dp.noise_multiplier,
                target_epsilon=config.dp.target_epsilon,
                delta=config.dp.delta,
                accountant=config.dp.accountant,
                planned_steps=1,  # set below, once the data size is known
            )
        self._settings = train.LocalSettings.from_config(config)
        if self._dp_settings is not None:
            steps = self._settings.steps_for(len(train_items))
            self._dp_settings = replace(self._dp_settings, planned_steps=steps * config.dp.rounds)
            self._settings = replace(self._settings, dp=self._dp_settings)
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self._history: privacy.History = (
            privacy.load_history(config.state_dir / PRIVACY_FILE, config.dp.accountant)
            if self._dp_settings is not None
            else []
        )
        self._local_only_history: privacy.History = (
            privacy.load_history(config.state_dir / LOCAL_ONLY_PRIVACY_FILE, config.dp.accountant)
            if self._dp_settings is not None and training.report_local_only
            else []
        )
        self._personal: npt.NDArray[np.float32] | None = None
        if (config.state_dir / PERSONAL_FILE).exists():
            stored = np.load(config.state_dir / PERSONAL_FILE).astype(np.float32)
            if stored.shape == self._global.shape:
                self._personal = stored
        local_only_file = config.state_dir / LOCAL_ONLY_FILE
        if training.report_local_only and local_only_file.exists():
            stored = np.load(local_only_file).astype(np.float32)
            if stored.shape == self._local_only.shape:
                self._local_only = stored

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
        # Personalized: the global adapter with this participant's own DP update applied
        # alone (FedPer-like fine-tuning from the global model on its own data). Nothing
        # more is trained for it, so it spends no privacy beyond the update's.
        self._personal = (self._global + result.delta).astype(np.float32)
        _save_vector(self._config.state_dir / PERSONAL_FILE, self._personal)
        side: list[privacy.SideTraining] = []
        if self._config.training.report_local_only:
            side.append(self._train_local_only(round))
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
        if result.privacy is not None:
            metrics.update(result.privacy.as_metrics())
            if self._local_only_history and self._dp_settings is not None:
                # Everything trained on these records: the updates and the baseline.
                metrics["dp_epsilon_composed"] = privacy.epsilon(
                    self._dp_settings.accountant,
                    self._history + self._local_only_history,
                    self._dp_settings.delta,
                )
        return PrivateUpdate(
            delta=result.delta,
            sample_count=int(self._train[-1].shape[0]),
            metrics=metrics,
            privacy=result.privacy,
            side_training=tuple(side),
        )

    def _train_local_only(self, round: int) -> privacy.SideTraining:
        """One round of the local-only baseline, persisted (weights, accountant) at once."""
        before = sum(int(n) for _, _, n in self._local_only_history)
        shadow = self._train_from(
            self._local_only,
            round,
            self._local_only_history,
            report_privacy=self._dp_settings is not None,
        )
        self._local_only = (self._local_only + shadow.delta).astype(np.float32)
        state = self._config.state_dir
        if self._dp_settings is not None:
            self._local_only_history = shadow.history
            privacy.save_history(
                state / LOCAL_ONLY_PRIVACY_FILE,
                self._dp_settings.accountant,
                self._local_only_history,
            )
        _save_vector(state / LOCAL_ONLY_FILE, self._local_only)
        if shadow.privacy is None:
            return privacy.SideTraining("local_only", int(shadow.steps), None)
        return privacy.SideTraining("local_only", shadow.privacy.steps - before, shadow.privacy)

    def apply(self, mean_delta: npt.NDArray[np.float32]) -> None:
        self._global = self._server.step(self._global, np.asarray(mean_delta, dtype=np.float32))
        train.set_vector(self._model, self._names, self._global)

    def evaluate(self) -> dict[str, float]:
        self._require_data()
        own = self._scores(self._global, self._test)
        metrics = {"eval_loss": own["loss"], "accuracy": own["accuracy"]}
        if self._eval is not None:
            pooled = self._scores(self._global, self._eval)
            metrics.update(pooled_loss=pooled["loss"], pooled_accuracy=pooled["accuracy"])
        if self._personal is not None:
            metrics["personalized_accuracy"] = self._scores(self._personal, self._test)["accuracy"]
            if self._eval is not None:
                metrics["personalized_pooled_accuracy"] = self._scores(self._personal, self._eval)[
                    "accuracy"
                ]
        if self._config.training.report_local_only:
            local = self._scores(self._local_only, self._test)
            metrics["local_only_accuracy"] = local["accuracy"]
            if self._eval is not None:
                metrics["local_only_pooled_accuracy"] = self._scores(self._local_only, self._eval)[
                    "accuracy"
                ]
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

    def trained_parts(self) -> dict[str, int]:
        """What the exchanged adapter trains: parameter counts of the head and of the LoRA
        matrices in the towers (0 when the towers are frozen, `tune_towers = false`)."""
        named = dict(self._model.named_parameters())
        parts = {"head": 0, "tower_lora": 0}
        for name in self._names:
            part = "tower_lora" if "lora_" in name else "head"
            parts[part] += int(named[name].numel())
        return parts

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
        self, vector: npt.NDArray[np.float32], data: Sequence[torch.Tensor]
    ) -> dict[str, float]:
        train.set_vector(self._model, self._names, vector.astype(np.float32))
        module, forward = self._trained_module()
        logits = train.predict(module, data[:-1], forward=forward)
        scores = train.accuracy_and_loss(logits, data[-1])
        train.set_vector(self._model, self._names, self._global)
        return scores

    def _tensors(self, items: Sequence[Item], split: str) -> list[torch.Tensor]:
        labels = torch.tensor([item.label for item in items], dtype=torch.int64)
        if self._cached:
            text, image = self._features(items, split)
            return [text, image, labels]
        ids, mask = self._preprocess.texts([item.text for item in items])
        pixels = self._preprocess.images([_image(item) for item in items])
        return [ids, mask, pixels, labels]

    def _features(
        self, items: Sequence[Item], split: str, *, use_cache: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The towers' features of `items`, from the cache when it has them (frozen towers)."""
        digest = hashlib.sha256(self._base_model_hash.encode())
        for item in items:
            digest.update(json.dumps([item.id, item.text, str(item.image)]).encode())
            if isinstance(item.image, Path):
                stat = item.image.stat()
                digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
            else:
                digest.update(np.ascontiguousarray(item.image).tobytes())
        folder = self._config.training.feature_cache_dir or self._config.state_dir / "features"
        cache = folder / f"{split}-{digest.hexdigest()[:40]}.safetensors"
        if not use_cache:
            return self._compute_features(items)
        # Participants sharing a cache folder (the demo's) take turns per entry, so that
        # a set they all need (the shared test set) is computed once, not once each.
        with _exclusive(cache.with_name(cache.name + ".lock")):
            if cache.exists():
                stored = load_file(str(cache))
                return stored["text"], stored["image"]
            text_all, image_all = self._compute_features(items)
            staging = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
            save_file(
                {"text": text_all.contiguous(), "image": image_all.contiguous()}, str(staging)
            )
            staging.replace(cache)
        return text_all, image_all

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
                pixels = self._preprocess.images([_image(item) for item in chunk])
                text, image = network.encode(ids, mask, pixels)
                texts.append(text)
                images.append(image)
        text_all = torch.cat(texts) if texts else torch.zeros(0, network.text_tower.dim)
        image_all = torch.cat(images) if images else torch.zeros(0, network.image_tower.dim)
        return text_all, image_all


def _save_vector(path: Path, vector: npt.NDArray[np.float32]) -> None:
    """Write a float32 vector atomically (np.save to a staging file, then rename)."""
    staging = path.with_name(path.name + ".tmp.npy")
    np.save(staging, vector)
    staging.replace(path)


@contextlib.contextmanager
def _exclusive(lock_file: Path) -> Iterator[None]:
    """Hold an advisory lock on `lock_file` (created if needed) for the block's duration."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _items(
    config: ParticipantConfig,
) -> tuple[list[Item], list[Item], list[Item], tuple[str, ...]]:
    """Train, test and shared-test items, and the label names (see module docstring)."""
    training = config.training
    if config.data_dir is None:
        bench = city_safety.city_safety_benchmark(SYNTHETIC_ENTERPRISES, seed=config.model_seed)
        labels = tuple(training.labels) if training.labels else bench.labels
        enterprise = bench.enterprises[config.seed % SYNTHETIC_ENTERPRISES]
        index = {name: i for i, name in enumerate(labels)}

        def convert(examples: Sequence[datasets.Example]) -> list[Item]:
            return [Item(e.id, e.image, e.text, index[e.label], e.split) for e in examples]

        train_items, test_items = convert(enterprise.train), convert(enterprise.test)
        eval_items = convert(bench.pooled_test) if training.eval_data_dir is None else []
    else:
        labels = _labels(config)
        records = datasets.load_manifest(config.data_dir, labels)
        excluded = _flagged_ids(config) if config.data_quality.exclude_flagged else set()
        index = {name: i for i, name in enumerate(labels)}
        items = [Item(r.id, r.image, r.text, index[r.label], r.split) for r in records]
        train_items = [i for i in items if i.split != "test" and i.id not in excluded]
        test_items = [i for i in items if i.split == "test"]
        eval_items = []
    if training.eval_data_dir is not None:
        index = {name: i for i, name in enumerate(labels)}
        eval_items = [
            Item(r.id, r.image, r.text, index[r.label], r.split)
            for r in datasets.load_manifest(training.eval_data_dir, labels)
        ]
    if not train_items:
        raise ConfigError(f"data_dir = {str(config.data_dir)!r}: no training samples left")
    return train_items, test_items, eval_items, labels


def _model_labels(config: ParticipantConfig) -> tuple[str, ...]:
    """The label names without reading any data: as `_items` finds them."""
    if config.training.labels or config.data_dir is not None:
        return _labels(config)
    return city_safety.CITY_LABELS


def _labels(config: ParticipantConfig) -> tuple[str, ...]:
    if config.training.labels:
        return tuple(config.training.labels)
    assert config.data_dir is not None
    found = datasets.read_labels(config.data_dir)
    if found is None:
        raise ConfigError(
            f"data_dir = {str(config.data_dir)!r}: no labels.json; write one, or set "
            "[participant.training] labels (the federation's label names, in the same order "
            "everywhere)"
        )
    return found


def _flagged_ids(config: ParticipantConfig) -> set[str]:
    """Ids listed in check-data's flagged file (none when the file does not exist yet)."""
    assert config.data_dir is not None
    path = config.data_quality.flagged_file or config.data_dir / "flagged.jsonl"
    if not path.exists():
        raise ConfigError(
            f"[participant.data_quality] exclude_flagged = true, but {path} does not exist; "
            "run `accord participant check-data` first"
        )
    ids = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            ids.add(str(json.loads(line)["id"]))
    return ids


def _image(item: Item) -> Any:
    from PIL import Image

    if isinstance(item.image, Path):
        return datasets.open_image(item.image)
    return Image.fromarray(item.image)


def load_adapter_model(directory: Path, config: ParticipantConfig) -> PeftModel:
    """A saved global adapter loaded onto a fresh base model with `PeftModel.from_pretrained`."""
    meta = json.loads((directory / ACCORD_FILE).read_text(encoding="utf-8"))
    base = models.load_base_model(
        config.base_model,
        meta["labels"],
        seed=config.model_seed,
        head_hidden=config.training.head_hidden,
        image_size=config.training.image_size,
    )
    return PeftModel.from_pretrained(base.model, str(directory))
