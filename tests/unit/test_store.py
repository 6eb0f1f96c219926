"""The store's writer thread, on both backends (SQLite, PostgreSQL): one bad write fails alone; the rest of
its group commits; what changes is kept."""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import pytest

from pgserver import PgServer, scalar
from wulf.errors import UsageError, WulfError
from wulf.model.job import Job, JobState, Origin
from wulf.store import is_postgres, open_store, pgschema, redact
from wulf.store.base import ArrayRow, Submission
from wulf.store.sqlite import _COLUMNS, MIGRATIONS, store_error


def _job(job_id: int, cwd: str = "/tmp") -> Job:
    return Job(id=job_id, user="u", uid=1000, origin=Origin.BATCH, state=JobState.QUEUED, command="true",
               cwd=cwd, submitted=1.0)


class _Blocker:
    """Another connection that holds the write lock of a store's database until :meth:`release`."""

    def __init__(self, where: str) -> None:
        if is_postgres(where):
            import psycopg

            self.pg = psycopg.connect(where)
            self.pg.execute("LOCK TABLE jobs IN EXCLUSIVE MODE")  # every insert and update waits
        else:
            self.lite = sqlite3.connect(where, isolation_level=None)
            self.lite.execute("BEGIN IMMEDIATE")
        self.where = where

    def release(self) -> None:
        if is_postgres(self.where):
            self.pg.rollback()
            self.pg.close()
        else:
            self.lite.execute("ROLLBACK")
            self.lite.close()


async def _group_with_a_bad_write(where: str) -> None:
    store = open_store(where)
    try:
        # another connection holds the write lock, so the writes below gather into one group
        blocker = _Blocker(where)
        first = store.insert([_job(1)], {})
        await asyncio.sleep(0.2)  # the writer has taken `first` and waits for the lock
        bad = store.insert([_job(2, cwd="/tmp/x\udcff")], {})
        good = store.insert([_job(3)], {"h": '{"A":"1"}'})
        bad_bulk = store.insert([*(_job(i) for i in range(10, 99)), _job(99, cwd="/tmp/\udcff")], {})  # (COPY)
        update = store.update([_job(1)])
        blocker.release()
        await asyncio.wait_for(first, 10)
        with pytest.raises(UsageError, match="not valid UTF-8"):
            await asyncio.wait_for(bad, 10)
        await asyncio.wait_for(good, 10)
        with pytest.raises(UsageError, match="not valid UTF-8"):
            await asyncio.wait_for(bad_bulk, 10)
        await asyncio.wait_for(update, 10)
        await asyncio.wait_for(store.insert([_job(4)], {}), 10)  # the writer goes on
        jobs, next_id = store.load(10)
        assert [j.id for j in jobs] == [1, 3, 4] and next_id == 5
        assert store.env("h") == {"A": "1"}
    finally:
        store.close()


def test_one_bad_write_fails_alone_and_the_writer_goes_on(store_url: str) -> None:
    asyncio.run(_group_with_a_bad_write(store_url))


def test_store_errors_say_what_is_wrong() -> None:
    full = store_error(sqlite3.OperationalError("database or disk is full"))
    assert isinstance(full, WulfError) and "disk is full" in full.message and full.retryable
    assert isinstance(store_error(UnicodeEncodeError("utf-8", "\udcff", 0, 1, "surrogates not allowed")),
                      UsageError)
    other = store_error(sqlite3.OperationalError("disk I/O error"))
    assert isinstance(other, WulfError) and "disk I/O error" in other.message


