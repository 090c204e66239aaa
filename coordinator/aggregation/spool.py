"""One upload's checked chunks, kept on disk until its signed receipt verifies.

The coordinator must not add an upload to the running sum before the whole upload is
in and its receipt verifies (validate, then mutate), yet it must not hold uploads in
memory either: with n participants uploading at once that would be O(n x model). A
`Spool` writes each checked chunk to an anonymous temporary file (unlinked at once, so
it vanishes with the process even after a `kill -9`); memory stays at one chunk per
connection. When the upload is added, whoever sums (the coordinator's process or its
aggregation workers, `sum_workers`) reads the chunks itself: `extents` says where each
one lies in the file, whose descriptor (`fileno`) it gets.
"""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

_LENGTH = struct.Struct("<I")


class Spool:
    """Chunks of one upload, in arrival order, on disk."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._file = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 - closed by close()
        self._count = 0
        self._extents: list[tuple[int, int]] = []
        self._end = 0
        self.bytes = 0

    def append(self, chunk: bytes) -> None:
        """Keep one chunk."""
        self._file.write(_LENGTH.pack(len(chunk)))
        self._file.write(chunk)
        self._extents.append((self._end + _LENGTH.size, len(chunk)))
        self._end += _LENGTH.size + len(chunk)
        self._count += 1
        self.bytes += len(chunk)

    def __len__(self) -> int:
        return self._count

    def extents(self) -> list[tuple[int, int]]:
        """Flush, and return each chunk's `(offset, length)` in the file, in order.

        With `fileno`, another process reads the chunks by `os.pread`, which leaves
        this file's position alone.
        """
        self._file.flush()
        return list(self._extents)

    def fileno(self) -> int:
        """The spool file's descriptor (valid until `close`)."""
        return self._file.fileno()

    def close(self) -> None:
        """Forget the upload (the file is already unlinked; this frees its space)."""
        self._file.close()
