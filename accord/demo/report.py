"""What `accord demo` shows once the rounds ran: the summary tables and the JSON.

Everything about the federation comes from the coordinator's `GetStatus` RPC (rounds,
stages, bytes); the participants' own metrics (losses) come from their `metrics.jsonl`
files, which the launcher may read because it made their folders.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from accord.crypto.messages import Stage
from accord.crypto.profile import Profile
from accord.demo.accuracy import LEGEND, accuracy_summary, accuracy_table, accuracy_verdict
from accord.errors import AccordError
from accord.proto.v1 import federation_pb2 as pb


def summary(
    status: pb.StatusResponse,
    *,
    workdir: Path,
    names: Sequence[str],
    wall_s: float,
    transport: str = "mtls",
    threshold: int | None = None,
    events: Sequence[dict[str, Any]] = (),
    processes: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The machine-readable summary of a finished demo (what `--json` writes).

    Per round: `round`, `outcome` (`done` or `aborted`), `reason` (why it aborted; empty
    when done; `message` is the same text under its older name), `duration_s`,
    `stage_durations_s`, `selected`, `survivors` (whose inputs are in the aggregate),
    `dropped` (selected but not survivors of a completed round), and `bytes_up` and
    `bytes_down` for every participant. At the top: `federation_id`, `profile`,
    `transport` (`mtls` or `plaintext`), `participants`, `threshold`,
    `rounds_completed`, `rounds`, `events` (drops and restarts, see `accord.demo.faults`),
    `processes` (each one's exit status, drop stage and restarts), `metrics`
    (`adapters_identical` compares the participants that did not drop out), `accuracy`
    (`accuracy_summary`; None for a trainer that reports no accuracy), `trained`
    (parameters of the fusion head and of LoRA in the towers, and the LoRA targets
    trained, from the adapter's `accord.json`; None for other trainers), `data` (the
    demo's `DIR/data/benchmark.json`, None without it), `privacy` (`privacy_summary`: the
    record-level and client-level epsilon as `accord audit budget` computes them from the
    run's ledgers), `wall_s` and `workdir`.
    """
    rounds = [_round_summary(record, names) for record in status.recent_rounds]
    metrics = _participant_metrics(workdir, names, processes or {})
    return {
        "federation_id": status.federation_id,
        "profile": Profile[pb.Profile.Name(status.profile)].value,
        "transport": transport,
        "participants": list(names),
        "threshold": threshold,
        "rounds_completed": status.rounds_completed,
        "rounds": rounds,
        "events": list(events),
        "processes": processes or {},
        "metrics": metrics,
        "accuracy": accuracy_summary(metrics["participants"]),
        "trained": _trained(workdir, names),
        "data": _read_json(workdir / "data" / "benchmark.json"),
        "privacy": privacy_summary(workdir),
        "wall_s": round(wall_s, 3),
        "workdir": str(workdir),
    }


def privacy_summary(workdir: Path) -> dict[str, Any] | None:
    """The epsilon `accord audit budget` (RDP) computes from the run's ledgers: record-level
    (the largest participant's) and client-level (status "off" without aggregate noise);
    None when the ledgers do not verify."""
    from accord.audit.ledgers import load
    from accord.audit.reports import budget_summary

    ca = workdir / "provision" / "ca" / "ca.pem"
    try:
        audit = load([workdir], ca=ca if ca.exists() else None)
    except AccordError:
        return None
    if not audit.ok or not audit.participants:
        return None
    federation = budget_summary(audit, accountant="rdp")["federation"]
    client = federation["client_level"]
    return {
        "accountant": "rdp",
        "delta": federation["delta"],
        "record_level_max": federation["record_level"]["max"],
        "client_level": {
            "status": client["status"],
            "epsilon": client["epsilon"],
            "noise_multipliers": client.get("noise_multipliers", []),
        },
    }


def _round_summary(record: pb.RoundSummary, names: Sequence[str]) -> dict[str, Any]:
    """One round of the summary: outcome, durations, who took part and the bytes moved."""
    outcome = pb.Stage.Name(record.outcome).lower()
    selected = list(record.selected)
    survivors = list(record.survivors)
    return {
        "round": record.round,
        "outcome": outcome,
        "reason": record.message,
        "duration_s": round(record.duration_s, 4),
        "stage_durations_s": {
            stage.value: round(record.stage_durations_s[stage.value], 4)
            for stage in Stage
            if stage.value in record.stage_durations_s
        },
        "selected": selected,
        "survivors": survivors,
        "dropped": [n for n in selected if n not in survivors] if outcome == "done" else [],
        "bytes_up": {name: int(record.bytes_up.get(name, 0)) for name in names},
        "bytes_down": {name: int(record.bytes_down.get(name, 0)) for name in names},
        "message": record.message,
    }


