"""`accord audit`: verify the ledgers, report the privacy budgets spent and the contributions.

    accord audit verify PATH ...           every chain, signature and checkpoint; each
                                           participant's kept head of the federation
                                           ledger; each upload the federation ledger
                                           records against the participant's own ledger.
                                           Exit status 0 only when everything verifies.
    accord audit budget [--ledger PATH ...] [--accountant rdp|prv|gdp] [--delta D]
                        [--json] [--plot FILE.png]
                                           epsilon per participant, recomputed from the
                                           released runs; the federation's record-level
                                           budget (maximum and composition) and its
                                           client-level budget
    accord audit contributions [--ledger PATH ...] [--json]
                                           per participant and round: samples, the
                                           validation gain it measured, flagged share

A PATH is a `ledger.jsonl` file or a folder searched for them (an `accord demo` workdir
holds `coordinator/ledger.jsonl` and `participants/<name>/ledger.jsonl`), along with
the `federation_head.json` files the participants kept, a `roster.json` and the
startup kits' `coordinator_ledger.pub`. Keys: a participant's ledger is checked with
its identity key from the roster when one is found (`--roster`); the federation ledger
with the coordinator ledger key the kits pin (`--coordinator-key KIT_DIR | FILE.pub |
HEX`, else a kit's `coordinator_ledger.pub` found under PATH), else the key the
participants kept (trusted on first use, insecure-plaintext federations); only
otherwise with the key the ledger names itself, which the output says (that proves the
ledger consistent, not who wrote it).

Nothing here reads or prints an update: the ledgers hold parameters, counts, scalars
the participants measured, and digests of protected uploads.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from accord import accounting
from accord.crypto import ledger as chain
from accord.errors import ConfigError, IntegrityError, UsageError
from accord.ledgerfile import read_lines

LEDGER_FILE = "ledger.jsonl"
HEAD_FILE = "federation_head.json"
ROSTER_FILE = "roster.json"
PINNED_KEY_FILE = "coordinator_ledger.pub"
"""In a startup kit: the coordinator's ledger key, certified by the CA at provisioning."""

audit_app = typer.Typer(
    help="Verify the privacy ledgers and report the budgets spent and the contributions.",
    no_args_is_help=True,
)


# ---- loading ----


@dataclass
class Ledger:
    """One ledger file, verified.

    Attributes:
        path: the file.
        role: "participant" or "coordinator" (from its open entry; "?" if unreadable).
        name: the participant's id, or "coordinator".
        federation_id: the federation it belongs to.
        key_source: where the verifying key came from ("roster", "--coordinator-key ...",
            "the kits (...)" that pin the coordinator's key, "kept heads", "the ledger
            itself").
        report: what `crypto.ledger.verify_chain` found.
        extra: findings from the cross-checks between ledgers.
    """

    path: Path
    role: str
    name: str
    federation_id: str
    key_source: str
    report: chain.Report
    extra: list[chain.Finding] = field(default_factory=list)

    @property
    def findings(self) -> list[chain.Finding]:
        return [*self.report.findings, *self.extra]

    @property
    def ok(self) -> bool:
        return not self.findings

    def bodies(self, kind: str) -> list[dict[str, Any]]:
        """The bodies of its entries of one kind, in order."""
        return [dict(entry.body) for entry in self.report.entries if entry.kind == kind]


@dataclass
class KeptHead:
    """A participant's `federation_head.json`."""

    path: Path
    holder: str
    public_key: bytes | None
    head: chain.SignedHead | None
    anomalies: list[str]


@dataclass
class Audit:
    """Every ledger found, verified and cross-checked."""

    ledgers: list[Ledger]
    heads: list[KeptHead]
    notes: list[str]

    @property
    def participants(self) -> list[Ledger]:
        return sorted((x for x in self.ledgers if x.role == "participant"), key=lambda x: x.name)

    @property
    def coordinators(self) -> list[Ledger]:
        return [x for x in self.ledgers if x.role == "coordinator"]

    @property
    def ok(self) -> bool:
        return all(x.ok for x in self.ledgers)


