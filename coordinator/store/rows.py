"""The typed values the coordinator store takes and returns, one per kind of record.

They are frozen, so a row read from the store cannot be changed by mistake and written
back; ``dataclasses.replace`` makes a changed copy. Times are seconds since the Unix
epoch. What each table may hold, and why, is in ``coordinator/store/database.py``'s
docstring; callers import these classes from here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from accord.crypto.profile import Profile

__all__ = [
    "AggregateInfo",
    "EventRow",
    "ParticipantRow",
    "ParticipantStatus",
    "RoundRow",
    "RoundSnapshot",
    "RoundStatus",
]


class ParticipantStatus(enum.Enum):
    """Whether a participant may take part in rounds."""

    ACTIVE = "active"
    REVOKED = "revoked"


class RoundStatus(enum.Enum):
    """A round's life: ``IN_FLIGHT`` -> ``FINISHED`` or ``ABORTED``, never back."""

    IN_FLIGHT = "in_flight"
    FINISHED = "finished"
    ABORTED = "aborted"


@dataclass(frozen=True)
class ParticipantRow:
    """One enrolled participant; only public material.

    ``enrolled_at`` is in seconds since the Unix epoch; ``ceremony_public`` is the X25519
    key the secret CKKS context is sealed to, None until the participant advertised one.
    """

    participant_id: str
    identity_public: bytes
    ceremony_public: bytes | None
    cert_fingerprint: str
    status: ParticipantStatus
    enrolled_at: float


@dataclass(frozen=True)
class RoundRow:
    """One round as recorded. ``begin_round`` takes one with the defaults below.

    ``config_json`` and ``outcome_json`` are JSON texts; times are seconds since the Unix
    epoch; ``stage`` is the orchestrator's name for where the round stands.
    """

    round: int
    profile: Profile
    config_json: str
    started_at: float
    stage: str
    status: RoundStatus = RoundStatus.IN_FLIGHT
    finished_at: float | None = None
    outcome_json: str | None = None
    abort_reason: str | None = None


@dataclass(frozen=True)
class RoundSnapshot:
    """What the orchestrator saved to resume a round in flight after a restart."""

    round: int
    stage: str
    snapshot: bytes


@dataclass(frozen=True)
class AggregateInfo:
    """The stored aggregate of a round: how many chunks and bytes, without reading them."""

    round: int
    chunk_count: int
    total_bytes: int


@dataclass(frozen=True)
class EventRow:
    """One ledger event; ``seq`` runs 1, 2, 3, ... with no gap."""

    seq: int
    round: int | None
    kind: str
    body_json: str
