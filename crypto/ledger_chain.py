"""Tamper-evident ledgers: a signed hash chain of JSON entries, with signed checkpoints.

Theory of operation (DESIGN.md guarantee 4 and section 3 step 5; the construction is
the classic one of Haber and Stornetta 1991 and of Certificate Transparency's signed
tree heads, RFC 6962 section 3.5, reduced to a linear chain):

- A ledger is a sequence of entries ``e_0, e_1, ...``. Entry ``e_k`` holds the format
  version, its sequence number ``k``, a ``kind`` (``open``, ``checkpoint``, or what the
  writing role defines: ``round``, ``applied``, ...), the hash of ``e_{k-1}``
  (``prev_hash``; 32 zero bytes for ``e_0``) and a JSON ``body``.
- ``entry_hash = SHA-256("accord/v1/ledger-entry" || F(version) || F(seq) || F(kind)
  || F(prev_hash) || F(canonical_json(body)))`` with ``F`` the framing of
  ``agreement.encode_fields``. The canonical JSON has sorted keys, no whitespace, ASCII
  only, and no floats at all: a float is written as the string ``decimal(x)``
  (``repr``, which round-trips exactly), so that two implementations never disagree on
  the bytes that were hashed.
- Each entry is signed with the writer's Ed25519 identity key over
  ``"accord/v1/ledger-entry-signature" || F(entry_hash)``; the signature is not part
  of the hash, so a swapped or forged signature is named as such, not as an edit.
- ``e_0`` is the ``open`` entry: it names the ledger (``ledger_id``) and the public key
  that signs it. A *signed head* is the statement ``"accord/v1/ledger-head" ||
  F(ledger_id) || F(count) || F(head_hash)`` and its signature: "this ledger had
  ``count`` entries and the last one hashed to ``head_hash``". A ``checkpoint`` entry
  carries the signed head of the entries before it. Writers close every write with a
  checkpoint, so a file that does not end with one lost its tail.
- A hash chain cannot show that its tail was cut off at a checkpoint. A signed head
  kept elsewhere can: participants keep the federation ledger's latest head, and the
  federation ledger records each participant's upload digests. ``verify_chain`` checks
  the chain against any heads it is given.

``verify_chain`` never raises on a bad ledger: it returns a ``Report`` whose findings
name each broken entry and how (malformed, missing, reordered, duplicated, edited, bad
signature, chain broken, bad checkpoint, truncated, forked, wrong key); ``Report.check``
raises ``IntegrityError`` for callers that only need a yes or no. Nothing here reads or
writes a file: the roles write, ``accord audit`` reads.

Whose keys the checks use is the auditor's question (issue 12, finding 7). A ledger
proves only that it is consistent with the key it names itself; it proves who wrote
it only when the key comes from the federation's CA, which the auditor pins:
``certified_identity`` accepts a participant's identity key only from a client
certificate the CA signed for that participant (its member-keys extension,
``credential``), and ``missing_members`` names every member the federation ledger
records whose own ledger the auditor was not given, so that a deleted ledger is a
finding rather than an absence.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from accord.crypto import identity
from accord.crypto.agreement import KEY_BYTES, encode_fields
from accord.errors import BadSignature, IntegrityError, InternalError, UsageError

__all__ = [
    "CHECKPOINT",
    "ENTRY_DOMAIN",
    "FORMAT_VERSION",
    "GENESIS_HASH",
    "HEAD_DOMAIN",
    "OPEN",
    "SIGNATURE_DOMAIN",
    "Entry",
    "Finding",
    "Head",
    "Problem",
    "Report",
    "SignedHead",
    "append",
    "canonical_json",
    "certified_identity",
    "checkpoint",
    "decimal",
    "entry_hash",
    "missing_members",
    "open_ledger",
    "sign_head",
    "verify_chain",
    "verify_head",
]

FORMAT_VERSION = 1
"""Format version of every entry and signed head this module writes."""

GENESIS_HASH = bytes(32)
"""``prev_hash`` of the first entry."""

ENTRY_DOMAIN = b"accord/v1/ledger-entry"
SIGNATURE_DOMAIN = b"accord/v1/ledger-entry-signature"
HEAD_DOMAIN = b"accord/v1/ledger-head"

OPEN = "open"
"""Kind of entry 0: names the ledger and its signing key."""
CHECKPOINT = "checkpoint"
"""Kind of an entry that carries the signed head of the entries before it."""

_KIND = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_HASH_BYTES = 32
_MAX_SAFE_INT = (1 << 53) - 1
_ENTRY_FIELDS = frozenset({"version", "seq", "kind", "prev_hash", "body", "hash", "signature"})
_HEAD_FIELDS = frozenset({"version", "ledger_id", "count", "head_hash", "signature"})


# ---- encoding ----


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


# ---- values ----


@dataclass(frozen=True)
class Head:
    """Where a ledger stands: how many entries it has and the hash of the last one.

    Attributes:
        count: number of entries (the next entry's ``seq``).
        hash: hash of entry ``count - 1``; ``GENESIS_HASH`` for an empty ledger.
    """

    count: int = 0
    hash: bytes = GENESIS_HASH


@dataclass(frozen=True)
class Entry:
    """One ledger entry, as stored on one line.

    Attributes:
        version: format version (1).
        seq: position in the ledger, from 0.
        kind: ``open``, ``checkpoint`` or a role's kind.
        prev_hash: hash of entry ``seq - 1`` (32 bytes).
        body: the entry's JSON content (no floats).
        hash: ``entry_hash`` of the fields above.
        signature: Ed25519 signature over the hash.
    """

    version: int
    seq: int
    kind: str
    prev_hash: bytes
    body: Mapping[str, Any]
    hash: bytes
    signature: bytes = field(repr=False)

    @property
    def head(self) -> Head:
        """The ledger's head once this entry is the last one."""
        return Head(self.seq + 1, self.hash)

    def recomputed_hash(self) -> bytes:
        """The hash the entry's content has now (differs from ``hash`` after an edit)."""
        return entry_hash(
            version=self.version,
            seq=self.seq,
            kind=self.kind,
            prev_hash=self.prev_hash,
            body=dict(self.body),
        )

    def to_line(self) -> str:
        """The entry as one line of canonical JSON (no newline)."""
        return canonical_json(
            {
                "version": self.version,
                "seq": self.seq,
                "kind": self.kind,
                "prev_hash": self.prev_hash.hex(),
                "body": dict(self.body),
                "hash": self.hash.hex(),
                "signature": self.signature.hex(),
            }
        ).decode("ascii")

    @classmethod
    def from_line(cls, line: str | bytes) -> Entry:
        """Parse one stored line (the inverse of ``to_line``; nothing is verified here).

        Raises:
            IntegrityError: not JSON, an unknown format version, or a field of the wrong
                type or size.
        """
        try:
            data = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            raise IntegrityError("not a JSON ledger entry") from None
        if not isinstance(data, dict) or set(data) != _ENTRY_FIELDS:
            raise IntegrityError(
                f"a ledger entry has exactly the fields {', '.join(sorted(_ENTRY_FIELDS))}"
            )
        version = data["version"]
        if not isinstance(version, int) or isinstance(version, bool) or version != FORMAT_VERSION:
            raise IntegrityError(f"ledger entry of format version {version!r}")
        seq, kind, body = data["seq"], data["kind"], data["body"]
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
            raise IntegrityError(f"seq = {seq!r}: must be an integer >= 0")
        if not isinstance(kind, str) or not _KIND.match(kind):
            raise IntegrityError(f"kind = {kind!r}: not an entry kind")
        if not isinstance(body, dict):
            raise IntegrityError("body: must be a JSON object")
        return cls(
            version=FORMAT_VERSION,
            seq=seq,
            kind=kind,
            prev_hash=_hex(data["prev_hash"], _HASH_BYTES, "prev_hash"),
            body=body,
            hash=_hex(data["hash"], _HASH_BYTES, "hash"),
            signature=_hex(data["signature"], identity.SIGNATURE_BYTES, "signature"),
        )


@dataclass(frozen=True)
class SignedHead:
    """A ledger's head, signed by its writer: what another party keeps to detect truncation.

    Attributes:
        ledger_id: the ledger (its ``open`` entry's ``ledger_id``).
        count: entries covered.
        head_hash: hash of entry ``count - 1``.
        signature: Ed25519 signature over ``statement()``.
    """

    ledger_id: str
    count: int
    head_hash: bytes
    signature: bytes = field(repr=False)

    def statement(self) -> bytes:
        """The bytes the signature covers."""
        return head_statement(self.ledger_id, self.count, self.head_hash)

    def to_json(self) -> dict[str, Any]:
        """The head as a JSON object (``from_json`` reads it back)."""
        return {
            "version": FORMAT_VERSION,
            "ledger_id": self.ledger_id,
            "count": self.count,
            "head_hash": self.head_hash.hex(),
            "signature": self.signature.hex(),
        }

    def to_bytes(self) -> bytes:
        """Canonical JSON bytes (what a `Task` carries in `ledger_head`)."""
        return canonical_json(self.to_json())

    @classmethod
    def from_json(cls, data: Any) -> SignedHead:
        """Read a head written by ``to_json``.

        Raises:
            IntegrityError: a field is missing or malformed, or the version is unknown.
        """
        if not isinstance(data, dict) or set(data) != _HEAD_FIELDS:
            raise IntegrityError("not a signed ledger head")
        if data["version"] != FORMAT_VERSION:
            raise IntegrityError(f"signed ledger head of format version {data['version']!r}")
        count = data["count"]
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise IntegrityError(f"signed ledger head: count = {count!r}")
        if not isinstance(data["ledger_id"], str) or not data["ledger_id"]:
            raise IntegrityError("signed ledger head: no ledger_id")
        return cls(
            ledger_id=data["ledger_id"],
            count=count,
            head_hash=_hex(data["head_hash"], _HASH_BYTES, "head_hash"),
            signature=_hex(data["signature"], identity.SIGNATURE_BYTES, "signature"),
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedHead:
        """Inverse of ``to_bytes``.

        Raises:
            IntegrityError: not a signed head.
        """
        try:
            parsed = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise IntegrityError("not a signed ledger head") from None
        return cls.from_json(parsed)


def _hex(value: Any, length: int, name: str) -> bytes:
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != length or value != raw.hex():
        raise IntegrityError(f"{name}: must be {2 * length} lower-case hex digits")
    return raw


# ---- writing ----


def head_statement(ledger_id: str, count: int, head_hash: bytes) -> bytes:
    """``"accord/v1/ledger-head" || F(ledger_id) || F(count) || F(head_hash)``."""
    return HEAD_DOMAIN + encode_fields(ledger_id, count, bytes(head_hash))


def _signature_statement(hash_: bytes) -> bytes:
    return SIGNATURE_DOMAIN + encode_fields(hash_)


def append(head: Head, kind: str, body: Mapping[str, Any], identity_private: bytes) -> Entry:
    """Make the entry that follows ``head``: hashed, chained and signed.

    Args:
        head: the ledger's head now (``Head()`` for an empty ledger).
        kind: the entry's kind (lower case, at most 32 characters).
        body: JSON content; floats must be given as ``decimal`` strings.
        identity_private: the writer's raw Ed25519 private key.

    Returns:
        The entry; ``entry.head`` is the ledger's new head.

    Raises:
        UsageError: a kind, body or key of the wrong form.
    """
    if not _KIND.match(kind):
        raise InternalError(f"kind = {kind!r}: lower-case letters, digits, - or _, at most 32")
    if len(head.hash) != _HASH_BYTES or head.count < 0:
        raise InternalError("head: a count >= 0 and a 32-byte hash")
    content = dict(body)
    hash_ = entry_hash(
        version=FORMAT_VERSION, seq=head.count, kind=kind, prev_hash=head.hash, body=content
    )
    return Entry(
        version=FORMAT_VERSION,
        seq=head.count,
        kind=kind,
        prev_hash=head.hash,
        body=content,
        hash=hash_,
        signature=identity.sign(identity_private, _signature_statement(hash_)),
    )


def open_ledger(
    ledger_id: str, identity_private: bytes, body: Mapping[str, Any] | None = None
) -> Entry:
    """Entry 0 of a new ledger: its id, the public key that signs it, and ``body``'s fields.

    Raises:
        UsageError: an empty id, a body that uses ``ledger_id`` or ``public_key``.
    """
    if not ledger_id:
        raise InternalError("a ledger needs a ledger_id")
    extra = dict(body or {})
    if {"ledger_id", "public_key"} & set(extra):
        raise InternalError("ledger_id and public_key are set by open_ledger")
    content = {
        **extra,
        "ledger_id": ledger_id,
        "public_key": identity.public_from_private(identity_private).hex(),
    }
    return append(Head(), OPEN, content, identity_private)


def sign_head(head: Head, ledger_id: str, identity_private: bytes) -> SignedHead:
    """Sign "this ledger had ``head.count`` entries, the last hashing to ``head.hash``"."""
    return SignedHead(
        ledger_id=ledger_id,
        count=head.count,
        head_hash=head.hash,
        signature=identity.sign(identity_private, head_statement(ledger_id, head.count, head.hash)),
    )


def verify_head(signed: SignedHead, identity_public: bytes) -> None:
    """Check a signed head's signature; return only if it is valid.

    Raises:
        BadSignature: the head is not signed by ``identity_public``.
    """
    identity.verify(
        identity_public,
        signed.statement(),
        signed.signature,
        what=f"the signed head of ledger {signed.ledger_id}",
    )


def checkpoint(head: Head, ledger_id: str, identity_private: bytes) -> Entry:
    """A ``checkpoint`` entry after ``head``, carrying the signed head of the entries so far."""
    signed = sign_head(head, ledger_id, identity_private)
    return append(
        head,
        CHECKPOINT,
        {
            "ledger_id": ledger_id,
            "count": signed.count,
            "head_hash": signed.head_hash.hex(),
            "head_signature": signed.signature.hex(),
        },
        identity_private,
    )


def head_of_checkpoint(entry: Entry) -> SignedHead:
    """The signed head a ``checkpoint`` entry carries.

    Raises:
        IntegrityError: the entry is not a well-formed checkpoint.
    """
    body = entry.body
    if entry.kind != CHECKPOINT:
        raise IntegrityError(f"entry {entry.seq} is not a checkpoint")
    return SignedHead.from_json(
        {
            "version": FORMAT_VERSION,
            "ledger_id": body.get("ledger_id"),
            "count": body.get("count"),
            "head_hash": body.get("head_hash"),
            "signature": body.get("head_signature"),
        }
    )


# ---- verifying ----


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

    # ---- order: one entry per seq, ascending, none missing ----
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
    lines = {seq: line for seq, (line, _) in by_seq.items()}
    entries = {seq: entry for seq, (_, entry) in by_seq.items()}

    # ---- the open entry and the key ----
    ledger_id, ledger_key = _opening(entries.get(0), findings, lines.get(0))
    key = identity_public if identity_public is not None else ledger_key
    wrong_key = False
    if identity_public is not None and ledger_key is not None and ledger_key != identity_public:
        wrong_key = True
        findings.append(
            Finding(
                Problem.WRONG_KEY,
                f"the ledger was opened for key {ledger_key.hex()[:16]}..., not the key "
                f"{identity_public.hex()[:16]}... it is checked against; no signature can verify",
                0,
                lines.get(0),
            )
        )

    # ---- each entry: its hash, then its signature ----
    edited: set[int] = set()
    unsigned: set[int] = set()
    for seq, entry in sorted(entries.items()):
        try:
            recomputed = entry.recomputed_hash()
        except UsageError as error:
            findings.append(Finding(Problem.MALFORMED, str(error), seq, lines[seq]))
            edited.add(seq)
            continue
        if recomputed != entry.hash:
            edited.add(seq)
            findings.append(
                Finding(
                    Problem.EDITED,
                    f"its {entry.kind} content no longer matches its hash",
                    seq,
                    lines[seq],
                )
            )
            continue
        if key is None or wrong_key:
            unsigned.add(seq)
            continue
        try:
            identity.verify(key, _signature_statement(entry.hash), entry.signature, what="entry")
        except BadSignature:
            unsigned.add(seq)
            follower = entries.get(seq + 1)
            if follower is not None and follower.prev_hash != entry.hash:
                edited.add(seq)
                findings.append(
                    Finding(
                        Problem.EDITED,
                        f"its {entry.kind} content and hash were rewritten (the signature no "
                        f"longer matches, and entry {seq + 1} still names the original)",
                        seq,
                        lines[seq],
                    )
                )
            else:
                findings.append(
                    Finding(
                        Problem.BAD_SIGNATURE,
                        "its signature does not verify with the ledger's key",
                        seq,
                        lines[seq],
                    )
                )

    # ---- the chain: each entry names the hash of the one before ----
    for seq, entry in sorted(entries.items()):
        expected = GENESIS_HASH if seq == 0 else None
        if seq > 0 and seq - 1 in entries:
            expected = entries[seq - 1].hash
        if expected is None or entry.prev_hash == expected:
            continue
        if seq in edited or seq - 1 in edited:
            continue  # already named
        findings.append(
            Finding(
                Problem.CHAIN_BROKEN,
                "its prev_hash is not the hash of the entry before it"
                if seq
                else "the first entry must have a prev_hash of zeros",
                seq,
                lines[seq],
            )
        )

    # ---- checkpoints: each must state the head of the entries before it ----
    latest_head: SignedHead | None = None
    for seq, entry in sorted(entries.items()):
        if entry.kind != CHECKPOINT or seq in edited or seq - 1 in edited:
            continue  # an edit before it is already named
        problem = _checkpoint_problem(entry, entries, ledger_id, key if not wrong_key else None)
        if problem is not None:
            findings.append(Finding(Problem.BAD_CHECKPOINT, problem, seq, lines[seq]))
        elif seq not in unsigned:
            latest_head = head_of_checkpoint(entry)

    count = highest + 1
    if require_closing_checkpoint and count and count - 1 in entries:
        last = entries[count - 1]
        if last.kind != CHECKPOINT:
            findings.append(
                Finding(
                    Problem.TRUNCATED,
                    f"the ledger ends with this {last.kind} entry and no checkpoint after it: "
                    "its tail was cut off (every write closes with a checkpoint)",
                    last.seq,
                    lines[last.seq],
                )
            )

    # ---- heads kept by others ----
    for label, signed in heads:
        findings.extend(_against_head(label, signed, entries, lines, count, ledger_id, key))

    return Report(
        ledger_id=ledger_id,
        public_key=key,
        key_from_ledger=identity_public is None,
        entries=tuple(entry for _, entry in sorted(entries.items())),
        verified=frozenset(set(entries) - edited - unsigned),
        findings=tuple(findings),
        latest_head=latest_head,
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
        public = _hex(public_hex, KEY_BYTES, "public_key")
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


def certified_identity(ca: Any, certificate_der: bytes, participant_id: str) -> bytes:
    """The identity key the federation's CA certified for ``participant_id``.

    The audit reads ledgers after the fact, so the certificate's validity period is not
    checked (an expired or revoked member's past entries still carry its signature);
    only who signed the certificate and what it certifies.

    Args:
        ca: the CA certificate the auditor pins (an ``x509.Certificate``).
        certificate_der: the member's client certificate (DER) as the roster keeps it.
        participant_id: the member the roster entry names.

    Returns:
        The raw Ed25519 identity key (32 bytes) the certificate's member-keys extension holds.

    Raises:
        BadSignature: the certificate is absent, unreadable, not signed by ``ca``, made
            out to another member, or certifies no keys or another member's keys.
    """
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.x509.oid import NameOID

    from accord.crypto import credential
    from accord.errors import AccordError

    who = f"the certificate of {participant_id}"
    if not certificate_der:
        raise BadSignature(f"{who}: none (the roster entry carries no certificate)")
    try:
        certificate = x509.load_der_x509_certificate(bytes(certificate_der))
        certificate.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise BadSignature(f"{who}: not signed by the pinned CA") from None
    names = [a.value for a in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if names != [participant_id]:
        raise BadSignature(f"{who}: made out to {names!r}")
    try:
        keys = credential.certified_keys(certificate)
    except AccordError:
        raise BadSignature(f"{who}: certifies no member keys") from None
    if keys.participant_id != participant_id:
        raise BadSignature(f"{who}: certifies the keys of {keys.participant_id}")
    return keys.identity_public


def missing_members(
    federation_rounds: Sequence[Mapping[str, Any]], present: Sequence[str]
) -> dict[str, list[int]]:
    """The members the federation ledger names (uploads and survivors) with no ledger given.

    Args:
        federation_rounds: the bodies of the federation ledger's ``round`` entries.
        present: the participant ids whose ledgers the auditor holds (readable or not).

    Returns:
        Each missing member's id, mapped to the rounds that name it (ascending).
    """
    named: dict[str, set[int]] = {}
    for body in federation_rounds:
        round = int(body.get("round", 0))
        members = {*dict(body.get("uploads") or {}), *list(body.get("survivors") or [])}
        for member in members:
            named.setdefault(str(member), set()).add(round)
    return {
        member: sorted(rounds) for member, rounds in sorted(named.items()) if member not in present
    }
