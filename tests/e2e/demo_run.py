"""Run `accord demo` as a user would, in its own process, and read its JSON summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def run_demo(workdir: Path, *arguments: str, timeout_s: float = 300) -> tuple[dict[str, Any], str]:
    """`python -m accord demo --workdir WORKDIR --json ... ARGUMENTS`, to the end.

    Returns:
        The summary (`--json`) and what the demo printed.
    """
    summary_path = workdir / "summary-copy.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "accord",
            "demo",
            "--workdir",
            str(workdir),
            "--json",
            str(summary_path),
            *arguments,
        ],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return dict(json.loads(summary_path.read_text())), result.stdout
