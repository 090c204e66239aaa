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
  the bytes that were hashed (``ledger_encoding``).
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

Checking a ledger is ``ledger_verify``'s (``verify_chain``), and whose keys the checks
use is ``ledger_trust``'s. Nothing here reads or writes a file: the roles write,
``accord audit`` reads.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from accord.crypto import identity
from accord.crypto.agreement import encode_fields
from accord.crypto.ledger_encoding import canonical_json, entry_hash
from accord.errors import IntegrityError, InternalError

__all__ = [
    "CHECKPOINT",
    "FORMAT_VERSION",
    "GENESIS_HASH",
    "HEAD_DOMAIN",
    "OPEN",
    "SIGNATURE_DOMAIN",
    "Entry",
    "Head",
    "SignedHead",
    "append",
    "checkpoint",
    "head_of_checkpoint",
    "head_statement",
    "hex_field",
    "open_ledger",
    "sign_head",
    "signature_statement",
    "verify_head",
]

FORMAT_VERSION = 1
"""Format version of every entry and signed head this module writes."""

GENESIS_HASH = bytes(32)
"""``prev_hash`` of the first entry."""

SIGNATURE_DOMAIN = b"accord/v1/ledger-entry-signature"
HEAD_DOMAIN = b"accord/v1/ledger-head"

OPEN = "open"
"""Kind of entry 0: names the ledger and its signing key."""
CHECKPOINT = "checkpoint"
"""Kind of an entry that carries the signed head of the entries before it."""

_KIND = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_HASH_BYTES = 32
_ENTRY_FIELDS = frozenset({"version", "seq", "kind", "prev_hash", "body", "hash", "signature"})
_HEAD_FIELDS = frozenset({"version", "ledger_id", "count", "head_hash", "signature"})


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
            prev_hash=hex_field(data["prev_hash"], _HASH_BYTES, "prev_hash"),
            body=body,
            hash=hex_field(data["hash"], _HASH_BYTES, "hash"),
            signature=hex_field(data["signature"], identity.SIGNATURE_BYTES, "signature"),
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
            head_hash=hex_field(data["head_hash"], _HASH_BYTES, "head_hash"),
            signature=hex_field(data["signature"], identity.SIGNATURE_BYTES, "signature"),
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


def hex_field(value: Any, length: int, name: str) -> bytes:
    """``length`` bytes from their lower-case hex form, as entries and heads store them.

    Raises:
        IntegrityError: ``value`` is not exactly ``2 * length`` lower-case hex digits.
    """
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


def signature_statement(hash_: bytes) -> bytes:
    """``"accord/v1/ledger-entry-signature" || F(entry_hash)``: what an entry's signature covers."""
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
        signature=identity.sign(identity_private, signature_statement(hash_)),
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
