"""The demo's accuracy comparison: federated, local-only and personal models, per participant.

    accuracy_summary(last metrics per participant) -> the `accuracy` part of the summary
    accuracy_table(accuracy), accuracy_verdict(accuracy), LEGEND   what the demo prints

Each participant process measures its own models (`MultimodalTrainer.evaluate`) and writes
the numbers to its `metrics.jsonl`; this module only reads and compares them.
"""

from __future__ import annotations

from typing import Any

from rich.table import Table

LEGEND = (
    "fed.: the global adapter; alone: local-only; pers.: the personal model, fine-tuned "
    "from the global adapter on the participant's own data (DP) and predicting with it "
    "(2/3 own, 1/3 global); eps.: epsilon of everything trained on the participant's "
    "records (updates, local-only and personal models)."
)
"""What the accuracy table's columns mean."""

ACCURACY_METHOD = (
    "Accuracy after the last applied round, measured by each participant process. "
    "federated: the global adapter every participant holds (the secure aggregate of all "
    "updates). local_only: the same model (same base, head, local steps, batch, learning "
    "rate and sample-level DP settings, its own noise) trained by that participant on its "
    "own data alone, round by round alongside the federation, never aggregated nor sent. "
    "personalized: that participant's own model, fine-tuned in the last round from the "
    "global adapter on its own data, with its own DP noise, for as many steps as the "
    "local-only model takes in all rounds. epsilon: the composition of everything trained "
    "on the participant's records (updates, the local-only baseline, the personal model). "
    "own_test: that participant's test split; pooled_test: every enterprise's test split "
    "together (the shared evaluation set)."
)

ACCURACY_KEYS = {
    ("own_test", "federated"): "global_accuracy",
    ("own_test", "local_only"): "global_local_only_accuracy",
    ("pooled_test", "federated"): "global_pooled_accuracy",
    ("pooled_test", "local_only"): "global_local_only_pooled_accuracy",
    ("own_test", "personalized"): "global_personalized_accuracy",
    ("pooled_test", "personalized"): "global_personalized_pooled_accuracy",
}


