"""`accord participant check-data DIR` beside `run`, and `run --data DIR`, as users run them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from accord.cli.main import app
from accord.participant.data import digit_incidents
from accord.participant.data import folder as datasets
from accord.participant.data import quality as data_quality
from accord.participant.training import models


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Forty 8x8 digits as incidents, plus an exact copy of one and a line with no image."""
    bench = digit_incidents.digits_benchmark(2, source="digits", limit=120, frame_size=32)
    examples = [e for enterprise in bench.enterprises for e in enterprise.train][:40]
    assert len(examples) == 40
    first = examples[0]
    copy = datasets.Example("copy", first.image, first.text, first.label, first.split)
    folder = tmp_path / "data"
    datasets.write_dataset([*examples, copy], folder, bench.labels)
    manifest = folder / datasets.MANIFEST
    gone = {"id": "gone", "image": "images/gone.png", "text": "smoke", "label": "fire"}
    manifest.write_text(manifest.read_text() + json.dumps(gone) + "\n")
    return folder


def test_check_data_is_a_participant_command() -> None:
    result = CliRunner().invoke(app, ["participant", "--help"])
    assert result.exit_code == 0
    assert "check-data" in result.output and "run" in result.output


def test_check_data_reports_broken_lines_and_duplicates_and_writes_the_flagged_file(
    folder: Path,
) -> None:
    result = CliRunner().invoke(app, ["participant", "check-data", str(folder)])
    assert result.exit_code == 0, result.output
    assert "42 samples" in result.output and "structural checks only" in result.output
    assert "exact_duplicate" in result.output and "manifest" in result.output
    assert "file 'images/gone.png' not found" in result.output
    flagged = folder / data_quality.FLAGGED_FILE
    assert f"flagged samples written to {flagged}" in result.output
    ids = {json.loads(line)["id"] for line in flagged.read_text().splitlines()}
    assert {"copy", "line-42"} <= ids


def test_with_a_participant_file_the_model_checks_run_too(folder: Path, tmp_path: Path) -> None:
    config = tmp_path / "participant.toml"
    config.write_text(
        "[participant]\n"
        'name = "energy"\n'
        f'state_dir = "{tmp_path / "state"}"\n'
        f'base_model = "{models.TINY_MODEL}"\n'
    )
    out = tmp_path / "flags.jsonl"
    result = CliRunner().invoke(
        app,
        ["participant", "check-data", str(folder), "--config", str(config), "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert "structural checks only" not in result.output
    assert out.exists() and not (folder / data_quality.FLAGGED_FILE).exists()


def test_a_folder_without_a_manifest_is_a_one_line_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["participant", "check-data", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.startswith("ConfigError: ")


def test_run_trains_on_the_folder_given_with_data(folder: Path, tmp_path: Path) -> None:
    from accord.crypto import identity

    key = tmp_path / "identity.pem"
    key.write_bytes(identity.dump_private(identity.generate_identity().private))
    config = tmp_path / "participant.toml"
    config.write_text(
        "[participant]\n"
        'name = "energy"\n'
        f'state_dir = "{tmp_path / "state"}"\n'
        f'identity_key = "{key}"\n'
        f'data_dir = "{tmp_path / "elsewhere"}"\n'
        f'base_model = "{models.TINY_MODEL}"\n'
    )
    arguments = ["participant", "run", "--config", str(config), "--insecure-plaintext"]
    result = CliRunner().invoke(app, [*arguments, "--data", str(folder)])
    # The trainer reads the --data folder (not the file's data_dir) before connecting, and
    # refuses its broken line, pointing at check-data.
    assert result.exit_code == 2
    assert result.output.startswith(f"ConfigError: data_dir = '{folder}'")
    assert "`accord participant check-data` lists them all" in result.output
