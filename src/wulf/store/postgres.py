"""The store on PostgreSQL (psycopg 3), for a database that outlives one machine (and, later, a standby server).

It keeps the SQLite store's contract (wulf.store.base.JobStore) and shape: every write goes to one writer
thread with a future, in the order of the calls; the thread commits whatever gathered while it was busy
in one transaction (one round of WAL flush for a burst), and a future is done only once its write is
committed. A write whose own data cannot be stored fails alone and the rest of its group is committed; a
failure of the database (connection lost, disk full) fails the whole group, and the writer connects again
for the next one. Reads use autocommit connections of their own, one per thread that reads (accounting
runs in worker threads), so a long query never waits for the writer.

The schema is the SQLite store's migrations by name (wulf.store.pgschema); the column lists are the
SQLite store's, so a new Job field needs only its migration here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import psycopg

from wulf.errors import UsageError, WulfError
from wulf.model.accounting import MAX_SUMMARY_USERS, AcctQuery, summary_row
from wulf.model.job import Job
from wulf.store import leader, pgschema, redact
from wulf.store.base import KEY_TTL, ArrayRow, Submission
from wulf.store.sqlite import (
    _COLUMNS,
    _FINAL,
    _MUTABLE,
    _QUEUE_COLUMNS,
    _SELECT,
    _TOKEN_COLUMNS,
    _acct_where,
    _changes,
    _job,
    _row,
    store_error,
)
from wulf.store.writer import Batch, GroupWriter

log = logging.getLogger("wulf.store")

LOST_LEAD = 75  # the exit status of a server that lost the lead (EX_TEMPFAIL: start it again to stand by)
_MIGRATION_LOCK = 0x77756C66  # "wulf": servers starting at once migrate one after the other

_INSERT = f"INSERT INTO jobs ({_SELECT}) VALUES ({', '.join(['%s'] * len(_COLUMNS))})"
# an array's tasks after its first: copies of the first's row, each with its own id and index
_TASKS = (f"INSERT INTO jobs ({_SELECT}) SELECT "
          + ", ".join("t.id + i.n" if c == "id" else "i.v" if c == "array_index" else f't."{c}"'
                      for c in _COLUMNS)
          + " FROM unnest(%s::bigint[]) WITH ORDINALITY AS i(v, n), jobs AS t WHERE t.id = %s")
_UPDATE = "UPDATE jobs SET " + ", ".join(f'"{c}" = %s' for c in _MUTABLE) + " WHERE id = %s"
_COPY = f"COPY jobs ({_SELECT}) FROM STDIN"
_COPY_FROM = 64  # rows: from here on a submission's jobs go in by COPY (3-5 times quicker than one INSERT a row)
_QUEUE_NAMES = ", ".join(f'"{c}"' for c in _QUEUE_COLUMNS)
_UPSERT_QUEUE = (f"INSERT INTO queues ({_QUEUE_NAMES}) VALUES ({', '.join(['%s'] * len(_QUEUE_COLUMNS))}) "
                 f"ON CONFLICT (\"user\", name) DO UPDATE SET "
                 + ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in _QUEUE_COLUMNS[2:]))
_TOKEN_NAMES = ", ".join(f'"{c}"' for c in _TOKEN_COLUMNS)

_Op = Callable[[psycopg.Connection[Any]], None]


def _many(cur: psycopg.Cursor[Any], sql: str, rows: Sequence[Sequence[Any]]) -> None:
    """``sql`` for each row; one row as one execute (executemany costs more for one row than it saves)."""
    if len(rows) == 1:
        cur.execute(sql, rows[0])
    elif rows:
        cur.executemany(sql, rows)


def _plain(values: Iterable[Any]) -> tuple[Any, ...]:
    """SQLite's columns take a bool as 0/1; PostgreSQL's BIGINT wants the number."""
    return tuple(int(v) if isinstance(v, bool) else v for v in values)


def _sql(text: str) -> str:
    """A query written with SQLite's ``?`` placeholders (wulf.store.sqlite._acct_where), for psycopg."""
    return text.replace("?", "%s")


def connect(url: str, autocommit: bool) -> psycopg.Connection[Any]:
    """A connection, or a WulfError that says which database could not be reached and why."""
    try:
        return psycopg.connect(url, autocommit=autocommit, connect_timeout=10, application_name="wulf server")
    except psycopg.Error as e:
        err = WulfError(f"cannot reach the database {redact(url)}: {_first_line(e)}")
        err.retryable = True
        raise err from None