def accuracy_summary(participants: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """Federated vs local-only accuracy per participant, from their last metrics lines.

    Returns None when no participant reported a local-only baseline (the lora-mlp and
    synthetic trainers). Otherwise `method` (how the numbers were made, in words),
    `participants` (per name: `federated_accuracy` and `local_only_accuracy` on the
    pooled test set; `own_test` and `pooled_test`, each `federated` and `local_only`;
    `dp_epsilon` spent, None without DP; `round`; and `own_test.paired`, the personal
    and local-only models record by record, see `_paired`) and `mean` (the
    same two tables averaged over the participants that reported them).
    """
    rows: dict[str, Any] = {}
    for name, last in participants.items():
        if not isinstance(last.get("global_local_only_accuracy"), (int, float)):
            continue
        row: dict[str, Any] = {"own_test": {}, "pooled_test": {}}
        for (test_set, model), key in ACCURACY_KEYS.items():
            value = last.get(key)
            row[test_set][model] = float(value) if isinstance(value, (int, float)) else None
        # The names, on the pooled test set (every domain): the headline figures.
        row["federated_accuracy"] = row["pooled_test"]["federated"]
        row["local_only_accuracy"] = row["pooled_test"]["local_only"]
        epsilon = last.get("dp_epsilon_composed", last.get("dp_epsilon"))
        row["dp_epsilon"] = float(epsilon) if isinstance(epsilon, (int, float)) else None
        row["round"] = last.get("round")
        row["own_test"]["paired"] = _paired(last)
        rows[name] = row
    if not rows:
        return None
    mean: dict[str, Any] = {"own_test": {}, "pooled_test": {}}
    for test_set, model in ACCURACY_KEYS:
        values = [r[test_set][model] for r in rows.values() if r[test_set][model] is not None]
        mean[test_set][model] = sum(values) / len(values) if values else None
    return {"method": ACCURACY_METHOD, "participants": rows, "mean": mean}


def accuracy_table(accuracy: dict[str, Any]) -> Table:
    """Federated vs local-only accuracy, one row per participant and one for the mean."""
    table = Table(
        title="Accuracy, federated vs local-only: own test split | pooled test set",
        show_edge=False,
    )
    for column in (
        "participant",
        "own fed.",
        "alone",
        "pers.",
        "pooled fed.",
        "alone",
        "pers.",
        "eps.",
    ):
        table.add_column(
            column, justify="left" if column == "participant" else "right", no_wrap=True
        )

    def cells(row: dict[str, Any]) -> list[str]:
        return [
            _percent(row["own_test"]["federated"]),
            _percent(row["own_test"]["local_only"]),
            _percent(row["own_test"].get("personalized")),
            _percent(row["pooled_test"]["federated"]),
            _percent(row["pooled_test"]["local_only"]),
            _percent(row["pooled_test"].get("personalized")),
        ]

    for name, row in accuracy["participants"].items():
        epsilon = row.get("dp_epsilon")
        table.add_row(name, *cells(row), f"{epsilon:.2f}" if epsilon is not None else "no DP")
    table.add_row("mean", *cells(accuracy["mean"]), "", style="bold")
    return table


def accuracy_verdict(accuracy: dict[str, Any]) -> str:
    """Does the federation beat every participant training alone on the pooled test set,
    and does each personal model keep up with its local-only one on its own test split?"""
    pooled = accuracy["mean"]["pooled_test"]
    federated, local = pooled.get("federated"), pooled.get("local_only")
    if federated is None or local is None:
        return "local-only: the same model trained on each participant's data alone"
    rows = accuracy["participants"]
    best_alone = max(r["pooled_test"].get("local_only") or 0.0 for r in rows.values())
    verdict = "beats" if federated > best_alone else "does not beat"
    sentences = [
        f"On the pooled test set the federated adapter ({_percent(federated)}) {verdict} "
        f"every participant training alone (at best {_percent(best_alone)}, "
        f"{_percent(local)} on average)."
    ]
    own = {n: r["own_test"] for n, r in rows.items() if r["own_test"].get("personalized")}
    if own:
        behind = [n for n, r in own.items() if r["personalized"] < (r.get("local_only") or 0.0)]
        sentences.append(
            f"On its own test split the personal model matches or beats local-only for "
            f"{len(own) - len(behind)} of {len(own)} participants"
            + (
                f" (behind: {'; '.join(_behind(n, own[n].get('paired')) for n in behind)})."
                if behind
                else "."
            )
        )
    sentences.append(
        "local-only: the same model, steps and DP settings on each participant's own data, "
        "trained alongside the rounds."
    )
    return " ".join(sentences)


def _paired(last: dict[str, Any]) -> dict[str, Any] | None:
    """The personal and local-only models on the same own test records: how many only the
    personal model gets right (`gains`), only local-only (`losses`), of `records`, and the
    exact two-sided sign test's p (McNemar's) that they differ by chance."""
    counts = [last.get(f"global_{key}") for key in _PAIRED_KEYS]
    numbers = [int(c) for c in counts if isinstance(c, (int, float))]
    if len(numbers) != len(counts):
        return None
    from scipy.stats import binomtest  # scipy.stats takes a while to import: only here

    gains, losses, records = numbers
    p = 1.0 if gains + losses == 0 else float(binomtest(gains, gains + losses).pvalue)
    return {"gains": gains, "losses": losses, "records": records, "p": p}


_PAIRED_KEYS = ("personalized_gains", "personalized_losses", "test_records")


def _behind(name: str, paired: dict[str, Any] | None) -> str:
    if paired is None:
        return name
    gap = paired["losses"] - paired["gains"]
    return (
        f"{name} by {gap} of {paired['records']} records ({paired['gains']} right only by the "
        f"personal model, {paired['losses']} only by local-only; sign test p = "
        f"{paired['p']:.2f}" + (", within the noise of one DP draw)" if paired["p"] > 0.05 else ")")
    )


def _percent(value: Any) -> str:
    """A fraction as a percentage with one decimal; "-" when unknown."""
    return f"{100 * value:.1f}%" if isinstance(value, (int, float)) else "-"
