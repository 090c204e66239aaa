"""Checking a ledger: format, order, hash chain, signatures, checkpoints, kept heads.

``verify_chain`` never raises on a bad ledger: it returns a ``Report`` whose findings
name each broken entry and how (malformed, missing, reordered, duplicated, edited, bad
signature, chain broken, bad checkpoint, truncated, forked, wrong key; ``ledger_report``).
It runs one named check after another over the entries, each adding its findings; the
checks of one entry kind are ``KIND_CHECKS``, one function per kind. The format it checks,
and why a signed head kept elsewhere catches a cut tail, is ``ledger_chain``'s docstring.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from accord.crypto import identity
from accord.crypto.agreement import KEY_BYTES
from accord.crypto.ledger_chain import (
    CHECKPOINT,
    GENESIS_HASH,
    OPEN,
    Entry,
    SignedHead,
    head_of_checkpoint,
    hex_field,
    signature_statement,
    verify_head,
)
from accord.crypto.ledger_report import Finding, Problem, Report
from accord.errors import BadSignature, IntegrityError, UsageError

__all__ = ["KIND_CHECKS", "verify_chain"]


def verify_chain(
    items: Sequence[str | bytes | Entry],
    identity_public: bytes | None = None,
    *,
    heads: Sequence[tuple[str, SignedHead]] = (),
    require_closing_checkpoint: bool = True,
) -> Report:
    """Check a ledger: format, order, hash chain, signatures, checkpoints, kept heads.

    Args:
        items: the ledger's lines in file order (blank lines are skipped), or parsed
            entries; a line's position is its line number in findings.
        identity_public: the writer's raw Ed25519 public key, from a trusted source (the
            roster). None takes it from the ledger's ``open`` entry, which proves only
            that the ledger is internally consistent (``Report.key_from_ledger``).
        heads: signed heads kept by others, each with a label naming who kept it.
        require_closing_checkpoint: the ledger must end with a checkpoint (writers close
            every write with one, so a ledger that does not lost its tail).

    Returns:
        A ``Report``; ``report.ok`` is True only when nothing is wrong.
    """
    findings: list[Finding] = []
    ledger = _order(_parse(items, findings), findings)
    _check_key(ledger, identity_public)
    _check_entries(ledger)
    _check_links(ledger)
    latest_head = _check_kinds(ledger)
    if require_closing_checkpoint:
        _check_closing(ledger)
    _check_kept_heads(ledger, heads)
    return Report(
        ledger_id=ledger.ledger_id,
        public_key=ledger.key,
        key_from_ledger=identity_public is None,
        entries=tuple(entry for _, entry in sorted(ledger.entries.items())),
        verified=frozenset(set(ledger.entries) - ledger.edited - ledger.unsigned),
        findings=tuple(findings),
        latest_head=latest_head,
    )


@dataclass
class _Ledger:
    """What the checks of one ``verify_chain`` call share: the entries and what they found.

    Attributes:
        entries: one entry per seq (the first of duplicates).
        lines: each seq's line number in the file.
        highest: the highest seq present (-1 for none).
        findings: everything wrong so far, in the order found.
        ledger_id: from the ``open`` entry (None if it is missing or broken).
        key: the key the signatures are checked with (None if none is known).
        wrong_key: the ledger was opened for another key than the one given.
        edited: seqs whose content no longer matches (already named).
        unsigned: seqs whose signature was not verified.
    """

    entries: dict[int, Entry]
    lines: dict[int, int]
    highest: int
    findings: list[Finding]
    ledger_id: str | None = None
    key: bytes | None = None
    wrong_key: bool = False
    edited: set[int] = field(default_factory=set)
    unsigned: set[int] = field(default_factory=set)

    @property
    def count(self) -> int:
        """Entries the ledger claims (highest seq + 1)."""
        return self.highest + 1

    def add(self, problem: Problem, detail: str, seq: int) -> None:
        """Name a finding about the entry ``seq``."""
        self.findings.append(Finding(problem, detail, seq, self.lines[seq]))


def _parse(
    items: Sequence[str | bytes | Entry], findings: list[Finding]
) -> list[tuple[int, Entry]]:
    """Each line's entry with its line number; a line that does not parse is a finding."""
    parsed: list[tuple[int, Entry]] = []
    for line_number, item in enumerate(items, 1):
        if isinstance(item, Entry):
            parsed.append((line_number, item))
            continue
        if not item.strip():
            continue
        try:
            parsed.append((line_number, Entry.from_line(item)))
        except IntegrityError as error:
            findings.append(Finding(Problem.MALFORMED, str(error), line=line_number))
    return parsed


