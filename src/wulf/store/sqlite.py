"""The embedded store: SQLite in WAL mode with one writer thread that commits in groups.

Every write is handed to the writer thread with a future. The thread takes whatever has gathered
while it was busy and commits it in one transaction, so a burst of a thousand submissions costs one
commit (one fsync), not a thousand. Readers use their own connection; WAL lets them read while the
writer writes.

The thread survives any failure of one write: a write whose own data cannot be stored (text that is not
UTF-8, a broken constraint) fails alone, its caller gets the error, and the rest of its group is
committed without it; a failure of the database itself (a full disk) fails the whole group. Callers
get a :class:`~wulf.errors.WulfError` that says what is wrong (see :func:`store_error`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from wulf.errors import UsageError, WulfError
from wulf.model.accounting import MAX_SUMMARY_USERS, AcctQuery, summary_row
from wulf.model.job import FINAL_STATES, Job, JobState, Origin
from wulf.store.base import KEY_TTL, ArrayRow, Submission
from wulf.store.writer import Batch, GroupWriter

log = logging.getLogger("wulf.store")

MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_initial",
        """
        CREATE TABLE envs (hash TEXT PRIMARY KEY, data TEXT NOT NULL);
        CREATE TABLE jobs (
            id INTEGER PRIMARY KEY,
            user TEXT NOT NULL, uid INTEGER NOT NULL, origin TEXT NOT NULL, state TEXT NOT NULL,
            command TEXT NOT NULL, cwd TEXT NOT NULL, name TEXT NOT NULL, queue TEXT NOT NULL,
            script TEXT, env_hash TEXT NOT NULL, output TEXT NOT NULL, keep_script INTEGER NOT NULL,
            cpu_req REAL NOT NULL, mem_req REAL NOT NULL, cpu REAL NOT NULL, mem_mb REAL NOT NULL,
            node TEXT NOT NULL, pid INTEGER, submitted REAL NOT NULL, started REAL, ended REAL,
            exit_code INTEGER, signal INTEGER, cpu_time REAL, peak_mem_mb REAL,
            reason TEXT NOT NULL, nice INTEGER NOT NULL, ext_key TEXT NOT NULL
        );
        CREATE INDEX jobs_active ON jobs (state) WHERE state IN ('queued', 'held', 'running');
        CREATE TABLE nodes (name TEXT PRIMARY KEY, state TEXT NOT NULL);
        """,
    ),
    (
        "0002_queues_constraints_limits",
        """
        ALTER TABLE jobs ADD COLUMN "constraint" TEXT NOT NULL DEFAULT '';
        ALTER TABLE jobs ADD COLUMN time_limit REAL;
        ALTER TABLE jobs ADD COLUMN cputime_limit REAL;
        ALTER TABLE jobs ADD COLUMN mem_limit_mb REAL;
        CREATE TABLE queues (
            user TEXT NOT NULL, name TEXT NOT NULL, priority INTEGER NOT NULL, stopped INTEGER NOT NULL,
            window TEXT NOT NULL, mail TEXT NOT NULL, PRIMARY KEY (user, name)
        );
        """,
    ),
    (
        "0003_owner_ids_and_tokens",
        """
        ALTER TABLE jobs ADD COLUMN gid INTEGER;
        ALTER TABLE jobs ADD COLUMN umask INTEGER;
        CREATE TABLE tokens (
            id INTEGER PRIMARY KEY, user TEXT NOT NULL, uid INTEGER NOT NULL, gid INTEGER NOT NULL,
            name TEXT NOT NULL, hash TEXT NOT NULL UNIQUE, created REAL NOT NULL, expires REAL
        );
        """,
    ),
    (
        "0004_read_only_tokens",
        """
        ALTER TABLE tokens ADD COLUMN read_only INTEGER NOT NULL DEFAULT 0;
        """,
    ),
    (
        "0005_submission_keys",
        """
        CREATE TABLE submissions (
            uid INTEGER NOT NULL, key TEXT NOT NULL, ids TEXT NOT NULL, expires REAL NOT NULL,
            PRIMARY KEY (uid, key)
        );
        CREATE INDEX submissions_expire ON submissions (expires);
        """,
    ),
    (
        "0006_job_dialect",
        """
        ALTER TABLE jobs ADD COLUMN dialect TEXT NOT NULL DEFAULT '';
        """,
    ),
    (
        # job arrays: a task's row names its array; the array's script is kept once, on the array
        "0007_arrays",
        """
        ALTER TABLE jobs ADD COLUMN array_id INTEGER;
        ALTER TABLE jobs ADD COLUMN array_index INTEGER;
        CREATE INDEX jobs_array ON jobs (array_id) WHERE array_id IS NOT NULL;
        CREATE TABLE arrays (id INTEGER PRIMARY KEY, spec TEXT NOT NULL, script TEXT);
        """,
    ),
    (
        # dependencies and retries: what a job waits for, how often it may be queued again, and has been
        "0008_dependencies_retries",
        """
        ALTER TABLE jobs ADD COLUMN depend TEXT NOT NULL DEFAULT '';
        ALTER TABLE jobs ADD COLUMN retries INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE jobs ADD COLUMN restarts INTEGER NOT NULL DEFAULT 0;
        """,
    ),
    (
        # accounting (issue 11 §7): one user's ended jobs in a window, and everyone's, without a scan
        "0009_accounting",
        """
        CREATE INDEX jobs_user_ended ON jobs (user, ended) WHERE ended IS NOT NULL;
        CREATE INDEX jobs_ended ON jobs (ended) WHERE ended IS NOT NULL;
        """,
    ),
    (
        # mail about the job itself (qr --mail-type, --mail-user)
        "0010_job_mail",
        """
        ALTER TABLE jobs ADD COLUMN mail_type TEXT NOT NULL DEFAULT '';
        ALTER TABLE jobs ADD COLUMN mail_user TEXT NOT NULL DEFAULT '';
        """,
    ),
    (
        # warning signals and self-checkpointing (issue 13 §2): qr --signal, --checkpoint
        "0011_checkpoints",
        """
        ALTER TABLE jobs ADD COLUMN warn_signal TEXT NOT NULL DEFAULT '';
        ALTER TABLE jobs ADD COLUMN checkpoint TEXT NOT NULL DEFAULT '';
        ALTER TABLE jobs ADD COLUMN checkpoint_exit INTEGER NOT NULL DEFAULT 85;
        ALTER TABLE jobs ADD COLUMN checkpoints INTEGER NOT NULL DEFAULT 0;
        """,
    ),
    (
        # multi-node and multi-task jobs (issue 13 §1): the tasks it asks for, and the slots it holds
        "0012_multinode",
        """
        ALTER TABLE jobs ADD COLUMN ntasks INTEGER NOT NULL DEFAULT 1;
        ALTER TABLE jobs ADD COLUMN nodes_req INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE jobs ADD COLUMN tasks_per_node INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE jobs ADD COLUMN alloc TEXT NOT NULL DEFAULT '';
        """,
    ),
    (
        # workstations whose owner comes back (issue 13 §3): qr --requeue, and restarts after such a stop
        "0013_migrate",
        """
        ALTER TABLE jobs ADD COLUMN requeue INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE jobs ADD COLUMN vacated INTEGER NOT NULL DEFAULT 0;
        """,
    ),
]

_COLUMNS = [
    "id", "user", "uid", "origin", "state", "command", "cwd", "name", "queue", "script", "env_hash",
    "output", "keep_script", "cpu_req", "mem_req", "cpu", "mem_mb", "node", "pid", "submitted",
    "started", "ended", "exit_code", "signal", "cpu_time", "peak_mem_mb", "reason", "nice", "ext_key",
    "constraint", "time_limit", "cputime_limit", "mem_limit_mb", "gid", "umask", "dialect",
    "array_id", "array_index",
    "depend", "retries", "restarts",
    "mail_type", "mail_user",  # 0010_job_mail
    "warn_signal", "checkpoint", "checkpoint_exit", "checkpoints",  # 0011_checkpoints
    "ntasks", "nodes_req", "tasks_per_node", "alloc",  # 0012_multinode
    "requeue", "vacated",  # 0013_migrate
]
_MUTABLE = [
    "state", "cpu", "mem_mb", "node", "pid", "started", "ended", "exit_code", "signal", "cpu_time",
    "peak_mem_mb", "reason", "nice", "queue", "restarts", "checkpoints", "vacated",
    "name", "cpu_req", "mem_req", "time_limit", "depend",  # jmod (issue 11 §5): what a waiting job may change
    "alloc",  # 0012_multinode: the slots a multi-task job holds while it runs
]
_SELECT = ", ".join(f'"{c}"' for c in _COLUMNS)
_INSERT = f"INSERT INTO jobs ({_SELECT}) VALUES ({', '.join('?' * len(_COLUMNS))})"
# the tasks of an array after its first, in one statement: each a copy of the first task's row with its
# own id (the first's plus its position) and index; five times quicker than a row of values each
_TASKS = (f"INSERT INTO jobs ({_SELECT}) SELECT "
          + ", ".join("t.id + 1 + i.key" if c == "id" else "i.value" if c == "array_index" else f't."{c}"'
                      for c in _COLUMNS)
          + " FROM json_each(?) AS i, jobs AS t WHERE t.id = ?")
_UPDATE = f"UPDATE jobs SET {', '.join(c + ' = ?' for c in _MUTABLE)} WHERE id = ?"
_QUEUE_COLUMNS = ("user", "name", "priority", "stopped", "window", "mail")
_TOKEN_COLUMNS = ("id", "user", "uid", "gid", "name", "hash", "created", "expires", "read_only")
_FINAL = tuple(str(s) for s in FINAL_STATES)


_SCRIPT = _COLUMNS.index("script")


def _row(job: Job) -> tuple[Any, ...]:
    row = tuple(getattr(job, c) for c in _COLUMNS)
    if job.array_id is not None:  # a task's script is its array's, stored once (see insert)
        row = (*row[:_SCRIPT], None, *row[_SCRIPT + 1:])
    return row


def _changes(job: Job) -> tuple[Any, ...]:
    return (*(getattr(job, c) for c in _MUTABLE), job.id)


def _job(row: Sequence[Any]) -> Job:
    d = dict(zip(_COLUMNS, row, strict=True))
    d["origin"] = Origin(d["origin"])
    d["state"] = JobState(d["state"])
    d["keep_script"] = bool(d["keep_script"])
    d["requeue"] = bool(d["requeue"])
    return Job(**d)


def _connect(path: Path, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {'FULL' if synchronous == 'full' else 'NORMAL'}")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Apply the named migrations not yet applied, in order; returns their names."""
    conn.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied REAL NOT NULL)")
    done = {r[0] for r in conn.execute("SELECT name FROM migrations")}
    applied = []
    for name, sql in MIGRATIONS:
        if name in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in sql.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT INTO migrations VALUES (?, julianday('now'))", (name,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        applied.append(name)
    return applied


