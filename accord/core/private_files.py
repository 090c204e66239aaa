"""Private key files: the one check that group and others cannot read them.

Every reader of a private key (the coordinator's TLS key, the operator's CA key, a
kit's keys, preflight, the ledger key) refuses a file whose mode lets group or others
read it, with the same message and the fix.
"""

from __future__ import annotations

import stat
from pathlib import Path

from accord.errors import ConfigError


def too_open(path: Path) -> int | None:
    """The file's mode when group or others may access it, else None.

    Raises:
        FileNotFoundError: no such file.
    """
    mode = stat.S_IMODE(Path(path).stat().st_mode)
    return mode if mode & 0o077 else None


def refuse_if_readable(path: Path, what: str) -> None:
    """Raise a `ConfigError` naming `path`, its mode and the fix when it is too open.

    Raises:
        ConfigError: group or others may read it.
        FileNotFoundError: no such file.
    """
    mode = too_open(path)
    if mode is not None:
        raise ConfigError(
            f"{path}: {what} is readable by group or others (mode {mode:o}); run `chmod 600 {path}`"
        )


def read_private(path: Path, what: str, *, missing: str) -> bytes:
    """Read a private key file, refusing one that group or others may read.

    Args:
        path: the key file.
        what: the key, as the too-open message names it (e.g. "the CA key").
        missing: what the error says after the path when there is no such file.

    Raises:
        ConfigError: group or others may read it, or it is missing.
    """
    try:
        refuse_if_readable(path, what)
    except FileNotFoundError:
        raise ConfigError(f"{path}: {missing}") from None
    return Path(path).read_bytes()
