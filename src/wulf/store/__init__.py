"""The durable job database behind one protocol (wulf.store.base.JobStore): SQLite (the embedded
default) or PostgreSQL (``[store] url``)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from wulf.store.base import JobStore

PG_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(where: str) -> bool:
    return where.startswith(PG_SCHEMES)


def open_store(where: str, synchronous: str = "full") -> JobStore:
    """The store at ``where``: a PostgreSQL URL, else the path of an SQLite file (``synchronous`` is
    SQLite's durability). psycopg is imported only for PostgreSQL."""
    if is_postgres(where):
        from wulf.store.postgres import PgStore

        return PgStore(where)
    from wulf.store.sqlite import SqliteStore

    return SqliteStore(Path(where), synchronous)


def redact(where: str) -> str:
    """``where`` without a password, for logs and messages."""
    parts = urlsplit(where) if is_postgres(where) else None
    if parts is None or parts.password is None:
        return where
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
