"""Every private training counted: the side models' (local-only baseline, personal model)
DP steps are persisted, reach the privacy ledger with the round, compose in `accord audit
budget`, and their weights never enter an adapter folder."""

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
from accord.errors import ConfigError
from accord.participant import privacy_ledger as ledger
from accord.participant.config import ParticipantConfig
from accord.participant.training import privacy
from accord.participant.training.multimodal import MultimodalTrainer
from tests.support.multimodal import small_city_benchmark, tiny_model_config

LOCAL_ONLY_FILE = "local_only.npy"
LOCAL_ONLY_PRIVACY_FILE = "local_only_accountant.json"
PERSONAL_FILE = "personalized.npy"
PERSONAL_PRIVACY_FILE = "personalized_accountant.json"

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
    np.testing.assert_array_equal(restarted._local_only.vector, trainer._local_only.vector)
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
    # The audit recomputes with the trainer's own accountant (accord/core/accounting.py).
    assert row["epsilon_released_updates"] == pytest.approx(released, rel=1e-9)
    assert row["epsilon"] == pytest.approx(both, rel=1e-9)
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


def test_no_personal_model_unless_asked(tmp_path, data) -> None:
    config = make_config(tmp_path, data)
    assert config.training.personalize_round is None
    trainer = MultimodalTrainer(config)
    assert trainer.train_round(1).side_training == ()
    assert not any(k.startswith("personalized") for k in trainer.evaluate())
    assert not (config.state_dir / PERSONAL_FILE).exists()


def test_the_personal_model_is_fine_tuned_from_the_global_adapter_and_counted(
    tmp_path, data
) -> None:
    config = make_config(tmp_path, data, personalize_round=2, personal_rounds=3)
    trainer = MultimodalTrainer(config)
    first = trainer.train_round(1)
    assert first.side_training == ()  # not its round
    trainer.apply(first.delta)
    start = trainer._global.copy()
    update = trainer.train_round(2)
    (side,) = update.side_training
    # Three rounds' worth of local steps (4 each), on its own accountant.
    assert side.purpose == "personalized" and side.steps == 12
    assert side.spent is not None and side.spent.steps == 12
    assert privacy.load_history(config.state_dir / PERSONAL_PRIVACY_FILE, "rdp") == [
        (1.0, side.spent.sample_rate, 12)
    ]
    personal = np.load(config.state_dir / PERSONAL_FILE)
    assert not np.array_equal(personal, start) and not np.array_equal(
        personal, start + update.delta
    )  # trained on its own from the global adapter, not the update
    metrics = trainer.evaluate()
    assert 0 <= metrics["personalized_accuracy"] <= 1
    assert 0 <= metrics["personalized_pooled_accuracy"] <= 1
    # It predicts 2/3 of its own probabilities plus 1/3 of the global adapter's: with
    # weight 0 it is the fine-tuned model alone, with weight near 1 the global one.
    assert config.training.personal_global_weight == pytest.approx(1 / 3)
    alone = trainer._scores(personal, trainer._test)
    mixed = trainer._scores(personal, trainer._test, global_weight=1 / 3)
    near_global = trainer._scores(personal, trainer._test, global_weight=1 - 1e-6)
    assert metrics["personalized_accuracy"] == mixed["accuracy"]
    assert near_global["accuracy"] == pytest.approx(
        trainer._scores(trainer._global, trainer._test)["accuracy"]
    )
    assert alone["loss"] != mixed["loss"]

    # In the ledger with the round, composed by the audit and by the trainer.
    book = ledger.ParticipantLedger.open(config, KEY.private)
    book.record_round(round_config(1), first)
    entry = book.record_round(round_config(2), update)
    (recorded,) = entry.body["side_dp"]
    assert recorded["purpose"] == "personalized" and recorded["steps"] == 12
    (row,) = budget_summary(load([config.state_dir]), accountant="rdp")["participants"]
    assert row["side_trainings"] == {"personalized": 12}
    assert row["epsilon"] > row["epsilon_released_updates"]
    assert update.metrics["dp_epsilon_composed"] > update.metrics["dp_epsilon"]

    trainer.apply(update.delta)
    trainer.save(tmp_path / "round-0002")
    assert not (tmp_path / "round-0002" / PERSONAL_FILE).exists()
    restarted = MultimodalTrainer(config)  # kept across restarts
    assert restarted._personal.vector is not None
    np.testing.assert_array_equal(restarted._personal.vector, personal)


def test_a_personal_model_past_the_dp_budget_is_refused(tmp_path, data) -> None:
    with pytest.raises(ConfigError, match=r"personalize_round = 12.*set personalize_round <= 10"):
        make_config(tmp_path, data, personalize_round=12)
    calibrated = {"enabled": True, "target_epsilon": 8.0, "rounds": 2}
    with pytest.raises(ConfigError, match=r"personal_rounds = 3.*set personal_rounds <= 2"):
        tiny_model_config(
            tmp_path, data, dp=calibrated, training={"personalize_round": 2, "personal_rounds": 3}
        )


def test_the_personal_and_local_only_models_are_compared_record_by_record(tmp_path, data) -> None:
    config = make_config(
        tmp_path, data, personalize_round=1, personal_rounds=1, report_local_only=True
    )
    trainer = MultimodalTrainer(config)
    trainer.train_round(1)
    metrics = trainer.evaluate()
    records = metrics["test_records"]
    assert records == len(trainer._test[-1])
    gains, losses = metrics["personalized_gains"], metrics["personalized_losses"]
    # What only one of the two gets right is the whole difference of their accuracies.
    difference = metrics["personalized_accuracy"] - metrics["local_only_accuracy"]
    assert gains - losses == pytest.approx(difference * records)
    assert 0 <= gains + losses <= records


def test_no_paired_comparison_without_the_local_only_baseline(tmp_path, data) -> None:
    config = make_config(tmp_path, data, personalize_round=1, personal_rounds=1)
    trainer = MultimodalTrainer(config)
    trainer.train_round(1)
    assert not {"personalized_gains", "test_records"} & set(trainer.evaluate())
