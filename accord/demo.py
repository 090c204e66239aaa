"""`accord demo`: a whole federation on this machine, as separate processes.

The launcher writes one TOML file per role into the work folder, starts
`python -m accord.coordinator serve` and N `python -m accord.participant run`
children, and watches them only through the coordinator's `GetStatus` RPC, the way an
operator would: the processes share nothing but the addresses in their configs, so
each could run on its own host. Layout of the work folder (kept afterwards):

    DIR/coordinator/    coordinator.toml, coordinator.log (JSON lines), output.log, port
    DIR/participants/<name>/
                        participant.toml, identity.pem, participant.log, output.log,
                        state.json, metrics.jsonl, adapters/round-NNNN/ (PEFT format)
    DIR/summary.json    what `--json` also writes, when given

Until provisioning lands (issue #4) the launcher makes each participant's Ed25519
identity key itself and lists the public keys in the coordinator's file.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import typer

from accord.crypto.profile import Profile
from accord.errors import RoundAborted, UsageError

DEMO_NAMES = ("energy", "residential", "urban")
"""The three enterprises of the paper's city-safety case study; then p4, p5, ..."""

MARKER = ".accord-demo"
"""A work folder holding this file may be wiped by the next demo run."""

START_TIMEOUT_S = 60.0
POLL_S = 0.25
STOP_GRACE_S = 10.0


def participant_names(count: int) -> list[str]:
    """`energy`, `residential`, `urban`, then `p4`, `p5`, ... for larger federations."""
    return [DEMO_NAMES[i] if i < len(DEMO_NAMES) else f"p{i + 1}" for i in range(count)]


@dataclass
class Child:
    """One started process and where its output goes."""

    name: str
    process: subprocess.Popen[bytes]
    output: Path

    def tail(self, lines: int = 15) -> str:
        """The last lines of its output, for error messages."""
        try:
            text = self.output.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def demo(
    participants: int = typer.Option(
        3, "--participants", "-n", min=2, max=64, help="Participants."
    ),
    rounds: int = typer.Option(2, "--rounds", "-r", min=1, help="Rounds of federated averaging."),
    profile: Profile = typer.Option(
        Profile.CKKS_MASKS.value,
        "--profile",
        help="How updates are protected: ckks+masks, ckks, masks, or none (plaintext).",
    ),
    workdir: Path = typer.Option(
        Path("accord-demo"),
        "--workdir",
        help="Folder for every config, log, state and adapter; kept afterwards.",
    ),
    json_path: Path | None = typer.Option(
        None, "--json", help="Also write the machine-readable summary here."
    ),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the base model and data."),
    insecure_plaintext: bool = typer.Option(
        False,
        "--insecure-plaintext",
        help="Run without TLS on loopback; required until mTLS arrives (issue #4), and "
        "required by --profile none.",
    ),
    timeout_s: float = typer.Option(600.0, "--timeout-s", min=1.0, help="Give up after this."),
) -> None:
    """Run the demo; see the module docstring for what it leaves in `--workdir`."""
    from accord import demo_report

    check_demo_flags(profile, insecure_plaintext)
    workdir = workdir.resolve()
    prepare_workdir(workdir)
    names = participant_names(participants)
    coordinator_config = write_coordinator_config(workdir, names, profile, rounds)
    started = time.monotonic()
    children: list[Child] = []
    try:
        coordinator = start_child(
            "coordinator",
            ["accord.coordinator", "serve", "--config", str(coordinator_config)],
            workdir / "coordinator",
        )
        children.append(coordinator)
        port = wait_for_port(workdir / "coordinator" / "port", coordinator)
        address = f"127.0.0.1:{port}"
        for index, name in enumerate(names):
            config = write_participant_config(workdir, name, address, seed=seed, index=index)
            children.append(
                start_child(
                    name,
                    ["accord.participant", "run", "--config", str(config)],
                    config.parent,
                )
            )
        final = demo_report.watch(
            address, coordinator, children[1:], profile=profile, timeout_s=timeout_s
        )
    except KeyboardInterrupt:
        stop_children(children)
        typer.echo(f"\ninterrupted; logs are in {workdir}", err=True)
        raise typer.Exit(130) from None
    finally:
        stop_children(children)
    summary = demo_report.summary(
        final, workdir=workdir, names=names, wall_s=time.monotonic() - started
    )
    demo_report.write_json(summary, workdir / "summary.json")
    if json_path is not None:
        demo_report.write_json(summary, json_path)
    demo_report.print_summary(summary)


