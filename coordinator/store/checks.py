"""The checks every store call makes on its arguments before it opens a transaction.

A wrong type or value here is the coordinator's own misuse of the store
(``InternalError``), never a peer's fault.
"""

from __future__ import annotations

import json
from typing import Any

from accord.coordinator.store.rows import ParticipantStatus
from accord.errors import InternalError

__all__ = ["check_bigint", "check_bytes", "check_json", "check_status", "check_text", "first"]

_MAX_BIGINT = 2**63 - 1


def first(row: tuple[Any, ...] | None) -> Any:
    if row is None:
        raise AssertionError("an aggregate query returned no row")
    return row[0]


def check_bigint(value: object, what: str) -> None:
    """A round or sequence number: what a BIGINT column holds, and never negative."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MAX_BIGINT:
        raise InternalError(f"{what} {value!r}: must be an integer in [0, 2**63)")


def check_status(status: object) -> None:
    if not isinstance(status, ParticipantStatus):
        raise InternalError(f"participant status {status!r}: use ParticipantStatus")


def check_text(value: object, what: str) -> None:
    if not isinstance(value, str) or not value:
        raise InternalError(f"{what} {value!r}: must be a non-empty string")


def check_bytes(value: object, what: str) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise InternalError(f"{what}: must be bytes, not {type(value).__name__}")
    return bytes(value)


def check_json(value: object, what: str) -> None:
    if not isinstance(value, str):
        raise InternalError(f"{what}: must be a JSON text, not {type(value).__name__}")
    try:
        json.loads(value)
    except ValueError as exc:
        raise InternalError(f"{what}: not valid JSON ({exc.args[0]})") from None
