"""What `accord demo` shows: the live view while rounds run, the summary table, the JSON.

Everything about the federation comes from the coordinator's `GetStatus` RPC (rounds,
stages, bytes); the participants' own metrics (losses) come from their `metrics.jsonl`
files, which the launcher may read because it made their folders.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from accord.crypto.messages import Stage
from accord.crypto.profile import Profile
from accord.errors import RoundAborted
from accord.proto.v1 import federation_pb2 as pb
from accord.proto.v1 import federation_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from accord.demo import Child

POLL_S = 0.25
STATUS_TIMEOUT_S = 5.0


def watch(
    address: str,
    coordinator: Child,
    participants: Sequence[Child],
    *,
    profile: Profile,
    timeout_s: float,
    credentials: grpc.ChannelCredentials | None = None,
) -> pb.StatusResponse:
    """Show live progress until every participant exited; return the last status.

    `credentials` are the mTLS credentials to call `GetStatus` with (any certificate of
    the federation will do); None calls over plaintext (`--insecure-plaintext`).

    Raises:
        RoundAborted: a process failed, or the federation did not finish in `timeout_s`.
    """
    console = Console()
    started = time.monotonic()
    status = pb.StatusResponse()
    if credentials is None:
        channel = grpc.insecure_channel(address)
    else:
        channel = grpc.secure_channel(address, credentials)
    with channel, Live(console=console, refresh_per_second=8, transient=False) as live:
        stub = pb_grpc.CoordinatorStub(channel)
        while True:
            # Starting up or busy: the process checks below decide whether that matters.
            with contextlib.suppress(grpc.RpcError):
                status = stub.GetStatus(pb.StatusRequest(), timeout=STATUS_TIMEOUT_S)
            elapsed = time.monotonic() - started
            live.update(_live_view(status, participants, profile, elapsed))
            _check_processes(coordinator, participants)
            if all(child.process.poll() == 0 for child in participants):
                status = stub.GetStatus(pb.StatusRequest(), timeout=STATUS_TIMEOUT_S)
                live.update(_live_view(status, participants, profile, elapsed))
                return status
            if elapsed > timeout_s:
                raise RoundAborted(f"the federation did not finish within {timeout_s:g} s")
            time.sleep(POLL_S)


def _check_processes(coordinator: Child, participants: Sequence[Child]) -> None:
    if coordinator.process.poll() is not None:
        raise RoundAborted(
            f"the coordinator exited with status {coordinator.process.returncode}; "
            f"its output ({coordinator.output}) ends:\n{coordinator.tail()}"
        )
    for child in participants:
        code = child.process.poll()
        if code not in (None, 0):
            raise RoundAborted(
                f"participant {child.name} exited with status {code}; its output "
                f"({child.output}) ends:\n{child.tail()}"
            )


def _live_view(
    status: pb.StatusResponse, participants: Sequence[Child], profile: Profile, elapsed_s: float
) -> Group:
    stage = pb.Stage.Name(status.stage).lower() if status.federation_id else "starting"
    planned = status.rounds_planned or "?"
    headline = Text.assemble(
        ("Accord demo ", "bold"),
        f"profile {profile.value} · round {status.round}/{planned} · stage {stage} · ",
        f"{status.rounds_completed} done · {elapsed_s:5.1f} s",
    )
    table = Table(show_edge=False, pad_edge=False)
    for column in ("participant", "process", "online", "state", "bytes up", "bytes down"):
        table.add_column(column, justify="right" if column.startswith("bytes") else "left")
    by_name = {p.participant_id: p for p in status.participants}
    for child in participants:
        code = child.process.poll()
        process = f"pid {child.process.pid}" if code is None else f"exited {code}"
        entry = by_name.get(child.name)
        table.add_row(
            child.name,
            process,
            ("yes" if entry.online else "no") if entry else "-",
            entry.state if entry else "starting",
            f"{entry.bytes_up:,}" if entry else "0",
            f"{entry.bytes_down:,}" if entry else "0",
        )
    return Group(headline, table)


def summary(
    status: pb.StatusResponse, *, workdir: Path, names: Sequence[str], wall_s: float
) -> dict[str, Any]:
    """The machine-readable summary of a finished demo (what `--json` writes)."""
    rounds = []
    for record in status.recent_rounds:
        rounds.append(
            {
                "round": record.round,
                "outcome": pb.Stage.Name(record.outcome).lower(),
                "duration_s": round(record.duration_s, 4),
                "stage_durations_s": {
                    stage.value: round(record.stage_durations_s[stage.value], 4)
                    for stage in Stage
                    if stage.value in record.stage_durations_s
                },
                "survivors": list(record.survivors),
                "bytes_up": {name: int(record.bytes_up.get(name, 0)) for name in names},
                "bytes_down": {name: int(record.bytes_down.get(name, 0)) for name in names},
                "message": record.message,
            }
        )
    metrics: dict[str, Any] = {"participants": {}}
    digests = set()
    for name in names:
        folder = workdir / "participants" / name
        lines = _read_lines(folder / "metrics.jsonl")
        last = dict(lines[-1]) if lines else {}
        if lines:
            last["initial_eval_loss"] = lines[0].get("eval_loss_before")
        metrics["participants"][name] = last
        digests.add(_adapter_digest(folder))
    losses = [m.get("global_eval_loss") for m in metrics["participants"].values()]
    known = [loss for loss in losses if isinstance(loss, float)]
    if known:
        metrics["global_eval_loss_mean"] = sum(known) / len(known)
    metrics["adapters_identical"] = len(digests) == 1 and None not in digests
    metrics["adapter_sha256"] = sorted(d for d in digests if d)[0] if any(digests) else None
    return {
        "federation_id": status.federation_id,
        "profile": Profile[pb.Profile.Name(status.profile)].value,
        "participants": list(names),
        "rounds_completed": status.rounds_completed,
        "rounds": rounds,
        "metrics": metrics,
        "wall_s": round(wall_s, 3),
        "workdir": str(workdir),
    }


def write_json(summary: dict[str, Any], path: Path) -> None:
    """Write the summary as indented JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


