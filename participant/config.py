"""A participant's settings: one `[participant]` table in a TOML file.

Every setting but `name` has a default that works on one machine. Relative paths
resolve against the file's folder. Settings the whole federation must share (the base
model's seed and the adapter's shape) are checked at enrolment: the coordinator
refuses a participant whose base model hash or adapter size differs.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from accord.configfile import resolve_path
from accord.transport import DEFAULT_MAX_MESSAGE_BYTES

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"


class ParticipantConfig(BaseModel):
    """Settings of one participant daemon (`accord participant run --config FILE`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    name: str = Field(
        pattern=NAME_PATTERN, description="this participant's id, as listed by the coordinator"
    )
    federation_id: str = Field(
        "accord-demo", pattern=NAME_PATTERN, description="the federation to join"
    )
    coordinator: str = Field(
        "127.0.0.1:50051",
        pattern=r"^[^\s:]+:[0-9]{1,5}$|^\[[0-9a-fA-F:]+\]:[0-9]{1,5}$",
        description="host:port of the coordinator's gRPC server",
    )
    state_dir: Path = Field(
        Path("participant"),
        description="folder for this participant's adapters, metrics and logs",
    )
    data_dir: Path | None = Field(
        None, description="folder of local training data; unset trains on synthetic data"
    )
    identity_key: Path = Field(
        Path("identity.pem"),
        description="Ed25519 identity private key (PKCS#8 PEM) issued at provisioning",
    )
    seed: int = Field(0, ge=0, description="seed of this participant's data and training noise")
    model_seed: int = Field(
        0, ge=0, description="seed of the base model and first adapter; the same for everyone"
    )
    samples: int = Field(256, ge=1, description="synthetic training samples (its FedAvg weight)")
    local_steps: int = Field(20, ge=1, description="optimizer steps per round")
    batch_size: int = Field(32, ge=1, description="samples per optimizer step")
    learning_rate: float = Field(0.05, gt=0, description="SGD learning rate of local training")
    lora_rank: int = Field(4, ge=1, description="rank r of the LoRA adapter")
    poll_s: float = Field(10.0, gt=0, description="seconds one long-poll for a task may wait")
    connect_timeout_s: float = Field(
        60.0, gt=0, description="seconds to wait for the coordinator to answer at start"
    )
    max_message_bytes: int = Field(
        DEFAULT_MAX_MESSAGE_BYTES,
        ge=1 << 20,
        description="largest gRPC message accepted, in bytes (at least 1 MiB)",
    )
    insecure_plaintext: bool = Field(
        False,
        description="connect without TLS; allowed only for tests and demos until mTLS arrives "
        "with provisioning (issue #4)",
    )

    @field_validator("state_dir", "data_dir", "identity_key")
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
