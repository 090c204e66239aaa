"""Local training: FFA-LoRA, the readable loop's options, and the multimodal Trainer."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from accord.core import configfile
from accord.errors import ConfigError, RoundAborted
from accord.participant.config import ParticipantConfig
from accord.participant.data import city_safety
from accord.participant.training import adapted_model as adapted
from accord.participant.training import local as train
from accord.participant.training import models
from accord.participant.training.adapted_model import load_adapter_model
from accord.participant.training.multimodal import MultimodalTrainer, PrivateUpdate
from accord.participant.training.protocol import Trainer
from tests.support.multimodal import small_city_benchmark, tiny_model_config

LABELS = city_safety.CITY_LABELS


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return small_city_benchmark(tmp_path_factory.mktemp("city"))


def tiny_base(seed: int = 0) -> models.BaseModel:
    return models.load_base_model(models.TINY_MODEL, LABELS, seed=seed)


# ---- wrap with LoRA ----


def test_ffa_lora_freezes_identical_a_matrices_and_trains_b_and_the_head() -> None:
    one = train.wrap_with_lora(tiny_base(), train.LoraSettings(rank=4), seed=7)
    two = train.wrap_with_lora(tiny_base(), train.LoraSettings(rank=4), seed=7)
    names = train.trainable_names(one)
    assert names == train.trainable_names(two)
    assert all("lora_B" in n or models.HEAD_NAME in n for n in names)
    a_one = {n: p for n, p in one.named_parameters() if "lora_A" in n}
    a_two = dict(two.named_parameters())
    assert a_one and all(not p.requires_grad for p in a_one.values())
    assert all(torch.equal(p, a_two[n]) for n, p in a_one.items())
    np.testing.assert_array_equal(train.get_vector(one, names), train.get_vector(two, names))


def test_standard_lora_trains_a_too() -> None:
    model = train.wrap_with_lora(
        tiny_base(), train.LoraSettings(rank=4, mode=train.AdapterMode.LORA), seed=7
    )
    assert any("lora_A" in n for n in train.trainable_names(model))


def test_dora_is_refused_with_a_config_error() -> None:
    with pytest.raises(TypeError, match="use_dora"):  # the record cannot even carry DoRA
        train.LoraSettings(use_dora=True)
    with pytest.raises(ConfigError, match=r"\[participant\.training\] use_dora = true: .*DoRA"):
        configfile.validate(
            {"name": "x", "insecure_plaintext": True, "training": {"use_dora": True}},
            ParticipantConfig,
            "participant",
        )


# ---- the loop ----


def linear_problem(samples: int = 96) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(samples, 6, generator=generator)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    return [x, y]


def test_the_training_records_have_the_configs_defaults_only() -> None:
    config = configfile.validate(
        {"name": "x", "insecure_plaintext": True}, ParticipantConfig, "participant"
    )
    assert train.LoraSettings() == train.LoraSettings.from_config(config)
    assert train.LocalSettings() == train.LocalSettings.from_config(config)
    # The drifted pair: the records once said rank 8 and batch 64, the config 4 and 32.
    assert train.LoraSettings().rank == config.lora_rank == 4
    assert train.LocalSettings().batch_size == config.batch_size == 32


def test_the_records_carry_what_the_config_says() -> None:
    config = configfile.validate(
        {
            "name": "x",
            "insecure_plaintext": True,
            "lora_rank": 2,
            "batch_size": 8,
            "local_steps": 3,
            "learning_rate": 0.5,
            "training": {
                "adapter": "lora",
                "lora_alpha": 16,
                "lora_dropout": 0.1,
                "lora_target_modules": ["fc"],
                "local_epochs": 1.5,
                "tower_learning_rate": 0.005,
                "grad_accumulation": 2,
                "weight_decay": 0.01,
                "fedprox_mu": 0.2,
            },
        },
        ParticipantConfig,
        "participant",
    )
    assert train.LoraSettings.from_config(config) == train.LoraSettings(
        rank=2, alpha=16, dropout=0.1, target_modules=("fc",), mode=train.AdapterMode.LORA
    )
    assert train.LocalSettings.from_config(config) == train.LocalSettings(
        steps=3,
        epochs=1.5,
        batch_size=8,
        grad_accumulation=2,
        learning_rate=0.5,
        tower_learning_rate=0.005,
        weight_decay=0.01,
        fedprox_mu=0.2,
    )


def test_a_round_trains_and_returns_the_change() -> None:
    model = nn.Linear(6, 3)
    before = train.get_vector(model, train.trainable_names(model))
    result = train.train_local(
        model,
        linear_problem(),
        train.LocalSettings(steps=10, learning_rate=0.05),
        generator=torch.Generator().manual_seed(1),
    )
    after = train.get_vector(model, train.trainable_names(model))
    np.testing.assert_allclose(result.delta, after - before, atol=1e-6)
    assert result.steps == 10 and result.privacy is None


def test_gradient_accumulation_takes_the_same_steps() -> None:
    deltas = []
    for parts in (1, 4):
        torch.manual_seed(0)
        model = nn.Linear(6, 3)
        settings = train.LocalSettings(steps=5, batch_size=32, grad_accumulation=parts)
        result = train.train_local(
            model, linear_problem(), settings, generator=torch.Generator().manual_seed(1)
        )
        deltas.append(result.delta)
    np.testing.assert_allclose(deltas[0], deltas[1], rtol=1e-4, atol=1e-6)


def test_epochs_set_the_number_of_steps() -> None:
    assert train.LocalSettings(epochs=2, batch_size=32).steps_for(96) == 6


def test_fedprox_pulls_towards_the_global_adapter() -> None:
    norms = []
    for mu in (0.0, 5.0):
        torch.manual_seed(0)
        model = nn.Linear(6, 3)
        settings = train.LocalSettings(steps=30, learning_rate=0.05, fedprox_mu=mu)
        result = train.train_local(
            model, linear_problem(), settings, generator=torch.Generator().manual_seed(1)
        )
        norms.append(np.linalg.norm(result.delta))
    assert norms[1] < 0.8 * norms[0]


def test_weights_that_never_update_are_an_error() -> None:
    class HalfUsed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used = nn.Linear(6, 3)
            self.lora_B = nn.Linear(6, 3)  # trainable, but forward never reaches it

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.used(x)

    with pytest.raises(RoundAborted, match="did not change 2 adapter tensor"):
        train.train_local(
            HalfUsed(),
            linear_problem(),
            train.LocalSettings(steps=2),
            generator=torch.Generator().manual_seed(1),
        )


# ---- the multimodal Trainer ----


@pytest.fixture(scope="module")
def trainer(tmp_path_factory, data) -> MultimodalTrainer:
    config = tiny_model_config(
        tmp_path_factory.mktemp("trainer"), data, training={"report_local_only": True}
    )
    return MultimodalTrainer(config)


def test_it_implements_the_trainer_protocol(trainer) -> None:
    def as_protocol(t: Trainer) -> Trainer:
        return t

    assert as_protocol(trainer) is trainer
    assert trainer.parameter_count == (16 + 32) * len(LABELS) + len(LABELS)
    assert len(trainer.base_model_hash) == 64


def test_participants_of_one_federation_share_hash_and_first_adapter(
    tmp_path, data, trainer
) -> None:
    other = MultimodalTrainer(
        tiny_model_config(
            tmp_path, data, name="residential", seed=5, data_dir=str(data["residential"])
        )
    )
    assert other.base_model_hash == trainer.base_model_hash
    np.testing.assert_array_equal(other._global, trainer._global)
    different = MultimodalTrainer(tiny_model_config(tmp_path, data, model_seed=1))
    assert different.base_model_hash != trainer.base_model_hash


def test_a_round_returns_a_delta_and_leaves_the_global_adapter(trainer) -> None:
    before = trainer._global.copy()
    update = trainer.train_round(1)
    assert isinstance(update, PrivateUpdate) and update.privacy is None
    assert update.delta.dtype == np.float32 and update.delta.shape == (trainer.parameter_count,)
    assert update.sample_count == 80
    assert update.metrics["eval_loss_after"] < update.metrics["eval_loss_before"]
    np.testing.assert_array_equal(trainer._global, before)


def test_evaluation_reports_own_pooled_and_local_only_accuracy(trainer) -> None:
    metrics = trainer.evaluate()
    assert {
        "eval_loss",
        "accuracy",
        "pooled_accuracy",
        "local_only_accuracy",
        "local_only_pooled_accuracy",
    } <= set(metrics)
    assert all(0 <= metrics[k] <= 1 for k in ("accuracy", "pooled_accuracy"))


def test_the_saved_adapter_loads_with_peft_and_restores_the_trainer(
    tmp_path, data, trainer
) -> None:
    update = trainer.train_round(2)
    trainer.apply(update.delta)
    trainer.save(tmp_path / "round-0001")
    files = {p.name for p in (tmp_path / "round-0001").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= files
    config = tiny_model_config(tmp_path, data)
    peft_model = load_adapter_model(tmp_path / "round-0001", config)
    names = train.trainable_names(trainer.model)
    loaded = dict(peft_model.named_parameters())
    vector = torch.cat([loaded[n].detach().reshape(-1) for n in names]).numpy()
    np.testing.assert_array_equal(vector, trainer._global)
    fresh = MultimodalTrainer(config)
    fresh.load(tmp_path / "round-0001")
    np.testing.assert_array_equal(fresh._global, trainer._global)
    assert fresh.evaluate()["accuracy"] == pytest.approx(trainer.evaluate()["accuracy"])


def test_tuning_the_towers_trains_their_b_matrices(tmp_path, data) -> None:
    config = tiny_model_config(tmp_path, data, local_steps=2, training={"tune_towers": True})
    tuned = MultimodalTrainer(config)
    names = train.trainable_names(tuned.model)
    assert any("text_tower" in n and "lora_B" in n for n in names)
    assert any("image_tower" in n and "lora_B" in n for n in names)
    update = tuned.train_round(1)
    assert update.delta.shape == (tuned.parameter_count,)
    parts = tuned.trained_parts()  # what the demo's summary says was trained
    assert parts["tower_lora_targets"] == ["query", "value", "conv1", "conv2"]
    assert parts["head"] + parts["tower_lora"] == tuned.parameter_count
    tuned.save(tmp_path / "adapter")
    saved = json.loads((tmp_path / "adapter" / "accord.json").read_text())["trained"]
    assert saved == parts


def _one_step_of_the_towers(tmp_path: Path, data, tower_learning_rate: float):
    """(tower LoRA B change, head change) of one step with `tower_learning_rate`."""
    config = tiny_model_config(
        tmp_path,
        data,
        local_steps=1,
        training={"tune_towers": True, "tower_learning_rate": tower_learning_rate},
    )
    tuned = MultimodalTrainer(config)
    named = dict(tuned.model.named_parameters())
    names = train.trainable_names(tuned.model)
    is_lora = np.concatenate([np.full(named[n].numel(), "lora_B" in n) for n in names])
    delta = tuned.train_round(1).delta
    return delta[is_lora], delta[~is_lora]


def test_the_towers_lora_has_its_own_learning_rate(tmp_path, data) -> None:
    same_lora, same_head = _one_step_of_the_towers(tmp_path / "same", data, 0.05)
    slow_lora, slow_head = _one_step_of_the_towers(tmp_path / "slow", data, 0.0005)
    assert same_lora.size > 0 and np.abs(same_lora).max() > 0
    # AdamW's first step moves each parameter by about its learning rate.
    assert np.abs(slow_lora).max() < 0.05 * np.abs(same_lora).max()
    assert np.abs(slow_lora).max() > 0
    # The fusion head keeps learning_rate.
    assert np.linalg.norm(slow_head) == pytest.approx(np.linalg.norm(same_head), rel=0.1)


# ---- the update's norm against the federation's clip ----


def test_the_update_norm_estimate_sums_each_groups_share() -> None:
    assert adapted.update_norm_estimate([], 10) == 0.0
    assert adapted.update_norm_estimate([(0.05, 16_650)], 10) == pytest.approx(20.40, abs=0.01)
    # The demo's head with LoRA in the towers at one learning rate: the audit's 57 > 40.
    both = adapted.update_norm_estimate([(0.05, 16_650), (0.05, 92_160)], 10)
    assert both == pytest.approx(52.16, abs=0.01)
    # Random-sign steps of size lr (DP-SGD's noise) move a vector about that far.
    signs = np.random.default_rng(0).choice([-1.0, 1.0], size=(10, 20_000))
    walked = np.linalg.norm(0.05 * signs.sum(axis=0))
    assert walked == pytest.approx(adapted.update_norm_estimate([(0.05, 20_000)], 10), rel=0.05)


def test_tower_settings_over_the_clip_are_refused_naming_the_fix(tmp_path, data) -> None:
    def trainer(tower_rate: float, **settings: object) -> MultimodalTrainer:
        training = {"tune_towers": True, "tower_learning_rate": tower_rate}
        config = tiny_model_config(tmp_path, data, learning_rate=0.01, training=training)
        return MultimodalTrainer(
            configfile.validate(
                {**config.model_dump(mode="json"), **settings}, ParticipantConfig, "participant"
            )
        )

    tuned = trainer(0.05)
    parts = tuned.trained_parts()  # head 490 at 0.01, tower LoRA 608 at 0.05, 5 steps
    largest = math.sqrt((1.0 - 0.01**2 * 5 * parts["head"]) / (5 * parts["tower_lora"]))
    fits = math.floor(largest * 1e4) / 1e4  # 0.01575..: three digits, rounded down
    with pytest.raises(ConfigError) as refused:
        tuned.check_clip_norm(1.0)
    message = str(refused.value)
    assert message.startswith("[participant.training] tower_learning_rate = 0.05 ")
    assert "learning_rate = 0.01, local_steps = 5" in message
    estimate = adapted.update_norm_estimate([(0.01, parts["head"]), (0.05, parts["tower_lora"])], 5)
    assert f"about {estimate:.1f}" in message and "clip_norm 1," in message
    assert f"set tower_learning_rate <= {fits:.3g}" in message
    assert "ask the operator for a larger clip_norm" in message
    tuned.check_clip_norm(3.0)  # the same settings fit a larger clip
    trainer(float(f"{fits:.3g}")).check_clip_norm(1.0)  # the fix fits
    with pytest.raises(ConfigError, match="the head alone exceeds it"):
        tuned.check_clip_norm(0.1)


def test_head_only_training_is_not_checked_against_the_clip(tmp_path, data) -> None:
    config = tiny_model_config(tmp_path, data, learning_rate=5.0)
    MultimodalTrainer(config).check_clip_norm(0.01)


def test_flagged_samples_can_be_excluded(tmp_path, data) -> None:
    flagged = tmp_path / "flagged.jsonl"
    ids = [
        line.split('"id": "')[1].split('"')[0]
        for line in (data["energy"] / "manifest.jsonl").read_text().splitlines()[:10]
    ]
    flagged.write_text("".join(f'{{"id": "{i}"}}\n' for i in ids))
    config = tiny_model_config(
        tmp_path, data, data_quality={"exclude_flagged": True, "flagged_file": str(flagged)}
    )
    assert MultimodalTrainer(config).train_round(1).sample_count == 70
    with pytest.raises(ConfigError, match="run `accord participant check-data` first"):
        MultimodalTrainer(
            tiny_model_config(
                tmp_path,
                data,
                data_quality={
                    "exclude_flagged": True,
                    "flagged_file": str(tmp_path / "none.jsonl"),
                },
            )
        )