_Op = Callable[[sqlite3.Connection], None]


class SqliteStore(GroupWriter):
    def __init__(self, path: Path, synchronous: str = "full") -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._write = _connect(path, synchronous)
        migrate(self._write)
        self._read = _connect(path, synchronous)
        self._start_writer()
        self._readers = threading.local()  # accounting: one read connection per thread that asks
        self._reader_conns: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()

    # ------------------------------------------------------------------ the writer thread (GroupWriter)

    def _try(self, batch: Batch) -> tuple[int | None, BaseException | None]:
        """One attempt (see GroupWriter._try)."""
        at: int | None = None
        try:
            self._write.execute("BEGIN IMMEDIATE")
            for i, (op, _) in enumerate(batch):
                at = i
                op(self._write)
            at = None
            self._write.execute("COMMIT")
            return None, None
        except Exception as e:
            with contextlib.suppress(sqlite3.Error):
                self._write.execute("ROLLBACK")
            return (at if at is not None and _of_the_write(e) else None), e

    def _error(self, e: BaseException) -> WulfError:
        return store_error(e)

    # ------------------------------------------------------------------ JobStore

    def load(self, history: int) -> tuple[list[Job], int]:
        cur = self._read.execute(
            f"SELECT {_SELECT} FROM jobs WHERE state IN ('queued', 'held', 'running') ORDER BY id"
        )
        jobs = [_job(r) for r in cur]
        cur = self._read.execute(
            f"SELECT {_SELECT} FROM jobs WHERE state IN (?, ?, ?) ORDER BY id DESC LIMIT ?",
            (*_FINAL, history),
        )
        jobs.extend(reversed([_job(r) for r in cur]))
        jobs.sort(key=lambda j: j.id)
        self._array_scripts(jobs)
        return jobs, self._next_id()

    def _next_id(self) -> int:
        top = self._read.execute("SELECT max(id) FROM jobs").fetchone()[0]
        return (top or 0) + 1

    def _array_scripts(self, jobs: Sequence[Job]) -> None:
        """Give tasks their array's script (one string shared by all of them)."""
        wanted = {j.array_id for j in jobs if j.array_id is not None}
        if not wanted:
            return
        scripts = {i: s for i, s in self._read.execute("SELECT id, script FROM arrays") if i in wanted}
        for job in jobs:
            if job.array_id is not None:
                job.script = scripts.get(job.array_id)

    def arrays(self) -> dict[int, str]:
        return {i: spec for i, spec in self._read.execute("SELECT id, spec FROM arrays")}


    def insert(self, jobs: Sequence[Job], envs: dict[str, str],
               submission: Submission | None = None, arrays: Sequence[ArrayRow] = ()) -> asyncio.Future[None]:
        rows = [_row(j) for j in jobs]
        array_rows = [(a.id, a.spec, a.script) for a in arrays]
        tasks = [(json.dumps(list(a.rest)), a.id) for a in arrays if a.rest]  # copies of the first's row
        env_rows = list(envs.items())
        key_row = (submission.uid, submission.key, json.dumps([j.id for j in jobs]), submission.expires) \
            if submission is not None else None

        def op(c: sqlite3.Connection) -> None:
            if env_rows:
                c.executemany("INSERT OR IGNORE INTO envs VALUES (?, ?)", env_rows)
            if array_rows:
                c.executemany("INSERT INTO arrays VALUES (?, ?, ?)", array_rows)
            c.executemany(_INSERT, rows)
            c.executemany(_TASKS, tasks)
            if key_row is not None:
                c.execute("DELETE FROM submissions WHERE expires < ?", (key_row[3] - KEY_TTL,))  # those of old
                c.execute("INSERT OR REPLACE INTO submissions VALUES (?, ?, ?, ?)", key_row)

        return self._submit(op)

    def submissions(self, now: float) -> dict[tuple[int, str], tuple[float, list[int]]]:
        cur = self._read.execute("SELECT uid, key, expires, ids FROM submissions WHERE expires >= ? ORDER BY expires",
                                 (now,))
        return {(uid, key): (expires, list(json.loads(ids))) for uid, key, expires, ids in cur}

    def update(self, jobs: Sequence[Job], arrays: Sequence[tuple[int, str]] = ()) -> asyncio.Future[None]:
        rows = [_changes(j) for j in jobs]
        specs = [(spec, i) for i, spec in arrays]

        def op(c: sqlite3.Connection) -> None:
            c.executemany(_UPDATE, rows)
            if specs:
                c.executemany("UPDATE arrays SET spec = ? WHERE id = ?", specs)

        return self._submit(op)

    def get(self, job_id: int) -> Job | None:
        row = self._read.execute(f"SELECT {_SELECT} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if not row:
            return None
        job = _job(row)
        self._array_scripts([job])
        return job

    def env(self, env_hash: str) -> dict[str, str]:
        row = self._read.execute("SELECT data FROM envs WHERE hash = ?", (env_hash,)).fetchone()
        return dict(json.loads(row[0])) if row else {}

    def node_states(self) -> dict[str, str]:
        return {name: state for name, state in self._read.execute("SELECT name, state FROM nodes")}

    def set_node_state(self, name: str, state: str) -> asyncio.Future[None]:
        def op(c: sqlite3.Connection) -> None:
            c.execute("INSERT OR REPLACE INTO nodes VALUES (?, ?)", (name, state))

        return self._submit(op)

    def queues(self) -> list[dict[str, Any]]:
        cur = self._read.execute(f"SELECT {', '.join(_QUEUE_COLUMNS)} FROM queues")
        return [dict(zip(_QUEUE_COLUMNS, row, strict=True)) for row in cur]

    def set_queue(self, settings: dict[str, Any]) -> asyncio.Future[None]:
        row = tuple(settings[c] for c in _QUEUE_COLUMNS)

        def op(c: sqlite3.Connection) -> None:
            c.execute(f"INSERT OR REPLACE INTO queues VALUES ({', '.join('?' * len(row))})", row)

        return self._submit(op)

    def tokens(self) -> list[dict[str, Any]]:
        cur = self._read.execute(f"SELECT {', '.join(_TOKEN_COLUMNS)} FROM tokens ORDER BY id")
        return [{**dict(zip(_TOKEN_COLUMNS, row, strict=True)), "read_only": bool(row[-1])} for row in cur]

    def add_token(self, record: dict[str, Any]) -> asyncio.Future[None]:
        row = tuple(record[c] for c in _TOKEN_COLUMNS)

        def op(c: sqlite3.Connection) -> None:
            c.execute(f"INSERT INTO tokens ({', '.join(_TOKEN_COLUMNS)}) VALUES ({', '.join('?' * len(row))})", row)

        return self._submit(op)

    def remove_token(self, token_id: int) -> asyncio.Future[None]:
        def op(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM tokens WHERE id = ?", (token_id,))

        return self._submit(op)

    # ------------------------------------------------------------------ accounting (issue 11 §7)

    def _reader(self) -> sqlite3.Connection:
        """This thread's own read connection (queries run in worker threads, several at once; WAL lets
        each read while the writer writes)."""
        conn: sqlite3.Connection | None = getattr(self._readers, "conn", None)
        if conn is None:
            conn = _connect(self.path, "normal")
            conn.execute("PRAGMA query_only = ON")
            self._readers.conn = conn
            with self._reader_lock:
                self._reader_conns.append(conn)
        return conn

    def accounting(self, q: AcctQuery) -> list[Job]:
        """A page of the ended jobs ``q`` asks for, by (ended, id) (blocking: run it in a thread)."""
        where, params = _acct_where(q)
        if q.after is not None and not q.ids:
            where += " AND (ended, id) > (?, ?)"
            params += [q.after[0], q.after[1]]
        sql = f"SELECT {_SELECT} FROM jobs WHERE {where} ORDER BY ended, id LIMIT ?"
        return [_job(r) for r in self._reader().execute(sql, [*params, q.limit])]

    def accounting_summary(self, q: AcctQuery) -> list[dict[str, Any]]:
        """Per user, totals over the jobs ``q`` asks for (its page is not used) (blocking: run it in a thread)."""
        where, params = _acct_where(q)
        run_known = "cpu_time IS NOT NULL AND started IS NOT NULL"
        sql = (f"SELECT user, count(*), total(cpu_time), total(started - submitted), count(started), "
               f"total(CASE WHEN {run_known} THEN max(ended - started, 0) * cpu ELSE 0 END) "
               f"FROM jobs WHERE {where} GROUP BY user ORDER BY user LIMIT ?")
        return [summary_row(*row) for row in self._reader().execute(sql, [*params, MAX_SUMMARY_USERS])]

    def forget_ended(self, before: float, batch: int) -> asyncio.Future[int]:
        """Delete up to ``batch`` jobs that ended before ``before`` (in one small transaction of the writer,
        so other writes wait little); the future gives how many were deleted."""
        deleted: list[int] = []

        def op(c: sqlite3.Connection) -> None:
            cur = c.execute(
                f"DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE ended < ? AND state IN "
                f"({', '.join('?' * len(_FINAL))}) ORDER BY ended LIMIT ?)", (before, *_FINAL, batch))
            deleted.append(cur.rowcount)

        return self._submit_counting(op, deleted)

    def close(self) -> None:
        self._stop_writer()
        self._write.close()
        self._read.close()
        with self._reader_lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()


def _acct_where(q: AcctQuery) -> tuple[str, list[Any]]:
    """The WHERE clause of an accounting query, and its parameters (the (user, ended) and (ended)
    indexes answer it)."""
    if q.ids:
        parts, params = [f"id IN ({', '.join('?' * len(q.ids))})"], list[Any](q.ids)
    else:
        states = q.states or _FINAL
        parts = ["ended IS NOT NULL", "ended >= ?", "ended < ?", f"state IN ({', '.join('?' * len(states))})"]
        params = [q.start, min(q.end, 1e18), *states]
    if q.users:
        parts.append(f"\"user\" IN ({', '.join('?' * len(q.users))})")
        params += q.users
    if q.ids and q.states:
        parts.append(f"state IN ({', '.join('?' * len(q.states))})")
        params += q.states
    if q.queue:
        parts.append("queue = ?")
        params.append(q.queue)
    if q.queue_user:
        parts.append('"user" = ?')
        params.append(q.queue_user)
    return " AND ".join(parts), params


def _of_the_write(e: BaseException) -> bool:
    """Whether an error belongs to one write's data (it fails alone), not to the database."""
    return isinstance(e, (ValueError, TypeError, OverflowError, sqlite3.IntegrityError, sqlite3.InterfaceError,
                          sqlite3.ProgrammingError, sqlite3.DataError))


def store_error(e: BaseException) -> WulfError:
    """What the caller of a failed write is told: what went wrong, in words that say what to do."""
    if isinstance(e, WulfError):
        return e
    if isinstance(e, UnicodeError):
        return UsageError("cannot store text that is not valid UTF-8 (a path, command, name or environment "
                          "variable with undecodable bytes?): rename it, or leave it out")
    if getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "disk is full" in str(e):
        err = WulfError("the server's disk is full: it cannot record anything until its administrator "
                        f"frees space where the server keeps its database ({e})")
        err.retryable = True
        return err
    if isinstance(e, sqlite3.Error):
        return WulfError(f"the server could not write its database: {e}")
    return WulfError(f"the server could not record this: {type(e).__name__}: {e}")
