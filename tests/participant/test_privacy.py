"""Sample-level DP: CSPRNG noise, the BatchNorm trap, empty batches, accounting, budgets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from accord.core import configfile
from accord.errors import ConfigError, RoundAborted
from accord.participant.config import ParticipantConfig
from accord.participant.data import city_safety
from accord.participant.data import incident_sets as benchmarks
from accord.participant.training import csprng, models, privacy
from accord.participant.training import local as train
from accord.participant.training.multimodal import PRIVACY_FILE, MultimodalTrainer

KEY = bytes(range(32))


def problem(samples: int = 64) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(samples, 5, generator=generator)
    return [x, (x[:, 0] > 0).long()]


def dp_settings(**changes: object) -> train.LocalSettings:
    dp = privacy.DpSettings(
        **{"noise_multiplier": 1.0, "accountant": "rdp", **changes}  # type: ignore[arg-type]
    )
    return train.LocalSettings(steps=4, batch_size=16, learning_rate=0.05, dp=dp)


def dp_round(model: nn.Module, key: bytes = KEY, **changes: object) -> train.RoundResult:
    return train.train_local(
        model,
        problem(),
        dp_settings(**changes),
        generator=torch.Generator().manual_seed(0),
        noise_source=csprng.CsprngGaussian(key),
    )


# ---- the CSPRNG ----


def test_the_csprng_is_keyed_and_gaussian() -> None:
    draws = csprng.CsprngGaussian(KEY).normal(200_001, std=2.0)
    assert np.array_equal(draws, csprng.CsprngGaussian(KEY).normal(200_001, std=2.0))
    assert not np.array_equal(draws[:10], csprng.CsprngGaussian().normal(10, std=2.0))
    assert abs(draws.mean()) < 0.02 and abs(draws.std() - 2.0) < 0.02
    uniforms = csprng.CsprngGaussian(KEY).uniform(100_000)
    assert uniforms.min() > 0 and uniforms.max() < 1


def test_dp_noise_and_sampling_come_from_the_csprng_not_torch() -> None:
    deltas = []
    for torch_seed, key in ((1, KEY), (2, KEY), (1, bytes(32))):
        torch.manual_seed(0)
        model = nn.Linear(5, 2)
        torch.manual_seed(torch_seed)  # would change torch.normal / torch.rand draws
        deltas.append(dp_round(model, key).delta)
    np.testing.assert_array_equal(deltas[0], deltas[1])
    assert not np.array_equal(deltas[0], deltas[2])


# ---- traps ----


def test_an_empty_poisson_batch_still_takes_a_noisy_step(monkeypatch) -> None:
    def empty(*args: object) -> Iterator[torch.Tensor]:
        while True:
            yield torch.zeros(0, dtype=torch.int64)

    monkeypatch.setattr(privacy, "poisson_batches", empty)
    model = nn.Linear(5, 2)
    result = dp_round(model)
    assert np.abs(result.delta).min() > 0  # every weight moved: noise only
    assert result.history == [(1.0, 16 / 64, 4)]  # all four steps were accounted
    assert result.privacy is not None and result.privacy.steps == 4


def test_batchnorm_stays_in_eval_mode_and_lora_layers_train() -> None:
    class WithBatchNorm(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bn = nn.BatchNorm1d(5)
            self.drop = nn.Dropout(0.1)
            self.fc = nn.Linear(5, 2)
            for p in self.bn.parameters():
                p.requires_grad_(False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.drop(self.bn(x)))

    model = WithBatchNorm()
    model.bn.running_mean.fill_(0.5)
    seen: dict[str, set[bool]] = {"bn": set(), "drop": set()}
    model.bn.register_forward_pre_hook(lambda m, _: seen["bn"].add(m.training))
    model.drop.register_forward_pre_hook(lambda m, _: seen["drop"].add(m.training))
    dp_round(model)
    assert seen == {"bn": {False}, "drop": {True}}
    assert torch.equal(model.bn.running_mean, torch.full((5,), 0.5))


def test_the_tiny_towers_batchnorm_statistics_survive_a_private_round(tmp_path) -> None:
    bench = city_safety.city_safety_benchmark(2, train_per_enterprise=40, test_per_enterprise=8)
    folder = benchmarks.write_benchmark(bench, tmp_path / "data")[bench.enterprises[0].name]
    config = configfile.validate(
        {
            "name": "p",
            "insecure_plaintext": True,
            "state_dir": str(tmp_path / "s"),
            "data_dir": str(folder),
            "base_model": models.TINY_MODEL,
            "local_steps": 2,
            "batch_size": 16,
            "training": {"tune_towers": True, "report_local_only": False},
            "dp": {"enabled": True, "noise_multiplier": 1.0, "accountant": "rdp"},
        },
        ParticipantConfig,
        "participant",
    )
    trainer = MultimodalTrainer(config, noise_source=csprng.CsprngGaussian(KEY))
    stats = {n: b.clone() for n, b in trainer.model.named_buffers() if "running" in n}
    update = trainer.train_round(1)
    assert update.privacy is not None and update.privacy.steps == 2
    assert any("image_tower" in n and "lora_B" in n for n in train.trainable_names(trainer.model))
    for name, buffer in trainer.model.named_buffers():
        if name in stats:
            assert torch.equal(buffer, stats[name]), name


def test_an_empty_history_spends_epsilon_zero() -> None:
    assert privacy.epsilon("prv", [], 1e-5) == 0.0
    assert privacy.epsilon("rdp", [], 1e-5) == 0.0
    assert privacy.epsilon("prv", [(1.0, 0.1, 10)], 1e-5) > 0


# ---- accounting and budgets ----


def test_a_target_epsilon_is_met_over_the_planned_steps_and_then_refused() -> None:
    model = nn.Linear(5, 2)
    history: privacy.History = []
    settings = dp_settings(noise_multiplier=None, target_epsilon=3.0, planned_steps=8)

    def local_round(history: privacy.History) -> train.RoundResult:
        return train.train_local(
            model,
            problem(),
            settings,
            generator=torch.Generator().manual_seed(0),
            history=history,
            noise_source=csprng.CsprngGaussian(KEY),
        )

    for _ in range(2):
        result = local_round(history)
        history = result.history
    assert result.privacy is not None and result.privacy.steps == 8
    assert 2.7 <= result.privacy.epsilon <= 3.0 * 1.01
    with pytest.raises(RoundAborted, match="privacy budget spent"):
        local_round(history)


def test_the_history_survives_a_restart_and_keeps_its_accountant(tmp_path: Path) -> None:
    path = tmp_path / "h.json"
    privacy.save_history(path, "prv", [(1.0, 0.25, 4)])
    assert privacy.load_history(path, "prv") == [(1.0, 0.25, 4)]
    assert privacy.load_history(tmp_path / "none.json", "prv") == []
    with pytest.raises(ConfigError, match="cannot switch accountants"):
        privacy.load_history(path, "rdp")


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="exactly one"):
        privacy.DpSettings()
    with pytest.raises(ConfigError, match="max_grad_norm"):
        privacy.DpSettings(noise_multiplier=1.0, max_grad_norm=0)


def test_the_trainer_records_privacy_before_returning_and_resumes_it(tmp_path) -> None:
    bench = city_safety.city_safety_benchmark(2, train_per_enterprise=40, test_per_enterprise=8)
    folder = benchmarks.write_benchmark(bench, tmp_path / "data")[bench.enterprises[0].name]
    table = {
        "name": "p",
        "insecure_plaintext": True,
        "state_dir": str(tmp_path / "s"),
        "data_dir": str(folder),
        "base_model": models.TINY_MODEL,
        "local_steps": 3,
        "batch_size": 16,
        "dp": {"enabled": True, "noise_multiplier": 1.2},
    }
    config = configfile.validate(table, ParticipantConfig, "participant")
    update = MultimodalTrainer(config, noise_source=csprng.CsprngGaussian(KEY)).train_round(1)
    assert update.privacy is not None
    assert update.metrics["dp_steps"] == 3 and update.metrics["dp_noise_multiplier"] == 1.2
    assert update.metrics["dp_sample_rate"] == pytest.approx(16 / 40)
    assert privacy.load_history(tmp_path / "s" / PRIVACY_FILE, "rdp") == [(1.2, 0.4, 3)]
    again = MultimodalTrainer(config, noise_source=csprng.CsprngGaussian(KEY)).train_round(2)
    assert again.privacy is not None and again.privacy.steps == 6
    assert again.privacy.epsilon > update.privacy.epsilon
