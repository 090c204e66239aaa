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

Dialects
--------
SQLite (standard library ``sqlite3``) for a path or ``sqlite:///ABSOLUTE/PATH.db``, in
WAL mode with ``synchronous=FULL`` (a commit is on disk before the call returns) and
``secure_delete=ON`` (a dropped aggregate's pages are zeroed, not left in the file).
PostgreSQL (``psycopg`` 3) for ``postgresql://USER@HOST:PORT/DB``, with
``synchronous_commit=on`` whatever the server's default. Both run the same SQL, written
once; a dialect only spells placeholders, byte columns, serial keys, transaction starts
and two locks. The schema and its migrations are in ``store_schema``.

Concurrency
-----------
A ``Store`` is shared by the threads of a gRPC server. Each call borrows a connection
from a small pool, so threads never share a connection at the same moment, and SQLite
readers do not wait for a writer. Writes start with ``BEGIN IMMEDIATE`` on SQLite (one
writer at a time, others wait up to ``busy_timeout_s``); on PostgreSQL state changes are
conditional updates (``... WHERE status = 'in_flight'``) that row locks serialise, so the
store stays correct with several coordinator replicas on one database. Do not use a
``Store`` across ``fork``; open one in the child.

Errors: ``ConfigError`` for a bad URL, an unreachable or foreign database, or a schema
newer than this release; ``UsageError`` for a call the current state does not allow (a
round that was never begun, a second round in flight); ``IntegrityError`` for a call that
contradicts recorded history (finishing a round with another outcome, reusing a round
number, an aggregate dropped under a reader).
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from accord.coordinator.store_schema import LATEST_VERSION, MIGRATIONS, SCHEMA_VERSION_TABLE
from accord.crypto.profile import Profile
from accord.errors import ConfigError, IntegrityError, UsageError

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

ACCEPTED_URLS = (
    "a file path (coordinator.sqlite), sqlite:///ABSOLUTE/PATH.db, "
    "or postgresql://USER[:PASSWORD]@HOST:PORT/DATABASE"
)

_MAX_BIGINT = 2**63 - 1
_MIGRATION_LOCK_KEY = 0x6163636F7264  # "accord": the advisory lock PostgreSQL migrations hold


class ParticipantStatus(enum.Enum):
    """Whether a participant may take part in rounds."""

    ACTIVE = "active"
    REVOKED = "revoked"


class RoundStatus(enum.Enum):
    """A round's life: ``IN_FLIGHT`` -> ``FINISHED`` or ``ABORTED``, never back."""

    IN_FLIGHT = "in_flight"
    FINISHED = "finished"
    ABORTED = "aborted"


@dataclass(frozen=True)
class ParticipantRow:
    """One enrolled participant; only public material.

    ``enrolled_at`` is in seconds since the Unix epoch; ``ceremony_public`` is the X25519
    key the secret CKKS context is sealed to, None until the participant advertised one.
    """

    participant_id: str
    identity_public: bytes
    ceremony_public: bytes | None
    cert_fingerprint: str
    status: ParticipantStatus
    enrolled_at: float


@dataclass(frozen=True)
class RoundRow:
    """One round as recorded. ``begin_round`` takes one with the defaults below.

    ``config_json`` and ``outcome_json`` are JSON texts; times are seconds since the Unix
    epoch; ``stage`` is the orchestrator's name for where the round stands.
    """

    round: int
    profile: Profile
    config_json: str
    started_at: float
    stage: str
    status: RoundStatus = RoundStatus.IN_FLIGHT
    finished_at: float | None = None
    outcome_json: str | None = None
    abort_reason: str | None = None


@dataclass(frozen=True)
class RoundSnapshot:
    """What the orchestrator saved to resume a round in flight after a restart."""

    round: int
    stage: str
    snapshot: bytes


@dataclass(frozen=True)
class AggregateInfo:
    """The stored aggregate of a round: how many chunks and bytes, without reading them."""

    round: int
    chunk_count: int
    total_bytes: int


@dataclass(frozen=True)
class EventRow:
    """One ledger event; ``seq`` runs 1, 2, 3, ... with no gap."""

    seq: int
    round: int | None
    kind: str
    body_json: str


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
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"store URL {url!r}: empty; accepted forms: {ACCEPTED_URLS}")
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", url)
    dialect: _Dialect
    if scheme is None:
        dialect = _SQLite(Path(url), busy_timeout_s)
    elif scheme.group(1).lower() == "sqlite":
        rest = unquote(url[len(scheme.group(0)) :])
        if not rest.startswith("/") or "?" in rest:
            raise ConfigError(
                f"store URL {url!r}: a sqlite URL names an absolute path and takes no "
                f"query, like sqlite:///var/lib/accord/coordinator.sqlite; accepted forms: "
                f"{ACCEPTED_URLS}"
            )
        dialect = _SQLite(Path("/" + rest.lstrip("/")), busy_timeout_s)
    elif scheme.group(1).lower() in ("postgresql", "postgres"):
        dialect = _PostgreSQL(url)
    else:
        raise ConfigError(
            f"store URL {_redact(url)!r}: unknown scheme {scheme.group(1)!r}; "
            f"accepted forms: {ACCEPTED_URLS}"
        )
    return Store(dialect)


