"""Which of the servers that share one PostgreSQL store leads: the one whose writer connection holds a
session advisory lock. The others stand by, trying for the lock, and serve nothing.

The lock lives as long as the leader's writer session: a leader killed (kill -9) closes its connections
and PostgreSQL frees the lock at once; a leader cut off from the database is dropped by PostgreSQL when
its keepalives go unanswered (set per session from ``[server] failover_seconds``). Every write is
committed on that same session, so no write of a leader that lost the lock can be committed: a leader
that finds its session gone connects again and must win the lock again, or stops (see PgStore).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import psycopg

LEADER_LOCK = 0x77756C67  # "wulg"
log = logging.getLogger("wulf.store")


def keepalives(conn: psycopg.Connection[Any], failover: float) -> None:
    """Let PostgreSQL drop this session (and free its lock) about ``failover / 2`` seconds after this
    server stops answering, and let this side see a dead link as soon."""
    idle, interval = max(1, int(failover / 4)), max(1, int(failover / 12))
    with conn.transaction():
        conn.execute(f"SET tcp_keepalives_idle = {idle}")
        conn.execute(f"SET tcp_keepalives_interval = {interval}")
        conn.execute("SET tcp_keepalives_count = 2")
        conn.execute(f"SET tcp_user_timeout = {int(failover * 1000 / 2)}")


def try_lead(conn: psycopg.Connection[Any]) -> bool:
    """Take the lock if nobody holds it (the session keeps it until it ends)."""
    with conn.transaction():
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK,)).fetchone()
    return bool(row and row[0])


def wait_to_lead(conn: psycopg.Connection[Any], failover: float) -> None:
    """Stand by until this session holds the lock (polling several times within ``failover``)."""
    keepalives(conn, failover)
    said = False
    while not try_lead(conn):
        if not said:
            log.info("another server leads: standing by (taking over within %.0f s of its end)", failover)
            said = True
        time.sleep(min(1.0, failover / 10))
