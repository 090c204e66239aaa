"""A round's sum by chunk range: what it takes to hold one (`SumSpec`), how the chunk
plan splits into contiguous ranges, and adding and finishing a range.

The same functions, `add_extents` and `finish_sum`, serve a worker's range
(`coordinator/aggregation/sum_workers.py`) and the coordinator's in-process sum
(`aggregation.RoundSum`), so the two paths sum identically.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from accord.crypto import masks, wire, wire_layout
from accord.crypto.aggregate import PreparedChunk, UpdateSum
from accord.crypto.ckks import PublicContext
from accord.crypto.messages import RoundConfig
from accord.errors import IntegrityError

__all__ = [
    "Holding",
    "SumSpec",
    "add_extents",
    "finish_sum",
    "holding",
    "prepare_extents",
    "split",
]


@dataclass(frozen=True)
class SumSpec:
    """What it takes to hold (part of) one round's sum; picklable, holds no key of any kind.

    Attributes:
        config: the round.
        public_context: `PublicContext.to_bytes()` for the CKKS profiles, else empty.
        max_chunk_bytes: larger chunks are refused.
        target_chunk_bytes: the chunk size the participants plan with.
    """

    config: RoundConfig
    public_context: bytes
    max_chunk_bytes: int
    target_chunk_bytes: int = wire.DEFAULT_TARGET_CHUNK_BYTES

    def chunk_count(self) -> int:
        """Chunks in one complete upload."""
        config = self.config
        plan = wire_layout.chunk_plan(
            config.element_count, config.profile, config.packing, self.target_chunk_bytes
        )
        return len(plan)

    def new_sum(
        self, owned: range | None = None, *, public: PublicContext | None = None
    ) -> UpdateSum:
        """An empty sum holding chunks `owned` (all when None; `range(0)` only checks).

        Args:
            owned: contiguous chunk indices.
            public: the loaded public context, when the caller has it already.
        """
        config = self.config
        if public is None and self.public_context:
            public = PublicContext.from_bytes(self.public_context)
        return UpdateSum(
            config.profile,
            config.element_count,
            modulus_bits=config.quant.modulus_bits,
            packing=config.packing,
            public=public,
            federation_id=config.federation_id,
            round=config.round,
            target_chunk_bytes=self.target_chunk_bytes,
            max_chunk_bytes=self.max_chunk_bytes,
            owned=owned,
        )


@dataclass(frozen=True)
class Holding:
    """What one process holds of a round's sum (for tests and diagnostics).

    Attributes:
        pid: the process.
        owned: its chunk indices.
        elements: the elements of those chunks, the only ones it holds.
        ciphertexts: the ciphertext sums it holds (0 outside the CKKS profiles).
        uploads: uploads it has added to its chunks.
    """

    pid: int
    owned: range
    elements: range
    ciphertexts: int
    uploads: int


def holding(total: UpdateSum) -> Holding:
    """Describe what `total` holds, in this process."""
    return Holding(os.getpid(), total.owned, total.elements, total.ciphertexts, total.uploads)


def split(chunk_count: int, parts: int) -> list[range]:
    """Contiguous chunk ranges of near-equal length (the first ones one longer), in order."""
    base, extra = divmod(chunk_count, parts)
    ranges, start = [], 0
    for part in range(parts):
        stop = start + base + (1 if part < extra else 0)
        ranges.append(range(start, stop))
        start = stop
    return ranges


def add_extents(total: UpdateSum, fd: int, extents: Sequence[tuple[int, int]]) -> None:
    """Read chunks from file descriptor `fd` at `(offset, length)` each, and add them in order.

    Raises:
        IntegrityError: the file is shorter than an extent.
        Malformed, UsageError, ...: from `UpdateSum.add`.
    """
    for offset, length in extents:
        chunk = os.pread(fd, length, offset)
        if len(chunk) != length:
            raise IntegrityError(f"the spool file ends inside the chunk at offset {offset}")
        total.add(chunk)


def prepare_extents(
    total: UpdateSum, fd: int, extents: Sequence[tuple[int, int]]
) -> list[PreparedChunk]:
    """Read chunks from `fd` at `(offset, length)` each and validate them completely.

    Raises:
        IntegrityError: the file is shorter than an extent.
        Malformed, Oversized, UsageError: from `UpdateSum.prepare`.
    """
    prepared = []
    for offset, length in extents:
        chunk = os.pread(fd, length, offset)
        if len(chunk) != length:
            raise IntegrityError(f"the spool file ends inside the chunk at offset {offset}")
        prepared.append(total.prepare(chunk))
    return prepared


def finish_sum(total: UpdateSum, correction: Sequence[masks.MaskTerm]) -> Iterator[bytes]:
    """Add the mask correction over `total`'s own chunks, then return its aggregate chunks.

    Returns:
        The chunks, serialized one at a time as they are taken.

    Raises:
        UsageError: from `UpdateSum.add_correction` and `UpdateSum.chunks` (e.g. an
            upload was only partly added), before any chunk is returned.
    """
    if correction:
        plan = total.plan
        for index in total.owned:
            start, count = plan[index]
            values = masks.correction(start, count, correction, total.modulus_bits)
            total.add_correction(start, values)
    return total.chunks()
