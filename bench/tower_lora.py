"""LoRA in the towers vs the frozen-tower head, at the same epsilon (issue 14).

Run: ``.venv/bin/python bench/tower_lora.py [--source mnist] [--image-size 32]
[--probe-rounds 3] [--tower text --decoy-share 1] [--write PATH]``

The digits benchmark (`digits_benchmark(3, source="digits")`: 1,797 real 8x8 digits as
camera frames with generated reports; its image-only frozen accuracy is low, so adapting
the image tower has room), trained centralized on every enterprise's fit split pooled
(`non_iid.split_validation`: 20% of each training split held out for validation), with
sample-level DP-SGD at epsilon 8, delta 1e-5 (the product's `train.train_local`, PRV
calibration over all the run's steps). Two settings on the same data, base model and
image size:

- frozen: both towers frozen, their features cached, the fusion head trained;
- towers: the same head and FFA-LoRA B matrices in one tower (A frozen from the seed),
  with their own learning rate (`tower_learning_rate`). `--tower image` (the default):
  in the image tower (`TARGETS`, EfficientNet-Lite0's 1x1 convolutions), the text tower
  frozen (its features cached: exact, it has no LoRA); `--tower text`: in MiniLM's
  attention (`TEXT_TARGETS`), the image tower frozen and cached. Per-sample gradients
  run through the tuned tower, so this is the slow one.
  With ``--probe-rounds k`` it is LP-FT: the head alone for the first k rounds (on cached
  features), then the head and LoRA, under the same DP calibration over all rounds.

`--decoy-share F` makes that share of the specific reports also name a ruled-out
incident type (`digits_benchmark(decoy_share=F)`, e.g. "flames and thick smoke, not a
flooded underpass"): a frozen sentence encoder averages both mentions, so that is the
data on which tuning the text tower has something to learn.

Every choice is made on the validation split, never on the test split: the head's
learning rate and DP clip for the frozen setting (`FROZEN_GRID`); the towers setting
keeps them and picks its LoRA point from `TOWER_GRIDS`. The test split is
scored once per setting, for the chosen point only.

With ``--write PATH`` the tower's section of PATH (`SECTIONS`) is written or replaced
(its own `## ` section: `ml_bench.py` rewrites "## Federated learning" whole).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import platform
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fl_sim
import torch
from report import cpu_model, publish
from torch import nn

from accord.participant.data import digit_incidents, non_iid
from accord.participant.data import folder as datasets
from accord.participant.training import csprng, models, privacy
from accord.participant.training import local as train

SECTIONS = {
    "image": "## LoRA in the towers vs the frozen head",
    "text": "## LoRA in the text tower vs the frozen head",
}
"""The markdown section `--write` replaces, per `--tower`."""
TARGETS = {
    "1x1 convs": (
        r".*image_tower\.network\._blocks\.\d+\.(_expand_conv|_project_conv)"
        r"|.*image_tower\.network\._conv_head"
    ),
    "_conv_head": r".*image_tower\.network\._conv_head",
}
"""LoRA targets in the image tower: every 1x1 convolution (the bundled model's image
targets, `BUNDLED_LORA_TARGETS`), or only the last one (`_conv_head`, 320 -> 1280)."""
TEXT_TARGETS = {
    "query, value": r".*text_tower\.encoder\.encoder\.layer\.\d+\.attention\.self\.(query|value)",
}
"""LoRA targets in the text tower: MiniLM's attention query and value projections."""
TOWER_TARGETS = {"image": TARGETS, "text": TEXT_TARGETS}
"""Each tower's LoRA targets, by name (`--tower`)."""
EPSILON = 8.0
DELTA = fl_sim.DELTA
VALIDATION = 0.2
FROZEN_GRID = tuple(itertools.product((0.05, 0.2), (0.5, 2.0)))
"""(head learning_rate, DP clip max_grad_norm) searched for the frozen head."""
RANK = 4
IMAGE_SIZE = 64
"""The image tower's input side by default (`--image-size`); the frozen baseline uses the same."""
TOWER_GRIDS = {
    "image": tuple(itertools.product(TARGETS, (1, 8), (0.01, 0.05))),
    "text": tuple(itertools.product(TEXT_TARGETS, (8,), (0.002, 0.01))),
}
"""Per tower, the (targets, lora_alpha, tower_learning_rate) searched for its LoRA, rank 4
(alpha 8 is the default 2 * rank); the head keeps the frozen setting's choice."""


@dataclass(frozen=True)
class Split:
    """One split's tensors: cached text and frozen image features, pixels, the reports'
    token ids and attention mask, labels."""

    text: torch.Tensor
    image: torch.Tensor
    pixels: torch.Tensor
    ids: torch.Tensor
    mask: torch.Tensor
    labels: torch.Tensor

    def tuned_inputs(self, tower: str) -> list[torch.Tensor]:
        """The inputs of `TowerTuned` for `tower` ("image" or "text")."""
        return [self.text, self.pixels] if tower == "image" else [self.ids, self.mask, self.image]


