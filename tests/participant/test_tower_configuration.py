"""The text-tower configuration docs/ml.md documents (measured in docs/benchmarks.md, "LoRA
in the text tower vs the frozen head") is a valid participant configuration of the bundled
model: it trains LoRA on MiniLM's query and value only, and fits the default clip_norm."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from accord.core import configfile
from accord.errors import ConfigError
from accord.participant.config import ParticipantConfig
from accord.participant.training import adapted_model as adapted
from accord.participant.training.multimodal import MultimodalTrainer
from tests.support.multimodal import small_city_benchmark

ML_DOC = Path(__file__).resolve().parents[2] / "docs" / "ml.md"
MARKER = "# LoRA in MiniLM's attention: the configuration measured in docs/benchmarks.md"


def documented() -> dict:
    """The TOML block of docs/ml.md that starts with MARKER, parsed."""
    blocks = re.findall(r"```toml\n(.*?)```", ML_DOC.read_text(encoding="utf-8"), re.S)
    [block] = [b for b in blocks if b.startswith(MARKER)]
    return configfile.tomllib.loads(block)


def test_the_documented_text_tower_configuration_trains_query_and_value_within_the_clip(
    tmp_path,
) -> None:
    table = documented()["participant"]
    data = small_city_benchmark(tmp_path / "city")
    table.update(
        name="energy",
        insecure_plaintext=True,
        state_dir=str(tmp_path / "state"),
        data_dir=str(data["energy"]),
    )
    config = configfile.validate(table, ParticipantConfig, "participant")
    assert config.training.tune_towers and config.dp.enabled
    trainer = MultimodalTrainer(config)
    parts = trainer.trained_parts()
    assert parts["tower_lora_targets"] == ["query", "value"]
    # FFA-LoRA: B only, rank 4, on 6 layers' query and value (384 outputs each).
    assert parts["tower_lora"] == 6 * 2 * 384 * 4
    steps = table["local_steps"]
    estimate = adapted.update_norm_estimate(
        [(0.05, parts["head"]), (0.01, parts["tower_lora"])], steps
    )
    assert estimate < 40
    trainer.check_clip_norm(40.0)  # the coordinator's default clip_norm
    with pytest.raises(ConfigError, match=r"tower_learning_rate = 0\.01 "):
        trainer.check_clip_norm(estimate * 0.9)
