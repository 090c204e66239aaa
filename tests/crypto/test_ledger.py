"""The ledger's chain: byte-exact vectors, and every kind of tampering found and named."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from accord.crypto import identity, ledger_verify
from accord.crypto import ledger_chain as chain
from accord.crypto import ledger_encoding as encoding
from accord.crypto.ledger_report import Finding, Problem, Report
from accord.crypto.ledger_verify import verify_chain
from accord.errors import BadSignature, IntegrityError, InternalError, UsageError

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
LEDGER_ID = "accord-demo/participant/energy"


def keypair(label: str) -> identity.KeyPair:
    return identity.generate_identity(lambda n: hashlib.sha256(label.encode()).digest()[:n])


KEY = keypair("ledger-writer")
OTHER = keypair("someone-else")


def build(rounds: int = 3) -> list[chain.Entry]:
    """open, checkpoint, then (round, checkpoint) per round: 2 + 2 * rounds entries."""
    entries = [chain.open_ledger(LEDGER_ID, KEY.private, {"role": "participant"})]
    entries.append(chain.checkpoint(entries[-1].head, LEDGER_ID, KEY.private))
    for number in range(1, rounds + 1):
        body = {"round": number, "epsilon": encoding.decimal(0.5 * number), "samples": 100}
        entries.append(chain.append(entries[-1].head, "round", body, KEY.private))
        entries.append(chain.checkpoint(entries[-1].head, LEDGER_ID, KEY.private))
    return entries


def lines_of(entries: list[chain.Entry]) -> list[str]:
    return [entry.to_line() for entry in entries]


def problems(report: Report) -> list[tuple[Problem, int | None]]:
    return [(finding.problem, finding.seq) for finding in report.findings]


def edit_body(line: str, change: dict[str, Any]) -> str:
    data = json.loads(line)
    data["body"].update(change)
    return json.dumps(data)


# ---- vectors ----


def test_the_library_writes_the_stored_ledger_byte_for_byte() -> None:
    document = json.loads((VECTORS / "ledger.json").read_text(encoding="utf-8"))
    secret = bytes.fromhex(document["identity_private"])
    public = bytes.fromhex(document["identity_public"])
    rows = document["rows"]
    head = chain.Head()
    for row in rows:
        if row["kind"] == chain.OPEN:
            extra = {k: v for k, v in row["body"].items() if k not in ("ledger_id", "public_key")}
            entry = chain.open_ledger(document["ledger_id"], secret, extra)
        elif row["kind"] == chain.CHECKPOINT:
            entry = chain.checkpoint(head, document["ledger_id"], secret)
        else:
            entry = chain.append(head, row["kind"], row["body"], secret)
        assert entry.to_line() == row["line"]
        assert chain.Entry.from_line(row["line"]) == entry
        head = entry.head
    report = verify_chain([row["line"] for row in rows], public)
    assert report.ok and report.count == len(rows)
    signed = chain.sign_head(head, document["ledger_id"], secret)
    assert signed.to_bytes() == document["signed_head"].encode("ascii")
    assert chain.SignedHead.from_bytes(signed.to_bytes()) == signed
    assert report.latest_head == chain.head_of_checkpoint(report.entries[-1])


# ---- encoding ----


def test_canonical_json_is_sorted_compact_ascii_and_refuses_floats() -> None:
    assert encoding.canonical_json({"b": 1, "a": ["é", None, True]}) == (
        b'{"a":["\\u00e9",null,true],"b":1}'
    )
    with pytest.raises(UsageError, match=r"floats are not canonical"):
        encoding.canonical_json({"epsilon": 1.5})
    with pytest.raises(UsageError, match="2\\^53"):
        encoding.canonical_json({"n": 1 << 60})
    assert encoding.decimal(1e-5) == "1e-05" and float(encoding.decimal(0.1)) == 0.1
    with pytest.raises(UsageError, match="finite"):
        encoding.decimal(float("nan"))


def test_a_clean_ledger_verifies_with_its_key_and_names_itself() -> None:
    entries = build()
    report = verify_chain(lines_of(entries), KEY.public)
    assert report.ok, report.findings
    assert report.ledger_id == LEDGER_ID and report.public_key == KEY.public
    assert not report.key_from_ledger
    assert report.verified == frozenset(range(len(entries)))
    assert report.latest_head is not None and report.latest_head.count == len(entries) - 1
    report.check()
    # Without a key the ledger's own is used, and the report says so.
    assert verify_chain(lines_of(entries)).key_from_ledger


def test_signed_heads_verify_only_with_the_writers_key() -> None:
    head = chain.sign_head(build()[-1].head, LEDGER_ID, KEY.private)
    chain.verify_head(head, KEY.public)
    with pytest.raises(BadSignature):
        chain.verify_head(head, OTHER.public)
    with pytest.raises(IntegrityError):
        chain.SignedHead.from_bytes(b"{}")


# ---- tampering, each found and named ----


def test_an_edited_number_is_named_as_an_edit_of_that_entry() -> None:
    lines = lines_of(build())
    lines[4] = edit_body(lines[4], {"epsilon": "0.01"})
    report = verify_chain(lines, KEY.public)
    assert problems(report) == [(Problem.EDITED, 4)]
    assert report.findings[0].line == 5
    assert "no longer matches its hash" in str(report.findings[0])
    with pytest.raises(IntegrityError, match=r"entry 4, line 5: edited"):
        report.check()


def test_an_edit_whose_hash_was_recomputed_is_still_an_edit() -> None:
    entries = build()
    target = entries[4]
    body = {**target.body, "samples": 1}
    forged = chain.Entry(
        version=1,
        seq=target.seq,
        kind=target.kind,
        prev_hash=target.prev_hash,
        body=body,
        hash=encoding.entry_hash(
            version=1, seq=target.seq, kind=target.kind, prev_hash=target.prev_hash, body=body
        ),
        signature=target.signature,
    )
    lines = lines_of(entries)
    lines[4] = forged.to_line()
    report = verify_chain(lines, KEY.public)
    assert problems(report) == [(Problem.EDITED, 4)]
    assert "entry 5 still names the original" in report.findings[0].detail


def test_a_dropped_entry_is_named_as_missing() -> None:
    lines = lines_of(build())
    del lines[4]
    report = verify_chain(lines, KEY.public)
    assert problems(report) == [(Problem.MISSING, 4)]
    assert "entry 4 is not in the ledger" in str(report.findings[0])


def test_reordered_entries_are_named() -> None:
    lines = lines_of(build())
    lines[4], lines[5] = lines[5], lines[4]
    report = verify_chain(lines, KEY.public)
    assert problems(report) == [(Problem.REORDERED, 4)]
    assert "entry 4, line 6: reordered: it comes after entry 5" in str(report.findings[0])
    # Moving entry 6 before 4: both entries it jumped over now come after it.
    lines = lines_of(build())
    lines.insert(4, lines.pop(6))
    assert problems(verify_chain(lines, KEY.public)) == [
        (Problem.REORDERED, 4),
        (Problem.REORDERED, 5),
    ]


def test_swapped_signatures_are_named_on_both_entries() -> None:
    entries = build()
    lines = [json.loads(line) for line in lines_of(entries)]
    lines[2]["signature"], lines[4]["signature"] = lines[4]["signature"], lines[2]["signature"]
    report = verify_chain([json.dumps(line) for line in lines], KEY.public)
    assert problems(report) == [(Problem.BAD_SIGNATURE, 2), (Problem.BAD_SIGNATURE, 4)]


def test_a_cut_tail_is_found_by_the_closing_checkpoint_or_a_kept_head() -> None:
    entries = build()
    lines = lines_of(entries)
    # Cut between an entry and its checkpoint: the ledger no longer ends with one.
    assert problems(verify_chain(lines[:-1], KEY.public)) == [(Problem.TRUNCATED, 6)]
    # Cut at a checkpoint: only a head kept elsewhere shows it.
    assert verify_chain(lines[:-2], KEY.public).ok
    kept = chain.head_of_checkpoint(entries[-1])
    report = verify_chain(lines[:-2], KEY.public, heads=[("the coordinator", kept)])
    assert problems(report) == [(Problem.TRUNCATED, 6)]
    assert "kept by the coordinator covers 7 entries; the ledger has 6" in str(report.findings[0])


def test_a_rewritten_history_is_forked_against_a_kept_head() -> None:
    entries = build()
    kept = chain.head_of_checkpoint(entries[-1])
    rewritten = entries[:4]
    body = {"round": 2, "epsilon": encoding.decimal(0.1), "samples": 100}
    rewritten.append(chain.append(rewritten[-1].head, "round", body, KEY.private))
    rewritten.append(chain.checkpoint(rewritten[-1].head, LEDGER_ID, KEY.private))
    rewritten.append(chain.append(rewritten[-1].head, "round", body, KEY.private))
    rewritten.append(chain.checkpoint(rewritten[-1].head, LEDGER_ID, KEY.private))
    report = verify_chain(lines_of(rewritten), KEY.public, heads=[("energy", kept)])
    assert problems(report) == [(Problem.FORKED, 6)]


def test_another_writers_key_is_named_once() -> None:
    report = verify_chain(lines_of(build()), OTHER.public)
    assert problems(report) == [(Problem.WRONG_KEY, 0)]
    assert report.verified == frozenset()


def test_a_head_of_another_key_or_ledger_is_a_bad_head() -> None:
    entries = build()
    foreign = chain.sign_head(entries[-1].head, LEDGER_ID, OTHER.private)
    other_ledger = chain.sign_head(entries[-1].head, "x/coordinator", KEY.private)
    report = verify_chain(
        lines_of(entries), KEY.public, heads=[("a", foreign), ("b", other_ledger)]
    )
    assert [f.problem for f in report.findings] == [Problem.BAD_HEAD, Problem.BAD_HEAD]


def test_malformed_and_duplicated_lines_and_bad_checkpoints_are_named() -> None:
    entries = build(1)
    lines = lines_of(entries)
    wrong = chain.append(
        entries[-1].head,
        chain.CHECKPOINT,
        {"ledger_id": LEDGER_ID, "count": 1, "head_hash": "00" * 32, "head_signature": "00" * 64},
        KEY.private,
    )
    tampered = [*lines, wrong.to_line(), lines[1], "not json", ""]
    report = verify_chain(tampered, KEY.public)
    assert problems(report) == [
        (Problem.MALFORMED, None),
        (Problem.DUPLICATED, 1),
        (Problem.BAD_CHECKPOINT, 4),
    ]
    assert report.findings[0].line == 7
    assert "claims 1 entries before it; there are 4" in report.findings[2].detail


def test_a_chain_link_to_a_foreign_entry_is_broken() -> None:
    entries = build(1)
    stranger = chain.append(chain.Head(4, b"\x01" * 32), "round", {"round": 9}, KEY.private)
    closing = chain.checkpoint(stranger.head, LEDGER_ID, KEY.private)
    report = verify_chain(lines_of([*entries, stranger, closing]), KEY.public)
    assert problems(report) == [(Problem.CHAIN_BROKEN, 4)]


def test_append_refuses_bad_kinds_and_bodies() -> None:
    with pytest.raises(InternalError, match="kind"):
        chain.append(chain.Head(), "Round!", {}, KEY.private)
    with pytest.raises(UsageError, match="floats"):
        chain.append(chain.Head(), "round", {"epsilon": 1.0}, KEY.private)
    with pytest.raises(InternalError, match="set by open_ledger"):
        chain.open_ledger(LEDGER_ID, KEY.private, {"public_key": "x"})


def test_a_check_in_kind_checks_runs_on_every_entry_of_its_kind_not_yet_found_edited(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_round_two(entry: chain.Entry, ledger: Any) -> Finding | None:
        if entry.body["round"] != 2:
            return None
        return Finding(Problem.MALFORMED, "round 2 is refused", entry.seq, ledger.lines[entry.seq])

    monkeypatch.setitem(ledger_verify.KIND_CHECKS, "round", no_round_two)
    lines = lines_of(build(3))
    lines[6] = edit_body(lines[6], {"round": 2})  # round 3, now claiming to be round 2
    report = verify_chain(lines, KEY.public)
    assert problems(report) == [(Problem.EDITED, 6), (Problem.MALFORMED, 4)]
    assert report.findings[1].line == 5
    assert report.latest_head is not None and report.latest_head.count == 5
