"""Scan a coordinator's database for a byte pattern (the tests of guarantees 1 and 6).

``find_bytes(where, needle)`` answers "is this plaintext anywhere in the store?":

- a SQLite store (a path or ``sqlite:///...``): the raw bytes of the file and of its
  ``-wal``, ``-journal`` and ``-shm`` companions, so free pages and WAL frames that no
  query would return count too; SQLite does not compress, so a raw scan misses nothing;
- a folder: the raw bytes of every file below it (a state directory, logs);
- a PostgreSQL store (``postgresql://...``): every ``bytea`` and text-like column of every
  table outside the system schemas, searched by the server with ``position()``. A raw
  scan of a PostgreSQL data folder is not enough, because large values are compressed
  there (TOAST), so this is the reliable form; it sees live rows only.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path
from typing import Any

__all__ = ["find_bytes"]

_SQLITE_COMPANIONS = ("", "-wal", "-journal", "-shm")
_TEXT_TYPES = ("text", "character varying", "character", "json", "jsonb")


def find_bytes(where: str | os.PathLike[str], needle: bytes) -> bool:
    """True if ``needle`` occurs anywhere in the store or folder at ``where``.

    Args:
        where: a SQLite file path or ``sqlite:///`` URL, a folder, or a
            ``postgresql://`` URL.
        needle: the bytes to look for; at least 4, so that a hit means something.

    Returns:
        Whether any file, or any stored value, contains ``needle``.
    """
    if len(needle) < 4:
        raise ValueError("a needle shorter than 4 bytes matches by chance")
    text = os.fspath(where)
    if text.startswith(("postgresql://", "postgres://")):
        return _find_in_postgres(text, needle)
    if text.startswith("sqlite://"):
        text = "/" + text[len("sqlite://") :].lstrip("/")
    path = Path(text)
    if path.is_dir():
        return any(_file_contains(p, needle) for p in sorted(path.rglob("*")) if p.is_file())
    if not path.exists():
        raise FileNotFoundError(path)
    companions = (Path(f"{path}{suffix}") for suffix in _SQLITE_COMPANIONS)
    return any(_file_contains(p, needle) for p in companions if p.is_file())


def _file_contains(path: Path, needle: bytes) -> bool:
    with path.open("rb") as file:
        if os.fstat(file.fileno()).st_size == 0:
            return False
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as view:
            return view.find(needle) != -1


def _find_in_postgres(url: str, needle: bytes) -> bool:
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, autocommit=True) as conn:
        columns: list[Any] = conn.execute(
            "SELECT table_schema, table_name, column_name, data_type "
            "FROM information_schema.columns c "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') "
            "AND table_schema NOT LIKE 'pg\\_%%' "
            "AND EXISTS (SELECT 1 FROM information_schema.tables t "
            "WHERE t.table_schema = c.table_schema AND t.table_name = c.table_name "
            "AND t.table_type = 'BASE TABLE')",
            (),
        ).fetchall()
        for schema, table, column, data_type in columns:
            value: sql.Composable
            if data_type == "bytea":
                value = sql.Identifier(column)
            elif data_type in _TEXT_TYPES:
                value = sql.SQL("convert_to({}::text, 'UTF8')").format(sql.Identifier(column))
            else:
                continue
            query = sql.SQL("SELECT 1 FROM {}.{} WHERE position({} IN {}) > 0 LIMIT 1").format(
                sql.Identifier(schema), sql.Identifier(table), sql.Placeholder(), value
            )
            if conn.execute(query, (needle,)).fetchone() is not None:
                return True
    return False