async def _changed_and_reopened(where: str) -> None:
    store = open_store(where)
    first = _job(1)
    first.array_id, first.array_index = 1, 1
    try:
        await store.insert([first], {}, arrays=[ArrayRow(1, "1-3%1", "true\n", (2, 3))])
        first.name, first.cpu_req, first.mem_req, first.time_limit, first.depend = "new", 2.0, 64.0, 60.0, "afterok:9"
        first.queue = "night"
        await store.update([first], [(1, "1-3%2")])
    finally:
        store.close()
    store = open_store(where)
    try:
        kept = store.get(1)
        assert kept is not None
        assert (kept.name, kept.cpu_req, kept.mem_req, kept.time_limit, kept.depend, kept.queue) == (
            "new", 2.0, 64.0, 60.0, "afterok:9", "night")
        assert store.arrays() == {1: "1-3%2"}
    finally:
        store.close()


def test_what_jmod_changes_is_stored_with_an_arrays_new_spec(store_url: str) -> None:
    asyncio.run(_changed_and_reopened(store_url))


def _full_job(job_id: int) -> Job:
    """A job with every stored field away from its default (and the values a narrow column would spoil)."""
    return Job(id=job_id, user="ünï", uid=4_294_967_294, origin=Origin.BATCH, state=JobState.RUNNING,
               command="echo 'a;b' \"%s\" ?", cwd="/tmp/d", name="n", queue="q", script="#!/bin/sh\necho\n",
               env_hash="h", output="/tmp/o", keep_script=True, cpu_req=1.5, mem_req=64.25, cpu=0.3333333333333333,
               mem_mb=1e-7, node="n1", pid=4_194_303, submitted=1796684790.123456, started=1796684791.654321,
               reason="r", nice=19, ext_key="k", constraint="gpu", time_limit=60.0, cputime_limit=7.5,
               mem_limit_mb=2.0**40, gid=4_294_967_000, umask=0o027, dialect="slurm", depend="afterok:1",
               retries=3, restarts=2, mail_type="END", mail_user="a@b")


async def _kept_exactly(where: str) -> None:
    job, in_bulk = _full_job(7), _full_job(8)  # alone, and among many (PostgreSQL: by COPY)
    store = open_store(where)
    try:
        await asyncio.wait_for(store.insert([job], {"h": '{"A":"1"}'}), 10)
        await asyncio.wait_for(store.insert([in_bulk, *(_job(i) for i in range(9, 209))], {}), 10)
        await asyncio.wait_for(store.set_node_state("n1", "drained"), 10)
        await asyncio.wait_for(store.set_queue({"user": "u", "name": "q", "priority": 3, "stopped": True,
                                                "window": "22:00-06:00", "mail": "x"}), 10)
        await asyncio.wait_for(store.set_queue({"user": "u", "name": "q", "priority": 4, "stopped": False,
                                                "window": "", "mail": ""}), 10)
        await asyncio.wait_for(store.add_token({"id": 1, "user": "u", "uid": 1, "gid": 1, "name": "t", "hash": "x",
                                                "created": 1.5, "expires": None, "read_only": True}), 10)
    finally:
        store.close()
    store = open_store(where)
    try:
        jobs, next_id = store.load(10)
        assert next_id == 209 and len(jobs) == 202  # the running two, the 200 queued
        for kept in (job, in_bulk):
            back = store.get(kept.id)
            assert back is not None
            for column in _COLUMNS:
                assert getattr(back, column) == getattr(kept, column), column
        assert store.env("h") == {"A": "1"} and store.node_states() == {"n1": "drained"}
        assert [(q["priority"], bool(q["stopped"]), q["window"]) for q in store.queues()] == [(4, False, "")]
        [token] = store.tokens()
        assert (token["hash"], token["read_only"], token["expires"]) == ("x", True, None)
        await asyncio.wait_for(store.remove_token(1), 10)
        assert store.tokens() == []
    finally:
        store.close()


def test_every_stored_field_comes_back_exactly(store_url: str) -> None:
    asyncio.run(_kept_exactly(store_url))


