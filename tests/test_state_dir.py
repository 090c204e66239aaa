"""A `state_dir` that is a file, lies under a file or cannot be written is a `ConfigError`
naming the file, table, field, value and fix, with exit status 2 and no traceback
(issue 12, finding 6), for both roles, through the real `accord` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

KEY = "11" * 32
ROLES = {
    "participant": ("run", 'name = "energy"\ninsecure_plaintext = true\n'),
    "coordinator": (
        "serve",
        "insecure_plaintext = true\n"
        f'identity_keys = {{energy = "{KEY}", residential = "{KEY}", urban = "{KEY}"}}\n',
    ),
}


def accord(tmp_path: Path, role: str, state_dir: str) -> subprocess.CompletedProcess[str]:
    command, body = ROLES[role]
    config = tmp_path / f"{role}.toml"
    config.write_text(f"[{role}]\n{body}state_dir = {state_dir!r}\n".replace("'", '"'))
    return subprocess.run(
        [sys.executable, "-m", "accord", role, command, "--config", str(config)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def unwritable_folder(tmp_path: Path) -> Path:
    """A folder this user cannot write in: mode 0500, or (as root) a read-only mount."""
    if os.geteuid() != 0:
        folder = tmp_path / "locked"
        folder.mkdir(mode=0o500)
        return folder
    for folder in (Path("/sys"), Path("/proc")):
        try:
            (folder / "accord-probe").write_bytes(b"")
        except OSError:
            return folder
        (folder / "accord-probe").unlink()
    pytest.skip("no folder here is closed to root")


def assert_config_error(result: subprocess.CompletedProcess[str], role: str, *parts: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    line = result.stderr.strip()
    assert line.startswith(f"ConfigError: {role}.toml [{role}] state_dir = "), line
    assert "(set state_dir to a folder this user can create and write" in line
    for part in parts:
        assert part in line, (part, line)


@pytest.mark.parametrize("role", sorted(ROLES))
def test_a_file_typed_state_dir_is_a_config_error(tmp_path: Path, role: str) -> None:
    (tmp_path / "state").write_text("not a folder")
    result = accord(tmp_path, role, "state")
    assert_config_error(result, role, f'"{tmp_path / "state"}"', "is a file, not a folder")
    assert (tmp_path / "state").read_text() == "not a folder"


@pytest.mark.parametrize("role", sorted(ROLES))
def test_a_state_dir_under_a_file_is_a_config_error(tmp_path: Path, role: str) -> None:
    (tmp_path / "blocker").write_text("")
    result = accord(tmp_path, role, "blocker/state")
    assert_config_error(result, role, f"{tmp_path / 'blocker'} is a file, not a folder")


@pytest.mark.parametrize("role", sorted(ROLES))
def test_an_unwritable_state_dir_is_a_config_error(tmp_path: Path, role: str) -> None:
    folder = unwritable_folder(tmp_path)
    try:
        result = accord(tmp_path, role, str(folder))
    finally:
        if folder.is_relative_to(tmp_path):
            folder.chmod(0o700)
    assert_config_error(result, role, f'"{folder}"', "cannot write in it")
