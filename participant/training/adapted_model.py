"""The participant's model: the base model wrapped with LoRA as its config asks, and a saved
adapter folder loaded back onto a fresh base model.

    adapted_model(config, labels) -> (preprocess, PEFT model, base model hash)
    load_adapter_model(directory, config) -> PEFT model     (`PeftModel.from_pretrained`)

An adapter folder holds peft's own files plus `accord.json` (ACCORD_FILE: base model,
its hash, labels, parameter count, what was trained); nothing trained only locally.
"""

from __future__ import annotations

import json
from pathlib import Path

from peft import PeftModel

from accord.participant.config import ParticipantConfig
from accord.participant.training import local as train
from accord.participant.training import models

ACCORD_FILE = "accord.json"


def adapted_model(
    config: ParticipantConfig, labels: tuple[str, ...]
) -> tuple[models.Preprocessor, PeftModel, str]:
    """The base model wrapped with LoRA (tower adapters frozen unless `tune_towers`): its
    preprocessing, the PEFT model and the base model hash the federation pins."""
    training = config.training
    base = models.load_base_model(
        config.base_model,
        labels,
        seed=config.model_seed,
        head_hidden=training.head_hidden,
        image_size=training.image_size,
    )
    lora = train.LoraSettings.from_config(config)
    model = train.wrap_with_lora(base, lora, seed=config.model_seed)
    if not training.tune_towers:
        train.freeze_tower_adapters(model)
    descriptor = {
        **base.descriptor,
        "adapter": training.adapter,
        "lora_rank": lora.rank,
        "lora_alpha": lora.alpha,
        "lora_targets": lora.target_modules or base.lora_targets,
        "tune_towers": training.tune_towers,
    }
    return base.preprocess, model, models.base_model_hash(model, descriptor)


def load_adapter_model(directory: Path, config: ParticipantConfig) -> PeftModel:
    """A saved global adapter loaded onto a fresh base model with `PeftModel.from_pretrained`."""
    meta = json.loads((directory / ACCORD_FILE).read_text(encoding="utf-8"))
    base = models.load_base_model(
        config.base_model,
        meta["labels"],
        seed=config.model_seed,
        head_hidden=config.training.head_hidden,
        image_size=config.training.image_size,
    )
    return PeftModel.from_pretrained(base.model, str(directory))
