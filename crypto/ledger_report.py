"""What checking a ledger found: a ``Report`` of ``Finding``s, each naming its ``Problem``.

``ledger_verify.verify_chain`` makes the report; the audit prints it, and
``Report.check`` raises ``IntegrityError`` for callers that only need a yes or no.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from accord.crypto.ledger_chain import Entry, SignedHead
from accord.errors import IntegrityError

__all__ = ["Finding", "Problem", "Report"]


class Problem(enum.Enum):
    """How an entry, or the ledger as a whole, failed verification."""

    MALFORMED = "malformed"
    MISSING = "missing"
    REORDERED = "reordered"
    DUPLICATED = "duplicated"
    EDITED = "edited"
    BAD_SIGNATURE = "bad signature"
    CHAIN_BROKEN = "chain broken"
    BAD_CHECKPOINT = "bad checkpoint"
    TRUNCATED = "truncated"
    FORKED = "forked"
    WRONG_KEY = "wrong key"
    BAD_HEAD = "bad signed head"
    EMPTY = "empty"


@dataclass(frozen=True)
class Finding:
    """One thing wrong with a ledger.

    Attributes:
        problem: what kind of failure.
        detail: a sentence saying what exactly.
        seq: the entry concerned (None when no single entry is).
        line: its 1-based line in the file (None when unknown).
    """

    problem: Problem
    detail: str
    seq: int | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = []
        if self.seq is not None:
            where.append(f"entry {self.seq}")
        if self.line is not None:
            where.append(f"line {self.line}")
        place = f"{', '.join(where)}: " if where else ""
        return f"{place}{self.problem.value}: {self.detail}"


@dataclass(frozen=True)
class Report:
    """What ``verify_chain`` found.

    Attributes:
        ledger_id: from the ``open`` entry (None if it is missing or broken).
        public_key: the key the signatures were checked with (None if none was known).
        key_from_ledger: True when that key was read from the ledger's own ``open``
            entry (trust on first use) rather than given by the caller.
        entries: every parsed entry, one per seq, in seq order (broken ones included).
        verified: the seqs whose hash and signature check out.
        findings: everything wrong, in the order found; empty when the ledger verifies.
        latest_head: the signed head of the last valid checkpoint, if any.
    """

    ledger_id: str | None
    public_key: bytes | None
    key_from_ledger: bool
    entries: tuple[Entry, ...]
    verified: frozenset[int]
    findings: tuple[Finding, ...]
    latest_head: SignedHead | None

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.findings

    @property
    def count(self) -> int:
        """Entries the ledger claims (highest seq + 1)."""
        return self.entries[-1].seq + 1 if self.entries else 0

    def check(self) -> None:
        """Return only if the ledger verifies.

        Raises:
            IntegrityError: naming the first finding and how many more there are.
        """
        if self.findings:
            more = len(self.findings) - 1
            tail = f" (and {more} more)" if more else ""
            raise IntegrityError(f"ledger {self.ledger_id or '?'}: {self.findings[0]}{tail}")
