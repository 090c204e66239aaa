"""`accord demo` end to end: separate processes over loopback gRPC, two rounds, one adapter."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from accord.demo.lora_mlp import load_adapter_model

from .demo_run import run_demo

NAMES = ("energy", "residential", "urban")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, str]:
    workdir = tmp_path_factory.mktemp("demo")
    summary, printed = run_demo(
        workdir,
        "--insecure-plaintext",
        "--profile",
        "none",
        # The protocol's plumbing, not learning: the tiny trainer keeps this fast (the
        # multimodal default runs in test_demo_multimodal.py, marked slow).
        "--trainer",
        "lora-mlp",
        "--participants",
        "3",
        "--rounds",
        "2",
    )
    return workdir, summary, printed


@pytest.mark.e2e
def test_the_demo_leaves_the_documented_layout(demo_run) -> None:
    workdir, _, _ = demo_run
    coordinator = workdir / "coordinator"
    for name in ("coordinator.toml", "coordinator.log", "output.log", "port"):
        assert (coordinator / name).is_file(), name
    for name in NAMES:
        folder = workdir / "participants" / name
        for item in (
            "participant.toml",
            "identity.pem",
            "participant.log",
            "state.json",
            "metrics.jsonl",
        ):
            assert (folder / item).is_file(), f"{name}/{item}"
        for round_dir in ("round-0001", "round-0002"):
            adapter = folder / "adapters" / round_dir
            assert (adapter / "adapter_config.json").is_file()
            assert (adapter / "adapter_model.safetensors").is_file()


@pytest.mark.e2e
def test_the_summary_has_two_rounds_with_bytes_for_everyone(demo_run) -> None:
    _, summary, stdout = demo_run
    assert summary["profile"] == "none"
    assert summary["participants"] == list(NAMES)
    assert [r["round"] for r in summary["rounds"]] == [1, 2]
    for record in summary["rounds"]:
        assert record["outcome"] == "done"
        assert record["duration_s"] > 0
        assert set(record["stage_durations_s"]) == {"upload", "aggregate"}
        assert record["survivors"] == list(NAMES)
        assert all(record["bytes_up"][n] > 0 and record["bytes_down"][n] > 0 for n in NAMES)
    assert summary["metrics"]["adapters_identical"] is True
    assert all("global_eval_loss" in summary["metrics"]["participants"][n] for n in NAMES)
    assert "Rounds" in stdout and "Participants" in stdout


@pytest.mark.e2e
def test_every_participant_ends_with_the_same_loadable_adapter(demo_run) -> None:
    workdir, _, _ = demo_run
    vectors = []
    for name in NAMES:
        model = load_adapter_model(workdir / "participants" / name / "adapters" / "round-0002", 0)
        vectors.append(
            torch.cat([p.detach().reshape(-1) for n, p in model.named_parameters() if "lora_" in n])
        )
    for vector in vectors[1:]:
        np.testing.assert_array_equal(vector.numpy(), vectors[0].numpy())


@pytest.mark.e2e
def test_the_processes_only_share_addresses_and_the_logs_hold_no_payload(demo_run) -> None:
    workdir, _, _ = demo_run
    port = (workdir / "coordinator" / "port").read_text().strip()
    for name in NAMES:
        config = (workdir / "participants" / name / "participant.toml").read_text()
        assert f'coordinator = "127.0.0.1:{port}"' in config
    log_lines = (workdir / "coordinator" / "coordinator.log").read_text().splitlines()
    events = [json.loads(line) for line in log_lines]
    assert sum(e["event"] == "round_finished" for e in events) == 2
    allowed = {
        "ts",
        "level",
        "logger",
        "event",
        "round",
        "stage",
        "participant",
        "bytes",
        "chunks",
        "duration_s",
        "stage_durations_s",
        "survivors",
        "bytes_up",
        "bytes_down",
        "reason",
        "selected",
        "profile",
        "element_count",
        "address",
        "federation",
        "participants",
        "rounds",
        "transport",
        "rounds_completed",
        "key_epoch",
        "recipients",
        "aggregation_workers",
    }
    assert set().union(*(e.keys() for e in events)) <= allowed


@pytest.mark.e2e
def test_the_audit_commands_the_demo_prints_pass(demo_run) -> None:
    from typer.testing import CliRunner

    from accord.cli.main import app

    _, _, printed = demo_run
    commands = [
        line.split()[1:] for line in printed.splitlines() if line.startswith("  accord audit")
    ]
    assert [c[:2] for c in commands] == [
        ["audit", "verify"],
        ["audit", "budget"],
        ["audit", "contributions"],
    ]
    # A plaintext demo has no CA, so verify is asked for a consistency check by name.
    assert "--unauthenticated" in commands[0]
    for command in commands:
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 0, (command, result.output)
    assert "not authenticated" in CliRunner().invoke(app, commands[0]).output
