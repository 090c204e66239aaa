"""CI runs each atheris harness for a bounded number of inputs (by count, not by time).

A harness exits non-zero and leaves a `crash-*` file when a target raises anything but
its typed errors (`targets.py`); the test then shows the input. The seeds are fixed,
so a run is reproducible: `python tests/fuzz/harness.py TARGET -runs=N -seed=S`.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

HARNESS = Path(__file__).with_name("harness.py")
RUNS = {"chunk": 100_000, "envelope": 50_000, "ceremony": 4_000}
"""Inputs per target: about 15-30 s in all on one shared core (the ceremony target is
slow: each input is sealed, signed and parsed by TenSEAL)."""
MAX_LEN = {"chunk": 4096, "envelope": 4096, "ceremony": 70_000}
"""Longest input: the ceremony's seed is a whole secret CKKS context (about 62 KB)."""

if sys.platform != "linux" or platform.machine() != "x86_64":  # pragma: no cover
    pytest.skip("atheris ships wheels for x86-64 Linux only", allow_module_level=True)


@pytest.mark.parametrize("target", sorted(RUNS))
def test_the_harness_finds_no_crash(tmp_path: Path, target: str) -> None:
    runs = RUNS[target]
    result = subprocess.run(
        [
            sys.executable,
            str(HARNESS),
            target,
            f"-runs={runs}",
            "-seed=20261205",
            f"-max_len={MAX_LEN[target]}",
            f"-artifact_prefix={tmp_path}/",
            "-print_final_stats=1",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    crashes = {p.name: p.read_bytes()[:200].hex() for p in tmp_path.glob("crash-*")}
    assert result.returncode == 0 and not crashes, (crashes, result.stderr[-4000:])
    assert f"Done {runs} runs" in result.stderr, result.stderr[-2000:]