def _order(parsed: list[tuple[int, Entry]], findings: list[Finding]) -> _Ledger:
    """One entry per seq, ascending, none missing: duplicates, reorders and gaps are findings."""
    by_seq: dict[int, tuple[int, Entry]] = {}
    highest = -1
    for line_number, entry in parsed:
        if entry.seq in by_seq:
            first_line = by_seq[entry.seq][0]
            findings.append(
                Finding(
                    Problem.DUPLICATED,
                    f"a second entry with this seq (the first is on line {first_line})",
                    entry.seq,
                    line_number,
                )
            )
            continue
        by_seq[entry.seq] = (line_number, entry)
        if entry.seq < highest:
            findings.append(
                Finding(
                    Problem.REORDERED,
                    f"it comes after entry {highest} in the file",
                    entry.seq,
                    line_number,
                )
            )
        highest = max(highest, entry.seq)
    if not parsed and not findings:
        # A writer opens its ledger with entry 0 before anything else: a file with no entry
        # at all was emptied or never written, never a valid ledger.
        findings.append(Finding(Problem.EMPTY, "the ledger holds no entry (emptied or cut)"))
    findings.extend(_missing(by_seq, highest))
    return _Ledger(
        entries={seq: entry for seq, (_, entry) in by_seq.items()},
        lines={seq: line for seq, (line, _) in by_seq.items()},
        highest=highest,
        findings=findings,
    )


def _check_key(ledger: _Ledger, identity_public: bytes | None) -> None:
    """The open entry and the key: the given key, else the one the ledger names."""
    ledger.ledger_id, ledger_key = _opening(
        ledger.entries.get(0), ledger.findings, ledger.lines.get(0)
    )
    ledger.key = identity_public if identity_public is not None else ledger_key
    if identity_public is not None and ledger_key is not None and ledger_key != identity_public:
        ledger.wrong_key = True
        ledger.findings.append(
            Finding(
                Problem.WRONG_KEY,
                f"the ledger was opened for key {ledger_key.hex()[:16]}..., not the key "
                f"{identity_public.hex()[:16]}... it is checked against; no signature can verify",
                0,
                ledger.lines.get(0),
            )
        )


def _check_entries(ledger: _Ledger) -> None:
    """Each entry: its hash, then its signature."""
    for seq, entry in sorted(ledger.entries.items()):
        try:
            recomputed = entry.recomputed_hash()
        except UsageError as error:
            ledger.add(Problem.MALFORMED, str(error), seq)
            ledger.edited.add(seq)
            continue
        if recomputed != entry.hash:
            ledger.edited.add(seq)
            ledger.add(Problem.EDITED, f"its {entry.kind} content no longer matches its hash", seq)
            continue
        if ledger.key is None or ledger.wrong_key:
            ledger.unsigned.add(seq)
            continue
        _check_signature(ledger, ledger.key, seq, entry)


def _check_signature(ledger: _Ledger, key: bytes, seq: int, entry: Entry) -> None:
    """An entry's signature; a rewritten entry the next one still contradicts is an edit."""
    try:
        identity.verify(key, signature_statement(entry.hash), entry.signature, what="entry")
    except BadSignature:
        ledger.unsigned.add(seq)
        follower = ledger.entries.get(seq + 1)
        if follower is not None and follower.prev_hash != entry.hash:
            ledger.edited.add(seq)
            ledger.add(
                Problem.EDITED,
                f"its {entry.kind} content and hash were rewritten (the signature no "
                f"longer matches, and entry {seq + 1} still names the original)",
                seq,
            )
        else:
            ledger.add(
                Problem.BAD_SIGNATURE, "its signature does not verify with the ledger's key", seq
            )


def _check_links(ledger: _Ledger) -> None:
    """The chain: each entry names the hash of the one before."""
    entries, edited = ledger.entries, ledger.edited
    for seq, entry in sorted(entries.items()):
        expected = GENESIS_HASH if seq == 0 else None
        if seq > 0 and seq - 1 in entries:
            expected = entries[seq - 1].hash
        if expected is None or entry.prev_hash == expected:
            continue
        if seq in edited or seq - 1 in edited:
            continue  # already named
        ledger.add(
            Problem.CHAIN_BROKEN,
            "its prev_hash is not the hash of the entry before it"
            if seq
            else "the first entry must have a prev_hash of zeros",
            seq,
        )


def _check_kinds(ledger: _Ledger) -> SignedHead | None:
    """The checks of each entry's kind (``KIND_CHECKS``); returns the latest valid head.

    An entry whose content, or whose predecessor's, was edited is skipped: the edit is
    already named. The latest head is that of the last checkpoint that passes its check
    and whose signature verified.
    """
    latest_head: SignedHead | None = None
    for seq, entry in sorted(ledger.entries.items()):
        check = KIND_CHECKS.get(entry.kind)
        if check is None or seq in ledger.edited or seq - 1 in ledger.edited:
            continue  # an edit before it is already named
        finding = check(entry, ledger)
        if finding is not None:
            ledger.findings.append(finding)
        elif entry.kind == CHECKPOINT and seq not in ledger.unsigned:
            latest_head = head_of_checkpoint(entry)
    return latest_head


def _check_checkpoint(entry: Entry, ledger: _Ledger) -> Finding | None:
    """A checkpoint must state the signed head of the entries before it."""
    key = ledger.key if not ledger.wrong_key else None
    problem = _checkpoint_problem(entry, ledger.entries, ledger.ledger_id, key)
    if problem is None:
        return None
    return Finding(Problem.BAD_CHECKPOINT, problem, entry.seq, ledger.lines[entry.seq])


