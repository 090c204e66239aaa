"""The provisioning files both roles read and write: their formats, and how they lie on disk.

Standard library and `accord.errors` only, so the coordinator and the participant may
both import it (neither role imports the other; DESIGN.md section 4).

- The operator and each enterprise exchange two JSON files: ``request.json``, which
  ``accord kit request`` writes and ``accord provision approve`` reads, and the
  response, which ``approve`` writes and ``accord kit package`` reads. Both sides must
  agree on their ``format`` names and on the newest ``format_version``, so these live
  here once. What the request's identity key signs is ``identity.request_statement``.
- Participant and federation ids follow one pattern everywhere: in requests,
  certificates (CN and O), kits and the roster.
- A file holds either private keys or public material, and each kind is written one
  way. A private key is created once with mode 0600, never through a link and never
  over an existing file. Public material (certificates, requests, responses, the
  roster) replaces its file atomically, so a reader sees the old or the new file
  whole, with mode 0644 so a service account may read it.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tempfile
from pathlib import Path

from accord.errors import ConfigError, InternalError, UsageError

__all__ = [
    "EXCHANGE_FORMAT_VERSION",
    "PARTICIPANT_ID_PATTERN",
    "REQUEST_FORMAT",
    "RESPONSE_FORMAT",
    "check_id",
    "write_private",
    "write_public",
]

EXCHANGE_FORMAT_VERSION = 1
"""Version of the request and response files this code writes, and the newest it reads."""

REQUEST_FORMAT = "accord/kit-request"
"""The ``format`` of ``request.json``."""

RESPONSE_FORMAT = "accord/kit-response"
"""The ``format`` of the operator's response."""

# The CA-signed federation terms (`accord.crypto.terms`): in the CA folder, the
# coordinator's folder and every kit, under this name.
TERMS_FILE = "terms.signed"

PARTICIPANT_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
"""Participant and federation ids: lower case, digits, ``-`` and ``_``, at most 63 characters."""


def check_id(value: str, what: str) -> None:
    """Refuse a participant or federation id that does not match ``PARTICIPANT_ID_PATTERN``.

    Raises:
        ConfigError: naming ``what`` (e.g. ``--name``), the value and the pattern.
    """
    if not isinstance(value, str) or not re.fullmatch(PARTICIPANT_ID_PATTERN, value):
        raise ConfigError(
            f"{what} {value!r}: must match {PARTICIPANT_ID_PATTERN} (lower case letters, "
            "digits, - and _, at most 63 characters)"
        )


def write_private(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600; never follow a link, never replace a file.

    Raises:
        UsageError: ``path`` exists (a private key is never overwritten).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        handle = os.open(path, flags, 0o600)
    except FileExistsError:
        raise UsageError(f"{path} exists; a private key is never overwritten") from None
    with os.fdopen(handle, "wb") as stream:
        os.fchmod(stream.fileno(), 0o600)
        stream.write(data)


def write_public(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically with mode 0644 (public material only).

    The folder is created if it is missing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def split_address(address: str) -> tuple[str, int]:
    """Split ``host:port`` or ``[v6]:port``.

    Raises:
        ConfigError: not that form, a port outside 1..65535, or a wildcard host.
    """
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:([0-9]{1,5})|([^\s:\[\]]+):([0-9]{1,5})", address)
    if match is None:
        raise ConfigError(
            f"coordinator = {address!r}: must be host:port, e.g. 127.0.0.1:50051 or [::1]:50051"
        )
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    if not 1 <= port <= 65535:
        raise ConfigError(f"coordinator = {address!r}: port must be 1..65535")
    if host in ("0.0.0.0", "::"):
        raise ConfigError(
            f"coordinator = {address!r}: name the host participants dial, not a wildcard address"
        )
    return host, port


def utc_now(now: dt.datetime | None = None) -> dt.datetime:
    """`now` in UTC, or the current time: when certificates must be valid.

    Raises:
        InternalError: a naive datetime (no time zone).
    """
    if now is None:
        return dt.datetime.now(dt.timezone.utc)
    if now.tzinfo is None:
        raise InternalError("now must be timezone-aware (UTC)")
    return now.astimezone(dt.timezone.utc)
