"""A ledger on disk: `ledger.jsonl`, append-only, verified when opened, fsynced on write.

The chain, the signatures and their checks are `accord.crypto.ledger_chain`'s; this module
only keeps them in a file, for both roles (the participant's privacy ledger and the
coordinator's federation ledger) and for `accord audit`, which reads it.

    LedgerFile.open(path, ledger_id, key)   read and verify an existing ledger, or start
                                            one (open entry + checkpoint)
    .append(kind, body)                     the entry and a checkpoint after it, written
                                            with one write(2) and fsynced before returning
    read_lines(path)                        the lines, for verifying with another key

Writes are one `write` of two whole lines (entry, checkpoint) on an O_APPEND descriptor,
then `fsync`. A crash can still leave a last line without its newline (a torn write,
never fsynced, so nothing it recorded was acted on): `open` moves such a fragment to
`ledger.jsonl.torn` and, when the entry before it then lacks its checkpoint, closes the
ledger with one. Anything else that does not verify makes `open` refuse with the
finding: a writer never appends to a ledger it cannot vouch for.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from accord.core.private_files import refuse_if_readable
from accord.crypto import identity
from accord.crypto import ledger_chain as chain
from accord.crypto.ledger_report import Problem
from accord.crypto.ledger_verify import verify_chain
from accord.errors import ConfigError, IntegrityError

TORN_SUFFIX = ".torn"


class LedgerFile:
    """One ledger file and its writer's key (use `LedgerFile.open`).

    Args:
        path: the `ledger.jsonl` file.
        ledger_id: the ledger's name, e.g. `accord-demo/participant/energy`.
        identity_private: the writer's raw Ed25519 private key.
        entries: the verified entries, in order.
    """

    def __init__(
        self,
        path: Path,
        ledger_id: str,
        identity_private: bytes,
        entries: tuple[chain.Entry, ...],
    ) -> None:
        self.path = path
        self.ledger_id = ledger_id
        self._private = identity_private
        self._entries = list(entries)

    @classmethod
    def open(
        cls,
        path: Path,
        ledger_id: str,
        identity_private: bytes,
        *,
        open_body: Mapping[str, Any] | None = None,
    ) -> LedgerFile:
        """Read and verify the ledger at `path`, or start it there.

        Args:
            path: the ledger file; its folder is created.
            ledger_id: the ledger's name; an existing file must carry the same.
            identity_private: the writer's key; an existing file must be signed by it.
            open_body: extra fields of the open entry of a new ledger (role, names).

        Raises:
            IntegrityError: the existing ledger does not verify (the first finding is
                named; `accord audit verify PATH` lists them all).
        """
        public = identity.public_from_private(identity_private)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            first = chain.open_ledger(ledger_id, identity_private, open_body)
            closing = chain.checkpoint(first.head, ledger_id, identity_private)
            _append_lines(path, [first, closing])
            _fsync_folder(path.parent)
            return cls(path, ledger_id, identity_private, (first, closing))
        torn = _remove_torn_tail(path)
        report = verify_chain(read_lines(path), public)
        findings = list(report.findings)
        last = report.entries[-1] if report.entries else None
        reopened = (
            torn
            and last is not None
            and len(findings) == 1
            and findings[0].problem is Problem.TRUNCATED
            and findings[0].seq == last.seq
        )
        if reopened and last is not None:
            closing = chain.checkpoint(last.head, ledger_id, identity_private)
            _append_lines(path, [closing])
            findings = []
            entries = (*report.entries, closing)
        else:
            entries = report.entries
        if findings:
            raise IntegrityError(
                f"{path}: the ledger does not verify ({findings[0]}); see `accord audit verify "
                f"{path}`, and keep the file as evidence: move it aside to start a new ledger"
            )
        if report.ledger_id != ledger_id:
            raise IntegrityError(
                f"{path}: the ledger of {report.ledger_id!r}, not of {ledger_id!r}; move it aside"
            )
        return cls(path, ledger_id, identity_private, entries)

    @property
    def entries(self) -> tuple[chain.Entry, ...]:
        """Every entry, in order (checkpoints included)."""
        return tuple(self._entries)

    @property
    def head(self) -> chain.Head:
        """The head after the last entry."""
        return self._entries[-1].head

    @property
    def public_key(self) -> bytes:
        """The writer's raw Ed25519 public key."""
        return identity.public_from_private(self._private)

    def signed_head(self) -> chain.SignedHead:
        """The signed head of the latest checkpoint (what others keep)."""
        for entry in reversed(self._entries):
            if entry.kind == chain.CHECKPOINT:
                return chain.head_of_checkpoint(entry)
        raise IntegrityError(f"{self.path}: no checkpoint")  # pragma: no cover - open adds one

    def append(self, kind: str, body: Mapping[str, Any]) -> chain.Entry:
        """Append an entry and its checkpoint; return once both are on disk (fsync).

        Raises:
            UsageError: a body that is not canonical JSON (e.g. a float).
            OSError: the file cannot be written; nothing was appended in memory.
        """
        entry = chain.append(self.head, kind, body, self._private)
        closing = chain.checkpoint(entry.head, self.ledger_id, self._private)
        _append_lines(self.path, [entry, closing])
        self._entries.extend((entry, closing))
        return entry


def read_lines(path: Path) -> list[str]:
    """The file's lines (without newlines), for `crypto.ledger_verify.verify_chain`.

    Raises:
        ConfigError: the file does not exist or is not UTF-8 text.
    """
    try:
        return path.read_text(encoding="utf-8").split("\n")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such ledger") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a ledger (not UTF-8 text)") from None


def load_or_create_key(path: Path) -> bytes:
    """A raw Ed25519 private key kept in `path` (PKCS#8 PEM, mode 0600), made once.

    Raises:
        ConfigError: the file exists but holds no Ed25519 key, or others may read it.
    """
    if path.exists():
        return load_private_key(path)
    private = identity.generate_identity().private
    write_private_key(path, private)
    return private


def load_private_key(path: Path) -> bytes:
    """The raw Ed25519 private key in `path` (PKCS#8 PEM), refused if others may read it.

    Raises:
        ConfigError: the file is missing, holds no Ed25519 key, or others may read it.
    """
    try:
        refuse_if_readable(path, "the ledger key")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such ledger key") from None
    return identity.load_private(path.read_bytes(), what=f"ledger key {path}")


def write_private_key(path: Path, private: bytes) -> None:
    """Write a new key file (PKCS#8 PEM, mode 0600), fsynced; never overwrites one.

    Raises:
        FileExistsError: `path` exists.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(identity.dump_private(private))
        handle.flush()
        os.fsync(handle.fileno())
    _fsync_folder(path.parent)


def _append_lines(path: Path, entries: list[chain.Entry]) -> None:
    data = "".join(entry.to_line() + "\n" for entry in entries).encode("ascii")
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(descriptor, view)
            view = view[written:]
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _remove_torn_tail(path: Path) -> bool:
    """Move an unterminated last line to `<path>.torn`; True if there was one."""
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return False
    keep = data.rfind(b"\n") + 1
    with path.with_name(path.name + TORN_SUFFIX).open("ab") as sink:
        sink.write(data[keep:] + b"\n")
        sink.flush()
        os.fsync(sink.fileno())
    with path.open("r+b") as handle:
        handle.truncate(keep)
        handle.flush()
        os.fsync(handle.fileno())
    return True


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
