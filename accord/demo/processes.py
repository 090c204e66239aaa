"""The demo's child processes: start them, restart one after a SIGKILL, stop them all.

Each child is `python -m <arguments>` in its own folder and session, its output in
`output.log` there. The launcher knows a child only by its process, that folder, and
the files the child writes in it: the coordinator's `port`, a participant's `state.json`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from accord.errors import RoundAborted

START_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0


@dataclass
class Child:
    """One started process, where its output goes, and what happened to it.

    `restart_child` replaces `process` in place, so every holder sees the new one.
    """

    name: str
    process: subprocess.Popen[bytes]
    output: Path
    arguments: tuple[str, ...] = ()
    folder: Path | None = None
    dropped_at: str | None = None
    """The stage at which it dropped out on purpose (`--drop`), once it did."""
    restarts: int = 0

    def tail(self, lines: int = 15) -> str:
        """The last lines of its output, for error messages."""
        try:
            text = self.output.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def start_child(name: str, arguments: Sequence[str], folder: Path) -> Child:
    """Start `python -m <arguments>` with its output in `folder/output.log`."""
    output = folder / "output.log"
    process = _spawn(arguments, folder, output, mode="wb")
    return Child(name, process, output, arguments=tuple(arguments), folder=folder)


def restart_child(child: Child) -> None:
    """Kill `child` with SIGKILL, as a crash would, and start it again with the same arguments.

    Its output goes on in the same `output.log`. A coordinator's port file is removed
    first and awaited again, so that this returns once the new process serves.

    Raises:
        RoundAborted: a restarted coordinator exited or did not start in time.
    """
    assert child.folder is not None, "only children of `start_child` restart"
    child.process.kill()
    child.process.wait()
    port_file = child.folder / "port"
    is_coordinator = child.name == "coordinator"
    if is_coordinator:
        port_file.unlink(missing_ok=True)
    with child.output.open("ab") as sink:
        sink.write(b"\n--- killed with SIGKILL and started again by accord demo ---\n")
    child.process = _spawn(child.arguments, child.folder, child.output, mode="ab")
    child.restarts += 1
    if is_coordinator:
        wait_for_port(port_file, child)


def round_applied(folder: Path) -> int:
    """The last round whose global adapter the participant in `folder` saved (0: none)."""
    try:
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0
    return int(state.get("round_applied", 0))


def _spawn(
    arguments: Sequence[str], folder: Path, output: Path, *, mode: str
) -> subprocess.Popen[bytes]:
    with output.open(mode) as sink:
        return subprocess.Popen(
            [sys.executable, "-m", *arguments],
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=folder,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )


def wait_for_port(port_file: Path, coordinator: Child) -> int:
    """The port the coordinator bound, once it wrote it.

    Raises:
        RoundAborted: the coordinator exited or did not start in time.
    """
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if port_file.exists():
            return int(port_file.read_text().strip())
        if coordinator.process.poll() is not None:
            raise RoundAborted(
                f"the coordinator exited with status {coordinator.process.returncode}:\n"
                f"{coordinator.tail()}"
            )
        time.sleep(0.05)
    raise RoundAborted(f"the coordinator did not start within {START_TIMEOUT_S:g} s")


def stop_children(children: Sequence[Child]) -> None:
    """SIGTERM every child still running, then SIGKILL what outlives the grace period."""
    running = [c for c in children if c.process.poll() is None]
    for child in running:
        child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for child in running:
        try:
            child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()