@dataclass(frozen=True)
class Plan:
    """Rounds of `steps` DP-SGD steps of expected batch `batch_size`."""

    rounds: int
    steps: int
    batch_size: int


class TowerTuned(nn.Module):
    """The PEFT model's `tower` ("image" or "text", with its LoRA) and fusion head, on the
    other tower's cached features: `forward(text_features, pixels)` or `forward(ids,
    mask, image_features)` (`Split.tuned_inputs`), the same logits as the whole model."""

    def __init__(self, peft_model: nn.Module, tower: str) -> None:
        super().__init__()
        inner: nn.Module = peft_model.base_model.model  # type: ignore[union-attr,assignment]
        self.tower_name = tower
        self.tower = getattr(inner, f"{tower}_tower")
        self.head = models.fusion_head(peft_model)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if self.tower_name == "image":
            text, pixels = inputs
            return self.head(text, self.tower(pixels))  # type: ignore[no-any-return]
        ids, mask, image = inputs
        return self.head(self.tower(ids, mask), image)  # type: ignore[no-any-return]


def split_of(base: models.BaseModel, examples: tuple[datasets.Example, ...]) -> Split:
    """Features (frozen towers), pixels and token ids of `examples`."""
    from PIL import Image

    features = fl_sim.features_of(base, examples)
    pixels = base.preprocess.images([Image.fromarray(e.image) for e in examples])
    ids, mask = base.preprocess.texts([e.text for e in examples])
    return Split(features.text, features.image, pixels, ids, mask, features.labels)


def load_data(
    image_size: int, limit: int | None, source: str = "digits", decoy_share: float = 0.0
) -> tuple[models.BaseModel, Split, Split, Split, dict[str, int]]:
    """The base model and the pooled fit, validation and test splits of `source`'s digits."""
    bench = digit_incidents.digits_benchmark(
        3, source=source, seed=0, limit=limit, decoy_share=decoy_share
    )
    base = models.load_base_model(models.BUNDLED_MODEL, bench.labels, image_size=image_size)
    fit, val = zip(
        *(non_iid.split_validation(e, VALIDATION, seed=i) for i, e in enumerate(bench.enterprises)),
        strict=True,
    )
    fit_split, val_split, test = (
        split_of(base, tuple(x for part in parts for x in part))
        for parts in (fit, val, [e.test for e in bench.enterprises])
    )
    sizes = {"fit": len(fit_split.labels), "validation": len(val_split.labels)}
    return base, fit_split, val_split, test, {**sizes, "test": len(test.labels)}


def settings(
    plan: Plan, rate: float, clip: float, tower_rate: float | None = None
) -> train.LocalSettings:
    return train.LocalSettings(
        steps=plan.steps,
        batch_size=plan.batch_size,
        learning_rate=rate,
        tower_learning_rate=tower_rate,
        dp=privacy.DpSettings(
            target_epsilon=EPSILON,
            delta=DELTA,
            max_grad_norm=clip,
            accountant="prv",
            planned_steps=plan.steps * plan.rounds,
        ),
    )


def run_rounds(
    module: nn.Module,
    data: list[torch.Tensor],
    local: train.LocalSettings,
    rounds: range,
    history: privacy.History,
) -> tuple[privacy.History, float]:
    """Train the rounds `rounds` (their indices seed the batches), continuing the
    accountant's `history`; (the new history, the last round's update L2)."""
    source, norm = csprng.CsprngGaussian(), 0.0
    for round_ in rounds:
        result = train.train_local(
            module,
            data,
            local,
            generator=torch.Generator().manual_seed(round_),
            history=history,
            noise_source=source,
            report_privacy=False,
        )
        history, norm = result.history, float(result.delta.astype("float64").dot(result.delta))
    return history, norm**0.5


def spent(local: train.LocalSettings, history: privacy.History, norm: float) -> dict[str, float]:
    """The epsilon `history` spent and the last round's update L2, as a report's info."""
    assert local.dp is not None
    return {"epsilon": privacy.spent_from_history(local.dp, history).epsilon, "update_l2": norm}


def frozen_run(
    base: models.BaseModel, fit: Split, plan: Plan, rate: float, clip: float
) -> tuple[nn.Module, dict[str, float]]:
    """The head on the frozen towers' cached features."""
    head = fl_sim.head_for(base)
    local = settings(plan, rate, clip)
    history, norm = run_rounds(
        head, [fit.text, fit.image, fit.labels], local, range(plan.rounds), []
    )
    return head, spent(local, history, norm)


