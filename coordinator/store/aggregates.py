"""The store's aggregates: the sum of a round only, stored whole in chunks or not at all
(``Store`` inherits these methods). Why the store holds nothing but sums:
``coordinator/store/database.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from accord.coordinator.store.checks import check_bigint, check_bytes, first
from accord.coordinator.store.rounds import RoundTables
from accord.coordinator.store.rows import AggregateInfo
from accord.errors import IntegrityError, InternalError

__all__ = ["AggregateTables"]


class AggregateTables(RoundTables):
    """The ``aggregates`` and ``aggregate_chunks`` tables (an aggregate belongs to a round)."""

    def put_aggregate(self, round: int, chunks: Iterable[bytes]) -> AggregateInfo:
        """Store the aggregate (the sum only) of an in-flight round, all or nothing.

        ``chunks`` is consumed one chunk at a time, so a generator keeps memory at one
        chunk. If it raises, the exception propagates and nothing is stored.

        Args:
            round: the round number.
            chunks: byte strings in index order; at least one.

        Returns:
            How many chunks and bytes were stored.

        Raises:
            UsageError: the round is not in flight, or ``chunks`` is empty or not bytes.
            IntegrityError: the round already has an aggregate (``drop_aggregate`` first).
        """
        check_bigint(round, "round")
        with self._pool.transaction(write=True) as tx:
            self._claim_in_flight(tx, round, stage=None)
            if tx.one("SELECT 1 FROM aggregates WHERE round = ?", round) is not None:
                raise IntegrityError(
                    f"round {round} already has an aggregate; drop_aggregate it first"
                )
            tx.execute(
                "INSERT INTO aggregates (round, chunk_count, total_bytes) VALUES (?, 0, 0)",
                round,
            )
            aggregate_id = first(
                tx.one("SELECT aggregate_id FROM aggregates WHERE round = ?", round)
            )
            count = total = 0
            for chunk in chunks:
                blob = check_bytes(chunk, f"chunk {count} of the aggregate of round {round}")
                tx.execute(
                    "INSERT INTO aggregate_chunks (aggregate_id, chunk_index, chunk) "
                    "VALUES (?, ?, ?)",
                    aggregate_id,
                    count,
                    blob,
                )
                count += 1
                total += len(blob)
            if count == 0:
                raise InternalError(f"the aggregate of round {round} has no chunks")
            tx.execute(
                "UPDATE aggregates SET chunk_count = ?, total_bytes = ? WHERE aggregate_id = ?",
                count,
                total,
                aggregate_id,
            )
        return AggregateInfo(round=round, chunk_count=count, total_bytes=total)

    def aggregate_info(self, round: int) -> AggregateInfo | None:
        """Chunk count and size of a round's stored aggregate, or None if there is none."""
        check_bigint(round, "round")
        with self._pool.transaction(write=False) as tx:
            row = tx.one(
                "SELECT chunk_count, total_bytes FROM aggregates WHERE round = ?",
                round,
            )
        return None if row is None else AggregateInfo(round, int(row[0]), int(row[1]))

    def aggregate_chunks(self, round: int) -> Iterator[bytes]:
        """Stream a round's aggregate in index order, one chunk in memory at a time.

        Each chunk is read in its own short transaction, so a slow consumer holds no
        connection and no lock between chunks.

        Raises:
            UsageError: now, if the round has no stored aggregate.
            IntegrityError: while iterating, if the aggregate was dropped meanwhile.
        """
        check_bigint(round, "round")
        with self._pool.transaction(write=False) as tx:
            row = tx.one(
                "SELECT aggregate_id, chunk_count FROM aggregates WHERE round = ?",
                round,
            )
        if row is None:
            raise InternalError(f"round {round} has no stored aggregate")
        return self._stream_chunks(round, int(row[0]), int(row[1]))

    def aggregate_rounds(self) -> list[int]:
        """The rounds that have a stored aggregate, oldest first."""
        with self._pool.transaction(write=False) as tx:
            return [int(row[0]) for row in tx.all("SELECT round FROM aggregates ORDER BY round")]

    def drop_aggregate(self, round: int) -> bool:
        """Delete a round's aggregate (retention); True if there was one."""
        check_bigint(round, "round")
        with self._pool.transaction(write=True) as tx:
            return self._drop_aggregate(tx, round)

    # -- internals -------------------------------------------------------------------

    def _stream_chunks(self, round: int, aggregate_id: int, chunk_count: int) -> Iterator[bytes]:
        for index in range(chunk_count):
            with self._pool.transaction(write=False) as tx:
                row = tx.one(
                    "SELECT chunk FROM aggregate_chunks WHERE aggregate_id = ? AND chunk_index = ?",
                    aggregate_id,
                    index,
                )
            if row is None:
                raise IntegrityError(
                    f"the aggregate of round {round} was dropped while it was read "
                    f"(chunk {index} of {chunk_count} is gone)"
                )
            yield bytes(row[0])
