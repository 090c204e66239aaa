"""The trainer's samples: train, test and shared-test items and the label names, from a data
folder in the manifest layout (`participant/data/folder.py`) or, without one, from the
synthetic city-safety benchmark (enterprise `seed mod 3`, generated from `model_seed`, with
its pooled test set as the shared test set).

    load_items(config) -> (train, test, shared test, labels)
    model_labels(config)     the label names without reading any data
    image_of(item)           a PIL image of an item's frame
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accord.errors import ConfigError
from accord.participant.config import ParticipantConfig
from accord.participant.data import city_safety
from accord.participant.data import folder as datasets

SYNTHETIC_ENTERPRISES = 3


@dataclass(frozen=True)
class Item:
    """A sample ready to preprocess: a way to get its image, its text, its label index."""

    id: str
    image: Any  # a Path, or a uint8 array from a generator
    text: str
    label: int
    split: str


def load_items(
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


def model_labels(config: ParticipantConfig) -> tuple[str, ...]:
    """The label names without reading any data: as `load_items` finds them."""
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


def image_of(item: Item) -> Any:
    from PIL import Image

    if isinstance(item.image, Path):
        return datasets.open_image(item.image)
    return Image.fromarray(item.image)
