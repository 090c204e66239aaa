"""The bodies of the privacy ledger's entries: what each round records besides DP-SGD's runs.

    client_dp_share(config)      the client-level noise share this participant added
    data_quality_counts(config)  what check-data flagged, and whether it was excluded
    validation_gain(metrics)     the new global adapter's gain on the local test split
    dp_body(spent, steps)        a `sample_dp` (or `side_dp` item) body

`privacy_ledger` writes them; their fields are listed in its docstring.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from accord.crypto.ledger_encoding import decimal
from accord.participant.config import ParticipantConfig

if TYPE_CHECKING:
    from accord.crypto.messages import RoundConfig

DP_SGD = "dp-sgd"
NO_MECHANISM = "none"


def client_dp_share(config: RoundConfig) -> dict[str, Any]:
    """The client-level noise share `exchange.encode_update` added this round, for the ledger.

    Each participant adds Sk(share_mu) to every coordinate but the weight slot: a
    standard deviation of share_std_levels quantized levels (`crypto/client_dp.py`).
    """
    noise = config.client_noise
    if noise is None:
        return {"mechanism": NO_MECHANISM}
    from accord.crypto.client_dp import MECHANISM, honest_participants

    participants = len(config.selected)
    mu = noise.share_mu(config.quant, participants)
    return {
        "mechanism": MECHANISM,
        "noise_multiplier": decimal(noise.noise_multiplier),
        "honest_fraction": decimal(noise.honest_fraction),
        "delta": decimal(noise.delta),
        "participants": participants,
        "honest_participants": honest_participants(noise.honest_fraction, participants),
        "sigma_levels": decimal(noise.sigma_levels(config.quant)),
        "share_mu": decimal(mu),
        "share_std_levels": decimal(math.sqrt(2.0 * mu)),
        "level": decimal(config.quant.step),
    }


def data_quality_counts(config: ParticipantConfig) -> dict[str, Any]:
    """What the data-quality filter found: flagged sample ids, and whether they were excluded.

    `flagged` counts the distinct ids in check-data's flagged file (all splits);
    `excluded` is that count when `exclude_flagged` drops them from training, else 0.
    """
    settings = config.data_quality
    path = settings.flagged_file
    if path is None and config.data_dir is not None:
        path = config.data_dir / "flagged.jsonl"
    if path is None or not path.exists():
        return {"filter": "not run", "flagged": 0, "excluded": 0}
    ids = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                ids.add(str(json.loads(line)["id"]))
            except (ValueError, KeyError, TypeError):
                continue
    excluded = len(ids) if settings.exclude_flagged else 0
    return {
        "filter": "exclude" if settings.exclude_flagged else "report only",
        "flagged": len(ids),
        "excluded": excluded,
    }


def validation_gain(metrics: Mapping[str, Any]) -> dict[str, Any] | None:
    """Accuracy gained (or loss reduced) by the new global adapter on the local test split."""
    for metric, before_key, after_key, sign in (
        ("accuracy", "accuracy_before", "global_accuracy", 1.0),
        ("eval_loss", "eval_loss_before", "global_eval_loss", -1.0),
    ):
        before, after = metrics.get(before_key), metrics.get(after_key)
        if isinstance(before, (int, float)) and isinstance(after, (int, float)):
            return {
                "metric": metric,
                "before": decimal(before),
                "after": decimal(after),
                "gain": decimal(sign * (float(after) - float(before))),
            }
    return None


def dp_body(spent: Any, steps: int) -> dict[str, Any]:
    """A `sample_dp` (or `side_dp` item) body for a `privacy.PrivacySpent`."""
    return {
        "mechanism": DP_SGD,
        "accountant": spent.accountant,
        "noise_multiplier": decimal(spent.noise_multiplier),
        "sample_rate": decimal(spent.sample_rate),
        "steps": steps,
        "steps_total": spent.steps,
        "max_grad_norm": decimal(spent.max_grad_norm),
        "delta": decimal(spent.delta),
        "epsilon": decimal(spent.epsilon),
    }
