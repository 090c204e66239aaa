"""`FakeTrainer`: the one stand-in for local training the daemon tests drive.

A `Trainer` (participant/training/protocol.py) in miniature: seeded small deltas,
nothing learned, an empty folder for a checkpoint. A test that needs another update
(DP accounting, a refusal, a guard that no round runs) passes `train`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from accord.participant.training.protocol import LocalUpdate


class FakeTrainer:
    """A `Trainer` of `parameter_count` values whose rounds take no time.

    Args:
        parameter_count: the adapter's size.
        base_model_hash: what it reports at enrolment.
        seed: of the default update, normal(0, 0.05) per value.
        train: `round -> LocalUpdate` instead of the default (called after `rounds` counts it).
    """

    def __init__(
        self,
        *,
        parameter_count: int = 10,
        base_model_hash: str = "ab" * 32,
        seed: int = 0,
        train: Callable[[int], LocalUpdate] | None = None,
    ) -> None:
        self.parameter_count = parameter_count
        self.base_model_hash = base_model_hash
        self.rounds = 0
        self._rng = np.random.default_rng(seed)
        self._train = train

    def train_round(self, round: int) -> LocalUpdate:
        self.rounds += 1
        return self.seeded_update() if self._train is None else self._train(round)

    def seeded_update(self) -> LocalUpdate:
        """The default update: normal(0, 0.05) per value from the seeded stream, 50 samples."""
        delta = self._rng.normal(scale=0.05, size=self.parameter_count).astype(np.float32)
        return LocalUpdate(delta=delta, sample_count=50, metrics={"local_steps": 4.0})

    def apply(self, mean_delta: Any) -> None:
        pass

    def evaluate(self) -> dict[str, float]:
        return {"eval_loss": 0.5 / max(1, self.rounds)}

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)

    def load(self, directory: Path) -> None:
        pass
