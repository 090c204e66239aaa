"""The data `accord demo` writes for the multimodal trainer: the city-safety benchmark.

Enterprise i of the benchmark goes to participant i: `DIR/data/<name>/` holds its train
and test splits, `DIR/data/pooled-test/` every test split (the shared evaluation set),
and `DIR/data/benchmark.json` which enterprise each participant is. The participants
cache their frozen towers' features in the shared `DIR/features/`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

DATA_DIR = "data"
FEATURES_DIR = "features"
BENCHMARK_FILE = "benchmark.json"


@dataclass(frozen=True)
class DemoData:
    """Where `write_demo_data` put each participant's data and the shared test set."""

    folders: dict[str, Path]
    pooled_test: Path
    feature_cache: Path


def write_demo_data(workdir: Path, names: Sequence[str], *, seed: int) -> DemoData:
    """Write the city-safety benchmark for `names`: enterprise i's data to participant i.

    `DIR/data/<name>/` holds that participant's train and test splits, `DIR/data/
    pooled-test/` every test split (the shared evaluation set), and `benchmark.json`
    each participant's enterprise (domain) and label counts.
    """
    from accord.participant.data import city_safety
    from accord.participant.data import folder as datasets
    from accord.participant.data import incident_sets as benchmarks

    bench = city_safety.city_safety_benchmark(len(names), seed=seed)
    root = workdir / DATA_DIR
    folders: dict[str, Path] = {}
    described: dict[str, object] = {}
    for name, enterprise in zip(names, bench.enterprises, strict=True):
        folders[name] = root / name
        datasets.write_dataset(enterprise.train + enterprise.test, folders[name], bench.labels)
        described[name] = {
            "enterprise": enterprise.name,
            "train": len(enterprise.train),
            "test": len(enterprise.test),
            "train_labels": dict(
                zip(
                    bench.labels,
                    benchmarks.label_counts(enterprise.train, bench.labels),
                    strict=True,
                )
            ),
        }
    pooled = root / benchmarks.POOLED_TEST
    datasets.write_dataset(bench.pooled_test, pooled, bench.labels)
    (root / BENCHMARK_FILE).write_text(
        json.dumps(
            {
                "benchmark": bench.name,
                "settings": bench.settings,
                "labels": list(bench.labels),
                "pooled_test": len(bench.pooled_test),
                "participants": described,
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    return DemoData(folders=folders, pooled_test=pooled, feature_cache=workdir / FEATURES_DIR)