def load(
    paths: Sequence[Path], roster: Path | None = None, *, coordinator_key: str | None = None
) -> Audit:
    """Find, verify and cross-check every ledger under `paths` (the working folder if none).

    Args:
        paths: ledger files or folders.
        roster: the roster with the participants' identity keys (else one found).
        coordinator_key: the pinned coordinator ledger key: a kit folder, a PEM file or
            64 hex digits (else a kit's `coordinator_ledger.pub` found under `paths`).

    Raises:
        UsageError: no ledger was found.
        ConfigError: the roster or the coordinator key cannot be read.
    """
    roots = list(paths) or [Path.cwd()]
    files = _find(roots, LEDGER_FILE)
    if not files:
        where = ", ".join(str(p) for p in roots)
        raise UsageError(
            f"no {LEDGER_FILE} under {where}; name a ledger file or a folder holding them "
            "(e.g. an `accord demo` workdir)"
        )
    notes: list[str] = []
    keys = _roster_keys(roster, roots, notes)
    pinned = _pinned_key(coordinator_key, roots, notes)
    heads = [_kept_head(path) for path in _find(roots, HEAD_FILE)]
    ledgers: list[Ledger] = []
    for path in files:
        lines = read_lines(path)
        opening = _opening(lines)
        role = str(opening.get("role", "?"))
        federation_id = str(opening.get("federation_id", "?"))
        if role == "coordinator":
            name = "coordinator"
            key, source, kept = _coordinator_key(opening, heads, notes, pinned)
            report = chain.verify_chain(lines, key, heads=kept)
        else:
            name = str(opening.get("participant", path.parent.name))
            key = keys.get(name)
            source = "roster" if key is not None else "the ledger itself"
            report = chain.verify_chain(lines, key)
        ledgers.append(Ledger(path, role, name, federation_id, source, report))
    audit = Audit(ledgers, heads, notes)
    _cross_check(audit)
    return audit


def _find(roots: Iterable[Path], name: str) -> list[Path]:
    found: list[Path] = []
    for root in roots:
        if root.is_file():
            if root.name == name or (name == LEDGER_FILE and root.suffix == ".jsonl"):
                found.append(root)
            elif (root.parent / name).is_file():
                found.append(root.parent / name)
        elif root.is_dir():
            found.extend(sorted(root.rglob(name)))
        elif name == LEDGER_FILE:
            raise UsageError(f"{root}: no such file or folder")
    unique: list[Path] = []
    for path in found:
        if path.resolve() not in {p.resolve() for p in unique}:
            unique.append(path)
    return unique


def _opening(lines: Sequence[str]) -> dict[str, Any]:
    for line in lines:
        if line.strip():
            try:
                entry = chain.Entry.from_line(line)
            except IntegrityError:
                return {}
            return dict(entry.body) if entry.kind == chain.OPEN else {}
    return {}


def _roster_keys(roster: Path | None, roots: Sequence[Path], notes: list[str]) -> dict[str, bytes]:
    from accord.coordinator.roster import RosterSnapshot

    candidates = (
        [roster] if roster is not None else _find([r for r in roots if r.is_dir()], ROSTER_FILE)
    )
    for path in candidates:
        try:
            snapshot = RosterSnapshot.from_bytes(path.read_bytes(), source=str(path))
        except (ConfigError, OSError):
            if roster is not None:
                raise ConfigError(f"--roster {path}: not a readable roster") from None
            continue
        notes.append(f"participants' identity keys from the roster {path}")
        return {e.participant_id: e.identity_public_key for e in snapshot.entries}
    return {}


def _kept_head(path: Path) -> KeptHead:
    from accord.participant.ledger import read_federation_head

    holder = path.parent.name
    ledger_path = path.parent / LEDGER_FILE
    if ledger_path.exists():
        holder = str(_opening(read_lines(ledger_path)).get("participant", holder))
    try:
        key, head, anomalies = read_federation_head(path)
    except IntegrityError as error:
        return KeptHead(path, holder, None, None, [f"unreadable: {error}"])
    return KeptHead(path, holder, key, head, anomalies)


def _pinned_key(
    given: str | None, roots: Sequence[Path], notes: list[str]
) -> tuple[bytes, str] | None:
    """The coordinator ledger key the kits pin: `--coordinator-key`, else found in a kit."""
    from accord.crypto import ledger_key

    if given is not None:
        path = Path(given)
        if path.is_dir():
            path = path / PINNED_KEY_FILE
        if path.is_file():
            return ledger_key.from_pem(
                path.read_bytes(), what=str(path)
            ), f"--coordinator-key {path}"
        try:
            raw = bytes.fromhex(given)
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise ConfigError(
                f"--coordinator-key {given}: not a kit folder, a {PINNED_KEY_FILE} file, or 64 "
                "hex digits"
            )
        return raw, "--coordinator-key"
    found: dict[bytes, Path] = {}
    for path in _find([r for r in roots if r.is_dir()], PINNED_KEY_FILE):
        try:
            found.setdefault(ledger_key.from_pem(path.read_bytes(), what=str(path)), path)
        except (ConfigError, OSError):
            notes.append(f"{path}: not a coordinator ledger key; ignored")
    if len(found) == 1:
        key, path = next(iter(found.items()))
        return key, f"the kits ({path})"
    if len(found) > 1:
        notes.append("the kits found pin different coordinator ledger keys; pass --coordinator-key")
    return None


