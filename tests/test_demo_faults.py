"""`accord demo`'s fault flags are checked against the federation before anything starts."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from accord.cli.main import app
from accord.crypto.messages import Stage
from accord.crypto.profile import Profile
from accord.demo.faults import DROPOUT_EXIT_STATUS, FaultPlan, plan
from accord.errors import UsageError
from accord.participant.config import ParticipantConfig

ROOT = Path(__file__).resolve().parent.parent

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


def test_the_dropout_hook_ends_the_process_at_its_stage_and_round_only() -> None:
    # In a child process: the hook ends it abruptly (os._exit), as a dead host would.
    script = (
        "from accord.crypto.messages import Stage\n"
        "from accord.demo.dropout import exit_before\n"
        "hook = exit_before(Stage.UPLOAD, 2)\n"
        "hook(Stage.UPLOAD, 1); hook(Stage.SHARE, 2); hook(Stage.UNMASK, 2)\n"
        "print('still running', flush=True)\n"
        "hook(Stage.UPLOAD, 2)\n"
        "print('not reached')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == DROPOUT_EXIT_STATUS, result.stderr
    assert result.stdout == "still running\n"


def test_the_participant_package_carries_no_fault_hook() -> None:
    fields = ParticipantConfig.model_fields
    assert not [name for name in fields if name.startswith("exit_")]
    source = (ROOT / "participant").rglob("*.py")
    assert not [path for path in source if "os._exit" in path.read_text(encoding="utf-8")]
