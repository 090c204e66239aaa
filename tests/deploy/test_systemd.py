"""deploy/systemd: the units pass `systemd-analyze verify` and keep their hardening.

`systemd-analyze verify` loads each unit as systemd would (unknown keys, bad values,
missing executables all print and fail). The units name /opt/accord/venv/bin/accord,
which does not exist here, so the test verifies a copy whose commands name this
checkout's `accord` instead; nothing else is changed.
"""

from __future__ import annotations

import configparser
import subprocess
import sys
from pathlib import Path

import pytest

from .tools import DEPLOY, require_program

UNITS = ("accord-coordinator.service", "accord-participant.service")
INSTALLED = "/opt/accord/venv/bin/accord"
SYSTEMD_FIX = "apt-get install -y --no-install-recommends systemd"


def _service(name: str) -> dict[str, str]:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(DEPLOY / "systemd" / name)
    return dict(parser["Service"])


def _verify(units: list[Path]) -> subprocess.CompletedProcess[str]:
    analyze = require_program("systemd-analyze", SYSTEMD_FIX)
    return subprocess.run(
        [analyze, "verify", *map(str, units)], capture_output=True, text=True, timeout=120
    )


def _copies(folder: Path) -> list[Path]:
    accord = Path(sys.executable).with_name("accord")
    assert accord.exists(), accord
    copies = []
    for name in UNITS:
        text = (DEPLOY / "systemd" / name).read_text(encoding="utf-8")
        assert INSTALLED in text
        copy = folder / name
        copy.write_text(text.replace(INSTALLED, str(accord)), encoding="utf-8")
        copies.append(copy)
    return copies


def test_the_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    verified = _verify(_copies(tmp_path))
    assert verified.returncode == 0, verified.stderr + verified.stdout
    assert verified.stderr.strip() == "" and verified.stdout.strip() == ""


def test_verify_would_catch_a_broken_unit(tmp_path: Path) -> None:
    """systemd only warns (exit 0) on a bad value or key: the output must stay empty."""
    copy = _copies(tmp_path)[0]
    text = copy.read_text().replace("ProtectSystem=strict", "ProtectSystem=bogus")
    copy.write_text(text.replace("NoNewPrivileges=", "NoNewPrivilegs="))
    verified = _verify([copy])
    assert "bogus" in verified.stderr and "NoNewPrivilegs" in verified.stderr


@pytest.mark.parametrize("name", UNITS)
def test_each_unit_runs_hardened_as_the_dedicated_user(name: str) -> None:
    service = _service(name)
    state = "/var/lib/" + name.removesuffix(".service")
    assert service["User"] == "accord" and service["Group"] == "accord"
    assert service["Restart"] == "on-failure"
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["PrivateTmp"] == "yes"
    assert service["ReadWritePaths"] == state
    assert service["StateDirectory"] == state.removeprefix("/var/lib/")
    assert service["CapabilityBoundingSet"] == ""
    assert service["ExecStart"].startswith(INSTALLED + " ")


def test_the_sysusers_file_makes_the_user_the_units_name() -> None:
    lines = (DEPLOY / "systemd" / "accord.sysusers.conf").read_text().splitlines()
    entries = [line.split() for line in lines if line and not line.startswith("#")]
    assert [entry[:2] for entry in entries] == [["u", "accord"]]
