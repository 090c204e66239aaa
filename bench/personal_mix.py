"""Own-test and pooled-test accuracy of the personal model mixed with the global adapter.

    python bench/personal_mix.py accord-demo     (a finished `accord demo` work folder)

For each participant: the prediction `(1 - w) * p_personal + w * p_global` for w = 0,
1/3, 1/2, 2/3, 1, beside the local-only model, from the newest adapter folder and the
side models in the participant's folder (`personalized.npy`, `local_only.npy`; the demo
trains both). Both models are already trained and accounted; mixing their predictions
costs no privacy. `personal_global_weight` (default 1/3) was chosen with this script on
demo seeds 1 and 2 (docs/ml.md), not on the default seed's run the docs report.
"""

from __future__ import annotations

import sys
from pathlib import Path

from accord.core import configfile
from accord.participant.config import ParticipantConfig
from accord.participant.training.multimodal import MultimodalTrainer

WEIGHTS = (0.0, 1 / 3, 0.5, 2 / 3, 1.0)


def mixes(folder: Path) -> dict[str, list[float]]:
    """Per test set, local-only's accuracy then the mix's at each weight (percent)."""
    config = configfile.load(folder / "participant.toml", ParticipantConfig, "participant")
    trainer = MultimodalTrainer(config)
    trainer.load(sorted((folder / "adapters").glob("round-*"))[-1])
    personal, alone = trainer._personal.vector, trainer._local_only.vector
    assert personal is not None and alone is not None, f"{folder}: no side models"
    results = {}
    for name, data in (("own", trainer._test), ("pooled", trainer._eval or trainer._test)):
        scores = [trainer._scores(alone, data)["accuracy"]]
        scores += [trainer._scores(personal, data, global_weight=w)["accuracy"] for w in WEIGHTS]
        results[name] = [round(100 * s, 1) for s in scores]
    return results


def main(workdir: Path) -> None:
    print("local-only, then the personal model mixed with the global at w =", WEIGHTS)
    for folder in sorted((workdir / "participants").iterdir()):
        if (folder / "personalized.npy").exists():
            print(folder.name, mixes(folder))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "accord-demo"))
