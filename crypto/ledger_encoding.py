"""The bytes a ledger entry is hashed as: canonical JSON and the entry hash.

Part of the ledger format (the theory of operation is in ``ledger_chain``):
``entry_hash = SHA-256("accord/v1/ledger-entry" || F(version) || F(seq) || F(kind)
|| F(prev_hash) || F(canonical_json(body)))`` with ``F`` the framing of
``agreement.encode_fields``. The canonical JSON has sorted keys, no whitespace, ASCII
only, and no floats at all: a float is written as the string ``decimal(x)`` (``repr``,
which round-trips exactly), so that two implementations never disagree on the bytes that
were hashed.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from accord.crypto.agreement import encode_fields
from accord.errors import UsageError

__all__ = ["ENTRY_DOMAIN", "canonical_json", "decimal", "entry_hash"]

ENTRY_DOMAIN = b"accord/v1/ledger-entry"

_MAX_SAFE_INT = (1 << 53) - 1


def canonical_json(value: Any) -> bytes:
    """The one byte string a JSON value is hashed as.

    Sorted keys, no whitespace, ASCII with ``\\u`` escapes. Allowed: dicts with string
    keys, lists (or tuples), strings, booleans, None and integers of magnitude below
    2^53. Floats are refused: write them with ``decimal``.

    Raises:
        UsageError: the value holds a float or another type JSON cannot carry exactly.
    """
    _check_json(value, "body")
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def decimal(value: float) -> str:
    """A float as the exact decimal string a ledger stores (``repr``; read back with float).

    Raises:
        UsageError: the value is not finite.
    """
    number = float(value)
    if not math.isfinite(number):
        raise UsageError(f"a ledger number must be finite, not {number!r}")
    return repr(number)


def entry_hash(*, version: int, seq: int, kind: str, prev_hash: bytes, body: Any) -> bytes:
    """SHA-256 of an entry's content (everything but its hash and signature).

    Raises:
        UsageError: the body is not canonical JSON, or a field is out of range.
    """
    return hashlib.sha256(
        ENTRY_DOMAIN + encode_fields(version, seq, kind, bytes(prev_hash), canonical_json(body))
    ).digest()


def _check_json(value: Any, where: str) -> None:
    if value is None or isinstance(value, (bool, str)):
        return
    if isinstance(value, int):
        if abs(value) > _MAX_SAFE_INT:
            raise UsageError(f"{where}: integer {value} is beyond 2^53; write it as a string")
        return
    if isinstance(value, float):
        raise UsageError(f"{where}: floats are not canonical; write ledger.decimal({value!r})")
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_json(item, f"{where}[{index}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise UsageError(f"{where}: key {key!r} is not a string")
            _check_json(item, f"{where}.{key}")
        return
    raise UsageError(f"{where}: {type(value).__name__} is not a JSON value")
