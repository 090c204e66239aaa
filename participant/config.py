"""A participant's settings: one `[participant]` table in a TOML file.

With mTLS (the default) the one required setting is `kit`, the startup kit folder
from `accord kit package` (or `accord provision federation.toml --out DIR`, which
writes `DIR/kits/<name>`): `name`, `federation_id`, `coordinator` and `identity_key`
are then taken from it (`coordinator` may still be overridden). Only with
`insecure_plaintext = true` (loopback debugging) are `name` and `identity_key` given
here instead. Every other setting has a default that works on one machine. Relative
paths resolve against the file's folder. Settings the whole federation must share (the
base model's seed and the adapter's shape) are checked at enrolment: the coordinator
refuses a participant whose base model hash or adapter size differs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from accord.core.configfile import resolve_path
from accord.core.transport import DEFAULT_MAX_MESSAGE_BYTES
from accord.participant.training.protocol import MULTIMODAL, reports_dp_accounting, trainer_class
from accord.participant.training.settings import (
    BUNDLED_BASE_MODEL,
    DataQualityConfig,
    DpConfig,
    TrainingConfig,
)

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"


class ParticipantConfig(BaseModel):
    """Settings of one participant daemon (`accord participant run --config FILE`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    name: str = Field(
        pattern=NAME_PATTERN,
        description="this participant's id, as listed by the coordinator (with a kit, the "
        "kit's participant id)",
    )
    federation_id: str = Field(
        "accord-demo", pattern=NAME_PATTERN, description="the federation to join"
    )
    coordinator: str = Field(
        "127.0.0.1:50051",
        pattern=r"^[^\s:]+:[0-9]{1,5}$|^\[[0-9a-fA-F:]+\]:[0-9]{1,5}$",
        description="host:port of the coordinator's gRPC server (with a kit, the kit's unless "
        "set here)",
    )
    kit: Path | None = Field(
        None,
        description="folder of this participant's startup kit (mTLS certificate and keys, "
        "identity key, pinned CA, coordinator address); the daemon needs one unless "
        "insecure_plaintext = true",
    )
    state_dir: Path = Field(
        Path("participant"),
        description="folder for this participant's adapters, metrics and logs",
    )
    data_dir: Path | None = Field(
        None,
        description="folder of local training data in the manifest layout (manifest.jsonl, "
        "labels.json, images/; see docs/ml.md); unset: the multimodal trainer takes enterprise "
        "`seed mod 3` of the synthetic city-safety benchmark",
    )
    identity_key: Path = Field(
        Path("identity.pem"),
        description="Ed25519 identity private key (PKCS#8 PEM); with a kit, the kit's identity.key",
    )
    seed: int = Field(0, ge=0, description="seed of this participant's data and training noise")
    model_seed: int = Field(
        0, ge=0, description="seed of the base model and first adapter; the same for everyone"
    )
    samples: int = Field(
        256, ge=1, description="demo trainers only: synthetic training samples (the FedAvg weight)"
    )
    local_steps: int = Field(20, ge=1, description="optimizer steps per round")
    batch_size: int = Field(32, ge=1, description="samples per optimizer step")
    learning_rate: float = Field(
        0.05,
        gt=0,
        description="learning rate of local training (AdamW for multimodal, SGD for lora-mlp); "
        "with AdamW the update's L2 grows like learning_rate * sqrt(local_steps * parameters): "
        "keep it below the coordinator's clip_norm (docs/ml.md)",
    )
    lora_rank: int = Field(4, ge=1, description="rank r of the LoRA adapter")
    base_model: str = Field(
        BUNDLED_BASE_MODEL,
        min_length=1,
        description="the multimodal trainer's base model: a registered name "
        "(accord/incident-dual-encoder, accord/tiny-dual-encoder) or a local Hugging Face "
        "checkpoint folder; the federation pins its hash",
    )
    training: TrainingConfig = Field(
        default_factory=TrainingConfig,
        description="[participant.training]: adapter shape, local loop, server optimizer",
    )
    dp: DpConfig = Field(
        default_factory=DpConfig, description="[participant.dp]: sample-level DP-SGD"
    )
    data_quality: DataQualityConfig = Field(
        default_factory=DataQualityConfig,
        description="[participant.data_quality]: use of check-data's findings",
    )
    poll_s: float = Field(10.0, gt=0, description="seconds one long-poll for a task may wait")
    connect_timeout_s: float = Field(
        60.0, gt=0, description="seconds to wait for the coordinator to answer at start"
    )
    max_message_bytes: int = Field(
        DEFAULT_MAX_MESSAGE_BYTES,
        ge=1 << 20,
        description="largest gRPC message accepted, in bytes (at least 1 MiB)",
    )
    trainer: str = Field(
        MULTIMODAL,
        description="local training: multimodal (the default: LoRA on base_model's image and "
        "text towers with a fusion head, on data_dir, DP-SGD when [participant.dp] enabled), "
        "or the import path package.module:Class of a class built as Class(config) that "
        "implements participant/training/protocol.py's Trainer: e.g. "
        "accord.demo.lora_mlp:LoraMlpTrainer (tests: a tiny LoRA MLP on synthetic regression "
        "data, no DP) or accord.demo.synthetic_trainer:SyntheticTrainer (benchmarks only: a "
        "bare float32 vector of synthetic_parameters, instant seeded updates, no DP)",
    )
    synthetic_parameters: int = Field(
        1_000_000, ge=1, description="adapter size of the synthetic trainer (benchmarks only)"
    )
    workers: int | Literal["auto"] = Field(
        "auto",
        description="processes that protect the upload and reveal the aggregate, chunk by "
        'chunk, pipelined with the stream ("auto": one per core this process may use; 1: '
        "all in the daemon's own thread)",
    )
    insecure_plaintext: bool = Field(
        False,
        description="connect without TLS (loopback debugging, tests and `--profile none` "
        "only); the default is mTLS with the startup kit",
    )

    @model_validator(mode="before")
    @classmethod
    def _from_kit(cls, data: Any, info: ValidationInfo) -> Any:
        """Take name, federation, coordinator and identity key from the kit's `kit.toml`."""
        if not isinstance(data, dict):
            return data
        kit = data.get("kit")
        if not isinstance(kit, (str, Path)):
            # No kit (the daemon refuses that without insecure_plaintext; training tools and
            # tests need none), or not a path (the field's own validation says so).
            return data
        from accord.errors import AccordError
        from accord.participant.kit.startup_kit import IDENTITY_KEY_FILE, KitManifest

        folder = resolve_path(Path(kit), info)
        try:
            manifest = KitManifest.read(folder)
        except AccordError as error:
            raise ValueError(f"kit = {str(folder)!r}: {error}") from None
        table = dict(data)
        owned = {"name": manifest.participant_id, "federation_id": manifest.federation_id}
        for field, value in owned.items():
            if table.setdefault(field, value) != value:
                raise ValueError(
                    f"{field} = {table[field]!r}, but the kit in {folder} says {value!r} "
                    f"(remove {field}: the kit sets it)"
                )
        table.setdefault("coordinator", manifest.coordinator)
        kit_key = folder / IDENTITY_KEY_FILE
        given = table.setdefault("identity_key", kit_key)
        if resolve_path(Path(given), info) != kit_key:
            raise ValueError(
                f"identity_key = {str(given)!r}, but the kit's identity key is {kit_key} "
                "(remove identity_key: the kit sets it)"
            )
        return table

    @model_validator(mode="after")
    def _dp_needs_a_private_trainer(self) -> ParticipantConfig:
        if self.dp.enabled and not reports_dp_accounting(self.trainer):
            raise ValueError(
                f"[participant.dp] enabled = true, but trainer = {self.trainer!r} trains "
                "without DP-SGD and reports no privacy accounting, so no update could be sent; "
                'set trainer = "multimodal" or [participant.dp] enabled = false'
            )
        return self

    @model_validator(mode="after")
    def _personal_round_within_the_budget(self) -> ParticipantConfig:
        round = self.training.personalize_round
        if self.dp.enabled and round is not None and round > self.dp.rounds:
            raise ValueError(
                f"[participant.training] personalize_round = {round}, but [participant.dp] "
                f"rounds = {self.dp.rounds}: this member trains no round after its budget's "
                f"last, so no personal model would be made; set personalize_round <= "
                f"{self.dp.rounds}"
            )
        personal = self.training.personal_rounds
        calibrated = self.dp.enabled and self.dp.target_epsilon is not None
        if round is not None and calibrated and personal > self.dp.rounds:
            raise ValueError(
                f"[participant.training] personal_rounds = {personal}, but the noise is "
                f"calibrated for [participant.dp] rounds = {self.dp.rounds} rounds of steps, "
                f"and no model may take more; set personal_rounds <= {self.dp.rounds}"
            )
        return self

    @field_validator("trainer")
    @classmethod
    def _trainer(cls, value: str) -> str:
        if value != MULTIMODAL:
            trainer_class(value)  # its ValueError names what is wrong; pydantic, the field
        return value

    @field_validator("workers")
    @classmethod
    def _workers(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError(f'workers = {value}: must be "auto" or an integer >= 1')
        return value

    @field_validator("state_dir", "data_dir", "identity_key", "kit")
    @classmethod
    def _resolve(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else resolve_path(value, info)

    @property
    def log_file(self) -> Path:
        """The structured log (JSON lines; never a payload)."""
        return self.state_dir / "participant.log"

    @property
    def adapters_dir(self) -> Path:
        """One PEFT adapter folder per applied round: `round-0001`, `round-0002`, ..."""
        return self.state_dir / "adapters"

    @property
    def metrics_file(self) -> Path:
        """One JSON line of training and evaluation metrics per round."""
        return self.state_dir / "metrics.jsonl"
