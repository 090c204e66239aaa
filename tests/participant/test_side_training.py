"""Every private training counted: the local-only baseline's DP steps are persisted, reach
the privacy ledger with the round, compose in `accord audit budget`, and its weights never
enter an adapter folder."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from accord.audit.ledgers import load
from accord.audit.reports import budget_summary
from accord.crypto import identity
from accord.crypto.messages import RoundConfig
from accord.crypto.profile import Profile
from accord.crypto.quantize import QuantSpec
from accord.participant import privacy_ledger as ledger
from accord.participant.config import ParticipantConfig
from accord.participant.training import privacy
from accord.participant.training.multimodal import (
    LOCAL_ONLY_FILE,
    LOCAL_ONLY_PRIVACY_FILE,
    PERSONAL_FILE,
    MultimodalTrainer,
)
from tests.support.multimodal import small_city_benchmark, tiny_model_config

KEY = identity.generate_identity(lambda n: hashlib.sha256(b"energy").digest()[:n])


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return small_city_benchmark(tmp_path_factory.mktemp("city"))


def make_config(tmp_path: Path, data: dict[str, Path], **training: object) -> ParticipantConfig:
    dp = {"enabled": True, "noise_multiplier": 1.0, "accountant": "rdp"}
    return tiny_model_config(tmp_path, data, local_steps=4, dp=dp, training=training)


def round_config(round: int) -> RoundConfig:
    return RoundConfig(
        federation_id="accord-demo",
        round=round,
        profile=Profile.NONE,
        selected=("energy", "residential", "urban"),
        threshold=2,
        quant=QuantSpec(modulus_bits=16, max_participants=3, clip_norm=40.0),
        element_count=11,
    )


def test_the_local_only_baseline_is_off_by_default(tmp_path, data) -> None:
    config = make_config(tmp_path, data)
    assert config.training.report_local_only is False
    trainer = MultimodalTrainer(config)
    update = trainer.train_round(1)
    assert update.side_training == ()
    assert not any(k.startswith("local_only") for k in trainer.evaluate())
    assert not (config.state_dir / LOCAL_ONLY_PRIVACY_FILE).exists()


def test_local_only_steps_are_persisted_ledgered_and_composed(tmp_path, data) -> None:
    config = make_config(tmp_path, data, report_local_only=True)
    trainer = MultimodalTrainer(config)
    update = trainer.train_round(1)
    (side,) = update.side_training
    assert side.purpose == "local_only" and side.steps == 4
    assert side.spent is not None and side.spent.steps == 4 and side.spent.epsilon > 0
    # Persisted before train_round returns: a restart continues the same budget.
    assert privacy.load_history(config.state_dir / LOCAL_ONLY_PRIVACY_FILE, "rdp") == [
        (1.0, side.spent.sample_rate, 4)
    ]
    restarted = MultimodalTrainer(config)
    np.testing.assert_array_equal(restarted._local_only, trainer._local_only)
    again = restarted.train_round(2).side_training[0]
    assert again.steps == 4 and again.spent is not None and again.spent.steps == 8

    # The adapter folder (meant to be shared) holds no baseline weights.
    trainer.apply(update.delta)
    trainer.save(tmp_path / "round-0001")
    assert not (tmp_path / "round-0001" / LOCAL_ONLY_FILE).exists()
    assert (config.state_dir / LOCAL_ONLY_FILE).exists()

    book = ledger.ParticipantLedger.open(config, KEY.private)
    entry = book.record_round(round_config(1), update)
    (recorded,) = entry.body["side_dp"]
    assert recorded["purpose"] == "local_only" and recorded["steps"] == 4
    assert len(book.runs()) == 2  # the update's run and the baseline's

    summary = budget_summary(load([config.state_dir]), accountant="rdp")
    (row,) = summary["participants"]
    assert row["side_trainings"] == {"local_only": 4}
    released = privacy.epsilon("rdp", [(1.0, side.spent.sample_rate, 4)], 1e-5)
    both = privacy.epsilon("rdp", [(1.0, side.spent.sample_rate, 8)], 1e-5)
    # The audit recomputes with dp-accounting's RDP; the trainer records opacus's, which
    # skips some fractional orders: at most 0.2% apart (docs/audit.md).
    assert row["epsilon_released_updates"] == pytest.approx(released, rel=2e-3)
    assert row["epsilon"] == pytest.approx(both, rel=2e-3)
    assert row["epsilon"] > row["epsilon_released_updates"]


def test_max_epsilon_counts_the_side_training(tmp_path, data) -> None:
    config = make_config(tmp_path, data, report_local_only=True)
    update = MultimodalTrainer(config).train_round(1)
    assert update.privacy is not None
    limit = update.privacy.epsilon * 1.01  # the update alone fits, with the baseline not
    strict = config.model_copy(update={"dp": config.dp.model_copy(update={"max_epsilon": limit})})
    book = ledger.ParticipantLedger.open(strict, KEY.private)
    reason = book.refusal_after_training(1, update)
    assert reason is not None and "max_epsilon" in reason


def test_the_personalized_model_is_the_own_update_on_the_global_and_costs_nothing_more(
    tmp_path, data
) -> None:
    config = make_config(tmp_path, data)
    trainer = MultimodalTrainer(config)
    start = trainer._global.copy()
    update = trainer.train_round(1)
    assert update.side_training == ()  # no training beyond the released update's
    np.testing.assert_array_equal(np.load(config.state_dir / PERSONAL_FILE), start + update.delta)
    metrics = trainer.evaluate()
    assert metrics["personalized_accuracy"] == pytest.approx(update.metrics["accuracy_after"])
    assert 0 <= metrics["personalized_pooled_accuracy"] <= 1
    trainer.apply(update.delta)
    trainer.save(tmp_path / "round-0001")
    assert not (tmp_path / "round-0001" / PERSONAL_FILE).exists()
    assert MultimodalTrainer(config)._personal is not None  # kept across restarts