def _coordinator_key(
    opening: dict[str, Any],
    heads: Sequence[KeptHead],
    notes: list[str],
    pinned_by_kit: tuple[bytes, str] | None = None,
) -> tuple[bytes | None, str, list[tuple[str, chain.SignedHead]]]:
    ledger_id = opening.get("ledger_id")
    mine = [h for h in heads if h.head is not None and h.head.ledger_id == ledger_id]
    kept = [(h.holder, h.head) for h in mine if h.head is not None]
    if pinned_by_kit is not None:
        return pinned_by_kit[0], pinned_by_kit[1], kept
    pinned = {h.public_key for h in mine if h.public_key is not None}
    if len(pinned) == 1:
        return pinned.pop(), "kept heads", kept
    if len(pinned) > 1:
        notes.append(
            "the participants pinned different coordinator ledger keys; checked with the key "
            "the ledger names itself"
        )
    return None, "the ledger itself", kept


def _cross_check(audit: Audit) -> None:
    """Each upload the federation ledger records must be in its participant's ledger."""
    by_name = {x.name: x for x in audit.participants}
    for coordinator in audit.coordinators:
        for head in audit.heads:
            for anomaly in head.anomalies:
                coordinator.extra.append(
                    chain.Finding(chain.Problem.BAD_HEAD, f"{head.holder} noted: {anomaly}")
                )
        for body in coordinator.bodies("round"):
            for name, digest in sorted(dict(body.get("uploads", {})).items()):
                participant = by_name.get(name)
                if participant is None or participant.federation_id != coordinator.federation_id:
                    continue
                finding = _upload_finding(participant, int(body["round"]), str(digest))
                if finding is not None:
                    participant.extra.append(finding)


def _upload_finding(participant: Ledger, round: int, digest: str) -> chain.Finding | None:
    rounds = [
        (entry.seq, dict(entry.body))
        for entry in participant.report.entries
        if entry.kind == "round"
    ]
    matching = [(seq, body) for seq, body in rounds if body.get("round") == round]
    if any(dict(body.get("upload", {})).get("sha256") == digest for _, body in matching):
        return None
    if matching:
        return chain.Finding(
            chain.Problem.EDITED,
            f"its round {round} upload digest differs from the one the federation ledger received",
            matching[0][0],
        )
    last_round = max((int(body.get("round", 0)) for _, body in rounds), default=0)
    if last_round < round:
        return chain.Finding(
            chain.Problem.TRUNCATED,
            f"the federation ledger received its round {round} upload; this ledger ends at "
            f"round {last_round}: its tail was cut off",
        )
    return chain.Finding(
        chain.Problem.MISSING,
        f"the federation ledger received its round {round} upload; this ledger has no entry for it",
    )


# ---- budgets ----