def check_demo_flags(profile: Profile, insecure_plaintext: bool) -> None:
    """Refuse what cannot run yet, saying what is missing.

    Raises:
        UsageError: plaintext without `--insecure-plaintext`.
    """
    if not insecure_plaintext:
        raise UsageError(
            "the demo needs --insecure-plaintext for now: mTLS between the processes arrives "
            "with provisioning (issue #4). Try `accord demo --insecure-plaintext --profile none`."
        )


def prepare_workdir(workdir: Path) -> None:
    """Create the work folder, or clear the one a previous demo left.

    Raises:
        UsageError: the folder is not empty and no demo made it.
    """
    if workdir.exists() and any(workdir.iterdir()) and not (workdir / MARKER).exists():
        raise UsageError(
            f"--workdir {workdir}: not empty and not made by `accord demo`; choose another folder"
        )
    for part in ("coordinator", "participants", "summary.json"):
        target = workdir / part
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / MARKER).write_text("made by `accord demo`; the next run may clear this folder\n")


def write_coordinator_config(
    workdir: Path, names: Sequence[str], profile: Profile, rounds: int
) -> Path:
    """Make each participant's identity key; write the coordinator's TOML file."""
    from accord import configfile
    from accord.coordinator.config import CoordinatorConfig
    from accord.crypto import identity

    keys: dict[str, str] = {}
    for name in names:
        folder = workdir / "participants" / name
        folder.mkdir(parents=True, exist_ok=True)
        pair = identity.generate_identity()
        key_file = folder / "identity.pem"
        key_file.write_bytes(identity.dump_private(pair.private))
        key_file.chmod(0o600)
        keys[name] = pair.public.hex()
    folder = workdir / "coordinator"
    folder.mkdir(parents=True, exist_ok=True)
    config = configfile.validate(
        {
            "federation_id": "accord-demo",
            "listen_host": "127.0.0.1",
            "listen_port": 0,
            "state_dir": ".",
            "profile": profile.value,
            "participants": list(names),
            "identity_keys": keys,
            "threshold": max(2, (2 * len(names) + 2) // 3),
            "rounds": rounds,
            "insecure_plaintext": True,
        },
        CoordinatorConfig,
        "coordinator",
        base_dir=folder,
    )
    path = folder / "coordinator.toml"
    path.write_text(configfile.dumps(config, "coordinator", relative_to=folder), encoding="utf-8")
    return path


def write_participant_config(
    workdir: Path, name: str, coordinator: str, *, seed: int, index: int
) -> Path:
    """Write one participant's TOML file next to its identity key."""
    from accord import configfile
    from accord.participant.config import ParticipantConfig

    folder = workdir / "participants" / name
    config = configfile.validate(
        {
            "name": name,
            "federation_id": "accord-demo",
            "coordinator": coordinator,
            "state_dir": ".",
            "identity_key": "identity.pem",
            "seed": seed * 1000 + index + 1,
            "model_seed": seed,
            "insecure_plaintext": True,
        },
        ParticipantConfig,
        "participant",
        base_dir=folder,
    )
    path = folder / "participant.toml"
    path.write_text(configfile.dumps(config, "participant", relative_to=folder), encoding="utf-8")
    return path


def start_child(name: str, arguments: Sequence[str], folder: Path) -> Child:
    """Start `python -m <arguments>` with its output in `folder/output.log`."""
    output = folder / "output.log"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", *arguments],
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=folder,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
        )
    return Child(name, process, output)


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