KIND_CHECKS: dict[str, Callable[[Entry, _Ledger], Finding | None]] = {
    CHECKPOINT: _check_checkpoint,
}
"""The checks of one entry kind, by kind: a finding, or None when the entry passes."""


def _check_closing(ledger: _Ledger) -> None:
    """The ledger must end with a checkpoint (every write closes with one)."""
    count = ledger.count
    if count and count - 1 in ledger.entries:
        last = ledger.entries[count - 1]
        if last.kind != CHECKPOINT:
            ledger.add(
                Problem.TRUNCATED,
                f"the ledger ends with this {last.kind} entry and no checkpoint after it: "
                "its tail was cut off (every write closes with a checkpoint)",
                last.seq,
            )


def _check_kept_heads(ledger: _Ledger, heads: Sequence[tuple[str, SignedHead]]) -> None:
    """Heads kept by others: each must be this ledger's, and cover no more than it holds."""
    for label, signed in heads:
        ledger.findings.extend(
            _against_head(
                label,
                signed,
                ledger.entries,
                ledger.lines,
                ledger.count,
                ledger.ledger_id,
                ledger.key,
            )
        )


def _missing(by_seq: Mapping[int, tuple[int, Entry]], highest: int) -> list[Finding]:
    """One finding per run of absent seqs below the highest one present."""
    found: list[Finding] = []
    seq = 0
    while seq <= highest:
        if seq in by_seq:
            seq += 1
            continue
        start = seq
        while seq <= highest and seq not in by_seq:
            seq += 1
        stop = seq - 1
        after = by_seq[seq][0] if seq in by_seq else None
        what = f"entry {start} is" if start == stop else f"entries {start} to {stop} are"
        where = f" (before line {after})" if after is not None else ""
        found.append(Finding(Problem.MISSING, f"{what} not in the ledger{where}", start))
    return found


def _opening(
    entry: Entry | None, findings: list[Finding], line: int | None
) -> tuple[str | None, bytes | None]:
    """The ledger id and public key its ``open`` entry names (None, None if it cannot)."""
    if entry is None:
        return None, None  # reported as missing
    body = entry.body
    ledger_id = body.get("ledger_id")
    public_hex = body.get("public_key")
    if entry.kind != OPEN or not isinstance(ledger_id, str) or not isinstance(public_hex, str):
        findings.append(
            Finding(
                Problem.MALFORMED,
                "entry 0 must be the open entry naming ledger_id and public_key",
                0,
                line,
            )
        )
        return None, None
    try:
        public = hex_field(public_hex, KEY_BYTES, "public_key")
    except IntegrityError as error:
        findings.append(Finding(Problem.MALFORMED, str(error), 0, line))
        return ledger_id, None
    return ledger_id, public


def _checkpoint_problem(
    entry: Entry,
    entries: Mapping[int, Entry],
    ledger_id: str | None,
    key: bytes | None,
) -> str | None:
    try:
        signed = head_of_checkpoint(entry)
    except IntegrityError as error:
        return f"not a well-formed checkpoint ({error})"
    if signed.count != entry.seq:
        return f"it claims {signed.count} entries before it; there are {entry.seq}"
    before = entries.get(entry.seq - 1)
    if before is not None and before.hash != signed.head_hash:
        return f"the head hash it signs is not entry {entry.seq - 1}'s hash"
    if ledger_id is not None and signed.ledger_id != ledger_id:
        return f"it names ledger {signed.ledger_id!r}, not {ledger_id!r}"
    if key is not None:
        try:
            verify_head(signed, key)
        except BadSignature:
            return "the signed head it carries does not verify with the ledger's key"
    return None


def _against_head(
    label: str,
    signed: SignedHead,
    entries: Mapping[int, Entry],
    lines: Mapping[int, int],
    count: int,
    ledger_id: str | None,
    key: bytes | None,
) -> list[Finding]:
    if ledger_id is not None and signed.ledger_id != ledger_id:
        return [
            Finding(
                Problem.BAD_HEAD,
                f"the head kept by {label} is of ledger {signed.ledger_id!r}, not {ledger_id!r}",
            )
        ]
    if key is not None:
        try:
            verify_head(signed, key)
        except BadSignature:
            return [
                Finding(
                    Problem.BAD_HEAD,
                    f"the head kept by {label} is not signed by this ledger's key",
                )
            ]
    if signed.count > count:
        cut = (
            f"entry {count} is"
            if signed.count - count == 1
            else f"entries {count} to {signed.count - 1} are"
        )
        return [
            Finding(
                Problem.TRUNCATED,
                f"the signed head kept by {label} covers {signed.count} entries; the ledger has "
                f"{count}: {cut} cut off",
                count,
            )
        ]
    if signed.count == 0:
        return []
    last = entries.get(signed.count - 1)
    if last is not None and last.hash != signed.head_hash:
        return [
            Finding(
                Problem.FORKED,
                f"the signed head kept by {label} names another entry {signed.count - 1}: the "
                "ledger was rewritten from there on",
                signed.count - 1,
                lines.get(signed.count - 1),
            )
        ]
    return []
