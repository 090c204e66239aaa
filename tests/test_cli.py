"""The `accord` command explains itself, and reports Accord errors in one line."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from accord import __version__
from accord.cli.main import app

runner = CliRunner()
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def plain(text: str) -> str:
    return " ".join(ANSI.sub("", text).split())


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"accord {__version__}"


def test_root_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("demo", "coordinator", "participant", "provision", "kit", "audit"):
        assert command in result.output


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (["demo", "--help"], "--insecure-plaintext"),
        (["coordinator", "--help"], "serve"),
        (["coordinator", "serve", "--help"], "--config"),
        (["participant", "--help"], "run"),
        (["participant", "run", "--help"], "--config"),
        (["provision", "--help"], "approve"),
        (["provision", "approve", "--help"], "--ca"),
        (["kit", "--help"], "package"),
        (["kit", "check", "--help"], "--offline"),
        (["audit", "--help"], "ledger"),
    ],
)
def test_every_command_has_help(arguments: list[str], expected: str) -> None:
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0
    assert expected in plain(result.output)


def test_audit_lists_its_commands_and_reports_a_missing_ledger_in_one_line(tmp_path) -> None:
    listing = plain(runner.invoke(app, ["audit", "--help"]).output)
    for command in ("verify", "budget", "contributions"):
        assert command in listing
    result = runner.invoke(app, ["audit", "verify", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert result.output.startswith("UsageError: ")
    assert "Traceback" not in result.output


def test_provision_and_kit_are_mounted(tmp_path) -> None:
    federation = tmp_path / "federation.toml"
    federation.write_text(
        '[federation]\nid = "city-safety"\ncoordinator = "127.0.0.1:50051"\n\n'
        '[[participants]]\nname = "energy"\n\n[[participants]]\nname = "urban"\n'
    )
    result = runner.invoke(app, ["provision", str(federation), "--out", str(tmp_path / "fed")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "fed" / "coordinator" / "roster.json").is_file()
    result = runner.invoke(app, ["kit", "check", str(tmp_path / "fed/kits/energy"), "--offline"])
    assert result.exit_code == 0, result.output
    assert "kit OK" in result.output


def test_provision_errors_are_one_line_with_status_2(tmp_path) -> None:
    result = runner.invoke(app, ["provision", str(tmp_path / "missing.toml"), "--out", "x"])
    assert result.exit_code == 2
    assert result.output.startswith("ConfigError: ") and "no such file" in result.output


def test_demo_refuses_plaintext_without_the_flag() -> None:
    result = runner.invoke(app, ["demo", "--profile", "none"])
    assert result.exit_code == 2
    assert result.output.startswith("UsageError: ")
    assert "--insecure-plaintext" in result.output


def test_config_errors_are_one_line_with_status_2(tmp_path) -> None:
    config = tmp_path / "coordinator.toml"
    config.write_text("[coordinator]\nthreshold = 0\n")
    result = runner.invoke(app, ["coordinator", "serve", "--config", str(config)])
    assert result.exit_code == 2
    assert result.output.strip() == (
        "ConfigError: coordinator.toml [coordinator] threshold = 0: must be >= 2 "
        "(least number of participants whose inputs are summed)"
    )


@pytest.mark.parametrize(("role", "command"), [("coordinator", "serve"), ("participant", "run")])
def test_each_role_runs_alone_and_reports_errors_as_accord_does(role, command, tmp_path) -> None:
    import subprocess
    import sys

    missing = tmp_path / "missing.toml"
    result = subprocess.run(
        [sys.executable, "-m", f"accord.{role}", command, "--config", str(missing)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"ConfigError: {missing}: no such file (write one, or start from `--help`)"
    ]
