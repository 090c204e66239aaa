"""How the coordinator store reaches its database: SQLite or PostgreSQL, through a pool.

``dialect_for_url(url)`` picks the database adapter (a *dialect*) for a store URL, and a
``Pool`` lends its connections to the threads of a gRPC server, one transaction at a
time. The ``store`` module writes its SQL once, against ``Transaction``; nothing here
knows what the tables mean.

Dialects
--------
SQLite (standard library ``sqlite3``) for a path or ``sqlite:///ABSOLUTE/PATH.db``, in
WAL mode with ``synchronous=FULL`` (a commit is on disk before the call returns) and
``secure_delete=ON`` (a dropped aggregate's pages are zeroed, not left in the file).
PostgreSQL (``psycopg`` 3) for ``postgresql://USER@HOST:PORT/DB``, with
``synchronous_commit=on`` whatever the server's default. Both run the same SQL, written
once; a dialect only spells placeholders, byte columns, serial keys, transaction starts
and two locks.

Concurrency
-----------
Each transaction borrows a connection from a small pool, so threads never share a
connection at the same moment, and SQLite readers do not wait for a writer. Writes start
with ``BEGIN IMMEDIATE`` on SQLite (one writer at a time, others wait up to
``busy_timeout_s``); on PostgreSQL they start with a plain ``BEGIN`` and rely on the row
locks that the store's conditional updates take, and reads run in a read-only
``REPEATABLE READ`` snapshot. A pooled PostgreSQL connection that died while idle is
replaced once, before anything is sent on it. Do not use a pool across ``fork``.

Errors: ``ConfigError`` for a URL of no accepted form or a database that cannot be
opened; ``UsageError`` for a transaction on a closed pool. Anything the database raises
later propagates unchanged; ``Dialect.database_errors`` and ``Dialect.integrity_errors``
name its exception classes for the caller to catch.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from accord.errors import ConfigError, InternalError

__all__ = [
    "ACCEPTED_URLS",
    "Dialect",
    "Pool",
    "PostgreSQLDialect",
    "SQLiteDialect",
    "Transaction",
    "dialect_for_url",
]

ACCEPTED_URLS = (
    "a file path (coordinator.sqlite), sqlite:///ABSOLUTE/PATH.db, "
    "or postgresql://USER[:PASSWORD]@HOST:PORT/DATABASE"
)

_MAX_IDLE_CONNECTIONS = 16
"""Connections kept open between calls; more are opened under load and closed after."""

_MIGRATION_LOCK_KEY = 0x6163636F7264  # "accord": the advisory lock PostgreSQL migrations hold


def dialect_for_url(url: str, *, busy_timeout_s: float) -> Dialect:
    """The dialect for a store URL; no connection is opened yet.

    Args:
        url: a file path, ``sqlite:///ABSOLUTE/PATH.db``, or ``postgresql://...``
            (``postgres://`` is accepted too, as libpq does).
        busy_timeout_s: how long a SQLite writer waits for another writer's lock.

    Raises:
        ConfigError: the URL has none of the accepted forms.
    """
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"store URL {url!r}: empty; accepted forms: {ACCEPTED_URLS}")
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", url)
    if scheme is None:
        return SQLiteDialect(Path(url), busy_timeout_s)
    name = scheme.group(1).lower()
    if name == "sqlite":
        rest = unquote(url[len(scheme.group(0)) :])
        if not rest.startswith("/") or "?" in rest:
            raise ConfigError(
                f"store URL {url!r}: a sqlite URL names an absolute path and takes no "
                f"query, like sqlite:///var/lib/accord/coordinator.sqlite; accepted forms: "
                f"{ACCEPTED_URLS}"
            )
        return SQLiteDialect(Path("/" + rest.lstrip("/")), busy_timeout_s)
    if name in ("postgresql", "postgres"):
        return PostgreSQLDialect(url)
    raise ConfigError(
        f"store URL {_redact(url)!r}: unknown scheme {scheme.group(1)!r}; "
        f"accepted forms: {ACCEPTED_URLS}"
    )


def _redact(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    return re.sub(r"(://[^/@:]*):[^/@]*@", r"\1:***@", url)


class Transaction:
    """A connection inside a transaction, speaking the shared SQL with ``?`` placeholders."""

    def __init__(self, conn: Any, dialect: Dialect) -> None:
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


class Pool:
    """A dialect's connections, lent to one thread at a time, one transaction per loan."""

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self._lock = threading.Lock()
        self._idle: list[Any] = []
        self._closed = False

    def close(self) -> None:
        """Close every idle connection; later transactions raise ``UsageError``."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            self._dialect.close(conn)

    @contextlib.contextmanager
    def transaction(self, *, write: bool) -> Iterator[Transaction]:
        """One transaction on a borrowed connection: commit on return, roll back on raise."""
        d = self._dialect
        conn = self._begin(write=write)
        healthy = True
        try:
            try:
                yield Transaction(conn, d)
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
                raise InternalError(f"store {self._dialect.location} is closed")
            if self._idle:
                return self._idle.pop()
        return self._dialect.connect()

    def _give_back(self, conn: Any, *, healthy: bool) -> None:
        with self._lock:
            if healthy and not self._closed and len(self._idle) < _MAX_IDLE_CONNECTIONS:
                self._idle.append(conn)
                return
        self._dialect.close(conn)


class Dialect:
    """What differs between SQLite and PostgreSQL, and nothing else."""

    name: str
    location: str
    """Where the database lives, with any password removed (safe to log)."""
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
        """Fill in a ``store_schema`` statement's ``{blob}`` and ``{serial}`` types."""
        return statement.format(blob=self.blob, serial=self.serial)

    def begin(self, conn: Any, *, write: bool) -> None:
        raise NotImplementedError

    def in_transaction(self, conn: Any) -> bool:
        raise NotImplementedError

    def usable(self, conn: Any) -> bool:
        return True

    def lock_for_migration(self, tx: Transaction) -> None:
        """Keep two processes from migrating at once."""

    def lock_events(self, tx: Transaction) -> None:
        """Serialise appends, so ``seq`` stays dense and in commit order."""


class SQLiteDialect(Dialect):
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
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.Error):
                raise ConfigError(
                    f"store {self.location}: not a SQLite database Accord can use ({exc})"
                ) from exc
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


class PostgreSQLDialect(Dialect):
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

    def lock_for_migration(self, tx: Transaction) -> None:
        tx.execute("SELECT pg_advisory_xact_lock(?)", _MIGRATION_LOCK_KEY)

    def lock_events(self, tx: Transaction) -> None:
        # EXCLUSIVE lets readers in and keeps other appenders out until commit.
        tx.execute("LOCK TABLE events IN EXCLUSIVE MODE")
