"""check-data: structural findings, and mislabelled samples found with the global model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from accord.core import configfile
from accord.participant.config import ParticipantConfig
from accord.participant.data import city_safety
from accord.participant.data import folder as datasets
from accord.participant.data import incident_sets as benchmarks
from accord.participant.data import quality as data_quality
from accord.participant.data.folder import Example
from accord.participant.training import models
from accord.participant.training.multimodal import MultimodalTrainer


def noisy_folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (16, 16, 3), dtype=np.uint8) for _ in range(6)]
    near = frames[2].copy()
    near[0, 0] ^= 1  # one pixel differs
    examples = [
        Example(f"s{i}", frame, f"report number {i} about the yard", "fire", "train")
        for i, frame in enumerate(frames)
    ] + [
        Example("copy", frames[1], "report number 1 about the yard", "fire", "train"),
        Example("near", near, "report number 2 about the yard", "fire", "train"),
    ]
    folder = tmp_path / "data"
    datasets.write_dataset(examples, folder, ("fire", "flood"))
    manifest = folder / datasets.MANIFEST
    lines = manifest.read_text().splitlines()
    gone = {"id": "gone", "image": "images/gone.png", "text": "x", "label": "fire"}
    lines.append(json.dumps(gone))
    lines.append(json.dumps({"id": "hail", "image": "images/s0.png", "text": "x", "label": "hail"}))
    manifest.write_text("\n".join(lines) + "\n")
    return folder


def test_structural_checks_find_broken_lines_and_duplicates(tmp_path) -> None:
    folder = noisy_folder(tmp_path)
    report = data_quality.check_data(folder)
    assert report.samples == 10 and not report.model_checked
    by_check = {check: report.flagged_ids([check]) for check in report.counts()}
    assert by_check["exact_duplicate"] == {"copy"}
    assert by_check["near_duplicate"] == {"copy", "near"}
    assert by_check["manifest"] == {"line-9", "line-10"}
    assert "file 'images/gone.png' not found" in " ".join(f.detail for f in report.flags)
    written = report.write_jsonl(folder / data_quality.FLAGGED_FILE)
    ids = {json.loads(line)["id"] for line in written.read_text().splitlines()}
    assert ids == report.flagged_ids()
    assert "flagged" in report.summary()


def test_the_command_prints_a_report_and_writes_the_file(tmp_path, capsys) -> None:
    folder = noisy_folder(tmp_path)
    data_quality.check_data_command(folder, None, None)
    printed = capsys.readouterr().out
    assert "exact_duplicate" in printed and (folder / data_quality.FLAGGED_FILE).exists()


def test_flipped_labels_are_found_with_the_global_model(tmp_path) -> None:
    # home_share = 1: every record of energy's is from its own domain, whose labels the
    # flips draw from.
    bench = city_safety.city_safety_benchmark(
        3, train_per_enterprise=160, test_per_enterprise=30, seed=2, home_share=1
    )
    energy = bench.enterprises[0]
    rng = np.random.default_rng(1)
    flipped: set[str] = set()
    train = []
    domain_labels = city_safety.CITY_DOMAINS["energy"]
    for example in energy.train:
        if rng.random() < 0.2:
            wrong = str(rng.choice([x for x in domain_labels if x != example.label]))
            example = Example(example.id, example.image, example.text, wrong, example.split)
            flipped.add(example.id)
        train.append(example)
    folder = tmp_path / "energy"
    datasets.write_dataset(train + list(energy.test), folder, bench.labels)
    config = configfile.validate(
        {
            "name": "energy",
            "insecure_plaintext": True,
            "state_dir": str(tmp_path / "s"),
            "data_dir": str(folder),
            "base_model": models.BUNDLED_MODEL,
            "local_steps": 30,
            "batch_size": 64,
            "learning_rate": 0.02,
            "training": {"image_size": 64, "report_local_only": False},
        },
        ParticipantConfig,
        "participant",
    )
    trainer = MultimodalTrainer(config)
    trainer.apply(trainer.train_round(1).delta)
    report = data_quality.check_data(folder, trainer)
    found = report.flagged_ids(["label_contradiction"])
    precision, recall = data_quality.precision_recall(found, flipped)
    print(
        f"flipped {len(flipped)}, flagged {len(found)}: precision {precision:.2f}, "
        f"recall {recall:.2f}"
    )
    assert recall >= 0.65 and precision >= 0.8


def test_the_command_uses_the_participants_model_when_given_its_config(tmp_path, capsys) -> None:
    bench = city_safety.city_safety_benchmark(2, train_per_enterprise=20, test_per_enterprise=5)
    folder = benchmarks.write_benchmark(bench, tmp_path / "data")[bench.enterprises[0].name]
    config = tmp_path / "participant.toml"
    config.write_text(
        "[participant]\n"
        'name = "energy"\n'
        "insecure_plaintext = true\n"
        'state_dir = "state"\n'
        f'base_model = "{models.TINY_MODEL}"\n'
    )
    data_quality.check_data_command(folder, config, tmp_path / "flags.jsonl")
    printed = capsys.readouterr().out
    assert "no model given" not in printed and (tmp_path / "flags.jsonl").exists()
