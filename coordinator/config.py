"""The coordinator's settings: one `[coordinator]` table in a TOML file.

Every setting has a default that works on one machine except the federation's
members: `participants` and their `identity_keys` come from provisioning (issue #4;
`accord demo` writes them itself). Relative paths resolve against the file's folder.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from accord.configfile import resolve_path
from accord.crypto.profile import Profile
from accord.transport import DEFAULT_MAX_MESSAGE_BYTES

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
"""Participant and federation ids: lower case, digits, `-` and `_`, at most 63 characters."""

_HEX_KEY_LENGTH = 64


class CoordinatorConfig(BaseModel):
    """Settings of one coordinator process (`accord coordinator serve --config FILE`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    federation_id: str = Field(
        "accord-demo",
        pattern=NAME_PATTERN,
        description="name of the federation; every message carries it",
    )
    listen_host: str = Field("127.0.0.1", description="address the gRPC server binds")
    listen_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="TCP port of the gRPC server; 0 picks a free one and writes it to "
        "<state_dir>/port",
    )
    state_dir: Path = Field(
        Path("coordinator"), description="folder for the coordinator's store, port file and logs"
    )
    store_url: str | None = Field(
        None,
        description="where rounds are recorded; unset means sqlite:///<state_dir>/coordinator.sqlite",
    )
    profile: Profile = Field(
        Profile.CKKS_MASKS,
        description="protection of updates: one of ckks+masks, ckks, masks, none",
    )
    participants: list[str] = Field(
        default_factory=lambda: ["energy", "residential", "urban"],
        min_length=2,
        description="ids of the federation's participants",
    )
    identity_keys: dict[str, str] = Field(
        default_factory=dict,
        description='Ed25519 identity public key of each participant, `name = "<64 hex digits>"`, '
        "as issued at provisioning",
    )
    threshold: int = Field(
        2, ge=2, description="least number of participants whose inputs are summed"
    )
    rounds: int = Field(2, ge=1, description="rounds to run before the federation is finished")
    stage_deadline_s: float = Field(
        60.0, gt=0, description="seconds a round stage waits for late participants"
    )
    enroll_deadline_s: float = Field(
        120.0,
        gt=0,
        description="seconds the first round waits for every participant to enrol before it "
        "starts with at least `threshold`",
    )
    heartbeat_interval_s: float = Field(
        2.0, gt=0, description="seconds between a participant's heartbeats"
    )
    modulus_bits: Literal[8, 12, 16, 24, 32] = Field(
        16, description="bits b of the aggregation group Z_2^b"
    )
    clip_norm: float = Field(1.0, gt=0, description="L2 bound C of one participant's update")
    max_message_bytes: int = Field(
        DEFAULT_MAX_MESSAGE_BYTES,
        ge=1 << 20,
        description="largest gRPC message accepted, in bytes (at least 1 MiB)",
    )
    metrics_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="port of the Prometheus /metrics endpoint; unset disables it",
    )
    insecure_plaintext: bool = Field(
        False,
        description="serve without TLS on loopback; allowed only for tests and demos until mTLS "
        "arrives with provisioning (issue #4)",
    )

    @field_validator("state_dir")
    @classmethod
    def _resolve(cls, value: Path, info: ValidationInfo) -> Path:
        return resolve_path(value, info)

    @field_validator("participants")
    @classmethod
    def _unique_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.fullmatch(NAME_PATTERN, name):
                raise ValueError(
                    f"participant id {name!r} must be lower case letters, digits, - or _"
                )
        if len(set(value)) != len(value):
            raise ValueError("participant ids must be unique")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> CoordinatorConfig:
        if self.threshold > len(self.participants):
            raise ValueError(
                f"threshold = {self.threshold} exceeds the {len(self.participants)} participants "
                "(lower it, or add participants)"
            )
        missing = [p for p in self.participants if p not in self.identity_keys]
        if missing:
            raise ValueError(
                f'identity_keys: no key for {", ".join(missing)} (add `name = "<64 hex digits>"`; '
                "`accord demo` writes them, `accord provision` will)"
            )
        unknown = sorted(set(self.identity_keys) - set(self.participants))
        if unknown:
            raise ValueError(f"identity_keys: {', '.join(unknown)} is not in participants")
        for name, key in self.identity_keys.items():
            try:
                raw = bytes.fromhex(key)
            except ValueError:
                raw = b""
            if len(key) != _HEX_KEY_LENGTH or len(raw) != _HEX_KEY_LENGTH // 2:
                raise ValueError(
                    f"identity_keys.{name}: must be 64 hex digits (a raw Ed25519 public key)"
                )
        if self.profile is Profile.NONE and not self.insecure_plaintext:
            raise ValueError(
                "profile = none sends updates in clear; it needs insecure_plaintext = true "
                "(benchmarks and demos only)"
            )
        return self

    @property
    def port_file(self) -> Path:
        """Where a server started on port 0 writes the port it got."""
        return self.state_dir / "port"

    @property
    def log_file(self) -> Path:
        """The structured log (JSON lines; never a payload)."""
        return self.state_dir / "coordinator.log"

    @property
    def resolved_store_url(self) -> str:
        """`store_url`, or the SQLite file in the state folder."""
        return self.store_url or f"sqlite:///{self.state_dir / 'coordinator.sqlite'}"

    def identities(self) -> dict[str, bytes]:
        """Each participant's raw Ed25519 identity public key."""
        return {name: bytes.fromhex(key) for name, key in self.identity_keys.items()}
