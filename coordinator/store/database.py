"""The coordinator's durable state: one store, SQLite by default, PostgreSQL by URL.

``open_store(url)`` opens (and migrates) the store a coordinator resumes from after a
restart (DESIGN.md guarantee 5, "Nothing lost"). Every mutating method is one database
transaction, so a ``kill -9`` at any moment leaves the state before the call or the state
after it, never a mixture: a round is in flight, finished or aborted; an aggregate is
stored whole or not at all; an event is appended or not.

What the store may hold, and why it holds nothing else
-------------------------------------------------------
The store is part of "the coordinator process, its database and its logs", which
guarantee 1 (coordinator-blind) and guarantee 6 (no key leaks through decryption) bind.

- **Federation meta**: its id, key epoch, config digest, and the CKKS *public* context.
  Never the secret context: the coordinator only ever relays it sealed to participants.
- **Participants**: ids, *public* identity and ceremony keys, certificate fingerprints and
  status. No private key of anyone.
- **Rounds**: config, stage, outcome, and one restart snapshot per round in flight, which
  the orchestrator writes and which must itself follow these rules. The snapshot is
  deleted when the round finishes or aborts.
- **Aggregates**: the *sum* of a round only (ciphertext chunks in the ``ckks`` profiles),
  never an individual upload. An upload is added into a running sum as its chunks
  arrive and is never written here: a stored per-participant ciphertext next to the
  decrypted aggregate a participant sends back is what Li and Micciancio (2021) need to
  recover the CKKS secret key (guarantee 6), and it would make the coordinator's memory
  O(participants x model) (DESIGN.md section 5).
- **Replay guard**: (round, stage, participant, sequence) of every message accepted.
- **Events**: an append-only log for the federation ledger.

The store cannot check what bytes mean, so these rules are the caller's; the tests scan
the database files for planted plaintext (``tests/coordinator/scan.py``).

Where the rest lives
--------------------
The rows the store takes and returns are in ``store_rows`` (re-exported here); the
schema and its migrations in ``store_schema``; the two databases (SQLite for a path,
PostgreSQL for a ``postgresql://`` URL), the connection pool and the placeholder and
column-type spelling in ``store_dialects``. The SQL below is written once for both.

Concurrency
-----------
A ``Store`` is shared by the threads of a gRPC server; each call runs in one transaction
on a pooled connection of its own. State changes are conditional updates
(``... WHERE status = 'in_flight'``) that row locks serialise on PostgreSQL, so the store
stays correct with several coordinator replicas on one database. Do not use a ``Store``
across ``fork``; open one in the child.

Errors: ``ConfigError`` for a bad URL, an unreachable or foreign database, or a schema
newer than this release; ``UsageError`` for a call the current state does not allow (a
round that was never begun, a second round in flight); ``IntegrityError`` for a call that
contradicts recorded history (finishing a round with another outcome, reusing a round
number, an aggregate dropped under a reader).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from typing import Any

from accord.coordinator.store.dialects import ACCEPTED_URLS as ACCEPTED_URLS
from accord.coordinator.store.dialects import Dialect, Pool, Transaction, dialect_for_url
from accord.coordinator.store.rows import (
    AggregateInfo,
    EventRow,
    ParticipantRow,
    ParticipantStatus,
    RoundRow,
    RoundSnapshot,
    RoundStatus,
)
from accord.coordinator.store.schema import LATEST_VERSION, MIGRATIONS, SCHEMA_VERSION_TABLE
from accord.crypto.profile import Profile
from accord.errors import ConfigError, IntegrityError, InternalError

__all__ = [
    "AggregateInfo",
    "EventRow",
    "ParticipantRow",
    "ParticipantStatus",
    "RoundRow",
    "RoundSnapshot",
    "RoundStatus",
    "Store",
    "open_store",
]

_MAX_BIGINT = 2**63 - 1


def open_store(url: str, *, busy_timeout_s: float = 30.0) -> Store:
    """Open the store at ``url``, creating and migrating its schema as needed.

    Args:
        url: a file path, ``sqlite:///ABSOLUTE/PATH.db``, or ``postgresql://...``
            (``postgres://`` is accepted too, as libpq does).
        busy_timeout_s: how long a SQLite writer waits for another writer's lock.

    Returns:
        An open, migrated ``Store``; close it with ``close()`` or a ``with`` block.

    Raises:
        ConfigError: the URL has none of the accepted forms, the database cannot be
            opened, is not an Accord store, or was written by a newer Accord.
    """
    return Store(dialect_for_url(url, busy_timeout_s=busy_timeout_s))


class Store:
    """The coordinator's durable state; see the module docstring for what it may hold."""

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self._pool = Pool(dialect)
        self._migrate()

    # -- lifetime ------------------------------------------------------------------

    @property
    def location(self) -> str:
        """Where the store lives, with any password removed (safe to log)."""
        return self._dialect.location

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._dialect.name

    def close(self) -> None:
        """Close every idle connection; later calls raise ``UsageError``."""
        self._pool.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- federation meta -------------------------------------------------------------

    def get_meta(self, key: str) -> bytes | None:
        """The value stored under ``key``, or None."""
        _check_text(key, "meta key")
        with self._pool.transaction(write=False) as tx:
            row = tx.one("SELECT value FROM meta WHERE key = ?", key)
        return None if row is None else bytes(row[0])

    def set_meta(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key``, replacing any previous value."""
        _check_text(key, "meta key")
        blob = _check_bytes(value, f"meta {key!r}")
        with self._pool.transaction(write=True) as tx:
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                key,
                blob,
            )

    # -- participants ----------------------------------------------------------------

    def upsert_participant(self, row: ParticipantRow) -> None:
        """Record a participant, replacing every field of an earlier record of it."""
        _check_text(row.participant_id, "participant_id")
        _check_text(row.cert_fingerprint, "cert_fingerprint")
        _check_status(row.status)
        ceremony = None
        if row.ceremony_public is not None:
            ceremony = _check_bytes(row.ceremony_public, "ceremony_public")
        with self._pool.transaction(write=True) as tx:
            tx.execute(
                "INSERT INTO participants (participant_id, identity_public, ceremony_public, "
                "cert_fingerprint, status, enrolled_at) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (participant_id) DO UPDATE SET "
                "identity_public = excluded.identity_public, "
                "ceremony_public = excluded.ceremony_public, "
                "cert_fingerprint = excluded.cert_fingerprint, "
                "status = excluded.status, enrolled_at = excluded.enrolled_at",
                row.participant_id,
                _check_bytes(row.identity_public, "identity_public"),
                ceremony,
                row.cert_fingerprint,
                row.status.value,
                float(row.enrolled_at),
            )

    def participants(self) -> list[ParticipantRow]:
        """Every participant ever enrolled, revoked ones included, by id."""
        with self._pool.transaction(write=False) as tx:
            rows = tx.all(
                "SELECT participant_id, identity_public, ceremony_public, cert_fingerprint, "
                "status, enrolled_at FROM participants ORDER BY participant_id"
            )
        return [
            ParticipantRow(
                participant_id=r[0],
                identity_public=bytes(r[1]),
                ceremony_public=None if r[2] is None else bytes(r[2]),
                cert_fingerprint=r[3],
                status=ParticipantStatus(r[4]),
                enrolled_at=float(r[5]),
            )
            for r in rows
        ]

    def set_participant_status(self, participant_id: str, status: ParticipantStatus) -> None:
        """Mark a participant active or revoked.

        Raises:
            UsageError: no participant has that id.
        """
        _check_status(status)
        with self._pool.transaction(write=True) as tx:
            changed = tx.count(
                "UPDATE participants SET status = ? WHERE participant_id = ?",
                status.value,
                participant_id,
            )
            if changed == 0:
                raise InternalError(f"participant {participant_id!r} is not enrolled")

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
        _check_bigint(row.round, "round")
        _check_text(row.stage, "stage")
        _check_json(row.config_json, "config_json")
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
        _check_text(stage, "stage")
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
        _check_bigint(round, "round")
        _check_json(outcome_json, "outcome_json")
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
        _check_bigint(round, "round")
        _check_text(reason, "abort reason")
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
        _check_bigint(round, "round")
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
        _check_text(stage, "stage")
        blob = _check_bytes(snapshot, f"snapshot of round {round}")
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
        _check_bigint(round, "round")
        with self._pool.transaction(write=False) as tx:
            row = tx.one(
                "SELECT stage, snapshot FROM round_snapshots WHERE round = ?",
                round,
            )
        return None if row is None else RoundSnapshot(round, row[0], bytes(row[1]))

    # -- aggregates ------------------------------------------------------------------

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
        _check_bigint(round, "round")
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
            aggregate_id = _first(
                tx.one("SELECT aggregate_id FROM aggregates WHERE round = ?", round)
            )
            count = total = 0
            for chunk in chunks:
                blob = _check_bytes(chunk, f"chunk {count} of the aggregate of round {round}")
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
        _check_bigint(round, "round")
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
        _check_bigint(round, "round")
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
        _check_bigint(round, "round")
        with self._pool.transaction(write=True) as tx:
            return self._drop_aggregate(tx, round)

    # -- replay guard ----------------------------------------------------------------

    def remember_message(self, round: int, stage: str, participant_id: str, sequence: int) -> bool:
        """Record a message's identity; False if it was recorded before (a replay).

        The table's primary key decides, atomically, whatever the number of threads.
        """
        _check_bigint(round, "round")
        _check_text(stage, "stage")
        _check_text(participant_id, "participant_id")
        _check_bigint(sequence, "sequence")
        with self._pool.transaction(write=True) as tx:
            inserted = tx.count(
                "INSERT INTO seen_messages (round, stage, participant_id, sequence) "
                "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                round,
                stage,
                participant_id,
                sequence,
            )
        return inserted == 1

    # -- events ----------------------------------------------------------------------

    def append_event(self, round: int | None, kind: str, body_json: str) -> int:
        """Append an event and return its ``seq`` (1 for the first, then +1 each time)."""
        if round is not None:
            _check_bigint(round, "round")
        _check_text(kind, "event kind")
        _check_json(body_json, "body_json")
        with self._pool.transaction(write=True) as tx:
            self._dialect.lock_events(tx)
            seq = int(_first(tx.one("SELECT COALESCE(MAX(seq), 0) + 1 FROM events")))
            tx.execute(
                "INSERT INTO events (seq, round, kind, body_json) VALUES (?, ?, ?, ?)",
                seq,
                round,
                kind,
                body_json,
            )
        return seq

    def events(self, after_seq: int = 0) -> list[EventRow]:
        """Events with ``seq > after_seq``, in order."""
        if not isinstance(after_seq, int) or isinstance(after_seq, bool) or after_seq < 0:
            raise InternalError(f"after_seq {after_seq!r}: must be an integer >= 0")
        with self._pool.transaction(write=False) as tx:
            rows = tx.all(
                "SELECT seq, round, kind, body_json FROM events WHERE seq > ? ORDER BY seq",
                after_seq,
            )
        return [EventRow(int(r[0]), None if r[1] is None else int(r[1]), r[2], r[3]) for r in rows]

    # -- internals -------------------------------------------------------------------

    def _migrate(self) -> None:
        """Bring the schema to ``LATEST_VERSION`` in one transaction, or refuse a newer one."""
        d = self._dialect
        try:
            with self._pool.transaction(write=True) as tx:
                d.lock_for_migration(tx)
                tx.execute(d.ddl(SCHEMA_VERSION_TABLE))
                current = int(
                    _first(tx.one("SELECT COALESCE(MAX(version), 0) FROM schema_version"))
                )
                if current > LATEST_VERSION:
                    raise ConfigError(
                        f"store {d.location}: schema version {current} was written by a newer "
                        f"Accord (this one knows up to {LATEST_VERSION}); upgrade Accord"
                    )
                for migration in MIGRATIONS[current:]:
                    for statement in migration.statements:
                        tx.execute(d.ddl(statement))
                    tx.execute(
                        "INSERT INTO schema_version (version, description, applied_at) "
                        "VALUES (?, ?, ?)",
                        migration.version,
                        migration.description,
                        time.time(),
                    )
        except d.database_errors as exc:
            self.close()
            raise ConfigError(
                f"store {d.location}: cannot open or migrate it ({exc}); give Accord a "
                "database or file of its own"
            ) from exc
        except BaseException:
            self.close()
            raise

    def _claim_in_flight(self, tx: Transaction, round: int, *, stage: str | None) -> None:
        """Lock an in-flight round's row for this transaction, optionally moving its stage.

        A conditional update rather than a read: on PostgreSQL it takes the row lock, so
        finish, abort and writes to the same round never interleave.
        """
        _check_bigint(round, "round")
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


def _first(row: tuple[Any, ...] | None) -> Any:
    if row is None:
        raise AssertionError("an aggregate query returned no row")
    return row[0]


def _check_bigint(value: object, what: str) -> None:
    """A round or sequence number: what a BIGINT column holds, and never negative."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MAX_BIGINT:
        raise InternalError(f"{what} {value!r}: must be an integer in [0, 2**63)")


def _check_status(status: object) -> None:
    if not isinstance(status, ParticipantStatus):
        raise InternalError(f"participant status {status!r}: use ParticipantStatus")


def _check_text(value: object, what: str) -> None:
    if not isinstance(value, str) or not value:
        raise InternalError(f"{what} {value!r}: must be a non-empty string")


def _check_bytes(value: object, what: str) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise InternalError(f"{what}: must be bytes, not {type(value).__name__}")
    return bytes(value)


def _check_json(value: object, what: str) -> None:
    if not isinstance(value, str):
        raise InternalError(f"{what}: must be a JSON text, not {type(value).__name__}")
    try:
        json.loads(value)
    except ValueError as exc:
        raise InternalError(f"{what}: not valid JSON ({exc.args[0]})") from None