def budget_summary(
    audit: Audit, *, accountant: str = accounting.DEFAULT_ACCOUNTANT, delta: float | None = None
) -> dict[str, Any]:
    """Epsilon per participant and for the federation, as `accord audit budget --json` prints."""
    participants: list[dict[str, Any]] = []
    all_runs: list[accounting.Run] = []
    unbounded = False
    deltas: list[float] = []
    for ledger in audit.participants:
        rounds = ledger.bodies("round")
        dp_rounds = [b["sample_dp"] for b in rounds if b["sample_dp"].get("mechanism") == "dp-sgd"]
        own_delta = delta if delta is not None else _last_delta(dp_rounds)
        deltas.append(own_delta)
        # Side trainings (local-only baseline, personal model) trained on the same records
        # and kept or reported: they compose with the released updates, round by round.
        schedule = [
            (int(b["round"]), _run(dp))
            for b in rounds
            for dp in [b["sample_dp"], *(b.get("side_dp") or [])]
        ]
        curve = list(dict(accounting.epsilon_over_rounds(schedule, own_delta, accountant)).items())
        runs = [run for _, run in schedule if run is not None]
        released = [r for r in (_run(b["sample_dp"]) for b in rounds) if r is not None]
        side_steps: dict[str, int] = {}
        for b in rounds:
            for dp in b.get("side_dp") or []:
                purpose = str(dp.get("purpose", "side"))
                side_steps[purpose] = side_steps.get(purpose, 0) + int(dp.get("steps", 0))
        without_dp = any(run is None for _, run in schedule)
        unbounded = unbounded or without_dp
        all_runs.extend(runs)
        value = curve[-1][1] if curve else 0.0
        last = dp_rounds[-1] if dp_rounds else {}
        participants.append(
            {
                "participant": ledger.name,
                "ledger": str(ledger.path),
                "verified": ledger.ok,
                "rounds": len(rounds),
                "refusals": len(ledger.bodies("refusal")),
                "mechanism": "dp-sgd"
                if dp_rounds and not without_dp
                else ("none" if rounds else "no rounds"),
                "steps": sum(run[2] for run in runs),
                "noise_multipliers": sorted({run[0] for run in runs}),
                "sample_rates": sorted({run[1] for run in runs}),
                "max_grad_norm": _number(last.get("max_grad_norm")),
                "delta": own_delta,
                "epsilon": _finite(value),
                "epsilon_released_updates": _finite(
                    math.inf
                    if any(_run(b["sample_dp"]) is None for b in rounds)
                    else accounting.epsilon(released, own_delta, accountant)
                ),
                "side_trainings": side_steps,
                "epsilon_recorded": _number(last.get("epsilon")),
                "accountant_recorded": last.get("accountant"),
                "epsilon_by_round": [[r, _finite(e)] for r, e in curve],
            }
        )
    federation_delta = delta if delta is not None else max(deltas, default=1e-5)
    epsilons = [p["epsilon"] for p in participants]
    record_max = None if any(e is None for e in epsilons) else max(epsilons, default=0.0)
    composed = (
        None if unbounded else _finite(accounting.epsilon(all_runs, federation_delta, accountant))
    )
    return {
        "accountant": accountant,
        "accountant_may_understate": accountant in accounting.UNDERSTATES,
        "participants": participants,
        "federation": {
            "delta": federation_delta,
            "record_level": {
                "max": record_max,
                "composed": composed,
                "max_assumes": "each person's records sit at one enterprise: the federation's "
                "record-level epsilon is the largest participant's",
                "composed_assumes": "a person's records may sit at every enterprise: all "
                "participants' DP-SGD runs compose",
            },
            "client_level": _client_level(audit, delta, accountant),
        },
        "verified": audit.ok,
    }


def _client_level(audit: Audit, delta: float | None, accountant: str) -> dict[str, Any]:
    """The federation's client-level epsilon, recomputed from the federation ledger.

    One run per released (done) round: (the noise multiplier the aggregate is guaranteed
    to carry, the participation rate, 1 step). The guaranteed multiplier is the
    ledger's `guaranteed_noise_multiplier`: the noise of the honest survivors over one
    participant's worst-case effect (`crypto/client_dp.py`). Aborted rounds released
    nothing. A released round without client-level noise makes epsilon unbounded.
    """
    if not audit.coordinators:
        return {"status": "no federation ledger given", "epsilon": None}
    rounds = [
        b for c in audit.coordinators for b in c.bodies("round") if b.get("outcome") == "done"
    ]
    noised = [b for b in rounds if dict(b.get("client_dp", {})).get("mechanism", "none") != "none"]
    if not noised:
        return {
            "status": "off",
            "epsilon": None,
            "delta": delta,
            "rounds": len(rounds),
            "note": "client-level noise is off: the aggregate carries no client-level DP guarantee",
        }
    runs: list[accounting.Run] = []
    curve: list[tuple[int, accounting.Run | None]] = []
    configured: set[float] = set()
    honest: set[float] = set()
    deltas: list[float] = []
    for body in rounds:
        client = dict(body.get("client_dp", {}))
        if client.get("mechanism", "none") == "none":
            curve.append((int(body["round"]), None))
            continue
        # Ledgers before the guarantee was recorded carry the configured multiplier only.
        multiplier = float(
            client["guaranteed_noise_multiplier"]
            if "guaranteed_noise_multiplier" in client
            else client.get("noise_multiplier", 0)
        )
        run = (multiplier, float(body["participation_rate"]), 1)
        runs.append(run)
        curve.append((int(body["round"]), run))
        configured.add(float(client["noise_multiplier"]))
        honest.add(float(client.get("honest_fraction", 1)))
        if client.get("delta") is not None:
            deltas.append(float(client["delta"]))
    own_delta = delta if delta is not None else (min(deltas) if deltas else 1e-5)
    by_round = accounting.epsilon_over_rounds(curve, own_delta, accountant)
    value = by_round[-1][1] if by_round else math.inf
    unnoised = len(rounds) - len(noised)
    note = (
        "assumes at least the honest fraction of each round's participants added their "
        "noise share, and that participants are selected at random at the recorded "
        "participation rate; the Skellam noise is accounted as the Gaussian of the same "
        "variance"
    )
    if unnoised:
        note = f"{unnoised} released round(s) without client-level noise: unbounded; " + note
    return {
        "status": "on",
        "epsilon": _finite(value),
        "delta": own_delta,
        "rounds": len(rounds),
        "noise_multipliers": sorted(configured),
        "guaranteed_noise_multipliers": sorted({run[0] for run in runs}),
        "participation_rates": sorted({run[1] for run in runs}),
        "honest_fraction": sorted(honest),
        "epsilon_by_round": [[r, _finite(e)] for r, e in by_round],
        "note": note,
    }


