"""A ledger's writer without its file: the lines to append, and the signed head others keep.

Theory of operation (the chain and its signatures are ``ledger_chain``'s, their checks
``ledger_verify``'s; DESIGN.md section 4: writing the file is the role's job):

- A writer closes every write with a checkpoint, so a ledger it wrote ends with one. A
  new ledger is two lines: the ``open`` entry and its checkpoint. Appending an entry is
  two lines too: the entry and a checkpoint after it, which the role writes at once.
- An existing ledger is verified with the writer's own key before anything is appended:
  a writer never appends to a ledger it cannot vouch for, nor to another ledger's.
- A crash can leave a last line without its newline (a torn write, never fsynced, so
  nothing it recorded was acted on). The role's file store sets such a fragment aside
  (``accord.core.ledger_store``); when the entry before it then lacks its checkpoint,
  and that is the only finding, the book closes the ledger with one.

A ``LedgerBook`` is a value: ``open`` and ``append`` return a book and the lines to
append to the file, and the role keeps the new book only once those lines are on disk,
so a write that fails changes nothing. Nothing here reads or writes a file:

    lines, torn = ledger_store.read_for_append(path)     # None: no ledger there yet
    book, new = LedgerBook.open(lines, ledger_id, key, torn_tail=torn, where=str(path))
    ledger_store.append_lines(path, new)
    book2, new = book.append("round", body)               # book2.entries[-2]: the entry
    ledger_store.append_lines(path, new); book = book2
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from accord.crypto import identity
from accord.crypto import ledger_chain as chain
from accord.crypto.ledger_report import Problem, Report
from accord.crypto.ledger_verify import verify_chain
from accord.errors import IntegrityError

__all__ = ["LedgerBook"]


@dataclass(frozen=True)
class LedgerBook:
    """One ledger's verified entries and its writer's key (make it with ``LedgerBook.open``).

    Attributes:
        ledger_id: the ledger's name, e.g. ``accord-demo/participant/energy``.
        identity_private: the writer's raw Ed25519 private key.
        entries: the verified entries, in order (checkpoints included).
    """

    ledger_id: str
    identity_private: bytes = field(repr=False)
    entries: tuple[chain.Entry, ...]

    @classmethod
    def open(
        cls,
        lines: Sequence[str] | None,
        ledger_id: str,
        identity_private: bytes,
        *,
        open_body: Mapping[str, Any] | None = None,
        torn_tail: bool = False,
        where: str = "the ledger",
    ) -> tuple[LedgerBook, list[str]]:
        """The book of the ledger `lines` hold, and the lines to append to it first.

        Args:
            lines: the file's lines in order; None when there is no ledger yet (then
                the book starts one: its open entry and a checkpoint).
            ledger_id: the ledger's name; an existing ledger must carry the same.
            identity_private: the writer's key; an existing ledger must be signed by it.
            open_body: extra fields of the open entry of a new ledger (role, names).
            torn_tail: the store set an unterminated last line aside before reading.
            where: the ledger as messages name it (its path).

        Returns:
            The book, and the lines to append (none for a ledger that verifies as it is).

        Raises:
            IntegrityError: the existing ledger does not verify, or is another ledger's
                (the first finding is named; `accord audit verify` lists them all).
        """
        if lines is None:
            first = chain.open_ledger(ledger_id, identity_private, open_body)
            new = (first, chain.checkpoint(first.head, ledger_id, identity_private))
            return cls(ledger_id, identity_private, new), _to_lines(new)
        report = verify_chain(lines, identity.public_from_private(identity_private))
        last = report.entries[-1] if report.entries else None
        closing: tuple[chain.Entry, ...] = ()
        if torn_tail and last is not None and _only_unclosed(report, last.seq):
            closing = (chain.checkpoint(last.head, ledger_id, identity_private),)
        elif report.findings:
            raise IntegrityError(
                f"{where}: the ledger does not verify ({report.findings[0]}); see `accord audit "
                f"verify {where}`, and keep the file as evidence: move it aside to start a new "
                "ledger"
            )
        if report.ledger_id != ledger_id:
            raise IntegrityError(
                f"{where}: the ledger of {report.ledger_id!r}, not of {ledger_id!r}; move it aside"
            )
        book = cls(ledger_id, identity_private, (*report.entries, *closing))
        return book, _to_lines(closing)

    @property
    def head(self) -> chain.Head:
        """The head after the last entry."""
        return self.entries[-1].head

    @property
    def public_key(self) -> bytes:
        """The writer's raw Ed25519 public key."""
        return identity.public_from_private(self.identity_private)

    def signed_head(self) -> chain.SignedHead:
        """The signed head of the latest checkpoint (what others keep)."""
        for entry in reversed(self.entries):
            if entry.kind == chain.CHECKPOINT:
                return chain.head_of_checkpoint(entry)
        raise IntegrityError(f"ledger {self.ledger_id}: no checkpoint")  # pragma: no cover

    def append(self, kind: str, body: Mapping[str, Any]) -> tuple[LedgerBook, list[str]]:
        """The book with an entry and its checkpoint added, and their two lines to write.

        This book is left as it was: keep the new one once the lines are on disk. The
        entry is the new book's `entries[-2]` (its checkpoint follows it).

        Raises:
            UsageError: a body that is not canonical JSON (e.g. a float).
            InternalError: a kind of the wrong form.
        """
        entry = chain.append(self.head, kind, body, self.identity_private)
        closing = chain.checkpoint(entry.head, self.ledger_id, self.identity_private)
        book = LedgerBook(self.ledger_id, self.identity_private, (*self.entries, entry, closing))
        return book, _to_lines((entry, closing))


def _only_unclosed(report: Report, last_seq: int) -> bool:
    """True when the ledger's one finding is that its last entry lacks a checkpoint."""
    findings = report.findings
    return (
        len(findings) == 1
        and findings[0].problem is Problem.TRUNCATED
        and findings[0].seq == last_seq
    )


def _to_lines(entries: Sequence[chain.Entry]) -> list[str]:
    return [entry.to_line() for entry in entries]
