"""The participant's machine-learning settings: three sub-tables of `[participant]`.

    [participant]
    base_model = "accord/incident-dual-encoder"   # or a local checkpoint folder
    local_steps = 20          # existing flat settings keep their meaning:
    batch_size = 512          #   steps, (expected) batch, AdamW learning rate,
    learning_rate = 0.05      #   LoRA rank, seeds, data_dir
    lora_rank = 8

    [participant.training]    # TrainingConfig: adapter shape, local loop, server optimizer
    adapter = "ffa"
    fedprox_mu = 0.0

    [participant.dp]          # DpConfig: sample-level DP-SGD
    enabled = true
    target_epsilon = 8.0
    rounds = 10

    [participant.data_quality]
    exclude_flagged = true

pydantic only (no torch), so `participant/config.py` can import it cheaply. These
models, with the flat fields of `ParticipantConfig`, are the one place training settings
are typed, defaulted and validated; `local.LoraSettings` and `local.LocalSettings` are
plain records built from them (`from_config`) that take their defaults from here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from accord.core.configfile import resolve_path

BUNDLED_BASE_MODEL = "accord/incident-dual-encoder"


class TrainingConfig(BaseModel):
    """Adapter shape, local loop and server optimizer of the multimodal trainer."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    labels: list[str] | None = Field(
        None,
        description="the federation's label names in logit order; unset reads labels.json "
        "from data_dir, else the city-safety benchmark's labels",
    )
    adapter: Literal["ffa", "lora"] = Field(
        "ffa",
        description="'ffa': FFA-LoRA, A frozen from model_seed, only B trained and exchanged "
        "(exact aggregation); 'lora': A and B trained (inexact under averaging)",
    )
    lora_alpha: int | None = Field(None, gt=0, description="LoRA alpha; unset means 2 * rank")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the LoRA input")
    lora_target_modules: list[str] | None = Field(
        None, description="peft target_modules; unset uses the base model's defaults"
    )
    use_dora: bool = Field(False, description="DoRA is not supported; must stay false")
    tune_towers: bool = Field(
        False,
        description="false: towers frozen, their features cached once, only the fusion head "
        "trained (fast); true: LoRA on the towers trained too (slow on CPU)",
    )
    tower_learning_rate: float | None = Field(
        None,
        gt=0,
        description="AdamW's learning rate of the LoRA matrices in the towers (with "
        "tune_towers = true), their own parameter group; unset means learning_rate. "
        "The fusion head keeps learning_rate",
    )
    head_hidden: int = Field(
        0, ge=0, description="hidden width of the fusion head; 0 is a Linear head"
    )
    image_size: int = Field(
        64,
        ge=32,
        description="input side of the image tower, in pixels; 64 suits the benchmarks' small "
        "frames and a CPU; raise it (EfficientNet-Lite0 was trained at 224) for real photos",
    )
    local_epochs: float | None = Field(
        None, gt=0, description="passes over the local data per round; overrides local_steps"
    )
    grad_accumulation: int = Field(1, ge=1, description="micro-batches per optimizer step")
    weight_decay: float = Field(0.0, ge=0, description="AdamW's decoupled weight decay")
    fedprox_mu: float = Field(
        0.0, ge=0, description="FedProx proximal weight mu; 0 turns FedProx off"
    )
    server_optimizer: Literal["fedavg", "fedavgm", "fedadam"] = Field(
        "fedavg",
        description="how every participant applies the decrypted mean change to the global "
        "adapter (identically everywhere)",
    )
    server_learning_rate: float = Field(1.0, gt=0, description="server optimizer's step size")
    server_momentum: float = Field(0.9, ge=0, lt=1, description="FedAvgM momentum, FedAdam beta1")
    eval_data_dir: Path | None = Field(
        None,
        description="folder of a shared test set in the manifest layout (e.g. the benchmark's "
        "pooled-test); reported as pooled_accuracy",
    )
    report_local_only: bool = Field(
        False,
        description="also train a local-only model on the side and report its accuracy "
        "(the demo's comparison; its weights stay in state_dir, its DP steps are counted in "
        "the privacy ledger as a side training; doubles the cost of a round)",
    )
    personalize_round: int | None = Field(
        None,
        ge=1,
        description="the round in which this member also fine-tunes its personal model from "
        "the global adapter, on its own data with the round's DP settings (kept in state_dir "
        "for its own use, never aggregated or shared; its DP steps are counted in the privacy "
        "ledger as a side training). Set the federation's last round (with DP, at most "
        "[participant.dp] rounds); unset: no personal model",
    )
    personal_rounds: int = Field(
        5,
        ge=1,
        description="the personal model's fine-tuning, in rounds' worth of local steps",
    )
    personal_global_weight: float = Field(
        1 / 3,
        ge=0,
        lt=1,
        description="the personal model predicts (1 - w) * its own probabilities + w * the "
        "global adapter's: the global model's knowledge of what this member rarely sees "
        "(0: the fine-tuned model alone). Post-processing: no privacy cost",
    )
    feature_cache_dir: Path | None = Field(
        None,
        description="folder for cached tower features; unset means state_dir/features. "
        "Participants on one machine may share one (entries are keyed by model and data)",
    )
    torch_threads: int | None = Field(
        None,
        ge=1,
        description="CPU threads torch may use in this process; unset keeps torch's default. "
        "Set 1 when several participants share a machine (the demo)",
    )
    feature_batch_size: int = Field(
        64, ge=1, description="samples per forward pass when caching tower features"
    )

    @field_validator("eval_data_dir", "feature_cache_dir")
    @classmethod
    def _resolve(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else resolve_path(value, info)

    @field_validator("use_dora")
    @classmethod
    def _no_dora(cls, value: bool) -> bool:
        if value:
            raise ValueError(
                "refused, DoRA is not supported (its normalisation is not linear in the "
                "adapter, so secure aggregation would be inexact); set use_dora = false"
            )
        return value


class DpConfig(BaseModel):
    """Sample-level differential privacy of local training (DP-SGD, opacus)."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    enabled: bool = Field(False, description="train with DP-SGD")
    noise_multiplier: float | None = Field(
        None, gt=0, description="sigma; set this or target_epsilon"
    )
    target_epsilon: float | None = Field(
        None, gt=0, description="total epsilon for `rounds` rounds; set this or noise_multiplier"
    )
    delta: float = Field(1e-5, gt=0, lt=1, description="delta of the reported epsilon")
    max_grad_norm: float = Field(1.0, gt=0, description="per-sample L2 clipping bound C")
    accountant: Literal["rdp", "prv"] = Field(
        "rdp",
        description="opacus accountant: 'rdp' (Renyi DP, the default; the bound `accord audit` "
        "recomputes by default) or 'prv' (numerically tighter, seconds per calibration)",
    )
    rounds: int = Field(
        10, ge=1, description="rounds the target_epsilon budget covers; training stops after"
    )
    max_epsilon: float | None = Field(
        None,
        gt=0,
        description="hard limit: the daemon refuses (and records in its ledger) any round that "
        "would bring epsilon at `delta` above this, and stops contributing",
    )

    @model_validator(mode="after")
    def _one_noise_setting(self) -> DpConfig:
        if self.enabled and (self.noise_multiplier is None) == (self.target_epsilon is None):
            raise ValueError(
                "with enabled = true, set exactly one of noise_multiplier and target_epsilon"
            )
        return self


class DataQualityConfig(BaseModel):
    """What `accord participant check-data` found, and whether training skips it."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    exclude_flagged: bool = Field(
        False, description="drop the samples listed in flagged_file from training"
    )
    flagged_file: Path | None = Field(
        None,
        description="JSONL of flagged samples written by check-data; unset means "
        "DATA_DIR/flagged.jsonl",
    )

    @field_validator("flagged_file")
    @classmethod
    def _resolve(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else resolve_path(value, info)