async def _in_call_order(where: str) -> tuple[Job | None, int]:
    store = open_store(where)
    try:
        futures = []
        for i in range(1, 201):  # nobody awaits until the end: order alone must keep each update after its insert
            job = _job(i)
            futures.append(store.insert([job], {}, Submission(1, f"k{i}", 1e10)))
            job.state, job.node = JobState.RUNNING, f"n{i}"
            futures.append(store.update([job]))
        await asyncio.wait_for(asyncio.gather(*futures), 60)
        assert len(store.submissions(0.0)) == 200
        return store.get(200), [j.state for j in store.load(0)[0]].count(JobState.RUNNING)
    finally:
        store.close()


def test_writes_apply_in_call_order(store_url: str) -> None:
    last, running = asyncio.run(_in_call_order(store_url))
    assert last is not None and last.node == "n200" and running == 200


def test_postgresql_migrations_are_the_sqlite_ones_by_name() -> None:
    """A new SQLite migration needs its PostgreSQL entry (SHARED when its SQL is portable): see pgschema."""
    assert [n for n, _ in pgschema.PG_MIGRATIONS] == [n for n, _ in MIGRATIONS]
    for name, sql in pgschema.migrations():
        assert " REAL" not in sql and "INTEGER" not in sql, name  # 32 bits in PostgreSQL
        assert "INSERT OR" not in sql and "julianday" not in sql, name


def test_portable_spells_sqlites_64_bit_types() -> None:
    assert pgschema.portable("a INTEGER NOT NULL, b REAL, c INTEGERS") == \
        "a BIGINT NOT NULL, b DOUBLE PRECISION, c INTEGERS"


def test_postgresql_errors_say_what_is_wrong() -> None:
    import psycopg

    from wulf.store.postgres import _of_the_write, pg_error

    full = pg_error(psycopg.errors.DiskFull("could not extend file"))
    assert "disk is full" in full.message and full.retryable and not _of_the_write(psycopg.errors.DiskFull())
    lost = pg_error(psycopg.OperationalError("server closed the connection unexpectedly\n\tThis probably..."))
    assert lost.message == "the server lost its database: server closed the connection unexpectedly"
    assert lost.retryable
    nul = pg_error(psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes"))
    assert isinstance(nul, UsageError)
    assert isinstance(pg_error(UnicodeEncodeError("utf-8", "\udcff", 0, 1, "surrogates")), UsageError)


def test_an_unreachable_database_is_one_line() -> None:
    with pytest.raises(WulfError) as got:
        open_store("postgresql://wulf:secret@127.0.0.1:1/wulf")
    assert got.value.message.startswith("cannot reach the database postgresql://wulf:***@127.0.0.1:1/wulf: ")
    assert "secret" not in got.value.message and "\n" not in got.value.message and got.value.retryable


def test_a_password_never_reaches_the_log() -> None:
    assert redact("postgresql://w:pw@db:5432/x?sslmode=require") == "postgresql://w:***@db:5432/x?sslmode=require"
    assert redact("postgresql://w@db/x") == "postgresql://w@db/x" and redact("/var/lib/wulf.db") == "/var/lib/wulf.db"


def _kill_store_connections(url: str) -> int:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return len(conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                                "application_name = 'wulf server' AND datname = current_database()").fetchall())


async def _reconnects(url: str) -> None:
    store = open_store(url)
    try:
        await asyncio.wait_for(store.insert([_job(1)], {}), 10)
        assert store.get(1) is not None
        assert _kill_store_connections(url) == 2  # the writer's and this thread's reader
        await asyncio.wait_for(store.insert([_job(2)], {}), 10)  # nothing was done: tried again on a new one
        assert [j.id for j in store.load(10)[0]] == [1, 2]
    finally:
        store.close()


def test_postgresql_store_connects_again_after_losing_the_database(pg: PgServer) -> None:
    asyncio.run(_reconnects(pg.new_database()))


def test_servers_starting_at_once_migrate_once(pg: PgServer) -> None:
    url = pg.new_database()
    with ThreadPoolExecutor(4) as pool:
        stores = list(pool.map(lambda _: open_store(url), range(4)))
    for s in stores:
        s.close()
    assert scalar(url, "SELECT count(*) FROM migrations") == len(MIGRATIONS)
