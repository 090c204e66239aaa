"""An enterprise's training data on disk: a folder with `manifest.jsonl` and its files.

Layout (every path relative to the folder):

    DATA_DIR/
      manifest.jsonl     one JSON object per line, one sample each
      labels.json        optional: the federation's label names, ["fire", "flood", ...]
      images/...         the files the manifest names (any format Pillow reads)

A manifest line:

    {"id": "e0-000017", "image": "images/e0-000017.png", "text": "Smoke rising...",
     "label": "fire", "split": "train"}

    image   required; a relative path inside DATA_DIR to an image Pillow can open
    text    required; the incident report, not empty
    label   required; one of the label names (labels.json, or the participant's `labels`)
    split   optional; "train", "val" or "test". Samples without one are assigned
            deterministically from their id (`test_fraction` of them go to test)
    id      optional; unique; the line number when absent

Blank lines and lines starting with `#` are skipped. `read_manifest` returns every
problem it finds, each naming the line and the field (`Problem`); `load_manifest`
raises one `ConfigError` that lists them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from accord.errors import ConfigError

MANIFEST = "manifest.jsonl"
LABELS_FILE = "labels.json"
SPLITS = ("train", "val", "test")
FIELDS = ("id", "image", "text", "label", "split")
MAX_LISTED_PROBLEMS = 10


@dataclass(frozen=True)
class Record:
    """One sample of a manifest.

    Attributes:
        id: unique within the manifest.
        image: absolute path of the image file.
        text: the incident report.
        label: the label name.
        split: "train", "val" or "test" (assigned when the manifest gave none).
        line: its line number in manifest.jsonl (1-based).
    """

    id: str
    image: Path
    text: str
    label: str
    split: str
    line: int


@dataclass(frozen=True)
class Problem:
    """A validation finding: which line, which field, what is wrong."""

    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{MANIFEST} line {self.line}, field {self.field!r}: {self.message}"


@dataclass(frozen=True)
class Example:
    """A sample in memory, as a benchmark generator makes it.

    Attributes:
        id: unique name; the image file is named after it.
        image: uint8 pixels, (H, W) grey or (H, W, 3) RGB.
        text: the incident report.
        label: the label name.
        split: "train" or "test".
    """

    id: str
    image: npt.NDArray[np.uint8]
    text: str
    label: str
    split: str


def read_labels(data_dir: Path) -> tuple[str, ...] | None:
    """The label names of `labels.json`, or None when the folder has none.

    Raises:
        ConfigError: the file is not a JSON list of distinct strings.
    """
    path = Path(data_dir) / LABELS_FILE
    if not path.is_file():
        return None
    try:
        labels = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not readable JSON ({exc})") from None
    if (
        not isinstance(labels, list)
        or not all(isinstance(label, str) and label for label in labels)
        or len(set(labels)) != len(labels)
        or len(labels) < 2
    ):
        raise ConfigError(f"{path}: must be a JSON list of at least two distinct label names")
    return tuple(labels)


def read_manifest(
    data_dir: Path,
    labels: Sequence[str] | None = None,
    *,
    test_fraction: float = 0.2,
    check_images: bool = True,
) -> tuple[list[Record], list[Problem]]:
    """Parse and validate `manifest.jsonl`; return the valid records and every problem.

    Args:
        data_dir: the folder.
        labels: allowed label names; None accepts any non-empty name.
        test_fraction: share of samples without a split that go to "test".
        check_images: also open every image with Pillow (slower; catches corrupt files).

    Raises:
        ConfigError: the folder or its manifest does not exist.
    """
    data_dir = Path(data_dir).resolve()
    path = data_dir / MANIFEST
    if not path.is_file():
        raise ConfigError(f"data_dir = {str(data_dir)!r}: no {MANIFEST} in it (see docs/ml.md)")
    allowed = set(labels) if labels is not None else None
    records: list[Record] = []
    problems: list[Problem] = []
    seen_ids: dict[str, int] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            entry = json.loads(stripped)
        except ValueError as exc:
            problems.append(Problem(number, "*", f"not valid JSON ({exc.args[0]})"))
            continue
        if not isinstance(entry, dict):
            problems.append(Problem(number, "*", "must be a JSON object"))
            continue
        found = _check_entry(entry, number, data_dir, allowed, check_images)
        if isinstance(found, list):
            problems.extend(found)
            continue
        record_id = found["id"]
        if record_id in seen_ids:
            problems.append(
                Problem(number, "id", f"{record_id!r} repeats line {seen_ids[record_id]}")
            )
            continue
        seen_ids[record_id] = number
        split = found["split"] or _assigned_split(record_id, test_fraction)
        records.append(
            Record(record_id, found["image"], found["text"], found["label"], split, number)
        )
    return records, problems


def load_manifest(
    data_dir: Path,
    labels: Sequence[str] | None = None,
    *,
    test_fraction: float = 0.2,
    check_images: bool = False,
) -> list[Record]:
    """The manifest's records, or a `ConfigError` listing what is wrong with it."""
    records, problems = read_manifest(
        data_dir, labels, test_fraction=test_fraction, check_images=check_images
    )
    if problems:
        listed = "\n  ".join(str(p) for p in problems[:MAX_LISTED_PROBLEMS])
        more = len(problems) - MAX_LISTED_PROBLEMS
        tail = f"\n  ... and {more} more" if more > 0 else ""
        raise ConfigError(
            f"data_dir = {str(Path(data_dir))!r}: {len(problems)} problem(s) in {MANIFEST}; "
            f"`accord participant check-data` lists them all\n  {listed}{tail}"
        )
    if not records:
        raise ConfigError(f"data_dir = {str(Path(data_dir))!r}: {MANIFEST} lists no samples")
    return records


