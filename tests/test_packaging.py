"""One distribution, `accord`: a built wheel installs and imports every subpackage."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SKIP = (".venv", ".git", "*.egg-info", "build", "dist", "__pycache__", "*_cache", "accord-demo")


@pytest.mark.slow
def test_a_built_wheel_installs_and_imports(tmp_path: Path) -> None:
    # Build from a copy, so setuptools' build/ folder never lands in the work tree.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*SKIP))
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            str(source),
            "-w",
            str(wheels),
        ],
        check=True,
        cwd=tmp_path,
    )
    wheel = next(wheels.glob("accord-*.whl"))
    target = tmp_path / "env"
    venv.create(target, with_pip=True)
    site = next((target / "lib").glob("python*/site-packages"))
    # The dependencies come from this interpreter's site-packages (no download); its .pth
    # files, including the editable install's, are not processed from a .pth-added folder.
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    python = target / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True)
    probe = (
        "import accord, accord.cli.main, accord.coordinator.server, accord.participant.daemon\n"
        "from accord.proto.v1 import federation_pb2\n"
        "import importlib.resources as r\n"
        "assert 'env' in accord.__file__, accord.__file__\n"
        "assert r.files('accord.proto').joinpath('accord/v1/federation.proto').is_file()\n"
        "assert r.files('accord.proto.v1').joinpath('federation_pb2.pyi').is_file()\n"
    )
    subprocess.run([python, "-c", probe], check=True, cwd=tmp_path)
    version = subprocess.run(
        [target / "bin" / "accord", "--version"], check=True, capture_output=True, text=True
    )
    assert version.stdout.startswith("accord ")
