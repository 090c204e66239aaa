"""The manifest layout: what is accepted, and errors that name the line and the field."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from accord.errors import ConfigError
from accord.participant.data import folder as datasets
from accord.participant.data.folder import Example

LABELS = ("fire", "flood")


def write(folder: Path, lines: list[object], *, images: tuple[str, ...] = ("a.png",)) -> Path:
    examples = [
        Example(Path(name).stem, np.full((8, 8, 3), 100, np.uint8), "t", "fire", "train")
        for name in images
    ]
    datasets.write_dataset(examples, folder, LABELS)
    text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)
    (folder / datasets.MANIFEST).write_text(text + "\n", encoding="utf-8")
    return folder


def test_written_datasets_read_back(tmp_path) -> None:
    examples = [
        Example(f"s{i}", np.full((6, 6), i * 10, np.uint8), f"report {i}", LABELS[i % 2], "train")
        for i in range(4)
    ]
    datasets.write_dataset(examples, tmp_path, LABELS)
    assert datasets.read_labels(tmp_path) == LABELS
    records = datasets.load_manifest(tmp_path, LABELS, check_images=True)
    assert [r.id for r in records] == ["s0", "s1", "s2", "s3"]
    assert records[1].label == "flood" and records[1].text == "report 1"
    assert np.asarray(datasets.open_image(records[2].image)).max() == 20


@pytest.mark.parametrize(
    ("line", "field", "message"),
    [
        ({"image": "images/missing.png", "text": "x", "label": "fire"}, "image", "not found"),
        ({"image": "images/a.png", "text": "  ", "label": "fire"}, "text", "empty report"),
        ({"image": "images/a.png", "text": "x", "label": "hail"}, "label", "unknown label"),
        ({"image": "images/a.png", "label": "fire"}, "text", "missing"),
        ({"image": "images/a.png", "text": "x", "label": "fire", "split": "dev"}, "split", "dev"),
        ({"image": "../../etc/passwd", "text": "x", "label": "fire"}, "image", "outside"),
        ({"image": "images/a.png", "text": "x", "label": "fire", "colour": 1}, "colour", "unknown"),
        ("{not json", "*", "not valid JSON"),
    ],
)
def test_a_problem_names_its_line_and_field(tmp_path, line, field, message) -> None:
    good = {"image": "images/a.png", "text": "fine", "label": "flood"}
    folder = write(tmp_path, ["# comment", good, "", line])
    records, problems = datasets.read_manifest(folder, LABELS)
    assert len(records) == 1 and len(problems) == 1
    assert problems[0].line == 4 and problems[0].field == field
    assert message in problems[0].message
    with pytest.raises(ConfigError, match=rf"manifest\.jsonl line 4, field '{re.escape(field)}'"):
        datasets.load_manifest(folder, LABELS)


def test_duplicate_ids_and_unreadable_images_are_reported(tmp_path) -> None:
    folder = write(
        tmp_path,
        [
            {"id": "x", "image": "images/a.png", "text": "t", "label": "fire"},
            {"id": "x", "image": "images/a.png", "text": "t", "label": "fire"},
            {"id": "y", "image": "images/b.png", "text": "t", "label": "fire"},
        ],
        images=("a.png", "b.png"),
    )
    (folder / "images" / "b.png").write_bytes(b"not a png")
    _, problems = datasets.read_manifest(folder, LABELS, check_images=True)
    assert [(p.line, p.field) for p in problems] == [(2, "id"), (3, "image")]
    assert "repeats line 1" in problems[0].message
    assert "not a readable image" in problems[1].message


def test_samples_without_a_split_are_assigned_by_id(tmp_path) -> None:
    lines = [
        {"id": f"s{i}", "image": "images/a.png", "text": "t", "label": "fire"} for i in range(200)
    ]
    folder = write(tmp_path, lines)
    first = [r.split for r in datasets.load_manifest(folder, LABELS, test_fraction=0.25)]
    again = [r.split for r in datasets.load_manifest(folder, LABELS, test_fraction=0.25)]
    assert first == again
    assert 30 <= first.count("test") <= 70


def test_a_missing_manifest_or_bad_labels_file_is_a_config_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"no manifest\.jsonl"):
        datasets.load_manifest(tmp_path)
    (tmp_path / datasets.LABELS_FILE).write_text('["fire"]')
    with pytest.raises(ConfigError, match="at least two distinct"):
        datasets.read_labels(tmp_path)
