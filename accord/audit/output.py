"""How the audit prints: tables, JSON and the epsilon plot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from accord.audit.files import UNAUTHENTICATED_FIX
from accord.audit.ledgers import Audit

# ---- output ----


def write_plot(summary: dict[str, Any], path: Path) -> None:
    """Epsilon over rounds, one line per participant (matplotlib, PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot, ticker

    figure, axes = pyplot.subplots(figsize=(7, 4))
    for participant in summary["participants"]:
        points = [(r, e) for r, e in participant["epsilon_by_round"] if e is not None]
        if points:
            rounds, values = zip(*points, strict=True)
            axes.plot(rounds, values, marker="o", label=participant["participant"])
    axes.set_xlabel("round")
    axes.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    delta = summary["federation"]["delta"]
    axes.set_ylabel(f"epsilon ({summary['accountant']}, delta {delta:g})")
    axes.set_title("Sample-level privacy budget spent")
    if axes.get_legend_handles_labels()[0]:
        axes.legend()
    axes.grid(True, alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", dpi=120, bbox_inches="tight")
    pyplot.close(figure)


def verify_json(audit: Audit) -> dict[str, Any]:
    return {
        "ok": audit.ok,
        "authenticated": audit.authenticated,
        "ca": audit.ca_source,
        "notes": audit.notes,
        "missing": [m.to_json() for m in audit.missing],
        "ledgers": [
            {
                "path": str(x.path),
                "ledger_id": x.report.ledger_id,
                "role": x.role,
                "name": x.name,
                "entries": x.report.count,
                "key_source": x.key_source,
                "authenticated": x.authenticated,
                "ok": x.ok,
                "findings": [
                    {
                        "problem": f.problem.value,
                        "seq": f.seq,
                        "line": f.line,
                        "detail": f.detail,
                        "message": str(f),
                    }
                    for f in x.findings
                ],
            }
            for x in audit.ledgers
        ],
    }


def print_verify(audit: Audit) -> None:
    console = Console()
    for ledger in audit.ledgers:
        if ledger.ok:
            head = ledger.report.entries[-1].hash.hex()[:16] if ledger.report.entries else "-"
            console.print(
                f"[green]OK[/green]   {ledger.report.ledger_id}  {ledger.report.count} entries, "
                f"head {head}..., key from {ledger.key_source}  ({ledger.path})"
            )
        else:
            name = ledger.report.ledger_id or f"{ledger.name} (unreadable)"
            console.print(f"[red]FAIL[/red] {name}  ({ledger.path})", soft_wrap=True)
            for finding in ledger.findings:
                console.print(f"     {finding}", markup=False)
    for missing in audit.missing:
        what = "no ledger" if missing.unreadable is None else "empty or unreadable ledger"
        console.print(f"[red]FAIL[/red] {missing.participant}: {what}", highlight=False)
        console.print(f"     missing: {missing.detail}", markup=False, soft_wrap=True)
    for note in audit.notes:
        console.print(f"note: {note}", markup=False)
    if not audit.authenticated:
        unauthenticated = ", ".join(x.name for x in audit.ledgers if not x.authenticated)
        console.print(
            f"[yellow]not authenticated:[/yellow] {unauthenticated}: checked with keys that do "
            "not chain to a pinned CA, which shows each ledger consistent, not who wrote it; "
            f"{UNAUTHENTICATED_FIX}",
            highlight=False,
        )


def print_budget(summary: dict[str, Any], audit: Audit, plot: Path | None) -> None:
    console = Console()
    console.print(_participant_table(summary))
    console.print(_federation_table(summary["federation"]))
    if summary["accountant_may_understate"]:
        console.print(
            "[yellow]warning:[/yellow] GDP is a central-limit approximation that may understate "
            "epsilon; use --accountant rdp or prv for a bound"
        )
    _print_missing(audit, console)
    if not audit.ok:
        console.print(
            "[red]warning:[/red] a ledger does not verify; its numbers cannot be trusted (run "
            "`accord audit verify`)"
        )
    if plot is not None:
        console.print(f"plot: {plot}")


BUDGET_COLUMNS = (
    "participant",
    "rounds",
    "mechanism",
    "steps",
    "epsilon",
    "updates only",
    "delta",
    "recorded",
    "refusals",
    "verified",
)


def _participant_table(summary: dict[str, Any]) -> Table:
    """Sample-level DP per participant: one row each, missing members included."""
    table = Table(title=f"Sample-level DP per participant ({summary['accountant']})")
    for column in BUDGET_COLUMNS:
        table.add_column(
            column, justify="left" if column in ("participant", "mechanism") else "right"
        )
    for p in summary["participants"]:
        mechanism = p["mechanism"]
        if mechanism == "dp-sgd":
            mechanism = (
                f"DP-SGD sigma {_values(p['noise_multipliers'])}, q {_values(p['sample_rates'])}, "
                f"C {_show(p['max_grad_norm'])}"
            )
        if p["side_trainings"]:
            mechanism += "; with " + ", ".join(
                f"{purpose} ({steps} steps)" for purpose, steps in p["side_trainings"].items()
            )
        recorded = p["epsilon_recorded"]
        table.add_row(
            p["participant"],
            str(p["rounds"]),
            mechanism,
            "-" if p["steps"] is None else str(p["steps"]),
            "unknown (no ledger)" if p["missing"] else _epsilon(p["epsilon"], p["rounds"]),
            "-" if p["missing"] else _epsilon(p["epsilon_released_updates"], p["rounds"]),
            "-" if p["delta"] is None else f"{p['delta']:g}",
            "-" if recorded is None else f"{recorded:.3f} ({p['accountant_recorded']})",
            "-" if p["refusals"] is None else str(p["refusals"]),
            "yes" if p["verified"] else "NO",
        )
    return table


def _federation_table(federation: dict[str, Any]) -> Table:
    """The federation's record-level (max, composed) and client-level epsilon."""
    record = federation["record_level"]
    client = federation["client_level"]
    rows = Table(title=f"Federation (delta {federation['delta']:g})")
    rows.add_column("budget")
    rows.add_column("epsilon", justify="right")
    rows.add_column("assumes")
    rows.add_row("record-level, max", _epsilon(record["max"], 1), record["max_assumes"])
    rows.add_row(
        "record-level, composed", _epsilon(record["composed"], 1), record["composed_assumes"]
    )
    client_label = "client-level"
    if client["status"] == "on":
        client_label = (
            f"client-level (z {_values(client['noise_multipliers'])}, guaranteed "
            f"{_values([round(z, 4) for z in client['guaranteed_noise_multipliers']])}, "
            f"delta {client['delta']:g})"
        )
    rows.add_row(
        client_label,
        "-" if client["status"] != "on" else _epsilon(client["epsilon"], 1),
        client.get("note", client["status"]),
    )
    return rows


def print_contributions(rows: list[dict[str, Any]], audit: Audit) -> None:
    console = Console()
    table = Table(title="Contributions (basis for incentives; no update is shown)")
    for column in ("participant", "round", "samples", "flagged share", "validation", "gain"):
        table.add_column(column, justify="left" if column == "participant" else "right")
    for row in rows:
        validation = "-"
        if row["metric"] is not None:
            validation = f"{row['metric']} {row['before']:.4f} -> {row['after']:.4f}"
        table.add_row(
            row["participant"],
            str(row["round"]),
            "no ledger" if row["missing"] else str(row["samples"]),
            "-" if row["flagged_share"] is None else f"{row['flagged_share']:.1%}",
            validation,
            "-" if row["gain"] is None else f"{row['gain']:+.4f}",
        )
    console.print(table)
    _print_missing(audit, console)
    if not audit.ok:
        console.print("[red]warning:[/red] a ledger does not verify (run `accord audit verify`)")


def _print_missing(audit: Audit, console: Console) -> None:
    for missing in audit.missing:
        console.print(
            f"[red]missing:[/red] {missing.participant}: {missing.detail}",
            highlight=False,
            soft_wrap=True,
        )
    if not audit.authenticated:
        console.print(f"note: not authenticated; {UNAUTHENTICATED_FIX}", highlight=False)


def _epsilon(value: float | None, rounds: int) -> str:
    if value is None:
        return "inf (no DP)" if rounds else "-"
    return f"{value:.3f}"


def _values(values: Sequence[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:g}"
    return f"{min(values):g}-{max(values):g}"


def _show(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"
