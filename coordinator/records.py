"""The typed values that cross between the orchestrator and the gRPC service.

`convert.py` turns them into `accord.v1` messages and back; the orchestrator never
sees a protobuf. Sizes and timings only: nothing here holds a payload except an
`Upload` on its way in, which is kept out of logs and summed, never stored.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from accord.coordinator.aggregation.spool import Spool
from accord.crypto.ceremony import CeremonyKey
from accord.crypto.lifecycle import Lifecycle
from accord.crypto.messages import CoordinatorMessage, RoundConfig, Stage


@dataclass(frozen=True)
class Header:
    """The routing fields every participant request carries (`RequestHeader`)."""

    federation_id: str
    round: int
    stage: Stage | None
    participant: str
    sequence: int = 0
    signature: bytes = b""


@dataclass(frozen=True)
class Assignment:
    """What one participant should do now; `NextTask` answers with it.

    `stage` is the round's stage when the participant takes part in `round`, else
    None and `lifecycle` says why it waits.
    """

    lifecycle: Lifecycle
    round: int
    stage: Stage | None
    config: RoundConfig | None = None
    survivors: tuple[str, ...] = ()
    message: str = ""
    inbox: CoordinatorMessage | None = None
    ceremony_keys: tuple[CeremonyKey, ...] = ()
    key_epoch: int = 0
    ledger_head: bytes = b""
    ledger_public_key: bytes = b""


@dataclass(frozen=True)
class SealedKey:
    """The CKKS key sealed to one participant, with the maker's signature over it."""

    envelope: bytes
    signature: bytes


@dataclass(frozen=True)
class KeyState:
    """The federation's current CKKS key as the coordinator knows it: public parts only.

    `holders` received the key in the ceremony of `epoch` (the maker included); a round
    selects only holders, and an online member without the key triggers a new ceremony.
    """

    epoch: int = 0
    maker: str = ""
    public: bytes = b""
    sealed: dict[str, SealedKey] = field(default_factory=dict)
    holders: frozenset[str] = frozenset()


@dataclass
class RoundRecord:
    """Timings and sizes of one round; sizes only, never a payload."""

    round: int
    started_s: float
    stage_durations_s: dict[str, float] = field(default_factory=dict)
    duration_s: float = 0.0
    outcome: Stage | None = None
    selected: tuple[str, ...] = ()
    survivors: tuple[str, ...] = ()
    bytes_up: dict[str, int] = field(default_factory=dict)
    bytes_down: dict[str, int] = field(default_factory=dict)
    message: str = ""


@dataclass
class Upload:
    """One participant's upload while it streams in, checked but not yet summed.

    Its chunks wait on disk (`Spool`), not in memory.
    """

    participant: str
    round: int
    chunks: Spool
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)
    bytes: int = 0
    started_s: float = 0.0


@dataclass(frozen=True)
class Status:
    """A snapshot for `GetStatus`."""

    lifecycle: Lifecycle
    round: int
    stage: Stage | None
    rounds_completed: int
    rounds_planned: int
    members: tuple[tuple[str, bool, str, int, int], ...]
    recent_rounds: tuple[RoundRecord, ...]
