"""The coordinator's settings: one `[coordinator]` table in a TOML file.

Every setting has a default that works on one machine except the federation's
members. With mTLS (the default) they come from provisioning: `tls_dir` and `roster`
name what `accord provision federation.toml --out DIR` wrote to `DIR/coordinator/`,
and the roster lists the participants and their identity keys. Only with
`insecure_plaintext = true` (loopback debugging) does the file list `participants` and
their `identity_keys` itself, as `accord demo --insecure-plaintext` writes them.
Relative paths resolve against the file's folder.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from accord.core.configfile import resolve_path
from accord.core.transport import DEFAULT_MAX_MESSAGE_BYTES
from accord.crypto.profile import Profile

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
"""Participant and federation ids: lower case, digits, `-` and `_`, at most 63 characters."""

_HEX_KEY_LENGTH = 64


class ClientDpConfig(BaseModel):
    """`[coordinator.client_dp]`: client-level DP of the aggregate (DESIGN.md guarantee 4).

    Every round's parameters carry it; each participant adds its Skellam share of the
    noise to its quantized update before masking (`participant/client_dp_share.py`), and
    both ledgers record it. Absent, or `noise_multiplier = 0`: no client-level noise.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    noise_multiplier: float = Field(
        0.0,
        ge=0,
        description="z: the aggregate's noise standard deviation over clip_norm (0: off)",
    )
    honest_fraction: float = Field(
        1.0,
        gt=0,
        le=1,
        description="share of each round's participants assumed to add their noise share; "
        "each share is scaled so that this many suffice (lower it to tolerate cheaters, at "
        "the price of more total noise)",
    )
    delta: float = Field(1e-5, gt=0, lt=1, description="delta of the client-level epsilon")
    weight_cap: int = Field(
        1,
        ge=1,
        description="largest sample count one update may claim while the noise is on; 1 "
        "weighs every participant alike (DP-FedAvg), so no update is scaled below the "
        "noise's clipping bound",
    )

    @property
    def enabled(self) -> bool:
        return self.noise_multiplier > 0


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
        description="ids of the federation's participants; with mTLS, unset means every active "
        "participant of the roster",
    )
    identity_keys: dict[str, str] = Field(
        default_factory=dict,
        description="insecure_plaintext only: Ed25519 identity public key of each participant, "
        '`name = "<64 hex digits>"`; with mTLS the keys come from the roster',
    )
    tls_dir: Path | None = Field(
        None,
        description="folder with the coordinator's TLS files (server.pem, server.key, ca.pem) "
        "as `accord provision federation.toml --out DIR` writes them to DIR/coordinator; "
        "required unless insecure_plaintext = true",
    )
    roster: Path | None = Field(
        None,
        description="the federation's roster.json (DIR/coordinator/roster.json from `accord "
        "provision`); required unless insecure_plaintext = true",
    )
    terms: Path | None = Field(
        None,
        description="the CA-signed federation terms (DIR/coordinator/terms.signed from `accord "
        "provision`); the coordinator refuses to start if its settings depart from them, and "
        "rounds and enrolments are held to them",
    )
    threshold: int = Field(
        2, ge=2, description="least number of participants whose inputs are summed"
    )
    rounds: int = Field(
        2,
        ge=1,
        description="rounds to complete before the federation is finished; an aborted round "
        "is tried again under a new number, at most 3 numbers per planned round",
    )
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
    neighbour_degree: int = Field(
        0,
        ge=0,
        description="SecAgg+ neighbours per participant (even, >= threshold); 0 means everyone "
        "(the complete graph of SecAgg, right for small federations)",
    )
    modulus_bits: Literal[8, 12, 16, 24, 32] = Field(
        16, description="bits b of the aggregation group Z_2^b"
    )
    clip_norm: float = Field(
        40.0,
        gt=0,
        description="L2 bound C of one participant's update; set it just above the updates' "
        "delta_l2 (in the participants' metrics): 40 fits the multimodal trainer at lr 0.05 "
        "and 10-20 local steps (docs/ml.md, 'Clip norm and quantization')",
    )
    client_dp: ClientDpConfig | None = Field(
        None, description="[coordinator.client_dp]: client-level noise of the aggregate"
    )
    keep_aggregates: int = Field(
        4,
        ge=0,
        description="finished rounds whose aggregate the store keeps, so that a participant "
        "that missed them (not selected, dropped, restarted) downloads them and catches up",
    )
    max_message_bytes: int = Field(
        DEFAULT_MAX_MESSAGE_BYTES,
        ge=1 << 20,
        description="largest gRPC message accepted, in bytes (at least 1 MiB)",
    )
    rate_limit_per_s: float = Field(
        50.0,
        gt=0,
        description="requests per second each participant may make, sustained; more are "
        "refused with RESOURCE_EXHAUSTED (a daemon makes a few per second)",
    )
    rate_limit_burst: int = Field(
        100, ge=1, description="requests one participant may make at once after a quiet spell"
    )
    stream_idle_s: float = Field(
        30.0,
        gt=0,
        description="seconds an upload stream may send nothing before it is ended with "
        "DEADLINE_EXCEEDED and its spool removed",
    )
    aggregation_workers: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        "auto",
        description="worker processes that hold and add the running sum, each a range of "
        'chunks (TenSEAL holds the GIL, so threads cannot); "auto" is one per CPU this '
        "process may use, at most 4 (set a number under a CPU quota, e.g. a Kubernetes "
        "limit, which it does not see); 0 or 1 sums in the coordinator's process. Vectors "
        "of under 4 chunks per worker (about 1M parameters per worker) are summed in process "
        "whatever the setting",
    )
    metrics_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="port of the Prometheus /metrics endpoint; unset disables it",
    )
    insecure_plaintext: bool = Field(
        False,
        description="serve without TLS (loopback debugging, tests and `--profile none` only); "
        "the default is mTLS from the files of `accord provision`",
    )

    @field_validator("state_dir")
    @classmethod
    def _resolve(cls, value: Path, info: ValidationInfo) -> Path:
        return resolve_path(value, info)

    @field_validator("tls_dir", "roster", "terms")
    @classmethod
    def _resolve_optional(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else resolve_path(value, info)

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
        if self.profile is Profile.NONE and not self.insecure_plaintext:
            raise ValueError(
                "profile = none sends updates in clear; it needs insecure_plaintext = true "
                "(benchmarks and demos only)"
            )
        if self.profile is Profile.NONE and self.client_dp is not None and self.client_dp.enabled:
            raise ValueError(
                "client_dp: client-level noise needs a secure profile (ckks+masks, ckks or "
                "masks); with profile = none set noise_multiplier = 0 or remove the table"
            )
        # With mTLS and no explicit list, the roster names the participants (`server.start`
        # checks the threshold against it).
        listed = self.insecure_plaintext or "participants" in self.model_fields_set
        if listed and self.threshold > len(self.participants):
            raise ValueError(
                f"threshold = {self.threshold} exceeds the {len(self.participants)} participants "
                "(lower it, or add participants)"
            )
        if listed and self.client_dp is not None and self.client_dp.enabled:
            self._check_client_dp(self.client_dp)
        if not self.insecure_plaintext:
            return self._check_tls()
        missing = [p for p in self.participants if p not in self.identity_keys]
        if missing:
            raise ValueError(
                f'identity_keys: no key for {", ".join(missing)} (add `name = "<64 hex digits>"`; '
                "`accord demo --insecure-plaintext` writes them)"
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
        return self

    def _check_client_dp(self, settings: ClientDpConfig) -> None:
        from accord.crypto.client_dp import ClientNoise, check_federation
        from accord.errors import ConfigError

        try:
            check_federation(
                ClientNoise(settings.noise_multiplier, settings.honest_fraction, settings.delta),
                modulus_bits=self.modulus_bits,
                clip_norm=self.clip_norm,
                participants=len(self.participants),
            )
        except ConfigError as error:
            raise ValueError(str(error)) from None

    def _check_tls(self) -> CoordinatorConfig:
        for field in ("tls_dir", "roster"):
            if getattr(self, field) is None:
                raise ValueError(
                    f"{field}: required unless insecure_plaintext = true (run `accord provision "
                    f'federation.toml --out DIR`, then set tls_dir = "DIR/coordinator" and '
                    'roster = "DIR/coordinator/roster.json")'
                )
        if self.identity_keys:
            raise ValueError(
                "identity_keys: only for insecure_plaintext = true; with mTLS the identity keys "
                "come from the roster (remove identity_keys)"
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
    def ledger_key_file(self) -> Path | None:
        """The provisioned key that signs the federation ledger (`tls_dir/ledger.key`).

        Every startup kit pins its public half. None with `insecure_plaintext` (no kits):
        the ledger then makes its own key in `state_dir` (`coordinator/federation_ledger.py`).
        """
        if self.insecure_plaintext or self.tls_dir is None:
            return None
        return self.tls_dir / "ledger.key"

    @property
    def resolved_store_url(self) -> str:
        """`store_url`, or the SQLite file in the state folder."""
        return self.store_url or f"sqlite:///{self.state_dir / 'coordinator.sqlite'}"

    def identities(self) -> dict[str, bytes]:
        """Each participant's raw Ed25519 identity public key from `identity_keys`.

        Empty with mTLS: `server.start` then takes the keys from the roster.
        """
        return {name: bytes.fromhex(key) for name, key in self.identity_keys.items()}
