"""The coordinator's own records: its CKKS key state and an upload on its way in.

The values that cross the wire (`Header`, `Assignment`, `SealedKey`, `RoundRecord`,
`Status`) live with their converters in `accord.wire`; the orchestrator never sees a
protobuf. Nothing here holds a payload except an `Upload` on its way in, which is kept
out of logs and summed, never stored.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from accord.coordinator.aggregation.spool import Spool
from accord.wire.ceremony import SealedKey


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