def _run(dp: dict[str, Any]) -> accounting.Run | None:
    if dp.get("mechanism") != "dp-sgd":
        return None
    return (float(dp["noise_multiplier"]), float(dp["sample_rate"]), int(dp["steps"]))


def _last_delta(dp_rounds: Sequence[dict[str, Any]]) -> float:
    for dp in reversed(dp_rounds):
        if dp.get("delta") is not None:
            return float(dp["delta"])
    return 1e-5


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


# ---- contributions ----


def contribution_rows(audit: Audit) -> list[dict[str, Any]]:
    """Per participant and released round: samples, validation gain, flagged share."""
    rows: list[dict[str, Any]] = []
    for ledger in audit.participants:
        applied = {int(b["round"]): dict(b["validation"]) for b in ledger.bodies("applied")}
        for body in ledger.bodies("round"):
            round = int(body["round"])
            quality = dict(body.get("data_quality", {}))
            samples = int(body.get("samples", 0))
            flagged = int(quality.get("flagged", 0))
            excluded = int(quality.get("excluded", 0))
            ran = quality.get("filter", "not run") != "not run"
            validation = applied.get(round, {})
            rows.append(
                {
                    "participant": ledger.name,
                    "round": round,
                    "samples": samples,
                    "flagged": flagged if ran else None,
                    "flagged_share": flagged / max(1, samples + excluded) if ran else None,
                    "metric": validation.get("metric"),
                    "before": _number(validation.get("before")),
                    "after": _number(validation.get("after")),
                    "gain": _number(validation.get("gain")),
                    "verified": ledger.ok,
                }
            )
    return rows


# ---- commands ----


