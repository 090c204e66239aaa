"""The participant's model: the base model wrapped with LoRA as its config asks, and a saved
adapter folder loaded back onto a fresh base model.

    adapted_model(config, labels) -> (preprocess, PEFT model, base model hash)
    load_adapter_model(directory, config) -> PEFT model     (`PeftModel.from_pretrained`)
    trained_parts(model, names) -> {"head": n, "tower_lora": n, "tower_lora_targets": [..]}
    update_norm_estimate(groups, steps) -> L2 a round's update is expected to have
    check_clip_norm(config, parts, steps, clip_norm)       ConfigError when it exceeds the clip

An adapter folder holds peft's own files plus `accord.json` (ACCORD_FILE: base model,
its hash, labels, parameter count, what was trained); nothing trained only locally.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from peft import PeftModel
from torch import nn

from accord.errors import ConfigError
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


def trained_parts(model: nn.Module, names: Sequence[str]) -> dict[str, Any]:
    """What the exchanged parameters `names` train: parameter counts of the head and of the
    LoRA matrices in the towers (0 when the towers are frozen), and the LoRA targets
    trained (module names, e.g. "query", "_expand_conv"; first seen first)."""
    named = dict(model.named_parameters())
    parts: dict[str, Any] = {"head": 0, "tower_lora": 0, "tower_lora_targets": []}
    for name in names:
        if "lora_" not in name:
            parts["head"] += int(named[name].numel())
            continue
        parts["tower_lora"] += int(named[name].numel())
        target = name.split(".lora_")[0].rsplit(".", 1)[-1]
        if target not in parts["tower_lora_targets"]:
            parts["tower_lora_targets"].append(target)
    return parts


def update_norm_estimate(groups: Iterable[tuple[float, int]], steps: int) -> float:
    """The L2 norm a round's update is expected to have under DP-SGD:
    sqrt(sum over parameter groups of lr^2 * steps * parameters).

    AdamW moves each parameter by about its learning rate per step; with DP-SGD's noise
    the steps disagree in sign, so a parameter moves about lr * sqrt(steps) in a round
    (docs/ml.md, "Clip norm and quantization"). `groups`: (learning rate, parameters).
    """
    return math.sqrt(sum(rate**2 * steps * count for rate, count in groups))


def check_clip_norm(
    config: ParticipantConfig, parts: dict[str, Any], steps: int, clip_norm: float
) -> None:
    """Refuse, with `tune_towers = true`, settings whose update would exceed `clip_norm`.

    Head-only training is not checked (the demo profile sits near the clip on purpose).

    Raises:
        ConfigError: the estimate (`update_norm_estimate`) exceeds the federation's clip;
            it names the settings, the estimate, the clip and the largest
            tower_learning_rate that fits.
    """
    if not config.training.tune_towers or not parts["tower_lora"]:
        return
    head_rate = config.learning_rate
    tower_rate = config.training.tower_learning_rate or head_rate
    groups = ((head_rate, parts["head"]), (tower_rate, parts["tower_lora"]))
    estimate = update_norm_estimate(groups, steps)
    if estimate <= clip_norm:
        return
    room = clip_norm**2 - update_norm_estimate(groups[:1], steps) ** 2
    fits = _three_digits_down(math.sqrt(room / (steps * parts["tower_lora"]))) if room > 0 else 0
    fix = (
        f"set tower_learning_rate <= {fits:.3g}"
        if fits > 0
        else "lower learning_rate or local_steps (the head alone exceeds it)"
    )
    raise ConfigError(
        f"[participant.training] tower_learning_rate = {tower_rate:g} (learning_rate = "
        f"{head_rate:g}, local_steps = {steps}): a round's update would have an L2 norm of "
        f"about {estimate:.1f} (sqrt of lr^2 * steps * parameters summed over the head's "
        f"{parts['head']:,} and the tower LoRA's {parts['tower_lora']:,}), above the "
        f"federation's clip_norm {clip_norm:g}, so every update would be scaled down: {fix}, "
        "or ask the operator for a larger clip_norm"
    )


def _three_digits_down(value: float) -> float:
    """`value` > 0 rounded down to three significant digits (a learning rate that fits)."""
    unit = 10.0 ** (math.floor(math.log10(value)) - 2)
    return math.floor(value / unit) * unit
