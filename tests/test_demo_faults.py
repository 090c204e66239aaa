"""`accord demo`'s fault flags are checked against the federation before anything starts."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from accord.cli.main import app
from accord.crypto import identity
from accord.crypto.messages import Stage
from accord.crypto.profile import Profile
from accord.demo.faults import DROPOUT_EXIT_STATUS, FaultPlan, participant_arguments, plan
from accord.errors import UsageError

FOUR = ["energy", "residential", "urban", "p4"]


def test_a_valid_plan_names_each_fault() -> None:
    assert plan(
        FOUR,
        Profile.CKKS_MASKS,
        threshold=2,
        rounds=3,
        drops=["urban:share"],
        restart_coordinator="2",
        restart_participants=["energy:3"],
    ) == FaultPlan({"urban": Stage.SHARE}, 2, Stage.UPLOAD, {"energy": 3})
    assert plan(FOUR, Profile.CKKS, threshold=2, rounds=3, restart_coordinator="3:aggregate") == (
        FaultPlan(restart_coordinator=3, restart_coordinator_stage=Stage.AGGREGATE)
    )
    assert plan(FOUR, Profile.CKKS, threshold=3, rounds=1) == FaultPlan()


@pytest.mark.parametrize(
    ("profile", "threshold", "flags", "message"),
    [
        (Profile.CKKS_MASKS, 3, {"drops": ["urban"]}, "expected NAME:STAGE"),
        (Profile.CKKS_MASKS, 3, {"drops": ["mallory:upload"]}, "no participant 'mallory'"),
        (Profile.CKKS, 3, {"drops": ["urban:share"]}, "profile ckks has no stage 'share'"),
        (Profile.NONE, 3, {"drops": ["urban:unmask"]}, "(its stages: upload)"),
        (
            Profile.MASKS,
            3,
            {"drops": ["urban:train"]},
            "advertise, share, upload, consistency, unmask",
        ),
        (Profile.MASKS, 2, {"drops": ["urban:share", "urban:upload"]}, "already dropped"),
        (
            Profile.CKKS_MASKS,
            3,
            {"drops": ["urban:upload", "p4:share"]},
            "needs threshold 3 of them, so at most 1 may go",
        ),
        (
            Profile.CKKS_MASKS,
            3,
            {"drops": ["urban:upload"], "restart_participants": ["p4:1"]},
            "at most 1 may go",
        ),
        (Profile.CKKS_MASKS, 2, {"restart_coordinator": "4"}, "runs 3 rounds; choose 1 to 3"),
        (Profile.CKKS_MASKS, 2, {"restart_coordinator": "one"}, "expected ROUND[:STAGE]"),
        (Profile.CKKS, 2, {"restart_coordinator": "1:unmask"}, "one of upload, aggregate"),
        (Profile.MASKS, 2, {"restart_coordinator": "1:share"}, "upload, unmask, aggregate"),
        (Profile.CKKS_MASKS, 2, {"restart_participants": ["urban:x"]}, "ROUND must be"),
        (Profile.CKKS_MASKS, 2, {"restart_participants": ["urban:0"]}, "choose 1 to 3"),
        (
            Profile.CKKS_MASKS,
            2,
            {"drops": ["urban:upload"], "restart_participants": ["urban:2"]},
            "urban is dropped with --drop",
        ),
    ],
)
def test_a_fault_the_federation_cannot_have_is_a_usage_error(
    profile: Profile, threshold: int, flags: dict, message: str
) -> None:
    with pytest.raises(UsageError, match=re.escape(message)):
        plan(FOUR, profile, threshold=threshold, rounds=3, **flags)


def test_the_cli_refuses_before_it_touches_the_work_folder(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    runner = CliRunner()
    result = runner.invoke(
        app, ["demo", "--workdir", str(workdir), "--drop", "energy:upload", "--threshold", "3"]
    )
    assert result.exit_code == 2
    assert "UsageError: --drop and --restart-participant take 1 of the 3" in result.output
    assert "needs threshold 3" in result.output
    result = runner.invoke(app, ["demo", "--workdir", str(workdir), "--threshold", "4"])
    assert result.exit_code == 2
    assert "UsageError: --threshold 4: must be from 2 to the 3 participants" in result.output
    assert not workdir.exists()


DROPPING = """
import sys
from pathlib import Path

from accord.core import configfile, logs
from accord.crypto import identity
from accord.crypto.messages import Stage
from accord.demo.dropout_participant import DroppingDaemon
from accord.participant.config import ParticipantConfig

config = configfile.load(Path("participant.toml"), ParticipantConfig, "participant")
daemon = DroppingDaemon(
    config, log=logs.configure("participant", config.log_file), stage=Stage.UPLOAD, round=2
)
daemon.before_stage(Stage.UPLOAD, 1)
daemon.before_stage(Stage.SHARE, 2)
print("still running", flush=True)
daemon.before_stage(Stage.UPLOAD, 2)
print("after its stage", flush=True)
"""


def _participant_folder(tmp_path: Path) -> Path:
    (tmp_path / "identity.pem").write_bytes(
        identity.dump_private(identity.generate_identity().private)
    )
    (tmp_path / "identity.pem").chmod(0o600)
    (tmp_path / "participant.toml").write_text(
        "[participant]\n"
        'name = "energy"\n'
        'state_dir = "."\n'
        'identity_key = "identity.pem"\n'
        "insecure_plaintext = true\n"
        'trainer = "accord.demo.synthetic_trainer:SyntheticTrainer"\n'
        "synthetic_parameters = 8\n",
        encoding="utf-8",
    )
    return tmp_path


def test_the_dropout_participant_exits_with_the_demos_status_at_its_stage_and_round_only(
    tmp_path: Path,
) -> None:
    folder = _participant_folder(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", DROPPING], cwd=folder, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == DROPOUT_EXIT_STATUS, result.stderr
    assert "still running" in result.stdout and "after its stage" not in result.stdout
    events = [json.loads(line) for line in (folder / "participant.log").read_text().splitlines()]
    dropped = [e for e in events if e.get("event") == "exiting_on_purpose"]
    assert [(e["round"], e["stage"]) for e in dropped] == [(2, "upload")]


def test_the_demo_starts_a_dropped_participant_as_the_dropout_entry_point(tmp_path: Path) -> None:
    config = tmp_path / "participant.toml"
    assert participant_arguments(config, None) == [
        "accord.participant",
        "run",
        "--config",
        str(config),
    ]
    arguments = participant_arguments(config, Stage.SHARE)
    assert arguments == [
        "accord.demo.dropout_participant",
        "--config",
        str(config),
        "--exit-before-stage",
        "share",
        "--round",
        "1",
    ]
    # The entry point reports a bad config as every Accord command does: one line, status 2.
    result = subprocess.run(
        [sys.executable, "-m", *arguments], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "ConfigError" in result.stderr and "no such file" in result.stderr
