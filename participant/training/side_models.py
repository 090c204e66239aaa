"""Models trained beside the rounds on the same private records: kept and reported locally,
never aggregated, never written into an adapter folder (which may be shared).

    SideModel(purpose, state_dir, accountant)   the weights (`{purpose}.npy`) and the DP
                                                 accountant's history
                                                 (`{purpose}_accountant.json`), in state_dir
    .vector                                      None until first trained (or restored)
    .train(start, runs, dp) -> SideTraining      train from `start`, persist weights and
                                                 history, return what it spent
    mixed(logits, shared, weight)                the personal model's prediction, mixed
                                                 with the global adapter's
    paired(personal_right, local_only_right)     the two side models record by record

Two side models exist (`multimodal.py` drives them):

- `local_only`: the baseline the federation must beat (`report_local_only`, on in the
  demo only): each round it trains on from its own weights, as the member would alone.
- `personalized`: the member's own model (`personalize_round`): in that round it is
  fine-tuned from the global adapter for `personal_rounds` rounds' worth of local steps.

Each has its own accountant, whose history is saved before `train` returns, so a restart
continues the same budget; each round's steps reach the privacy ledger with the round
(`PrivateUpdate.side_training`), before any of its accuracy leaves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from accord.participant.training import local as train
from accord.participant.training import privacy

Run = Callable[[npt.NDArray[np.float32], privacy.History], train.RoundResult]
"""One round's worth of local training from a vector, continuing an accountant history."""


class SideModel:
    """One side model's weights and accountant, persisted in `state_dir`."""

    def __init__(self, purpose: str, state_dir: Path, accountant: str, *, size: int) -> None:
        self.purpose = purpose
        self._weights_file = state_dir / f"{purpose}.npy"
        self._history_file = state_dir / f"{purpose}_accountant.json"
        self._accountant = accountant
        self.history: privacy.History = privacy.load_history(self._history_file, accountant)
        self.vector: npt.NDArray[np.float32] | None = None
        if self._weights_file.exists():
            stored = np.load(self._weights_file).astype(np.float32)
            if stored.shape == (size,):
                self.vector = stored

    def train(
        self, start: npt.NDArray[np.float32], runs: Sequence[Run], *, dp: bool
    ) -> privacy.SideTraining:
        """Train from `start` through `runs`; weights and history are on disk on return."""
        before = sum(int(n) for _, _, n in self.history)
        vector = start.astype(np.float32)
        result: train.RoundResult | None = None
        steps = 0
        for run in runs:
            result = run(vector, self.history)
            vector = (vector + result.delta).astype(np.float32)
            steps += int(result.steps)
            if dp:
                self.history = result.history
        if dp:
            privacy.save_history(self._history_file, self._accountant, self.history)
        _save_vector(self._weights_file, vector)
        self.vector = vector
        if result is None or result.privacy is None:
            return privacy.SideTraining(self.purpose, steps, None)
        return privacy.SideTraining(self.purpose, result.privacy.steps - before, result.privacy)


def _save_vector(path: Path, vector: npt.NDArray[np.float32]) -> None:
    """Write a float32 vector atomically (np.save to a staging file, then rename)."""
    staging = path.with_name(path.name + ".tmp.npy")
    np.save(staging, vector)
    staging.replace(path)


def mixed(logits: torch.Tensor, shared: torch.Tensor, weight: float) -> torch.Tensor:
    """The personal model's prediction: log-probabilities of `(1 - weight) *
    softmax(logits) + weight * softmax(shared)` (shared: the global adapter's logits);
    `logits` unchanged at weight 0."""
    if weight == 0:
        return logits
    return torch.log((1 - weight) * torch.softmax(logits, -1) + weight * torch.softmax(shared, -1))


def paired(personal_right: torch.Tensor, local_only_right: torch.Tensor) -> dict[str, float]:
    """The personal and local-only models on the same records (booleans: which each gets
    right): how many only the personal model gets right (`personalized_gains`), how many
    only local-only (`personalized_losses`), of `test_records`."""
    return {
        "personalized_gains": float((personal_right & ~local_only_right).sum()),
        "personalized_losses": float((local_only_right & ~personal_right).sum()),
        "test_records": float(personal_right.numel()),
    }
