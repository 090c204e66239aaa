"""Local Hugging Face checkpoints as base models: a dual encoder or a vision-language model.

A folder given as `base_model` (see `models.py`) is loaded offline with transformers'
Auto classes. A dual encoder (CLIP, SigLIP, anything with `get_text_features` and
`get_image_features`) gives its two towers directly; a vision-language model
(`get_image_features` and a `language_model`, e.g. LLaVA) is used as two towers (late
fusion): its language model encodes the report alone (mean of the last hidden states)
and its vision tower plus projector encodes the frame. Both towers call the one model,
so its weights appear once in the classifier's state; the `incident_head` on top is the
same `FusionHead` every base model has.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from accord.errors import ConfigError
from accord.participant.training import towers
from accord.participant.training.models import (
    BaseModel,
    DualEncoderClassifier,
    FusionHead,
    Preprocessor,
)

HF_LORA_TARGETS = ("q_proj", "v_proj")
"""Default LoRA targets of a local Hugging Face checkpoint (CLIP, SigLIP, LLaVA and most
transformers models name their attention projections so); `lora_target_modules`
overrides them."""


class HfTextTower(nn.Module):
    """Text features of a Hugging Face model: `get_text_features` or a mean-pooled LM."""

    def __init__(self, model: nn.Module, dim: int, *, language_model: bool) -> None:
        super().__init__()
        self.model = model
        self.dim = dim
        self.use_language_model = language_model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        model: Any = self.model
        if self.use_language_model:
            lm = model.language_model
            hidden = lm(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return towers.mean_pool(hidden, attention_mask)
        out = model.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
        return _pooled(out)


class HfImageTower(nn.Module):
    """Image features of a Hugging Face model (`get_image_features`), pooled to (batch, dim)."""

    def __init__(self, model: nn.Module, dim: int) -> None:
        super().__init__()
        self.model = model
        self.dim = dim

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        model: Any = self.model
        return _pooled(model.get_image_features(pixel_values=pixel_values))


class SharedTowers(nn.Module):
    """Holds the one Hugging Face model both towers call, so its weights appear once."""

    def __init__(self, model: nn.Module, text_dim: int, image_dim: int, *, vlm: bool) -> None:
        super().__init__()
        self.text = HfTextTower(model, text_dim, language_model=vlm)
        self.image = HfImageTower(model, image_dim)


class HfDualEncoderClassifier(DualEncoderClassifier):
    """A `DualEncoderClassifier` whose towers share one Hugging Face model (`backbone`)."""

    def __init__(self, backbone: nn.Module, towers_: SharedTowers, head: FusionHead) -> None:
        nn.Module.__init__(self)
        self.backbone = backbone
        # The towers reach the backbone without registering it a second time.
        object.__setattr__(self, "text_tower", towers_.text)
        object.__setattr__(self, "image_tower", towers_.image)
        self.incident_head = head


def load_hf_checkpoint(folder: Path, labels: tuple[str, ...], head_hidden: int) -> BaseModel:
    """The checkpoint in `folder` as two frozen towers and a fresh `incident_head`, offline.

    Raises:
        ConfigError: the folder holds no config.json, or a model of a kind not supported.
    """
    towers.offline()
    from transformers import AutoConfig, AutoModel

    if not (folder / "config.json").is_file():
        raise ConfigError(f"base_model = {str(folder)!r}: the folder holds no config.json")
    config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    model = AutoModel.from_pretrained(str(folder), local_files_only=True)
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    if hasattr(model, "get_text_features") and hasattr(model, "get_image_features"):
        vlm = False
    elif hasattr(model, "get_image_features") and hasattr(model, "language_model"):
        vlm = True
    else:
        raise ConfigError(
            f"base_model = {str(folder)!r}: {type(model).__name__} is neither a dual encoder "
            "(get_text_features and get_image_features) nor a vision-language model "
            "(get_image_features and a language_model)"
        )
    preprocess = _preprocessor(folder, _max_tokens(config))
    shared = _shared_towers(model, preprocess, vlm=vlm)
    head = FusionHead((shared.text.dim, shared.image.dim), len(labels), head_hidden)
    return BaseModel(
        name=str(folder),
        model=HfDualEncoderClassifier(model, shared, head),
        preprocess=preprocess,
        lora_targets=HF_LORA_TARGETS,
        descriptor={
            "kind": "vision-language" if vlm else "dual-encoder",
            "architecture": type(model).__name__,
            "config": _portable(json.loads(config.to_json_string(use_diff=False))),
        },
        labels=labels,
    )


def _preprocessor(folder: Path, max_tokens: int) -> Preprocessor:
    """The checkpoint's own tokenizer (padded, truncated) and image processor."""
    from transformers import AutoImageProcessor, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    image_processor = AutoImageProcessor.from_pretrained(str(folder), local_files_only=True)

    def tokenize(texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        encoded = tokenizer(
            texts, padding=True, truncation=True, max_length=max_tokens, return_tensors="pt"
        )
        mask = encoded.get("attention_mask")
        if mask is None:
            mask = torch.ones_like(encoded["input_ids"])
        return encoded["input_ids"], mask

    def image(im: Any) -> npt.NDArray[np.float32]:
        pixels = image_processor(images=im.convert("RGB"), return_tensors="np")["pixel_values"]
        return np.asarray(pixels[0], dtype=np.float32)

    return Preprocessor(tokenize, image)


def _shared_towers(model: nn.Module, preprocess: Preprocessor, *, vlm: bool) -> SharedTowers:
    """Both towers over `model`, their feature sizes set from one dry run."""
    # Feature sizes come from one dry run on a blank input: configs name them differently.
    with torch.no_grad():
        from PIL import Image

        ids, mask = preprocess.texts(["probe"])
        pixels = preprocess.images([Image.new("RGB", (32, 32))])
        shared = SharedTowers(model, 0, 0, vlm=vlm)
        text_dim = int(shared.text(ids, mask).shape[-1])
        image_dim = int(shared.image(pixels).shape[-1])
    shared.text.dim, shared.image.dim = text_dim, image_dim
    return shared


def _portable(value: Any) -> Any:
    """A config dict without what differs between machines (`_name_or_path`, versions)."""
    if isinstance(value, dict):
        return {
            k: _portable(v)
            for k, v in value.items()
            if not k.startswith("_") and k != "transformers_version"
        }
    return value


def _max_tokens(config: Any) -> int:
    text_config = getattr(config, "text_config", None) or config
    return int(min(getattr(text_config, "max_position_embeddings", 64) or 64, 64))


def _pooled(out: Any) -> torch.Tensor:
    """A features tensor from whatever `get_*_features` returns, as (batch, dim)."""
    if not isinstance(out, torch.Tensor):
        pooled = getattr(out, "pooler_output", None)
        out = pooled if pooled is not None else out.last_hidden_state
    if isinstance(out, (list, tuple)):
        out = torch.stack([o.reshape(-1, o.shape[-1]).mean(dim=0) for o in out])
    while out.dim() > 2:
        out = out.mean(dim=1)
    return out
