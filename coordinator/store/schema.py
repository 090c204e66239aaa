"""The coordinator store's schema, as an ordered list of migrations.

One schema serves SQLite and PostgreSQL. The statements below are written once, in the
SQL both dialects accept, with two placeholders that each dialect fills in:

- ``{blob}``: a byte string column (``BLOB`` in SQLite, ``BYTEA`` in PostgreSQL);
- ``{serial}``: an integer primary key that the database assigns and never reuses
  (``INTEGER PRIMARY KEY AUTOINCREMENT`` in SQLite, ``BIGINT GENERATED ALWAYS AS
  IDENTITY PRIMARY KEY`` in PostgreSQL).

Rules for whoever adds a migration:

- Append; never edit a migration that has shipped. Databases in the field have run it,
  and `schema_version` records that they did.
- A migration is a list of statements that `Store` runs in one transaction together with
  the row that records it, so a crash leaves the database at the old version or the new.
  Both dialects run DDL inside a transaction.
- A store opened by an older Accord that finds a newer version refuses to run (it cannot
  know what the newer columns mean), so a migration need not be readable backwards.

What the tables may hold is the store module's business; see its docstring.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LATEST_VERSION", "MIGRATIONS", "Migration"]


@dataclass(frozen=True)
class Migration:
    """One step of the schema: the statements that take version ``version - 1`` to ``version``."""

    version: int
    description: str
    statements: tuple[str, ...]


SCHEMA_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version     INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at  DOUBLE PRECISION NOT NULL
)
"""
"""Created before any migration runs; one row per migration applied."""


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        version=1,
        description="federation meta, participants, rounds, snapshots, aggregates, "
        "replay guard, events",
        statements=(
            # Small named values of the federation: its id, the key epoch, the CKKS
            # *public* context, the config digest.
            """
            CREATE TABLE meta (
                key   TEXT PRIMARY KEY,
                value {blob} NOT NULL
            )
            """,
            """
            CREATE TABLE participants (
                participant_id   TEXT PRIMARY KEY,
                identity_public  {blob} NOT NULL,
                ceremony_public  {blob},
                cert_fingerprint TEXT NOT NULL,
                status           TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
                enrolled_at      DOUBLE PRECISION NOT NULL
            )
            """,
            # A round's life: in_flight -> finished | aborted, never back. The outcome is
            # written once; `Store.finish_round` compares rather than overwrites it.
            """
            CREATE TABLE rounds (
                round        BIGINT PRIMARY KEY CHECK (round >= 0),
                profile      TEXT NOT NULL,
                config_json  TEXT NOT NULL,
                stage        TEXT NOT NULL,
                status       TEXT NOT NULL
                             CHECK (status IN ('in_flight', 'finished', 'aborted')),
                started_at   DOUBLE PRECISION NOT NULL,
                finished_at  DOUBLE PRECISION,
                outcome_json TEXT,
                abort_reason TEXT,
                CHECK ((status = 'finished') = (outcome_json IS NOT NULL)),
                CHECK ((status = 'aborted') = (abort_reason IS NOT NULL))
            )
            """,
            # At most one round in flight, enforced by the database rather than by a
            # read-then-write in Python, so two coordinator replicas cannot both start one.
            """
            CREATE UNIQUE INDEX rounds_one_in_flight ON rounds (status)
                WHERE status = 'in_flight'
            """,
            """
            CREATE TABLE round_snapshots (
                round    BIGINT PRIMARY KEY REFERENCES rounds (round),
                stage    TEXT NOT NULL,
                snapshot {blob} NOT NULL
            )
            """,
            # The aggregate (the sum only) of a round, in chunks. Chunks hang off an
            # aggregate_id that is never reused, so a reader streaming chunk by chunk can
            # tell that the aggregate it started on was dropped under it.
            """
            CREATE TABLE aggregates (
                aggregate_id {serial},
                round        BIGINT NOT NULL UNIQUE REFERENCES rounds (round),
                chunk_count  BIGINT NOT NULL CHECK (chunk_count >= 0),
                total_bytes  BIGINT NOT NULL CHECK (total_bytes >= 0)
            )
            """,
            """
            CREATE TABLE aggregate_chunks (
                aggregate_id BIGINT NOT NULL REFERENCES aggregates (aggregate_id),
                chunk_index  BIGINT NOT NULL CHECK (chunk_index >= 0),
                chunk        {blob} NOT NULL,
                PRIMARY KEY (aggregate_id, chunk_index)
            )
            """,
            # The replay guard: the primary key refuses a second (round, stage,
            # participant, sequence), atomically, whatever the number of threads or replicas.
            """
            CREATE TABLE seen_messages (
                round          BIGINT NOT NULL,
                stage          TEXT NOT NULL,
                participant_id TEXT NOT NULL,
                sequence       BIGINT NOT NULL CHECK (sequence >= 0),
                PRIMARY KEY (round, stage, participant_id, sequence)
            )
            """,
            # Append-only; `seq` is dense (1, 2, 3, ...) because appends are serialised,
            # so the federation ledger can chain records by position.
            """
            CREATE TABLE events (
                seq       BIGINT PRIMARY KEY CHECK (seq > 0),
                round     BIGINT,
                kind      TEXT NOT NULL,
                body_json TEXT NOT NULL
            )
            """,
        ),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version
"""The schema version this Accord writes; a database at a higher one is refused."""


def _check_migrations() -> None:
    """Versions run 1, 2, 3, ... with no gap: a gap would silently skip a step."""
    for expected, migration in enumerate(MIGRATIONS, start=1):
        if migration.version != expected:
            raise AssertionError(f"migration {migration.version} out of order")


_check_migrations()
