"""Own-test and pooled-test accuracy of prediction mixes of the global and local-only models.

    python bench/personal_mix.py accord-demo     (a finished `accord demo` work folder)

For each participant: `a * p_global + (1 - a) * p_local_only` for a = 0, 0.25, 0.5, 0.75,
1, from the newest adapter folder and `local_only.npy` (the demo turns the baseline on).
Both models are already trained and accounted; mixing their predictions costs no privacy,
choosing `a` per member on its own data would (docs/ml.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from accord.core import configfile
from accord.participant.config import ParticipantConfig
from accord.participant.training import local as train
from accord.participant.training.multimodal import MultimodalTrainer

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


def mixes(folder: Path) -> tuple[list[float], list[float]]:
    config = configfile.load(folder / "participant.toml", ParticipantConfig, "participant")
    trainer = MultimodalTrainer(config)
    trainer.load(sorted((folder / "adapters").glob("round-*"))[-1])
    vectors = (trainer._global, np.load(folder / "local_only.npy").astype(np.float32))

    def probabilities(vector: np.ndarray, data: list[torch.Tensor]) -> torch.Tensor:
        train.set_vector(trainer._model, trainer._names, vector)
        module, forward = trainer._trained_module()
        return torch.softmax(train.predict(module, data[:-1], forward=forward), -1)

    results = []
    for data in (trainer._test, trainer._eval or trainer._test):
        federated, alone = (probabilities(v, data) for v in vectors)
        results.append(
            [
                round(
                    100
                    * float(
                        ((a * federated + (1 - a) * alone).argmax(-1) == data[-1]).float().mean()
                    ),
                    1,
                )
                for a in WEIGHTS
            ]
        )
    return results[0], results[1]


def main(workdir: Path) -> None:
    print(f"a = {', '.join(str(a) for a in WEIGHTS)} (0: local-only, 1: federated)")
    for folder in sorted((workdir / "participants").iterdir()):
        if (folder / "local_only.npy").exists():
            own, pooled = mixes(folder)
            print(f"{folder.name}: own test {own}; pooled test {pooled}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "accord-demo"))