@audit_app.command()
def verify(
    paths: list[Path] = typer.Argument(
        ..., help="Ledger files, or folders searched for ledger.jsonl (e.g. a demo workdir)."
    ),
    roster: Path | None = typer.Option(
        None,
        "--roster",
        help="roster.json with the participants' identity keys (found in "
        "the folders when not given).",
    ),
    coordinator_key: str | None = typer.Option(
        None,
        "--coordinator-key",
        help="The coordinator ledger key the kits pin: a kit folder, its "
        "coordinator_ledger.pub, or 64 hex digits (found in kits under the folders when not "
        "given).",
    ),
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Check every chain and signature; name each broken entry and how.

    Exit status 0 only when every ledger, kept head and recorded upload verifies.
    """
    audit = load(paths, roster, coordinator_key=coordinator_key)
    if json_output:
        typer.echo(json.dumps(_verify_json(audit), indent=2))
    else:
        _print_verify(audit)
    if not audit.ok:
        raise typer.Exit(1)


@audit_app.command()
def budget(
    ledger: list[Path] = typer.Option(
        [], "--ledger", "-l", help="Ledger file or folder (repeatable); default: this folder."
    ),
    accountant: str = typer.Option(
        accounting.DEFAULT_ACCOUNTANT,
        "--accountant",
        help="rdp (default), prv, or gdp (an approximation that may understate epsilon).",
    ),
    delta: float | None = typer.Option(
        None, "--delta", help="Report epsilon at this delta (default: each ledger's own)."
    ),
    roster: Path | None = typer.Option(None, "--roster", help="roster.json with identity keys."),
    coordinator_key: str | None = typer.Option(
        None, "--coordinator-key", help="The pinned coordinator ledger key (see `verify`)."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    plot: Path | None = typer.Option(
        None, "--plot", help="Write epsilon over rounds per participant to this PNG file."
    ),
) -> None:
    """Epsilon per participant and for the federation, recomputed from the ledgers.

    Exit status 1 when a ledger does not verify (its numbers are shown but untrusted).
    """
    if accountant not in accounting.ACCOUNTANTS:
        raise UsageError(f"--accountant {accountant}: one of {', '.join(accounting.ACCOUNTANTS)}")
    audit = load(ledger, roster, coordinator_key=coordinator_key)
    summary = budget_summary(audit, accountant=accountant, delta=delta)
    if plot is not None:
        write_plot(summary, plot)
    if json_output:
        typer.echo(json.dumps(summary, indent=2))
    else:
        _print_budget(summary, audit, plot)
    if not audit.ok:
        raise typer.Exit(1)


@audit_app.command()
def contributions(
    ledger: list[Path] = typer.Option(
        [], "--ledger", "-l", help="Ledger file or folder (repeatable); default: this folder."
    ),
    roster: Path | None = typer.Option(None, "--roster", help="roster.json with identity keys."),
    json_output: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Per participant and round: samples, validation gain, flagged share (no update is shown)."""
    audit = load(ledger, roster)
    rows = contribution_rows(audit)
    if json_output:
        typer.echo(json.dumps({"rows": rows, "verified": audit.ok}, indent=2))
    else:
        _print_contributions(rows, audit)
    if not audit.ok:
        raise typer.Exit(1)


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


def _verify_json(audit: Audit) -> dict[str, Any]:
    return {
        "ok": audit.ok,
        "notes": audit.notes,
        "ledgers": [
            {
                "path": str(x.path),
                "ledger_id": x.report.ledger_id,
                "role": x.role,
                "name": x.name,
                "entries": x.report.count,
                "key_source": x.key_source,
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


def _print_verify(audit: Audit) -> None:
    console = Console()
    for ledger in audit.ledgers:
        if ledger.ok:
            head = ledger.report.entries[-1].hash.hex()[:16] if ledger.report.entries else "-"
            console.print(
                f"[green]OK[/green]   {ledger.report.ledger_id}  {ledger.report.count} entries, "
                f"head {head}..., key from {ledger.key_source}  ({ledger.path})"
            )
        else:
            console.print(f"[red]FAIL[/red] {ledger.report.ledger_id or '?'}  ({ledger.path})")
            for finding in ledger.findings:
                console.print(f"     {finding}", markup=False)
    for note in audit.notes:
        console.print(f"note: {note}", markup=False)
    if any(x.key_source == "the ledger itself" for x in audit.ledgers):
        console.print(
            "note: a key taken from the ledger itself shows the ledger is consistent, not who "
            "wrote it; pass --roster for the participants' identity keys"
        )


def _print_budget(summary: dict[str, Any], audit: Audit, plot: Path | None) -> None:
    console = Console()
    accountant = summary["accountant"]
    table = Table(title=f"Sample-level DP per participant ({accountant})")
    for column in (
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
    ):
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
            str(p["steps"]),
            _epsilon(p["epsilon"], p["rounds"]),
            _epsilon(p["epsilon_released_updates"], p["rounds"]),
            f"{p['delta']:g}",
            "-" if recorded is None else f"{recorded:.3f} ({p['accountant_recorded']})",
            str(p["refusals"]),
            "yes" if p["verified"] else "NO",
        )
    console.print(table)
    federation = summary["federation"]
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
    console.print(rows)
    if summary["accountant_may_understate"]:
        console.print(
            "[yellow]warning:[/yellow] GDP is a central-limit approximation that may understate "
            "epsilon; use --accountant rdp or prv for a bound"
        )
    if not audit.ok:
        console.print(
            "[red]warning:[/red] a ledger does not verify; its numbers cannot be trusted (run "
            "`accord audit verify`)"
        )
    if plot is not None:
        console.print(f"plot: {plot}")


def _print_contributions(rows: list[dict[str, Any]], audit: Audit) -> None:
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
            str(row["samples"]),
            "-" if row["flagged_share"] is None else f"{row['flagged_share']:.1%}",
            validation,
            "-" if row["gain"] is None else f"{row['gain']:+.4f}",
        )
    console.print(table)
    if not audit.ok:
        console.print("[red]warning:[/red] a ledger does not verify (run `accord audit verify`)")


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