def _participant_metrics(
    workdir: Path, names: Sequence[str], processes: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Each participant's last metrics, the mean global loss, and whether adapters agree."""
    metrics: dict[str, Any] = {"participants": {}}
    digests = set()
    # A participant that dropped out on purpose left the federation: the others' adapters
    # are compared.
    left = {name for name, p in processes.items() if p.get("dropped_at")}
    for name in names:
        folder = workdir / "participants" / name
        lines = _read_lines(folder / "metrics.jsonl")
        last = dict(lines[-1]) if lines else {}
        if lines:
            last["initial_eval_loss"] = lines[0].get("eval_loss_before")
        metrics["participants"][name] = last
        if name not in left:
            digests.add(_adapter_digest(folder))
    losses = [m.get("global_eval_loss") for m in metrics["participants"].values()]
    known = [loss for loss in losses if isinstance(loss, float)]
    if known:
        metrics["global_eval_loss_mean"] = sum(known) / len(known)
    metrics["adapters_identical"] = len(digests) == 1 and None not in digests
    metrics["adapter_sha256"] = sorted(d for d in digests if d)[0] if any(digests) else None
    return metrics


def write_json(summary: dict[str, Any], path: Path) -> None:
    """Write the summary as indented JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


def print_summary(summary: dict[str, Any]) -> None:
    """The closing tables: one row per round, one per participant."""
    console = Console()
    console.print()
    console.print(_rounds_table(summary))
    console.print(_participants_table(summary))
    accuracy = summary.get("accuracy")
    if accuracy:
        console.print(accuracy_table(accuracy))
        console.print(accuracy_verdict(accuracy))
        console.print(LEGEND)
    privacy = summary.get("privacy")
    if privacy:
        console.print(_privacy_line(privacy))
    if summary.get("trained"):
        console.print(_trained_line(summary["trained"]))
    for event in summary["events"]:
        console.print(describe_event(event))
    identical = summary["metrics"]["adapters_identical"]
    stayed = (
        " that stayed" if any(p.get("dropped_at") for p in summary["processes"].values()) else ""
    )
    console.print(
        f"{summary['rounds_completed']} of {len(summary['rounds'])} rounds completed in "
        f"{summary['wall_s']:.1f} s; global adapters "
        + (
            f"identical at every participant{stayed}"
            if identical
            else "DIFFER between participants"
        )
        + f"; everything is in {summary['workdir']}"
    )


def _rounds_table(summary: dict[str, Any]) -> Table:
    """One row per round: outcome, seconds by stage, survivors, bytes."""
    rounds = Table(title="Rounds", show_edge=False)
    for column in ("round", "outcome", "seconds", "stages (s)", "survivors", "up", "down"):
        rounds.add_column(column)
    for record in summary["rounds"]:
        stages = ", ".join(f"{k} {v:.2f}" for k, v in record["stage_durations_s"].items())
        outcome = record["outcome"]
        if record["reason"]:
            outcome += f": {record['reason']}"
        survivors = str(len(record["survivors"]))
        if record["dropped"]:
            survivors += f" ({', '.join(record['dropped'])} dropped)"
        rounds.add_row(
            str(record["round"]),
            outcome,
            f"{record['duration_s']:.2f}",
            stages,
            survivors,
            f"{sum(record['bytes_up'].values()):,}",
            f"{sum(record['bytes_down'].values()):,}",
        )
    return rounds


def _participants_table(summary: dict[str, Any]) -> Table:
    """One row per participant: bytes moved over all rounds, loss at start and at the end."""
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
    return people


def _privacy_line(privacy: dict[str, Any]) -> str:
    """Record-level and client-level epsilon side by side, as the audit computes them."""
    record, client = privacy["record_level_max"], privacy["client_level"]
    if client["status"] == "on":
        z = ", ".join(f"{value:g}" for value in client["noise_multipliers"])
        level = "unbounded" if client["epsilon"] is None else f"{client['epsilon']:.2f}"
        client_text = f"client-level epsilon {level} (aggregate noise z = {z})"
    else:
        client_text = "client-level: off (no noise on the aggregate; docs/ml.md says when it helps)"
    record_text = "unbounded" if record is None else f"{record:.2f}"
    return (
        f"Privacy (accord audit budget, {privacy['accountant']}, delta {privacy['delta']:g}): "
        f"record-level epsilon {record_text} (the largest participant's, everything it "
        f"trained); {client_text}."
    )


def _trained(workdir: Path, names: Sequence[str]) -> dict[str, Any] | None:
    """What the global adapter trains, from the newest adapter folder's `accord.json`."""
    for name in names:
        folders = sorted((workdir / "participants" / name / "adapters").glob("round-*"))
        for folder in reversed(folders):
            meta = _read_json(folder / "accord.json")
            if isinstance(meta, dict) and isinstance(meta.get("trained"), dict):
                return {"tower_lora_targets": [], **meta["trained"]}
    return None


def _trained_line(trained: dict[str, Any]) -> str:
    """What the adapter trains: the head, and LoRA in the towers (which targets) or not."""
    lora = "the towers frozen (no LoRA trained in them: tune_towers = false)"
    if trained["tower_lora"]:
        targets = ", ".join(trained["tower_lora_targets"]) or "targets unknown"
        lora = f"LoRA in the towers ({targets}), {trained['tower_lora']:,} parameters"
    return f"Trained: the fusion head, {trained['head']:,} parameters; {lora}."


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


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
    adapter = json.loads(state.read_text(encoding="utf-8")).get("adapter")
    if not adapter:
        return None
    weights = folder / adapter / "adapter_model.safetensors"
    return hashlib.sha256(weights.read_bytes()).hexdigest() if weights.exists() else None


def describe_event(event: dict[str, Any]) -> str:
    """One line for an event of `accord.demo.faults`."""
    where = f"round {event.get('round')}" + (f" {event['stage']}" if event.get("stage") else "")
    if event["event"] == "dropped":
        return f"{event['name']} dropped at {where} (exit status {event['exit_status']})"
    if event["event"] == "restarted":
        return (
            f"{event['name']} killed ({event['signal']}) in {where} and started again "
            f"({event['restart_s']:.1f} s)"
        )
    if event["event"] == "not_reached":
        return f"{event['name']}: the federation finished before {where}; nothing done"
    return f"{event['name']}: {event['event']} ({where})"