def migrate(conn: psycopg.Connection[Any]) -> list[str]:
    """Apply the named migrations not yet applied, in order, in one transaction; returns their names."""
    applied = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied DOUBLE PRECISION NOT NULL)")
        done = {r[0] for r in conn.execute("SELECT name FROM migrations")}
        for name, sql in pgschema.migrations():
            if name in done:
                continue
            for statement in sql.split(";"):
                if statement.strip():
                    conn.execute(statement.encode())  # bytes: no placeholders in a migration
            conn.execute("INSERT INTO migrations VALUES (%s, extract(epoch FROM now()))", (name,))
            applied.append(name)
    return applied


class PgStore(GroupWriter):
    """``lead``: this store is a server's, which must lead to write (wulf.store.leader): the constructor
    stands by until it leads, and a store that loses the lead ends the process at once."""

    def __init__(self, url: str, lead: bool = False, failover: float = 10.0) -> None:
        self.url = url
        self.path = redact(url)  # what the server's log names as its store
        self.lead, self.failover = lead, failover
        self.leads_since: float | None = None
        self._write = connect(url, autocommit=False)
        try:
            if lead:  # first: a standby of a newer release must not change the schema under the leader
                leader.wait_to_lead(self._write, failover)
                self.leads_since = time.time()
            migrate(self._write)
        except psycopg.Error as e:
            self._write.close()
            raise pg_error(e) from None
        self._readers = threading.local()
        self._reader_conns: list[psycopg.Connection[Any]] = []
        self._reader_lock = threading.Lock()
        self._start_writer()

    # ------------------------------------------------------------------ the writer thread (GroupWriter)

    def _idle_after(self) -> float | None:
        # a leader looks at its session when idle: one that lost it must stop before a standby leads
        return self.failover / 5 if self.lead else None

    def _idle(self) -> None:
        self._heartbeat()

    def _error(self, e: BaseException) -> WulfError:
        return pg_error(e)

    def _try(self, batch: Batch) -> tuple[int | None, BaseException | None]:
        """One attempt: ``(None, None)`` when committed; else the index of the write to blame (None when it
        is the database's failure) and the error.

        A connection found dead before the commit was sent (the database
        restarted, an idle connection cut) is replaced and the group tried once more: nothing of it was
        done. Dead during the commit, the outcome is unknown and the group fails."""
        for again in (True, False):
            at: int | None = None
            committing = False
            try:
                if self._write.closed or self._write.broken:
                    self._reconnect()
                for i, (op, _) in enumerate(batch):
                    at = i
                    op(self._write)
                at, committing = None, True
                self._write.commit()
                return None, None
            except Exception as e:
                with contextlib.suppress(psycopg.Error):
                    self._write.rollback()
                if again and not committing and self._write.broken:
                    log.warning("the database connection was lost (%s); connecting again", e)
                    continue
                return (at if at is not None and _of_the_write(e) else None), e
        raise AssertionError("unreachable")

    def _reconnect(self) -> None:
        """A new writer session; a leader's must win the lock again (the old session's is gone with it)."""
        self._write = connect(self.url, autocommit=False)
        if self.lead:
            leader.keepalives(self._write, self.failover)
            if not leader.try_lead(self._write):
                self._deposed("another server took the lead while this one had lost its database")

    def _heartbeat(self) -> None:
        try:
            if self._write.closed or self._write.broken:
                self._reconnect()
            self._write.execute("SELECT 1")
            self._write.rollback()
        except Exception as e:
            log.warning("the database connection was lost (%s); connecting again", e)
            try:
                self._reconnect()
            except Exception as again:
                self._deposed(f"the database cannot be reached ({again})")

    def _deposed(self, why: str) -> None:
        """Stop now: another server leads, or may soon, and nothing more may be written or sent from here."""
        log.critical("this server no longer leads: %s; stopping (start it again to stand by)", why)
        logging.shutdown()
        os._exit(LOST_LEAD)

    # ------------------------------------------------------------------ reads

    def _reader(self) -> psycopg.Connection[Any]:
        """This thread's own autocommit connection (a new one when the old one broke)."""
        conn: psycopg.Connection[Any] | None = getattr(self._readers, "conn", None)
        if conn is None or conn.closed or conn.broken:
            conn = connect(self.url, autocommit=True)
            self._readers.conn = conn
            with self._reader_lock:
                self._reader_conns.append(conn)
        return conn

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows of a query; on a connection found dead, once more on a new one (reads repeat safely)."""
        for again in (True, False):
            conn = self._reader()
            try:
                return conn.execute(sql, params).fetchall()
            except psycopg.Error as e:
                if not (again and conn.broken):
                    raise pg_error(e) from None
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ JobStore

    def load(self, history: int) -> tuple[list[Job], int]:
        jobs = [_job(r) for r in self._rows(
            f"SELECT {_SELECT} FROM jobs WHERE state IN ('queued', 'held', 'running') ORDER BY id")]
        ended = self._rows(f"SELECT {_SELECT} FROM jobs WHERE state IN (%s, %s, %s) ORDER BY id DESC LIMIT %s",
                           (*_FINAL, history))
        jobs.extend(_job(r) for r in reversed(ended))
        jobs.sort(key=lambda j: j.id)
        self._array_scripts(jobs)
        top = self._rows("SELECT max(id) FROM jobs")[0][0]
        return jobs, (top or 0) + 1

    def _array_scripts(self, jobs: Sequence[Job]) -> None:
        wanted = sorted({j.array_id for j in jobs if j.array_id is not None})
        if not wanted:
            return
        scripts = dict(self._rows("SELECT id, script FROM arrays WHERE id = ANY(%s)", (wanted,)))
        for job in jobs:
            if job.array_id is not None:
                job.script = scripts.get(job.array_id)

    def arrays(self) -> dict[int, str]:
        return {i: spec for i, spec in self._rows("SELECT id, spec FROM arrays")}

    def insert(self, jobs: Sequence[Job], envs: dict[str, str],
               submission: Submission | None = None, arrays: Sequence[ArrayRow] = ()) -> asyncio.Future[None]:
        rows = [_plain(_row(j)) for j in jobs]
        array_rows = [(a.id, a.spec, a.script) for a in arrays]
        tasks = [(list(a.rest), a.id) for a in arrays if a.rest]
        env_rows = list(envs.items())
        key_row = (submission.uid, submission.key, json.dumps([j.id for j in jobs]), submission.expires) \
            if submission is not None else None

        def op(c: psycopg.Connection[Any]) -> None:
            with c.cursor() as cur:
                _many(cur, "INSERT INTO envs VALUES (%s, %s) ON CONFLICT DO NOTHING", env_rows)
                _many(cur, "INSERT INTO arrays VALUES (%s, %s, %s)", array_rows)
                if len(rows) >= _COPY_FROM:
                    with cur.copy(_COPY) as copy:
                        for row in rows:
                            copy.write_row(row)
                else:
                    _many(cur, _INSERT, rows)
                _many(cur, _TASKS, tasks)
                if key_row is not None:
                    cur.execute("DELETE FROM submissions WHERE expires < %s", (key_row[3] - KEY_TTL,))
                    cur.execute("INSERT INTO submissions VALUES (%s, %s, %s, %s) ON CONFLICT (uid, key) "
                                "DO UPDATE SET ids = EXCLUDED.ids, expires = EXCLUDED.expires", key_row)

        return self._submit(op)

    def submissions(self, now: float) -> dict[tuple[int, str], tuple[float, list[int]]]:
        rows = self._rows("SELECT uid, key, expires, ids FROM submissions WHERE expires >= %s ORDER BY expires",
                          (now,))
        return {(uid, key): (expires, list(json.loads(ids))) for uid, key, expires, ids in rows}

    def update(self, jobs: Sequence[Job], arrays: Sequence[tuple[int, str]] = ()) -> asyncio.Future[None]:
        rows = [_plain(_changes(j)) for j in jobs]
        specs = [(spec, i) for i, spec in arrays]

        def op(c: psycopg.Connection[Any]) -> None:
            with c.cursor() as cur:
                _many(cur, _UPDATE, rows)
                _many(cur, "UPDATE arrays SET spec = %s WHERE id = %s", specs)

        return self._submit(op)

    def get(self, job_id: int) -> Job | None:
        rows = self._rows(f"SELECT {_SELECT} FROM jobs WHERE id = %s", (job_id,))
        if not rows:
            return None
        job = _job(rows[0])
        self._array_scripts([job])
        return job

    def env(self, env_hash: str) -> dict[str, str]:
        rows = self._rows("SELECT data FROM envs WHERE hash = %s", (env_hash,))
        return dict(json.loads(rows[0][0])) if rows else {}

    def node_states(self) -> dict[str, str]:
        return {name: state for name, state in self._rows("SELECT name, state FROM nodes")}

    def set_node_state(self, name: str, state: str) -> asyncio.Future[None]:
        def op(c: psycopg.Connection[Any]) -> None:
            c.execute("INSERT INTO nodes VALUES (%s, %s) ON CONFLICT (name) DO UPDATE SET state = EXCLUDED.state",
                      (name, state))

        return self._submit(op)

    def queues(self) -> list[dict[str, Any]]:
        rows = self._rows(f"SELECT {_QUEUE_NAMES} FROM queues")
        return [dict(zip(_QUEUE_COLUMNS, row, strict=True)) for row in rows]

    def set_queue(self, settings: dict[str, Any]) -> asyncio.Future[None]:
        row = _plain(settings[c] for c in _QUEUE_COLUMNS)

        def op(c: psycopg.Connection[Any]) -> None:
            c.execute(_UPSERT_QUEUE, row)

        return self._submit(op)

    def tokens(self) -> list[dict[str, Any]]:
        rows = self._rows(f"SELECT {_TOKEN_NAMES} FROM tokens ORDER BY id")
        return [{**dict(zip(_TOKEN_COLUMNS, row, strict=True)), "read_only": bool(row[-1])} for row in rows]

    def add_token(self, record: dict[str, Any]) -> asyncio.Future[None]:
        row = _plain(record[c] for c in _TOKEN_COLUMNS)

        def op(c: psycopg.Connection[Any]) -> None:
            c.execute(f"INSERT INTO tokens ({_TOKEN_NAMES}) VALUES ({', '.join(['%s'] * len(row))})", row)

        return self._submit(op)

    def remove_token(self, token_id: int) -> asyncio.Future[None]:
        def op(c: psycopg.Connection[Any]) -> None:
            c.execute("DELETE FROM tokens WHERE id = %s", (token_id,))

        return self._submit(op)

    # ------------------------------------------------------------------ accounting (issue 11 §7)

    def accounting(self, q: AcctQuery) -> list[Job]:
        """A page of the ended jobs ``q`` asks for, by (ended, id) (blocking: run it in a thread)."""
        where, params = _acct_where(q)
        if q.after is not None and not q.ids:
            where += " AND (ended, id) > (?, ?)"
            params += [q.after[0], q.after[1]]
        sql = _sql(f"SELECT {_SELECT} FROM jobs WHERE {where} ORDER BY ended NULLS FIRST, id LIMIT ?")  # as SQLite orders
        return [_job(r) for r in self._rows(sql, [*params, q.limit])]

    def accounting_summary(self, q: AcctQuery) -> list[dict[str, Any]]:
        """Per user, totals over the jobs ``q`` asks for (blocking: run it in a thread)."""
        where, params = _acct_where(q)
        run_known = "cpu_time IS NOT NULL AND started IS NOT NULL"
        sql = _sql(f'SELECT "user", count(*), coalesce(sum(cpu_time), 0.0), coalesce(sum(started - submitted), 0.0), '
                   f"count(started), coalesce(sum(CASE WHEN {run_known} THEN greatest(ended - started, 0) * cpu "
                   f'ELSE 0 END), 0.0) FROM jobs WHERE {where} GROUP BY "user" ORDER BY "user" COLLATE "C" LIMIT ?')
        return [summary_row(*row) for row in self._rows(sql, [*params, MAX_SUMMARY_USERS])]

    def forget_ended(self, before: float, batch: int) -> asyncio.Future[int]:
        """Delete up to ``batch`` jobs that ended before ``before`` (one small transaction of the writer);
        the future gives how many were deleted."""
        deleted: list[int] = []

        def op(c: psycopg.Connection[Any]) -> None:
            cur = c.execute(
                f"DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE ended < %s AND state IN "
                f"({', '.join(['%s'] * len(_FINAL))}) ORDER BY ended LIMIT %s)", (before, *_FINAL, batch))
            deleted.append(cur.rowcount)

        return self._submit_counting(op, deleted)

    def close(self) -> None:
        self._stop_writer()
        self._write.close()
        with self._reader_lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()


def _of_the_write(e: BaseException) -> bool:
    """Whether an error belongs to one write's data (it fails alone), not to the database."""
    return isinstance(e, (ValueError, TypeError, OverflowError, psycopg.IntegrityError, psycopg.DataError,
                          psycopg.ProgrammingError)) and not isinstance(e, psycopg.errors.DiskFull)


def pg_error(e: BaseException) -> WulfError:
    """What the caller of a failed read or write is told (see wulf.store.sqlite.store_error)."""
    if isinstance(e, psycopg.errors.DiskFull):
        err = WulfError(f"the database's disk is full: nothing can be recorded until its administrator frees "
                        f"space ({_first_line(e)})")
        err.retryable = True
        return err
    if isinstance(e, psycopg.OperationalError):
        err = WulfError(f"the server lost its database: {_first_line(e)}")
        err.retryable = True
        return err
    if isinstance(e, psycopg.DataError) and "0x00" in str(e):
        return UsageError("cannot store text with a NUL byte: leave it out")
    if isinstance(e, psycopg.Error):
        return WulfError(f"the server could not use its database: {_first_line(e)}")
    return store_error(e)


def _first_line(e: BaseException) -> str:
    """The first line of an error from libpq (the rest is hints on many lines), or its type."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