def tower_run(
    base: models.BaseModel,
    fit: Split,
    plan: Plan,
    head: tuple[float, float],
    tower: tuple[str, int, float],
    probe_rounds: int = 0,
    kind: str = "image",
) -> tuple[nn.Module, dict[str, float]]:
    """The head (from the frozen setting's initial weights) and FFA-LoRA in the `kind`
    tower ("image" or "text"): `head` (learning_rate, clip), `tower` (targets, lora_alpha,
    tower_learning_rate).

    With `probe_rounds` > 0, linear probe then fine-tune (LP-FT, Kumar et al. 2022): the
    first `probe_rounds` rounds train the head alone on the frozen towers' cached features,
    the remaining rounds the head and the LoRA matrices from that head. One DP calibration
    covers all `plan.rounds` rounds and the accountant counts every step of both phases.
    """
    targets, alpha, tower_rate = tower
    lora = train.LoraSettings(rank=RANK, alpha=alpha, target_modules=TOWER_TARGETS[kind][targets])
    module = TowerTuned(train.wrap_with_lora(base, lora, seed=0), kind)
    module.head.load_state_dict(fl_sim.head_for(base).state_dict())
    local = settings(plan, *head, tower_rate)
    history, norm = run_rounds(
        module.head, [fit.text, fit.image, fit.labels], local, range(probe_rounds), []
    )
    history, norm = run_rounds(
        module,
        [*fit.tuned_inputs(kind), fit.labels],
        local,
        range(probe_rounds, plan.rounds),
        history,
    )
    return module, spent(local, history, norm)


def score(module: nn.Module, split: Split, tower: str | None) -> float:
    """Accuracy on `split`: of the head on cached features (tower None), or of a
    `TowerTuned` module on its tower's inputs."""
    inputs = [split.text, split.image] if tower is None else split.tuned_inputs(tower)
    logits = train.predict(module, inputs, batch_size=128)
    return train.accuracy_and_loss(logits, split.labels)["accuracy"]


def fresh_base(base: models.BaseModel) -> models.BaseModel:
    """A fresh copy of the base model (peft modifies the one it wraps)."""
    size = int(base.descriptor["image_size"])
    return models.load_base_model(models.BUNDLED_MODEL, base.labels, image_size=size)


def probe(args: argparse.Namespace) -> None:
    """Seconds per DP step of each setting on a few samples (the cost, before a search)."""
    base, fit, _, _, sizes = load_data(args.image_size, 200, args.source, args.decoy_share)
    plan = Plan(1, 3, args.batch_size)
    runs = {
        "frozen": lambda: frozen_run(base, fit, plan, 0.05, 1.0),
        **{
            f"towers ({targets})": functools.partial(
                tower_run,
                fresh_base(base),
                fit,
                plan,
                (0.05, 1.0),
                (targets, 8, 0.01),
                kind=args.tower,
            )
            for targets in TOWER_TARGETS[args.tower]
        },
    }
    for name, run in runs.items():
        started = time.perf_counter()
        run()
        print(f"{name}: {(time.perf_counter() - started) / plan.steps:.2f} s per step", sizes)


Trained = tuple[float, nn.Module, dict[str, float]]
"""(validation accuracy, the trained module, its epsilon and last update L2)."""


def choose(grid: dict[Any, Trained], label: str) -> tuple[Any, Trained]:
    """The grid point best on validation (the first of equals)."""
    for point, (accuracy, _, info) in grid.items():
        print(f"{label} {point}: validation {accuracy:.3f}", info, flush=True)
    return max(grid.items(), key=lambda kv: kv[1][0])


