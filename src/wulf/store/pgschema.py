"""The PostgreSQL store's schema: the SQLite store's named migrations, each either shared (its SQLite
text, with SQLite's 64-bit INTEGER and REAL spelt BIGINT and DOUBLE PRECISION) or a PostgreSQL text of
its own under the same name.

A PostgreSQL text is needed where the SQLite one is not portable: a column named ``user`` or ``window``
(reserved words in PostgreSQL, so quoted here), ``INSERT OR ...``, SQLite's functions. A test keeps the
names of both lists equal: a new SQLite migration must be added here too (as ``SHARED`` when its SQL is
portable), and a test applies every one to a real PostgreSQL.
"""

from __future__ import annotations

import re

from wulf.store import sqlite

SHARED = ""
"""A migration whose SQLite text serves PostgreSQL as well (see :func:`portable`)."""

_D = "DOUBLE PRECISION"

PG_MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_initial",
        f"""
        CREATE TABLE envs (hash TEXT PRIMARY KEY, data TEXT NOT NULL);
        CREATE TABLE jobs (
            id BIGINT PRIMARY KEY,
            "user" TEXT NOT NULL, uid BIGINT NOT NULL, origin TEXT NOT NULL, state TEXT NOT NULL,
            command TEXT NOT NULL, cwd TEXT NOT NULL, name TEXT NOT NULL, queue TEXT NOT NULL,
            script TEXT, env_hash TEXT NOT NULL, output TEXT NOT NULL, keep_script BIGINT NOT NULL,
            cpu_req {_D} NOT NULL, mem_req {_D} NOT NULL, cpu {_D} NOT NULL, mem_mb {_D} NOT NULL,
            node TEXT NOT NULL, pid BIGINT, submitted {_D} NOT NULL, started {_D}, ended {_D},
            exit_code BIGINT, signal BIGINT, cpu_time {_D}, peak_mem_mb {_D},
            reason TEXT NOT NULL, nice BIGINT NOT NULL, ext_key TEXT NOT NULL
        );
        CREATE INDEX jobs_active ON jobs (state) WHERE state IN ('queued', 'held', 'running');
        CREATE TABLE nodes (name TEXT PRIMARY KEY, state TEXT NOT NULL);
        """,
    ),
    (
        "0002_queues_constraints_limits",
        f"""
        ALTER TABLE jobs ADD COLUMN "constraint" TEXT NOT NULL DEFAULT '';
        ALTER TABLE jobs ADD COLUMN time_limit {_D};
        ALTER TABLE jobs ADD COLUMN cputime_limit {_D};
        ALTER TABLE jobs ADD COLUMN mem_limit_mb {_D};
        CREATE TABLE queues (
            "user" TEXT NOT NULL, name TEXT NOT NULL, priority BIGINT NOT NULL, stopped BIGINT NOT NULL,
            "window" TEXT NOT NULL, mail TEXT NOT NULL, PRIMARY KEY ("user", name)
        );
        """,
    ),
    (
        "0003_owner_ids_and_tokens",
        f"""
        ALTER TABLE jobs ADD COLUMN gid BIGINT;
        ALTER TABLE jobs ADD COLUMN umask BIGINT;
        CREATE TABLE tokens (
            id BIGINT PRIMARY KEY, "user" TEXT NOT NULL, uid BIGINT NOT NULL, gid BIGINT NOT NULL,
            name TEXT NOT NULL, hash TEXT NOT NULL UNIQUE, created {_D} NOT NULL, expires {_D}
        );
        """,
    ),
    ("0004_read_only_tokens", SHARED),
    ("0005_submission_keys", SHARED),
    ("0006_job_dialect", SHARED),
    ("0007_arrays", SHARED),
    ("0008_dependencies_retries", SHARED),
    (
        "0009_accounting",
        """
        CREATE INDEX jobs_user_ended ON jobs ("user", ended) WHERE ended IS NOT NULL;
        CREATE INDEX jobs_ended ON jobs (ended) WHERE ended IS NOT NULL;
        """,
    ),
    ("0010_job_mail", SHARED),
    ("0011_checkpoints", SHARED),
    ("0012_multinode", SHARED),
    ("0013_migrate", SHARED),
]

_TYPES = {"INTEGER": "BIGINT", "REAL": _D}


def portable(sql: str) -> str:
    """A shared migration's SQLite text for PostgreSQL: SQLite's INTEGER and REAL hold 64 bits, PostgreSQL's
    of those names 32 (a uid above 2^31 would not fit, a time would lose its seconds)."""
    return re.sub(r"\b(INTEGER|REAL)\b", lambda m: _TYPES[m.group(1)], sql)


def migrations() -> list[tuple[str, str]]:
    """The PostgreSQL migrations, in order, with the shared ones' text filled in."""
    sqlite_text = dict(sqlite.MIGRATIONS)
    return [(name, portable(sqlite_text[name]) if sql == SHARED else sql) for name, sql in PG_MIGRATIONS]
