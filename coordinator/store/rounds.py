"""The store's rounds and their restart snapshots (``Store`` inherits these methods).

A round is begun in flight, moves through its stages, and finishes or aborts, never
back; its restart snapshot lives only while it is in flight. What the store may hold,
and how a call maps to one transaction: ``coordinator/store/database.py``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from accord.coordinator.store.checks import check_bigint, check_bytes, check_json, check_text
from accord.coordinator.store.dialects import Dialect, Pool, Transaction
from accord.coordinator.store.rows import RoundRow, RoundSnapshot, RoundStatus
from accord.crypto.profile import Profile
from accord.errors import IntegrityError, InternalError

__all__ = ["RoundTables"]


class RoundTables:
    """The ``rounds`` and ``round_snapshots`` tables, over the store's connection pool."""

    _pool: Pool
    _dialect: Dialect

    # -- rounds ----------------------------------------------------------------------

    def begin_round(self, row: RoundRow) -> None:
        """Record that a round started.

        Args:
            row: an in-flight round (status, finished_at, outcome and abort reason left
                at their defaults) whose number is above every recorded round's.

        Raises:
            UsageError: ``row`` is not a fresh in-flight round, or another round is
                still in flight.
            IntegrityError: the round number is not above the latest recorded one;
                round numbers never repeat, so nothing is applied twice.
        """
        check_bigint(row.round, "round")
        check_text(row.stage, "stage")
        check_json(row.config_json, "config_json")
        if not isinstance(row.profile, Profile):
            raise InternalError(f"round {row.round}: profile {row.profile!r}: use Profile")
        if (
            row.status is not RoundStatus.IN_FLIGHT
            or row.finished_at is not None
            or row.outcome_json is not None
            or row.abort_reason is not None
        ):
            raise InternalError(f"round {row.round}: begin_round takes a fresh in-flight row")
        with self._pool.transaction(write=True) as tx:
            busy = tx.one("SELECT round FROM rounds WHERE status = 'in_flight'")
            if busy is not None:
                raise InternalError(
                    f"round {busy[0]} is still in flight; finish or abort it before "
                    f"beginning round {row.round}"
                )
            latest = tx.one("SELECT MAX(round) FROM rounds")
            if latest is not None and latest[0] is not None and latest[0] >= row.round:
                raise IntegrityError(
                    f"round {row.round} is not after round {latest[0]}, the latest recorded; "
                    "round numbers never repeat"
                )
            try:
                tx.execute(
                    "INSERT INTO rounds (round, profile, config_json, stage, status, "
                    "started_at) VALUES (?, ?, ?, ?, 'in_flight', ?)",
                    row.round,
                    row.profile.value,
                    row.config_json,
                    row.stage,
                    float(row.started_at),
                )
            except self._dialect.integrity_errors as exc:
                # Only a concurrent begin_round on another connection gets here.
                raise InternalError(
                    f"round {row.round}: another round was begun at the same time"
                ) from exc

    def set_round_stage(self, round: int, stage: str) -> None:
        """Move an in-flight round to ``stage``.

        Raises:
            UsageError: the round was never begun, or is finished or aborted.
        """
        check_text(stage, "stage")
        with self._pool.transaction(write=True) as tx:
            self._claim_in_flight(tx, round, stage=stage)

    def finish_round(self, round: int, outcome_json: str, finished_at: float) -> None:
        """Record a round's outcome; its restart snapshot is deleted with it.

        Finishing an already finished round with an equal outcome (as JSON values) is a
        no-op, so a coordinator that crashed after finishing may finish again.

        Raises:
            UsageError: the round was never begun.
            IntegrityError: the round finished with another outcome, or was aborted.
        """
        check_bigint(round, "round")
        check_json(outcome_json, "outcome_json")
        with self._pool.transaction(write=True) as tx:
            changed = tx.count(
                "UPDATE rounds SET status = 'finished', outcome_json = ?, finished_at = ? "
                "WHERE round = ? AND status = 'in_flight'",
                outcome_json,
                float(finished_at),
                round,
            )
            if changed:
                tx.execute("DELETE FROM round_snapshots WHERE round = ?", round)
                return
            row = self._round(tx, round)
            if row.status is RoundStatus.ABORTED:
                raise IntegrityError(
                    f"round {round} was aborted ({row.abort_reason}); it cannot finish"
                )
            if json.loads(row.outcome_json or "null") != json.loads(outcome_json):
                raise IntegrityError(f"round {round} already finished with another outcome")

    def abort_round(self, round: int, reason: str, aborted_at: float | None = None) -> None:
        """Give up a round in flight; its snapshot and any aggregate are deleted with it.

        Aborting an aborted round is a no-op that keeps the first reason.

        Args:
            round: the round number.
            reason: why, for operators and the ledger (no payload bytes).
            aborted_at: seconds since the Unix epoch; now if None.

        Raises:
            UsageError: the round was never begun.
            IntegrityError: the round already finished; its outcome stands.
        """
        check_bigint(round, "round")
        check_text(reason, "abort reason")
        at = time.time() if aborted_at is None else float(aborted_at)
        with self._pool.transaction(write=True) as tx:
            changed = tx.count(
                "UPDATE rounds SET status = 'aborted', abort_reason = ?, finished_at = ? "
                "WHERE round = ? AND status = 'in_flight'",
                reason,
                at,
                round,
            )
            if changed:
                tx.execute("DELETE FROM round_snapshots WHERE round = ?", round)
                self._drop_aggregate(tx, round)
                return
            if self._round(tx, round).status is RoundStatus.FINISHED:
                raise IntegrityError(f"round {round} already finished; it cannot be aborted")

    def rounds(self) -> list[RoundRow]:
        """Every recorded round, oldest first."""
        with self._pool.transaction(write=False) as tx:
            return [_round_row(r) for r in tx.all(f"{_ROUND_SELECT} ORDER BY round")]

    def round_row(self, round: int) -> RoundRow | None:
        """One recorded round, in any status; None if it was never begun."""
        check_bigint(round, "round")
        with self._pool.transaction(write=False) as tx:
            row = tx.one(f"{_ROUND_SELECT} WHERE round = ?", round)
        return None if row is None else _round_row(row)

    def latest_round(self) -> RoundRow | None:
        """The round with the highest number, in any status; None before the first."""
        with self._pool.transaction(write=False) as tx:
            row = tx.one(f"{_ROUND_SELECT} ORDER BY round DESC LIMIT 1")
        return None if row is None else _round_row(row)

    def in_flight_round(self) -> RoundRow | None:
        """The round in flight, which a restarted coordinator resumes or aborts; or None."""
        with self._pool.transaction(write=False) as tx:
            row = tx.one(f"{_ROUND_SELECT} WHERE status = 'in_flight'")
        return None if row is None else _round_row(row)

    # -- restart snapshots -----------------------------------------------------------

    def save_round_snapshot(self, round: int, stage: str, snapshot: bytes) -> None:
        """Replace the restart snapshot of an in-flight round and move it to ``stage``.

        Stage and snapshot change in one transaction, so they never disagree after a crash.

        Raises:
            UsageError: the round was never begun, or is finished or aborted.
        """
        check_text(stage, "stage")
        blob = check_bytes(snapshot, f"snapshot of round {round}")
        with self._pool.transaction(write=True) as tx:
            self._claim_in_flight(tx, round, stage=stage)
            tx.execute(
                "INSERT INTO round_snapshots (round, stage, snapshot) VALUES (?, ?, ?) "
                "ON CONFLICT (round) DO UPDATE SET stage = excluded.stage, "
                "snapshot = excluded.snapshot",
                round,
                stage,
                blob,
            )

    def load_round_snapshot(self, round: int) -> RoundSnapshot | None:
        """The last snapshot saved for a round in flight; None if there is none."""
        check_bigint(round, "round")
        with self._pool.transaction(write=False) as tx:
            row = tx.one(
                "SELECT stage, snapshot FROM round_snapshots WHERE round = ?",
                round,
            )
        return None if row is None else RoundSnapshot(round, row[0], bytes(row[1]))

    # -- internals -------------------------------------------------------------------

    def _claim_in_flight(self, tx: Transaction, round: int, *, stage: str | None) -> None:
        """Lock an in-flight round's row for this transaction, optionally moving its stage.

        A conditional update rather than a read: on PostgreSQL it takes the row lock, so
        finish, abort and writes to the same round never interleave.
        """
        check_bigint(round, "round")
        if stage is None:
            changed = tx.count(
                "UPDATE rounds SET stage = stage WHERE round = ? AND status = 'in_flight'",
                round,
            )
        else:
            changed = tx.count(
                "UPDATE rounds SET stage = ? WHERE round = ? AND status = 'in_flight'",
                stage,
                round,
            )
        if not changed:
            status = self._round(tx, round).status
            raise InternalError(f"round {round} is {status.value.replace('_', ' ')}, not in flight")

    def _round(self, tx: Transaction, round: int) -> RoundRow:
        row = tx.one(f"{_ROUND_SELECT} WHERE round = ?", round)
        if row is None:
            raise InternalError(f"round {round} was never begun")
        return _round_row(row)

    def _drop_aggregate(self, tx: Transaction, round: int) -> bool:
        row = tx.one("SELECT aggregate_id FROM aggregates WHERE round = ?", round)
        if row is None:
            return False
        tx.execute("DELETE FROM aggregate_chunks WHERE aggregate_id = ?", row[0])
        tx.execute("DELETE FROM aggregates WHERE aggregate_id = ?", row[0])
        return True


_ROUND_SELECT = (
    "SELECT round, profile, config_json, started_at, stage, status, finished_at, "
    "outcome_json, abort_reason FROM rounds"
)


def _round_row(r: tuple[Any, ...]) -> RoundRow:
    try:
        profile = Profile(r[1])
    except ValueError as exc:
        raise IntegrityError(f"round {r[0]}: unknown profile {r[1]!r} in the store") from exc
    return RoundRow(
        round=int(r[0]),
        profile=profile,
        config_json=r[2],
        started_at=float(r[3]),
        stage=r[4],
        status=RoundStatus(r[5]),
        finished_at=None if r[6] is None else float(r[6]),
        outcome_json=r[7],
        abort_reason=r[8],
    )
