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
The rows the store takes and returns are in ``store/rows.py``; the schema and its
migrations in ``store/schema.py``; the two databases (SQLite for a path, PostgreSQL for a
``postgresql://`` URL), the connection pool and the placeholder and column-type spelling
in ``store/dialects.py``. ``Store`` keeps here its lifetime, federation meta,
participants, replay guard and events, and inherits rounds with their restart snapshots
(``store/rounds.py``) and aggregates (``store/aggregates.py``); the argument checks are
in ``store/checks.py``. The SQL is written once for both databases.

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

import time

from accord.coordinator.store.aggregates import AggregateTables
from accord.coordinator.store.checks import (
    check_bigint,
    check_bytes,
    check_json,
    check_status,
    check_text,
    first,
)
from accord.coordinator.store.dialects import Dialect, Pool, dialect_for_url
from accord.coordinator.store.rows import (
    EventRow,
    ParticipantRow,
    ParticipantStatus,
)
from accord.coordinator.store.schema import LATEST_VERSION, MIGRATIONS, SCHEMA_VERSION_TABLE
from accord.errors import ConfigError, InternalError

__all__ = ["Store", "open_store"]


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


class Store(AggregateTables):
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
        check_text(key, "meta key")
        with self._pool.transaction(write=False) as tx:
            row = tx.one("SELECT value FROM meta WHERE key = ?", key)
        return None if row is None else bytes(row[0])

    def set_meta(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key``, replacing any previous value."""
        check_text(key, "meta key")
        blob = check_bytes(value, f"meta {key!r}")
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
        check_text(row.participant_id, "participant_id")
        check_text(row.cert_fingerprint, "cert_fingerprint")
        check_status(row.status)
        ceremony = None
        if row.ceremony_public is not None:
            ceremony = check_bytes(row.ceremony_public, "ceremony_public")
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
                check_bytes(row.identity_public, "identity_public"),
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
        check_status(status)
        with self._pool.transaction(write=True) as tx:
            changed = tx.count(
                "UPDATE participants SET status = ? WHERE participant_id = ?",
                status.value,
                participant_id,
            )
            if changed == 0:
                raise InternalError(f"participant {participant_id!r} is not enrolled")

    # -- replay guard ----------------------------------------------------------------

    def remember_message(self, round: int, stage: str, participant_id: str, sequence: int) -> bool:
        """Record a message's identity; False if it was recorded before (a replay).

        The table's primary key decides, atomically, whatever the number of threads.
        """
        check_bigint(round, "round")
        check_text(stage, "stage")
        check_text(participant_id, "participant_id")
        check_bigint(sequence, "sequence")
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
            check_bigint(round, "round")
        check_text(kind, "event kind")
        check_json(body_json, "body_json")
        with self._pool.transaction(write=True) as tx:
            self._dialect.lock_events(tx)
            seq = int(first(tx.one("SELECT COALESCE(MAX(seq), 0) + 1 FROM events")))
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
                current = int(first(tx.one("SELECT COALESCE(MAX(version), 0) FROM schema_version")))
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
