"""A ledger on disk: `ledger.jsonl`, append-only lines, fsynced on write; its key file.

Only the file: which lines to append, and whether the ledger verifies, is
`accord.crypto.ledger_book`'s (the chain and its checks are `accord.crypto`'s); each role
composes the two (the participant's privacy ledger, the coordinator's federation
ledger), and `accord audit` reads the lines.

    read_for_append(path)          the lines of an existing ledger (None: none yet) and
                                   whether a torn tail was set aside first
    append_lines(path, lines)      whole lines, with one write(2), fsynced before returning
    read_lines(path)               the lines, for verifying
    write_key(path, data)          a new private key file (mode 0600, never overwritten;
                                   `private_files.read_private` reads it back)

Writes are one `write` of whole lines (an entry and its checkpoint) on an O_APPEND
descriptor, then `fsync`. A crash can still leave a last line without its newline (a torn
write, never fsynced, so nothing it recorded was acted on): `read_for_append` moves such a
fragment to `ledger.jsonl.torn` and says so, and the book then closes the ledger again.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from accord.errors import ConfigError

TORN_SUFFIX = ".torn"


def read_for_append(path: Path) -> tuple[list[str] | None, bool]:
    """The lines of the ledger at `path` before a writer appends to it (its folder is made).

    An unterminated last line (a torn write) is moved to `<path>.torn` first.

    Returns:
        The lines (None when there is no file yet), and whether a torn tail was set aside.

    Raises:
        ConfigError: the file is not UTF-8 text.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        return None, False
    torn = _remove_torn_tail(path)
    return read_lines(path), torn


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


def write_key(path: Path, data: bytes) -> None:
    """Write a new key file (mode 0600), fsynced with its folder; never overwrites one.

    Raises:
        FileExistsError: `path` exists.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    _fsync_folder(path.parent)


def append_lines(path: Path, lines: Sequence[str]) -> None:
    """Append whole lines with one write(2) and fsync them (and the folder, for a new file).

    Nothing is written for no lines.

    Raises:
        OSError: the file cannot be written.
    """
    if not lines:
        return
    created = not path.exists()
    data = "".join(line + "\n" for line in lines).encode("ascii")
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(descriptor, view)
            view = view[written:]
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    if created:
        _fsync_folder(path.parent)


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
