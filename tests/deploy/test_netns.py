"""Multi-host: a coordinator and three participants in network namespaces of their own,
joined by veth links, run two secure rounds; in the third, one participant's link is cut
mid-upload (`ip link set ... down`), the round completes with the other two, and the cut
participant catches up once its link returns.

Topology (addresses only in namespaces this test makes; nothing leaves the machine)::

    participant i (10.77.i.2/24) ==veth== (10.77.i.1/24) coordinator (10.77.0.1/32 on lo)

Each participant routes 10.77.0.1, the address its kit names, over its own link. The
cut participant's link is shaped to 64 kbit/s (`tc tbf`) after round 2 so that its
~33 kB upload takes seconds, and the link goes down one second after it starts its round-3 upload
(`upload.json`). Slow (`make test-all`); needs root and iproute2 (`ip netns`), else it
is skipped saying so (a failure under ACCORD_REQUIRE_DEPLOY_TOOLS=1).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from . import federation as fed
from .tools import require_program, unavailable

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

COORDINATOR_IP = "10.77.0.1"
PORT = 50051
NAMES = ("energy", "residential", "urban")
CUT = "urban"
IPROUTE_FIX = "run as root with iproute2 installed (apt-get install -y iproute2)"


def _ip(*arguments: str) -> None:
    subprocess.run(["ip", *arguments], check=True, capture_output=True, timeout=30)


@dataclass
class Net:
    coordinator: str
    participants: dict[str, str] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    """participant -> its veth end inside its namespace"""


@pytest.fixture
def net() -> Iterator[Net]:
    require_program("ip", IPROUTE_FIX)
    require_program("tc", IPROUTE_FIX)
    if os.geteuid() != 0:
        unavailable("network namespaces need root (ip netns add)", IPROUTE_FIX)
    prefix = "acc" + secrets.token_hex(2)
    made = Net(coordinator=f"{prefix}c")
    try:
        _ip("netns", "add", made.coordinator)
    except subprocess.CalledProcessError as error:
        unavailable(f"`ip netns add` failed: {error.stderr.decode().strip()}", IPROUTE_FIX)
    try:
        _ip("-n", made.coordinator, "link", "set", "lo", "up")
        _ip("-n", made.coordinator, "addr", "add", f"{COORDINATOR_IP}/32", "dev", "lo")
        for index, name in enumerate(NAMES, start=1):
            namespace, inner, outer = f"{prefix}p{index}", f"{prefix}p{index}", f"{prefix}c{index}"
            _ip("netns", "add", namespace)
            made.participants[name] = namespace
            made.links[name] = inner
            _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            _ip("link", "set", outer, "netns", made.coordinator)
            _ip("link", "set", inner, "netns", namespace)
            _ip("-n", made.coordinator, "addr", "add", f"10.77.{index}.1/24", "dev", outer)
            _ip("-n", made.coordinator, "link", "set", outer, "up")
            _ip("-n", namespace, "link", "set", "lo", "up")
            _ip("-n", namespace, "addr", "add", f"10.77.{index}.2/24", "dev", inner)
            _ip("-n", namespace, "link", "set", inner, "up")
            _route(made, name)
        yield made
    finally:
        for namespace in [*made.participants.values(), made.coordinator]:
            subprocess.run(["ip", "netns", "delete", namespace], capture_output=True, check=False)


def _route(net: Net, name: str) -> None:
    index = NAMES.index(name) + 1
    _ip(
        "-n", net.participants[name], "route", "replace",
        f"{COORDINATOR_IP}/32", "via", f"10.77.{index}.1",
    )  # fmt: skip


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


def _start(namespace: str, name: str, arguments: list[str], folder: Path) -> Process:
    log = folder / "output.log"
    with log.open("wb") as sink:
        popen = subprocess.Popen(
            ["ip", "netns", "exec", namespace, sys.executable, "-m", "accord", *arguments],
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=folder,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
    return Process(name, popen, log)


def _tail(process: Process) -> str:
    return "\n".join(process.log.read_text(errors="replace").splitlines()[-30:])


def _wait(condition: Callable[[], bool], timeout_s: float, what: str, *watch: Process) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        for process in watch:
            if process.popen.poll() not in (None, 0):
                raise AssertionError(f"{process.name} exited: {_tail(process)}")
        time.sleep(0.1)
    tails = "\n".join(f"--- {p.name}\n{_tail(p)}" for p in watch)
    raise AssertionError(f"{what} within {timeout_s:g} s\n{tails}")


def _events(log: Path, event: str) -> list[dict[str, object]]:
    try:
        lines = log.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == event:
            found.append(record)
    return found


def _uploading_round(state_dir: Path) -> int:
    try:
        return int(json.loads((state_dir / "upload.json").read_text())["round_uploaded"])
    except (OSError, ValueError, KeyError):
        return 0


def test_a_cut_link_mid_upload_leaves_the_round_to_the_rest_and_the_cut_one_catches_up(
    net: Net, tmp_path: Path
) -> None:
    provisioned = fed.provision(tmp_path / "fed", f"{COORDINATOR_IP}:{PORT}", NAMES)
    coordinator_dir = tmp_path / "coordinator"
    coordinator_dir.mkdir()
    config = fed.coordinator_toml(
        coordinator_dir / "coordinator.toml",
        listen_host=COORDINATOR_IP,
        port=PORT,
        state_dir=str(coordinator_dir),
        tls_dir=str(provisioned.coordinator_dir),
        roster=str(provisioned.roster_path),
        rounds=3,
        threshold=2,
        stage_deadline_s=8.0,
    )
    processes: list[Process] = []
    try:
        coordinator = _start(
            net.coordinator,
            "coordinator",
            ["coordinator", "serve", "--config", str(config)],
            coordinator_dir,
        )
        processes.append(coordinator)
        coordinator_log = coordinator_dir / "coordinator.log"
        _wait(lambda: bool(_events(coordinator_log, "serving")), 60, "no serving", coordinator)
        states: dict[str, Path] = {}
        participants: dict[str, Process] = {}
        for seed, name in enumerate(NAMES, start=1):
            folder = tmp_path / name
            folder.mkdir()
            states[name] = folder
            path = fed.participant_toml(
                folder / "participant.toml",
                kit=str(provisioned.kits[name]),
                state_dir=str(folder),
                seed=seed,
            )
            participants[name] = _start(
                net.participants[name], name, ["participant", "run", "--config", str(path)], folder
            )
            processes.append(participants[name])
        everyone = (coordinator, *participants.values())

        # Once the key ceremony is done (its messages are large), the cut participant's
        # uploads crawl at 64 kbit/s, so that its link can go down mid-upload.
        _wait(
            lambda: bool(_events(states[CUT] / "participant.log", "key_received")),
            120,
            "no key ceremony",
            *everyone,
        )
        assert fed.round_applied(states[CUT]) <= 1  # shaped long before round 3
        subprocess.run(
            ["tc", "-n", net.participants[CUT], "qdisc", "add", "dev", net.links[CUT], "root",
             "tbf", "rate", "64kbit", "burst", "4kb", "latency", "5s"],
            check=True, capture_output=True,
        )  # fmt: skip
        # Two secure rounds across the namespaces, everyone in.
        _wait(
            lambda: all(fed.round_applied(states[n]) >= 2 for n in NAMES),
            300,
            "the first two rounds did not complete",
            *everyone,
        )
        _wait(
            lambda: len(_events(coordinator_log, "round_finished")) >= 2,
            60,
            "the coordinator did not record two rounds",
            coordinator,
        )
        finished = _events(coordinator_log, "round_finished")
        assert [r["survivors"] for r in finished[:2]] == [sorted(NAMES)] * 2, finished

        # Cut the link one second into the cut participant's round-3 upload.
        _wait(lambda: _uploading_round(states[CUT]) >= 3, 120, "no round-3 upload", *everyone)
        time.sleep(1.0)
        _ip("-n", net.participants[CUT], "link", "set", net.links[CUT], "down")
        cut_at = time.monotonic()

        def third_round() -> list[dict[str, object]]:
            return [r for r in _events(coordinator_log, "round_finished") if r["round"] == 3]

        _wait(lambda: bool(third_round()), 180, "round 3 did not finish", coordinator)
        assert third_round()[0]["survivors"] == sorted(set(NAMES) - {CUT}), third_round()
        assert fed.round_applied(states[CUT]) == 2
        received = [
            r for r in _events(coordinator_log, "upload_received")
            if r.get("round") == 3 and r.get("participant") == CUT
        ]  # fmt: skip
        assert received == [], "the cut participant's round-3 upload arrived whole"

        # The link returns; the cut participant catches up with round 3's aggregate.
        _ip("-n", net.participants[CUT], "link", "set", net.links[CUT], "up")
        _route(net, CUT)
        _wait(
            lambda: fed.round_applied(states[CUT]) == 3,
            180,
            "the cut participant did not catch up",
            coordinator,
            participants[CUT],
        )
        down_s = time.monotonic() - cut_at
        for name in NAMES:
            _wait(
                lambda name=name: participants[name].popen.poll() is not None,
                120,
                f"{name} did not finish",
            )
            assert participants[name].popen.returncode == 0, _tail(participants[name])
            assert fed.round_applied(states[name]) == 3
        print(f"link down for {down_s:.1f} s")
    finally:
        for process in processes:
            if process.popen.poll() is None:
                os.killpg(process.popen.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.popen.pid, signal.SIGKILL)
                process.popen.wait()