def search(args: argparse.Namespace) -> list[str]:
    """Both settings chosen on validation; the chosen points scored on test (`--repeats`
    trainings each, fresh DP noise: their mean and range)."""
    plan, started = Plan(args.rounds, args.steps, args.batch_size), time.perf_counter()
    base, fit, val, test, sizes = load_data(args.image_size, None, args.source, args.decoy_share)
    frozen: dict[Any, Trained] = {}
    for rate, clip in FROZEN_GRID:
        head, info = frozen_run(base, fit, plan, rate, clip)
        frozen[(rate, clip)] = (score(head, val, None), head, info)
    head_point, frozen_best = choose(frozen, "frozen (lr, clip)")
    frozen_s, towers = time.perf_counter() - started, {}
    tuned = functools.partial(tower_run, probe_rounds=args.probe_rounds, kind=args.tower)
    grid = TOWER_GRIDS[args.tower]
    for tower in grid:
        module, info = tuned(fresh_base(base), fit, plan, head_point, tower)
        towers[tower] = (score(module, val, args.tower), module, info)
    tower_point, tower_best = choose(towers, "towers (targets, alpha, tower_lr)")
    tower_s = (time.perf_counter() - started - frozen_s) / len(grid)
    frozen_tests = [score(frozen_best[1], test, None)] + [
        score(frozen_run(base, fit, plan, *head_point)[0], test, None)
        for _ in range(args.repeats - 1)
    ]
    tower_tests = [score(tower_best[1], test, args.tower)] + [
        score(tuned(fresh_base(base), fit, plan, head_point, tower_point)[0], test, args.tower)
        for _ in range(args.repeats - 1)
    ]
    rows = {
        "frozen towers + head": (
            "lr {:g}, clip {:g}".format(*head_point),
            frozen_best,
            frozen_tests,
        ),
        f"head + FFA-LoRA in the {args.tower} tower (rank {RANK})": (
            "lr {:g}, clip {:g}; ".format(*head_point)
            + "LoRA on {}, lora_alpha {}, tower_learning_rate {:g}".format(*tower_point),
            tower_best,
            tower_tests,
        ),
    }
    grids = "; ".join(
        f"{name}: " + ", ".join(f"{point}: {v[0]:.3f}" for point, v in grid.items())
        for name, grid in (("frozen (lr, clip)", frozen), ("towers (targets, alpha, lr)", towers))
    )
    return [
        *report_lines(args, plan, sizes, rows, grids),
        "",
        f"Seconds: the frozen grid with feature extraction {frozen_s:.0f}; one towers run "
        f"{tower_s:.0f} on average.",
    ]


def report_lines(
    args: argparse.Namespace,
    plan: Plan,
    sizes: dict[str, int],
    rows: dict[str, tuple[str, Trained, list[float]]],
    grids: str,
) -> list[str]:
    """The section's text: data, table, every grid point's validation accuracy, verdict."""
    means = {name: statistics.mean(tests) for name, (_, _, tests) in rows.items()}
    frozen, towers = means.values()
    won = towers > frozen
    decoys = args.decoy_share
    lines = [
        f"Data: the digits benchmark (`digits_benchmark(3, source='{args.source}'"
        + (f", decoy_share={decoys:g}" if decoys else "")
        + ")`), centralized "
        f"on the 3 enterprises' fit splits pooled: fit/validation/test {sizes['fit']}/"
        f"{sizes['validation']}/{sizes['test']} samples. Bundled model at image_size "
        f"{args.image_size}; DP-SGD at epsilon {EPSILON:g}, delta {DELTA:g} (PRV), "
        f"{plan.rounds} rounds of {plan.steps} steps, expected batch {plan.batch_size}"
        + (
            f"; LoRA from round {args.probe_rounds + 1} (the head alone before: LP-FT)."
            if args.probe_rounds
            else "."
        ),
        "",
        f"| setting | chosen on validation | validation | test (mean of {args.repeats} "
        "trainings; min-max) | epsilon | last round's update L2 |",
        "|---|---|---|---|---|---|",
    ]
    for name, (chosen, (val, _, info), tests) in rows.items():
        lines.append(
            f"| {name} | {chosen} | {val:.3f} | {means[name]:.3f} ({min(tests):.3f}-"
            f"{max(tests):.3f}) | {info['epsilon']:.2f} | {info['update_l2']:.1f} |"
        )
    return [
        *lines,
        "",
        f"Validation accuracy of every grid point: {grids}.",
        "",
        f"**LoRA in the towers {'won' if won else 'did not win'}**: mean test accuracy "
        f"{towers:.3f} vs {frozen:.3f} for the frozen head at the same epsilon.",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=IMAGE_SIZE)
    parser.add_argument("--source", choices=("digits", "mnist"), default="digits")
    parser.add_argument("--tower", choices=tuple(TOWER_GRIDS), default="image")
    parser.add_argument(
        "--decoy-share", type=float, default=0.0, help="reports that also name a ruled-out type"
    )
    parser.add_argument(
        "--probe-rounds", type=int, default=0, help="rounds of the head alone before LoRA (LP-FT)"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3, help="test trainings per setting")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--probe", action="store_true", help="time a few steps, then stop")
    parser.add_argument("--write", type=Path, help="replace SECTIONS[tower] of this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.probe:
        probe(args)
        return 0
    lines = search(args)
    command = "bench/tower_lora.py " + shlex.join(sys.argv[1:])
    body = [
        SECTIONS[args.tower],
        "",
        f"`.venv/bin/python {command}` on {cpu_model()} ({platform.machine()}),"
        f" {args.threads} torch threads, {time.strftime('%Y-%m-%d')}.",
        "",
        *lines,
    ]
    publish("\n".join(body), args.write, SECTIONS[args.tower])
    return 0


if __name__ == "__main__":
    sys.exit(main())
