"""A ledger's writer without its file: the lines it asks for, verified; nothing it appends
counts until the role keeps the new book; a ledger it cannot vouch for is refused."""

from __future__ import annotations

import hashlib

import pytest

from accord.crypto import identity
from accord.crypto import ledger_chain as chain
from accord.crypto.ledger_book import LedgerBook
from accord.crypto.ledger_verify import verify_chain
from accord.errors import IntegrityError, UsageError

LEDGER_ID = "accord-demo/participant/energy"


def keypair(label: str) -> identity.KeyPair:
    return identity.generate_identity(lambda n: hashlib.sha256(label.encode()).digest()[:n])


KEY = keypair("ledger-writer")


def written(rounds: int) -> list[str]:
    """The lines a writer appended: a new ledger, then `rounds` round entries."""
    book, lines = LedgerBook.open(None, LEDGER_ID, KEY.private, open_body={"role": "participant"})
    for number in range(1, rounds + 1):
        book, new = book.append("round", {"round": number})
        lines += new
    return lines


def test_a_new_ledger_is_its_open_entry_and_a_checkpoint_and_verifies() -> None:
    book, lines = LedgerBook.open(None, LEDGER_ID, KEY.private, open_body={"role": "participant"})
    assert [entry.kind for entry in book.entries] == [chain.OPEN, chain.CHECKPOINT]
    assert lines == [entry.to_line() for entry in book.entries]
    report = verify_chain(lines, KEY.public)
    assert report.ok and report.ledger_id == LEDGER_ID
    assert book.entries[0].body["role"] == "participant"
    assert book.public_key == KEY.public
    chain.verify_head(book.signed_head(), KEY.public)
    assert book.signed_head().count == 1


def test_append_returns_the_next_book_and_its_two_lines_and_leaves_this_one_as_it_was() -> None:
    book, _ = LedgerBook.open(None, LEDGER_ID, KEY.private)
    after, lines = book.append("round", {"round": 1})
    assert len(book.entries) == 2  # a write that fails leaves the role's book as it was
    assert [entry.kind for entry in after.entries[2:]] == ["round", chain.CHECKPOINT]
    assert lines == [entry.to_line() for entry in after.entries[2:]]
    assert after.entries[-2].body == {"round": 1}
    assert after.signed_head().count == 3
    with pytest.raises(UsageError, match="floats"):
        book.append("round", {"epsilon": 0.5})


def test_a_verified_ledger_reopens_with_nothing_to_append() -> None:
    lines = written(2)
    book, new = LedgerBook.open([*lines, ""], LEDGER_ID, KEY.private)
    assert new == []
    assert [entry.to_line() for entry in book.entries] == lines


def test_a_ledger_whose_torn_checkpoint_was_set_aside_is_closed_again() -> None:
    lines = written(1)[:-1]  # the round entry's checkpoint was the torn line
    book, new = LedgerBook.open(lines, LEDGER_ID, KEY.private, torn_tail=True)
    assert [entry.kind for entry in book.entries][-2:] == ["round", chain.CHECKPOINT]
    assert verify_chain([*lines, *new], KEY.public).ok
    with pytest.raises(IntegrityError, match="truncated"):
        LedgerBook.open(lines, LEDGER_ID, KEY.private)  # cut without a torn line: refused


def test_a_ledger_the_writer_cannot_vouch_for_is_refused_with_its_first_finding() -> None:
    lines = written(1)
    edited = [lines[0], lines[1], lines[2].replace('"round":1', '"round":7'), lines[3]]
    with pytest.raises(IntegrityError, match=r"ledger\.jsonl: .*entry 2, line 3: edited"):
        LedgerBook.open(edited, LEDGER_ID, KEY.private, where="ledger.jsonl")
    with pytest.raises(IntegrityError, match="wrong key"):
        LedgerBook.open(lines, LEDGER_ID, keypair("mallory").private)
    with pytest.raises(IntegrityError, match="the ledger of 'accord-demo/participant/energy'"):
        LedgerBook.open(lines, "accord-demo/participant/urban", KEY.private, torn_tail=True)
