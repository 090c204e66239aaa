"""Federated learning simulated in one process, with hyperparameters chosen on validation.

Each enterprise's training split is cut into a fit part and a validation part
(`non_iid.split_validation`); models train on the fit parts only, and every choice
(learning rate and steps without DP, learning rate and clip with DP) is made on
validation accuracy, never on a test split:

- local-only: each enterprise trains the head on its own data; it keeps the grid point
  best on its own validation split;
- federated: FedAvg (the same `train.train_local` the participant runs, the
  sample-count-weighted mean of the deltas applied to everyone; what the secure pipeline
  computes exactly up to the quantization error); the grid point best on the pooled
  validation set (what the federation could average from its members' validation counts);
- centralized: one head trained on all fit data pooled; best on the pooled validation set;
- personalized: the product's personal model (`personalize_round`): each enterprise
  fine-tunes the FedAvg global head on its own fit data with its local-only grid point,
  for as many steps as its local-only model takes (with DP at the same epsilon, its own
  accountant: a second DP training on the same records), and predicts
  `(1 - w) * p_personal + w * p_global` with the product's fixed w =
  `PERSONAL_GLOBAL_WEIGHT` (post-processing; nothing chosen on any split).

Without DP the trained models are not private; with DP every training is sample-level
DP-SGD at the stated epsilon, and an enterprise's personalized model has cost the
composition of its federated updates and its fine-tuning (`composed_epsilon`).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from accord.participant.data import folder as datasets
from accord.participant.training import csprng, models, privacy
from accord.participant.training import local as train

PERSONAL_GLOBAL_WEIGHT = 1 / 3
"""The global model's share of the personal prediction (the product's
`personal_global_weight` default)."""
PERSONAL_SEED = 1000
"""Offsets the personal trainings' batch-sampling seeds from the rounds' (`Simulation._train`)."""
DELTA = 1e-5


@dataclass
class Features:
    """Cached tower features of a set of examples."""

    text: torch.Tensor
    image: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class Hyper:
    """One grid point: AdamW learning rate, local steps per round, DP clip (None: no DP)."""

    learning_rate: float
    steps: int
    clip: float | None = None

    def __str__(self) -> str:
        clip = "" if self.clip is None else f", clip {self.clip:g}"
        return f"lr {self.learning_rate:g}, {self.steps} steps{clip}"


@dataclass(frozen=True)
class Plan:
    """Rounds, batch size, the grid searched without DP and with DP, and the accountant
    that calibrates the noise (`prv`; the demo's `rdp`)."""

    rounds: int
    batch_size: int
    dp_batch_size: int
    grid: tuple[Hyper, ...]
    dp_grid: tuple[Hyper, ...]
    accountant: str = "prv"


def grid(rates: Sequence[float], steps: Sequence[int], clips: Sequence[float | None]) -> tuple:
    return tuple(Hyper(r, s, c) for r, s, c in itertools.product(rates, steps, clips))


def features_of(
    base: models.BaseModel, examples: Sequence[datasets.Example], batch: int = 64
) -> Features:
    """The frozen towers' features of in-memory examples."""
    from PIL import Image

    index = {label: i for i, label in enumerate(base.labels)}
    texts, images = [], []
    with torch.no_grad():
        for begin in range(0, len(examples), batch):
            chunk = examples[begin : begin + batch]
            ids, mask = base.preprocess.texts([e.text for e in chunk])
            pixels = base.preprocess.images([Image.fromarray(e.image) for e in chunk])
            text, image = base.model.encode(ids, mask, pixels)
            texts.append(text)
            images.append(image)
    labels = torch.tensor([index[e.label] for e in examples], dtype=torch.int64)
    return Features(torch.cat(texts), torch.cat(images), labels)


def cached_features(
    base: models.BaseModel, examples: Sequence[datasets.Example], cache: Path | None
) -> Features:
    """`features_of`, kept in `cache` under a digest of the examples (reruns skip the towers)."""
    if cache is None:
        return features_of(base, examples)
    digest = hashlib.sha256(str(base.labels).encode())
    for example in examples:
        digest.update(f"{example.id}\0{example.label}\0{example.text}\0".encode())
        digest.update(np.ascontiguousarray(example.image).tobytes())
    path = cache / f"{digest.hexdigest()[:32]}.pt"
    if path.exists():
        return Features(**torch.load(path))
    data = features_of(base, examples)
    cache.mkdir(parents=True, exist_ok=True)
    torch.save({"text": data.text, "image": data.image, "labels": data.labels}, path)
    return data


def pooled(parts: Sequence[Features]) -> Features:
    return Features(
        torch.cat([p.text for p in parts]),
        torch.cat([p.image for p in parts]),
        torch.cat([p.labels for p in parts]),
    )


def head_for(base: models.BaseModel, seed: int = 0) -> models.FusionHead:
    torch.manual_seed(seed)
    return models.FusionHead(
        (base.model.text_tower.dim, base.model.image_tower.dim), len(base.labels)
    )


def probabilities(head: torch.nn.Module, data: Features, blank: str | None = None) -> torch.Tensor:
    text, image = data.text, data.image
    if blank == "text":
        text = torch.zeros_like(text)
    elif blank == "image":
        image = torch.zeros_like(image)
    return torch.softmax(train.predict(head, [text, image]), dim=-1)


def accuracy_of(probs: torch.Tensor, data: Features) -> float:
    return float((probs.argmax(dim=-1) == data.labels).float().mean())


def accuracy(head: torch.nn.Module, data: Features, blank: str | None = None) -> float:
    return accuracy_of(probabilities(head, data, blank), data)


def settings(hyper: Hyper, plan: Plan, epsilon: float | None, samples: int) -> train.LocalSettings:
    """One round's local settings; with DP the noise covers all `plan.rounds` rounds."""
    if epsilon is None:
        return train.LocalSettings(
            steps=hyper.steps, batch_size=plan.batch_size, learning_rate=hyper.learning_rate
        )
    return train.LocalSettings(
        steps=hyper.steps,
        batch_size=min(plan.dp_batch_size, samples),
        learning_rate=hyper.learning_rate,
        dp=privacy.DpSettings(
            target_epsilon=epsilon,
            delta=DELTA,
            max_grad_norm=hyper.clip or 1.0,
            accountant=plan.accountant,
            planned_steps=hyper.steps * plan.rounds,
        ),
    )


class Simulation:
    """One benchmark's fit, validation and test features, trained under one plan."""

    def __init__(
        self,
        base: models.BaseModel,
        fit: Sequence[Features],
        validation: Sequence[Features],
        plan: Plan,
    ) -> None:
        self.base, self.fit, self.validation, self.plan = base, fit, validation, plan
        self.source = csprng.CsprngGaussian()
        self.spent: dict[float, float] = {}  # epsilon target -> the federation's spent
        # (grid point, epsilon) -> each enterprise's accountant history of its FedAvg updates
        self.federated_histories: dict[tuple[Hyper, float | None], list[privacy.History]] = {}
        # (grid point, epsilon) -> the global head's weights before the last round: where
        # the demo's personal model starts (`personalize_round` = the last round trains its
        # side models beside the round's update, before that round's aggregate exists)
        self.before_last_round: dict[tuple[Hyper, float | None], npt.NDArray[np.float32]] = {}

    def _train(
        self, head: torch.nn.Module, data: Features, hyper: Hyper, epsilon: float | None, seed: int
    ) -> privacy.History:
        history: privacy.History = []
        local = settings(hyper, self.plan, epsilon, len(data))
        for round_ in range(self.plan.rounds):
            history = train.train_local(
                head,
                [data.text, data.image, data.labels],
                local,
                generator=torch.Generator().manual_seed(seed * 1000 + round_),
                history=history,
                noise_source=self.source,
                report_privacy=False,
            ).history
        return history

    def local_only(self, hyper: Hyper, epsilon: float | None) -> list[torch.nn.Module]:
        heads = []
        for index, data in enumerate(self.fit):
            head = head_for(self.base)
            self._train(head, data, hyper, epsilon, index)
            heads.append(head)
        return heads

    def centralized(self, hyper: Hyper, epsilon: float | None) -> torch.nn.Module:
        head = head_for(self.base)
        self._train(head, pooled(self.fit), hyper, epsilon, 99)
        return head

    def federated(self, hyper: Hyper, epsilon: float | None) -> torch.nn.Module:
        head = head_for(self.base)
        names = train.trainable_names(head)
        vector = train.get_vector(head, names)
        histories: list[privacy.History] = [[] for _ in self.fit]
        weights = np.array([len(data) for data in self.fit], dtype=np.float64)
        for round_ in range(self.plan.rounds):
            self.before_last_round[(hyper, epsilon)] = vector
            deltas = []
            for index, data in enumerate(self.fit):
                train.set_vector(head, names, vector)
                result = train.train_local(
                    head,
                    [data.text, data.image, data.labels],
                    settings(hyper, self.plan, epsilon, len(data)),
                    generator=torch.Generator().manual_seed(index * 1000 + round_),
                    history=histories[index],
                    noise_source=self.source,
                    report_privacy=False,
                )
                histories[index] = result.history
                deltas.append(result.delta)
            mean = sum(w * d for w, d in zip(weights, deltas, strict=True)) / weights.sum()
            vector = (vector + mean).astype(np.float32)
        train.set_vector(head, names, vector)
        self.federated_histories[(hyper, epsilon)] = histories
        if epsilon is not None:
            dp = settings(hyper, self.plan, epsilon, len(self.fit[0])).dp
            assert dp is not None
            self.spent[epsilon] = privacy.spent_from_history(dp, histories[0]).epsilon
        return head

    def personalized(
        self,
        global_head: torch.nn.Module,
        hypers: Sequence[Hyper],
        epsilon: float | None,
        start: npt.NDArray[np.float32] | None = None,
    ) -> tuple[list[torch.nn.Module], list[privacy.History]]:
        """Each enterprise's personal head and the history of its own accountant.

        The head starts from `start` (default: `global_head`'s weights; the demo's start is
        `before_last_round`) and trains on the enterprise's fit data with its grid point in
        `hypers` (its local-only choice) for `plan.rounds` rounds' worth of steps, as many
        as its local-only model; with DP at `epsilon`, from an empty history.
        """
        names = train.trainable_names(global_head)
        if start is None:
            start = train.get_vector(global_head, names)
        heads, histories = [], []
        for index, (data, hyper) in enumerate(zip(self.fit, hypers, strict=True)):
            head = head_for(self.base)
            train.set_vector(head, names, start)
            histories.append(self._train(head, data, hyper, epsilon, PERSONAL_SEED + index))
            heads.append(head)
        return heads, histories

    def composed_epsilon(
        self, federated: Hyper, epsilon: float, personal: Sequence[privacy.History]
    ) -> list[float]:
        """Per enterprise, the epsilon of its FedAvg updates (at grid point `federated`)
        and its personal fine-tuning together, over the concatenated histories (as the
        participant's trainer composes its side trainings)."""
        updates = self.federated_histories[(federated, epsilon)]
        return [
            privacy.epsilon(self.plan.accountant, own + side, DELTA)
            for own, side in zip(updates, personal, strict=True)
        ]

    def best(self, epsilon: float | None) -> dict[str, tuple[list[torch.nn.Module], list[Hyper]]]:
        """Per setting, the heads (one per enterprise) and grid points chosen on validation."""
        candidates = self.plan.grid if epsilon is None else self.plan.dp_grid
        all_validation = pooled(self.validation)
        n = len(self.fit)
        chosen: dict[str, tuple[list[torch.nn.Module], list[Hyper]]] = {}
        scores: dict[str, list[float]] = {}
        for hyper in candidates:
            heads = {
                "local-only": self.local_only(hyper, epsilon),
                "federated": [self.federated(hyper, epsilon)] * n,
                "centralized": [self.centralized(hyper, epsilon)] * n,
            }
            for setting, group in heads.items():
                if setting == "local-only":
                    score = [accuracy(h, v) for h, v in zip(group, self.validation, strict=True)]
                else:
                    score = [accuracy(group[0], all_validation)] * n
                if setting not in chosen:
                    chosen[setting] = (list(group), [hyper] * n)
                    scores[setting] = score
                    continue
                kept_heads, kept_hypers = chosen[setting]
                for k in range(n):
                    if score[k] > scores[setting][k]:
                        scores[setting][k] = score[k]
                        kept_heads[k], kept_hypers[k] = group[k], hyper
        return chosen


def mixed_accuracy(
    global_head: torch.nn.Module, local_head: torch.nn.Module, weight: float, data: Features
) -> float:
    probs = weight * probabilities(global_head, data) + (1 - weight) * probabilities(
        local_head, data
    )
    return accuracy_of(probs, data)