def print_summary(summary: dict[str, Any]) -> None:
    """The closing tables: one row per round, one per participant."""
    console = Console()
    rounds = Table(title="Rounds", show_edge=False)
    for column in ("round", "outcome", "seconds", "stages (s)", "survivors", "up", "down"):
        rounds.add_column(column)
    for record in summary["rounds"]:
        stages = ", ".join(f"{k} {v:.2f}" for k, v in record["stage_durations_s"].items())
        rounds.add_row(
            str(record["round"]),
            record["outcome"],
            f"{record['duration_s']:.2f}",
            stages,
            str(len(record["survivors"])),
            f"{sum(record['bytes_up'].values()):,}",
            f"{sum(record['bytes_down'].values()):,}",
        )
    people = Table(title="Participants", show_edge=False)
    for column in ("participant", "bytes up", "bytes down", "loss at start", "global loss"):
        people.add_column(column)
    for name in summary["participants"]:
        up = sum(r["bytes_up"][name] for r in summary["rounds"])
        down = sum(r["bytes_down"][name] for r in summary["rounds"])
        last = summary["metrics"]["participants"].get(name, {})
        people.add_row(
            name,
            f"{up:,}",
            f"{down:,}",
            _number(last.get("initial_eval_loss")),
            _number(last.get("global_eval_loss")),
        )
    console.print()
    console.print(rounds)
    console.print(people)
    identical = summary["metrics"]["adapters_identical"]
    console.print(
        f"{summary['rounds_completed']} of {len(summary['rounds'])} rounds completed in "
        f"{summary['wall_s']:.1f} s; global adapters "
        + ("identical at every participant" if identical else "DIFFER between participants")
        + f"; everything is in {summary['workdir']}"
    )


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "-"


def _read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _adapter_digest(folder: Path) -> str | None:
    state = folder / "state.json"
    if not state.exists():
        return None
    adapter = folder / json.loads(state.read_text(encoding="utf-8"))["adapter"]
    weights = adapter / "adapter_model.safetensors"
    return hashlib.sha256(weights.read_bytes()).hexdigest() if weights.exists() else None