class Store:
    """The coordinator's durable state; see the module docstring for what it may hold."""

    def __init__(self, dialect: _Dialect) -> None:
        self._dialect = dialect
        self._lock = threading.Lock()
        self._idle: list[Any] = []
        self._closed = False
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
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            self._dialect.close(conn)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- federation meta -------------------------------------------------------------

    def get_meta(self, key: str) -> bytes | None:
        """The value stored under ``key``, or None."""
        _check_text(key, "meta key")
        with self._transaction(write=False) as tx:
            row = tx.one("SELECT value FROM meta WHERE key = ?", key)
        return None if row is None else bytes(row[0])

    def set_meta(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key``, replacing any previous value."""
        _check_text(key, "meta key")
        blob = _check_bytes(value, f"meta {key!r}")
        with self._transaction(write=True) as tx:
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
        if not isinstance(row.status, ParticipantStatus):
            raise UsageError(f"participant status {row.status!r}: use ParticipantStatus")
        ceremony = None
        if row.ceremony_public is not None:
            ceremony = _check_bytes(row.ceremony_public, "ceremony_public")
        with self._transaction(write=True) as tx:
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
        with self._transaction(write=False) as tx:
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
        if not isinstance(status, ParticipantStatus):
            raise UsageError(f"participant status {status!r}: use ParticipantStatus")
        with self._transaction(write=True) as tx:
            changed = tx.count(
                "UPDATE participants SET status = ? WHERE participant_id = ?",
                status.value,
                participant_id,
            )
            if changed == 0:
                raise UsageError(f"participant {participant_id!r} is not enrolled")

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
        _check_round(row.round)
        _check_text(row.stage, "stage")
        _check_json(row.config_json, "config_json")
        if not isinstance(row.profile, Profile):
            raise UsageError(f"round {row.round}: profile {row.profile!r}: use Profile")
        if (
            row.status is not RoundStatus.IN_FLIGHT
            or row.finished_at is not None
            or row.outcome_json is not None
            or row.abort_reason is not None
        ):
            raise UsageError(f"round {row.round}: begin_round takes a fresh in-flight row")
        with self._transaction(write=True) as tx:
            busy = tx.one("SELECT round FROM rounds WHERE status = 'in_flight'")
            if busy is not None:
                raise UsageError(
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
                raise UsageError(
                    f"round {row.round}: another round was begun at the same time"
                ) from exc

    def set_round_stage(self, round: int, stage: str) -> None:
        """Move an in-flight round to ``stage``.

        Raises:
            UsageError: the round was never begun, or is finished or aborted.
        """
        _check_text(stage, "stage")
        with self._transaction(write=True) as tx:
            self._claim_in_flight(tx, round, stage=stage)

    def finish_round(self, round: int, outcome_json: str, finished_at: float) -> None:
        """Record a round's outcome; its restart snapshot is deleted with it.

        Finishing an already finished round with an equal outcome (as JSON values) is a
        no-op, so a coordinator that crashed after finishing may finish again.

        Raises:
            UsageError: the round was never begun.
            IntegrityError: the round finished with another outcome, or was aborted.
        """
        _check_round(round)
        _check_json(outcome_json, "outcome_json")
        with self._transaction(write=True) as tx:
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
        _check_round(round)
        _check_text(reason, "abort reason")
        at = time.time() if aborted_at is None else float(aborted_at)
        with self._transaction(write=True) as tx:
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
        with self._transaction(write=False) as tx:
            return [_round_row(r) for r in tx.all(f"{_ROUND_SELECT} ORDER BY round")]

    def latest_round(self) -> RoundRow | None:
        """The round with the highest number, in any status; None before the first."""
        with self._transaction(write=False) as tx:
            row = tx.one(f"{_ROUND_SELECT} ORDER BY round DESC LIMIT 1")
        return None if row is None else _round_row(row)

    def in_flight_round(self) -> RoundRow | None:
        """The round in flight, which a restarted coordinator resumes or aborts; or None."""
        with self._transaction(write=False) as tx:
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
        with self._transaction(write=True) as tx:
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
        _check_round(round)
        with self._transaction(write=False) as tx:
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
        _check_round(round)
        with self._transaction(write=True) as tx:
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
                raise UsageError(f"the aggregate of round {round} has no chunks")
            tx.execute(
                "UPDATE aggregates SET chunk_count = ?, total_bytes = ? WHERE aggregate_id = ?",
                count,
                total,
                aggregate_id,
            )
        return AggregateInfo(round=round, chunk_count=count, total_bytes=total)

    def aggregate_info(self, round: int) -> AggregateInfo | None:
        """Chunk count and size of a round's stored aggregate, or None if there is none."""
        _check_round(round)
        with self._transaction(write=False) as tx:
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
        _check_round(round)
        with self._transaction(write=False) as tx:
            row = tx.one(
                "SELECT aggregate_id, chunk_count FROM aggregates WHERE round = ?",
                round,
            )
        if row is None:
            raise UsageError(f"round {round} has no stored aggregate")
        return self._stream_chunks(round, int(row[0]), int(row[1]))

    def drop_aggregate(self, round: int) -> bool:
        """Delete a round's aggregate (retention); True if there was one."""
        _check_round(round)
        with self._transaction(write=True) as tx:
            return self._drop_aggregate(tx, round)

    # -- replay guard ----------------------------------------------------------------

    def remember_message(self, round: int, stage: str, participant_id: str, sequence: int) -> bool:
        """Record a message's identity; False if it was recorded before (a replay).

        The table's primary key decides, atomically, whatever the number of threads.
        """
        _check_round(round)
        _check_text(stage, "stage")
        _check_text(participant_id, "participant_id")
        if not isinstance(sequence, int) or isinstance(sequence, bool):
            raise UsageError(f"sequence {sequence!r}: must be an integer")
        if not 0 <= sequence <= _MAX_BIGINT:
            raise UsageError(f"sequence {sequence}: must be in [0, 2**63)")
        with self._transaction(write=True) as tx:
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
            _check_round(round)
        _check_text(kind, "event kind")
        _check_json(body_json, "body_json")
        with self._transaction(write=True) as tx:
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
            raise UsageError(f"after_seq {after_seq!r}: must be an integer >= 0")
        with self._transaction(write=False) as tx:
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
            with self._transaction(write=True) as tx:
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

    def _claim_in_flight(self, tx: _Tx, round: int, *, stage: str | None) -> None:
        """Lock an in-flight round's row for this transaction, optionally moving its stage.

        A conditional update rather than a read: on PostgreSQL it takes the row lock, so
        finish, abort and writes to the same round never interleave.
        """
        _check_round(round)
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
            raise UsageError(f"round {round} is {status.value.replace('_', ' ')}, not in flight")

    def _round(self, tx: _Tx, round: int) -> RoundRow:
        row = tx.one(f"{_ROUND_SELECT} WHERE round = ?", round)
        if row is None:
            raise UsageError(f"round {round} was never begun")
        return _round_row(row)

    def _drop_aggregate(self, tx: _Tx, round: int) -> bool:
        row = tx.one("SELECT aggregate_id FROM aggregates WHERE round = ?", round)
        if row is None:
            return False
        tx.execute("DELETE FROM aggregate_chunks WHERE aggregate_id = ?", row[0])
        tx.execute("DELETE FROM aggregates WHERE aggregate_id = ?", row[0])
        return True

    def _stream_chunks(self, round: int, aggregate_id: int, chunk_count: int) -> Iterator[bytes]:
        for index in range(chunk_count):
            with self._transaction(write=False) as tx:
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

    @contextlib.contextmanager
    def _transaction(self, *, write: bool) -> Iterator[_Tx]:
        """One transaction on a borrowed connection: commit on return, roll back on raise."""
        d = self._dialect
        conn = self._begin(write=write)
        healthy = True
        try:
            try:
                yield _Tx(conn, d)
                conn.execute("COMMIT")
            except BaseException:
                if d.in_transaction(conn):
                    with contextlib.suppress(*d.database_errors):
                        conn.execute("ROLLBACK")
                raise
        except BaseException:
            healthy = d.usable(conn)
            raise
        finally:
            self._give_back(conn, healthy=healthy)

    def _begin(self, *, write: bool) -> Any:
        """Borrow a connection and start a transaction on it.

        A pooled PostgreSQL connection may have died while idle (a server restart, a
        failover); nothing was sent on it yet, so one fresh connection is tried instead.
        """
        d = self._dialect
        conn = self._borrow()
        try:
            d.begin(conn, write=write)
            return conn
        except BaseException as exc:
            usable = d.usable(conn)
            self._give_back(conn, healthy=usable)
            if usable or not isinstance(exc, d.database_errors):
                raise
        conn = d.connect()
        try:
            d.begin(conn, write=write)
        except BaseException:
            self._give_back(conn, healthy=d.usable(conn))
            raise
        return conn

    def _borrow(self) -> Any:
        with self._lock:
            if self._closed:
                raise UsageError(f"store {self._dialect.location} is closed")
            if self._idle:
                return self._idle.pop()
        return self._dialect.connect()

    def _give_back(self, conn: Any, *, healthy: bool) -> None:
        with self._lock:
            if healthy and not self._closed and len(self._idle) < _MAX_IDLE_CONNECTIONS:
                self._idle.append(conn)
                return
        self._dialect.close(conn)


_MAX_IDLE_CONNECTIONS = 16
"""Connections kept open between calls; more are opened under load and closed after."""

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


def _check_round(round: object) -> None:
    if not isinstance(round, int) or isinstance(round, bool) or not 0 <= round <= _MAX_BIGINT:
        raise UsageError(f"round {round!r}: must be an integer in [0, 2**63)")


def _check_text(value: object, what: str) -> None:
    if not isinstance(value, str) or not value:
        raise UsageError(f"{what} {value!r}: must be a non-empty string")


def _check_bytes(value: object, what: str) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise UsageError(f"{what}: must be bytes, not {type(value).__name__}")
    return bytes(value)


def _check_json(value: object, what: str) -> None:
    if not isinstance(value, str):
        raise UsageError(f"{what}: must be a JSON text, not {type(value).__name__}")
    try:
        json.loads(value)
    except ValueError as exc:
        raise UsageError(f"{what}: not valid JSON ({exc.args[0]})") from None


def _redact(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    return re.sub(r"(://[^/@:]*):[^/@]*@", r"\1:***@", url)


# -- dialects ----------------------------------------------------------------------------


class _Tx:
    """A connection inside a transaction, speaking the shared SQL with ``?`` placeholders."""

    def __init__(self, conn: Any, dialect: _Dialect) -> None:
        self._conn = conn
        self._dialect = dialect

    def execute(self, sql: str, *params: object) -> Any:
        return self._conn.execute(self._dialect.placeholders(sql), params)

    def one(self, sql: str, *params: object) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self.execute(sql, *params).fetchone()
        return row

    def all(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self.execute(sql, *params).fetchall()
        return rows

    def count(self, sql: str, *params: object) -> int:
        """Run a write and return how many rows it changed."""
        return int(self.execute(sql, *params).rowcount)


class _Dialect:
    """What differs between SQLite and PostgreSQL, and nothing else."""

    name: str
    location: str
    blob: str
    serial: str
    integrity_errors: tuple[type[Exception], ...]
    database_errors: tuple[type[Exception], ...]

    def connect(self) -> Any:
        raise NotImplementedError

    def close(self, conn: Any) -> None:
        with contextlib.suppress(*self.database_errors):
            conn.close()

    def placeholders(self, sql: str) -> str:
        return sql

    def ddl(self, statement: str) -> str:
        return statement.format(blob=self.blob, serial=self.serial)

    def begin(self, conn: Any, *, write: bool) -> None:
        raise NotImplementedError

    def in_transaction(self, conn: Any) -> bool:
        raise NotImplementedError

    def usable(self, conn: Any) -> bool:
        return True

    def lock_for_migration(self, tx: _Tx) -> None:
        """Keep two processes from migrating at once."""

    def lock_events(self, tx: _Tx) -> None:
        """Serialise appends, so ``seq`` stays dense and in commit order."""


class _SQLite(_Dialect):
    name = "sqlite"
    blob = "BLOB"
    serial = "INTEGER PRIMARY KEY AUTOINCREMENT"
    integrity_errors = (sqlite3.IntegrityError,)
    database_errors = (sqlite3.Error,)

    def __init__(self, path: Path, busy_timeout_s: float) -> None:
        self.path = path.expanduser()
        self.location = str(self.path)
        self._busy_timeout_s = busy_timeout_s
        self._created = False

    def connect(self) -> Any:
        if not self._created:
            self._create_private_file()
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout_s,
                isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                check_same_thread=False,  # the pool hands a connection to one thread at a time
            )
        except sqlite3.Error as exc:
            raise ConfigError(f"store {self.location}: cannot open it ({exc})") from exc
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise ConfigError(
                    f"store {self.location}: SQLite refused WAL mode (got {mode}); put the "
                    "store on a local file system"
                )
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA secure_delete = ON")
        except sqlite3.Error as exc:
            conn.close()
            raise ConfigError(
                f"store {self.location}: not a SQLite database Accord can use ({exc})"
            ) from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _create_private_file(self) -> None:
        """Create the file owner-only; SQLite gives its -wal and -shm files the same mode."""
        if self.path.is_dir():
            raise ConfigError(f"store {self.location}: is a folder; name a file inside it")
        if not self.path.parent.is_dir():
            raise ConfigError(
                f"store {self.location}: folder {self.path.parent} does not exist; create it "
                "or point the store elsewhere"
            )
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        except OSError as exc:
            raise ConfigError(f"store {self.location}: cannot create it ({exc})") from exc
        os.close(fd)
        self._created = True

    def begin(self, conn: Any, *, write: bool) -> None:
        # IMMEDIATE takes the write lock up front: a deferred transaction that reads,
        # then writes, could fail with SQLITE_BUSY instead of waiting its turn.
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")

    def in_transaction(self, conn: Any) -> bool:
        return bool(conn.in_transaction)


class _PostgreSQL(_Dialect):
    name = "postgresql"
    blob = "BYTEA"
    serial = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"

    def __init__(self, url: str) -> None:
        import psycopg  # only a PostgreSQL store needs it

        self._psycopg = psycopg
        self.url = url
        self.location = _redact(url)
        self.integrity_errors = (psycopg.IntegrityError,)
        self.database_errors = (psycopg.Error,)

    def connect(self) -> Any:
        try:
            conn = self._psycopg.connect(self.url, autocommit=True)
        except self._psycopg.Error as exc:
            raise ConfigError(
                f"store {self.location}: cannot connect ({str(exc).strip()}); check the "
                "URL, that the server runs, and that the database exists"
            ) from exc
        # A commit must be durable before the coordinator acknowledges a message,
        # whatever the server's default.
        conn.execute("SET synchronous_commit TO on")
        return conn

    def placeholders(self, sql: str) -> str:
        if "%" in sql:
            raise AssertionError("the shared SQL must not contain '%'")
        return sql.replace("?", "%s")

    def begin(self, conn: Any, *, write: bool) -> None:
        conn.execute("BEGIN" if write else "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")

    def in_transaction(self, conn: Any) -> bool:
        status = conn.info.transaction_status
        return bool(status != self._psycopg.pq.TransactionStatus.IDLE)

    def usable(self, conn: Any) -> bool:
        return not (conn.closed or conn.broken)

    def lock_for_migration(self, tx: _Tx) -> None:
        tx.execute("SELECT pg_advisory_xact_lock(?)", _MIGRATION_LOCK_KEY)

    def lock_events(self, tx: _Tx) -> None:
        # EXCLUSIVE lets readers in and keeps other appenders out until commit.
        tx.execute("LOCK TABLE events IN EXCLUSIVE MODE")
