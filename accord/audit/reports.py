"""What `accord audit budget` and `contributions` compute from verified ledgers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from accord.audit.ledgers import Audit, Ledger, Missing
from accord.core import accounting

# ---- budgets ----


def budget_summary(
    audit: Audit, *, accountant: str = accounting.DEFAULT_ACCOUNTANT, delta: float | None = None
) -> dict[str, Any]:
    """Epsilon per participant and for the federation, as `accord audit budget --json` prints."""
    participants: list[dict[str, Any]] = []
    all_runs: list[accounting.Run] = []
    # A missing member's runs are unknown: no epsilon of its, nor the federation's, is bounded.
    unbounded = bool(audit.missing)
    for ledger in audit.participants:
        row, runs, bounded = _participant_budget(ledger, delta, accountant)
        participants.append(row)
        all_runs.extend(runs)
        unbounded = unbounded or not bounded
    participants += [_missing_budget(missing, delta) for missing in audit.missing]
    deltas = [p["delta"] for p in participants if not p["missing"]]
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
        "authenticated": audit.authenticated,
        "missing": [m.to_json() for m in audit.missing],
    }


def _participant_budget(
    ledger: Ledger, delta: float | None, accountant: str
) -> tuple[dict[str, Any], list[accounting.Run], bool]:
    """One participant's row of `budget_summary`, its DP-SGD runs, and whether all are DP."""
    rounds = ledger.bodies("round")
    dp_rounds = [b["sample_dp"] for b in rounds if b["sample_dp"].get("mechanism") == "dp-sgd"]
    own_delta = delta if delta is not None else _last_delta(dp_rounds)
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
    last = dp_rounds[-1] if dp_rounds else {}
    row = {
        "participant": ledger.name,
        "ledger": str(ledger.path),
        "missing": False,
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
        "epsilon": _finite(curve[-1][1] if curve else 0.0),
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
    return row, runs, not without_dp


def _missing_budget(missing: Missing, delta: float | None) -> dict[str, Any]:
    """The row of a member the federation ledger names but whose ledger is missing."""
    return {
        "participant": missing.participant,
        "ledger": None,
        "missing": True,
        "verified": False,
        "rounds": len(missing.rounds),
        "refusals": None,
        "mechanism": "unknown (no ledger)",
        "steps": None,
        "noise_multipliers": [],
        "sample_rates": [],
        "max_grad_norm": None,
        "delta": delta,
        "epsilon": None,
        "epsilon_released_updates": None,
        "side_trainings": {},
        "epsilon_recorded": None,
        "accountant_recorded": None,
        "epsilon_by_round": [],
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
    curve = [(int(body["round"]), _client_run(body)) for body in rounds]
    runs = [run for _, run in curve if run is not None]
    clients = [dict(body["client_dp"]) for body in noised]
    configured = {float(client["noise_multiplier"]) for client in clients}
    honest = {float(client.get("honest_fraction", 1)) for client in clients}
    deltas = [float(client["delta"]) for client in clients if client.get("delta") is not None]
    own_delta = delta if delta is not None else (min(deltas) if deltas else 1e-5)
    by_round = accounting.epsilon_over_rounds(curve, own_delta, accountant)
    value = by_round[-1][1] if by_round else math.inf
    unnoised = len(rounds) - len(noised)
    note = CLIENT_LEVEL_ASSUMES
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


CLIENT_LEVEL_ASSUMES = (
    "assumes at least the honest fraction of each round's participants added their "
    "noise share, and that participants are selected at random at the recorded "
    "participation rate; the Skellam noise is accounted as the Gaussian of the same "
    "variance"
)


def _client_run(body: dict[str, Any]) -> accounting.Run | None:
    """A released round's client-level run: (guaranteed multiplier, rate, 1); None unnoised."""
    client = dict(body.get("client_dp", {}))
    if client.get("mechanism", "none") == "none":
        return None
    # Ledgers before the guarantee was recorded carry the configured multiplier only.
    key = "guaranteed_noise_multiplier"
    multiplier = client[key] if key in client else client.get("noise_multiplier", 0)
    return (float(multiplier), float(body["participation_rate"]), 1)


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
                    "missing": False,
                }
            )
    for missing in audit.missing:
        for round in missing.rounds:
            rows.append(
                {
                    "participant": missing.participant,
                    "round": round,
                    "samples": None,
                    "flagged": None,
                    "flagged_share": None,
                    "metric": None,
                    "before": None,
                    "after": None,
                    "gain": None,
                    "verified": False,
                    "missing": True,
                }
            )
    return rows
