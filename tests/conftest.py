"""Fixtures shared by every test package.

``postgres_url`` and ``postgres_schema_url`` come from ``tests/pg.py``: a real PostgreSQL
server for the tests marked ``postgres``, or a skip that names what is missing.
"""

from __future__ import annotations

from .pg import postgres_schema_url, postgres_url

__all__ = ["postgres_schema_url", "postgres_url"]
