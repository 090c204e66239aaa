"""The model registry and local Hugging Face checkpoints, loaded the way a user would."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from peft import PeftModel
from PIL import Image
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    PreTrainedTokenizerFast,
    SiglipConfig,
    SiglipImageProcessor,
    SiglipModel,
)

from accord.errors import ConfigError
from accord.participant.training import local as train
from accord.participant.training import models as registry

LABELS = ("fire", "flood", "gas_leak")
WORDS = [
    "fire",
    "flood",
    "gas",
    "smoke",
    "water",
    "leak",
    "the",
    "a",
    "at",
    "near",
    "site",
    "road",
    "report",
]


def save_tokenizer(folder: Path) -> int:
    """A tiny word-level tokenizer, saved as a transformers tokenizer; returns its size."""
    vocab = {"[PAD]": 0, "[UNK]": 1, "[EOS]": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]", eos_token="[EOS]"
    )
    tokenizer.save_pretrained(str(folder))
    return len(vocab) + 1


def tiny_text(vocab: int) -> dict[str, int]:
    return dict(
        vocab_size=vocab,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=32,
        bos_token_id=2,
        eos_token_id=2,
        pad_token_id=0,
    )


def tiny_vision() -> dict[str, int]:
    return dict(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
    )


def make_clip(folder: Path) -> Path:
    vocab = save_tokenizer(folder)
    torch.manual_seed(0)
    CLIPModel(
        CLIPConfig(text_config=tiny_text(vocab), vision_config=tiny_vision(), projection_dim=8)
    ).save_pretrained(str(folder))
    CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(str(folder))
    return folder


def make_siglip(folder: Path) -> Path:
    vocab = save_tokenizer(folder)
    torch.manual_seed(0)
    SiglipModel(
        SiglipConfig(text_config=tiny_text(vocab), vision_config=tiny_vision())
    ).save_pretrained(str(folder))
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(str(folder))
    return folder


def make_llava(folder: Path) -> Path:
    vocab = save_tokenizer(folder)
    torch.manual_seed(0)
    text = {k: v for k, v in tiny_text(vocab).items() if k != "max_position_embeddings"}
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**tiny_vision()),
        text_config=LlamaConfig(**text, num_key_value_heads=2, max_position_embeddings=64),
        image_token_index=vocab - 1,
    )
    LlavaForConditionalGeneration(config).save_pretrained(str(folder))
    CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(str(folder))
    return folder


def logits_of(base: registry.BaseModel, model: torch.nn.Module | None = None) -> torch.Tensor:
    ids, mask = base.preprocess.texts(["smoke near the site", "water at the road"])
    pixels = base.preprocess.images([Image.new("RGB", (40, 30), (200, 80, 20))] * 2)
    with torch.no_grad():
        return (model or base.model)(ids, mask, pixels)


def test_unknown_names_are_refused_with_the_registry_listed() -> None:
    with pytest.raises(ConfigError, match="accord/incident-dual-encoder"):
        registry.load_base_model("accord/no-such-model", LABELS)
    with pytest.raises(ConfigError, match="two distinct labels"):
        registry.load_base_model(registry.TINY_MODEL, ("fire", "fire"))


def test_the_hash_pins_weights_labels_and_seed() -> None:
    def digest(labels: tuple[str, ...] = LABELS, seed: int = 0) -> str:
        base = registry.load_base_model(registry.TINY_MODEL, labels, seed=seed)
        return registry.base_model_hash(base.model, base.descriptor)

    first = digest()
    assert digest() == first
    assert digest(seed=1) != first
    assert digest(labels=("fire", "flood")) != first


def test_the_bundled_model_classifies_text_and_image() -> None:
    base = registry.load_base_model(registry.BUNDLED_MODEL, LABELS, image_size=64)
    assert logits_of(base).shape == (2, 3)
    # A unique head name: `modules_to_save` would also catch EfficientNet's `_conv_head`.
    names = [n for n, _ in base.model.named_modules()]
    assert sum(n.endswith(registry.HEAD_NAME) for n in names) == 1


@pytest.mark.parametrize("make", [make_clip, make_siglip, make_llava])
def test_a_local_checkpoint_loads_by_path_and_trains_lora(tmp_path, make) -> None:
    folder = make(tmp_path / "checkpoint")
    base = registry.load_base_model(str(folder), LABELS, seed=3)
    assert logits_of(base).shape == (2, 3)
    model = train.wrap_with_lora(base, train.LoraSettings(rank=2), seed=3)
    trained = train.trainable_names(model)
    assert any("q_proj.lora_B" in n for n in trained)
    assert not any("lora_A" in n for n in trained)  # FFA-LoRA
    assert any(registry.HEAD_NAME in n for n in trained)
    # The adapter folder loads onto a fresh base with PEFT's own loader.
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(0.01)
    model.save_pretrained(str(tmp_path / "adapter"))
    fresh = registry.load_base_model(str(folder), LABELS, seed=3)
    loaded = PeftModel.from_pretrained(fresh.model, str(tmp_path / "adapter"))
    torch.testing.assert_close(logits_of(fresh, loaded), logits_of(base, model))


def test_the_hash_of_a_checkpoint_does_not_depend_on_its_folder(tmp_path) -> None:
    digests = set()
    for name in ("here", "there"):
        base = registry.load_base_model(str(make_clip(tmp_path / name)), LABELS)
        digests.add(registry.base_model_hash(base.model, base.descriptor))
    assert len(digests) == 1


def test_a_folder_of_another_kind_is_refused(tmp_path) -> None:
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(**tiny_text(20))).save_pretrained(str(tmp_path))
    save_tokenizer(tmp_path)
    with pytest.raises(ConfigError, match="neither a dual encoder"):
        registry.load_base_model(str(tmp_path), LABELS)


def test_a_participant_trains_a_checkpoint_named_in_its_config(tmp_path) -> None:
    from accord.participant.data import city_safety
    from accord.participant.data import incident_sets as benchmarks
    from tests.support.multimodal import checkpoint_trainer

    folder = make_siglip(tmp_path / "siglip")
    bench = city_safety.city_safety_benchmark(2, train_per_enterprise=24, test_per_enterprise=6)
    data = benchmarks.write_benchmark(bench, tmp_path / "data")[bench.enterprises[1].name]
    trainer = checkpoint_trainer(tmp_path / "s", folder, data)
    update = trainer.train_round(1)
    assert update.delta.shape == (trainer.parameter_count,)
    assert any("q_proj.lora_B" in n for n in train.trainable_names(trainer.model))