def open_image(path: Path) -> Any:
    """The image at `path` as a Pillow image, fully read (the file is closed)."""
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        return image.copy()


def write_dataset(
    examples: Iterable[Example], data_dir: Path, labels: Sequence[str] | None = None
) -> Path:
    """Write examples in the manifest layout (PNG images); return the manifest's path."""
    from PIL import Image

    data_dir = Path(data_dir)
    (data_dir / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for example in examples:
        relative = f"images/{example.id}.png"
        Image.fromarray(example.image).save(data_dir / relative, optimize=False)
        lines.append(
            json.dumps(
                {
                    "id": example.id,
                    "image": relative,
                    "text": example.text,
                    "label": example.label,
                    "split": example.split,
                }
            )
        )
    if labels is not None:
        (data_dir / LABELS_FILE).write_text(json.dumps(list(labels)) + "\n", encoding="utf-8")
    manifest = data_dir / MANIFEST
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return manifest


def _check_entry(
    entry: dict[str, Any],
    number: int,
    data_dir: Path,
    allowed: set[str] | None,
    check_images: bool,
) -> dict[str, Any] | list[Problem]:
    problems = [
        Problem(number, key, f"unknown field (expected one of {', '.join(FIELDS)})")
        for key in entry
        if key not in FIELDS
    ]
    record_id = entry.get("id", str(number))
    if not isinstance(record_id, (str, int)) or str(record_id) == "":
        problems.append(Problem(number, "id", "must be a non-empty string"))
    text = entry.get("text")
    if not isinstance(text, str):
        problems.append(Problem(number, "text", "missing or not a string"))
    elif not text.strip():
        problems.append(Problem(number, "text", "empty report"))
    label = entry.get("label")
    if not isinstance(label, str) or not label:
        problems.append(Problem(number, "label", "missing or not a string"))
    elif allowed is not None and label not in allowed:
        problems.append(
            Problem(
                number, "label", f"unknown label {label!r} (known: {', '.join(sorted(allowed))})"
            )
        )
    split = entry.get("split")
    if split is not None and split not in SPLITS:
        problems.append(Problem(number, "split", f"{split!r} is not one of {', '.join(SPLITS)}"))
    image_path = None
    image = entry.get("image")
    if not isinstance(image, str) or not image:
        problems.append(Problem(number, "image", "missing or not a string"))
    else:
        image_path = (data_dir / image).resolve()
        if not image_path.is_relative_to(data_dir):
            problems.append(Problem(number, "image", f"{image!r} points outside the data folder"))
        elif not image_path.is_file():
            problems.append(Problem(number, "image", f"file {image!r} not found"))
        elif check_images:
            try:
                open_image(image_path)
            except Exception as exc:  # Pillow raises many types for a bad file.
                problems.append(
                    Problem(number, "image", f"{image!r} is not a readable image ({exc})")
                )
    if problems:
        return problems
    return {"id": str(record_id), "image": image_path, "text": text, "label": label, "split": split}


def _assigned_split(record_id: str, test_fraction: float) -> str:
    """A split that depends only on the id, so every run and machine agrees."""
    value = int.from_bytes(hashlib.sha256(record_id.encode()).digest()[:8], "big") / 2.0**64
    return "test" if value < test_fraction else "train"
