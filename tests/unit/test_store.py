"""The SQLite store's writer thread: one bad write fails alone; the rest of its group commits."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from wulf.errors import UsageError, WulfError
from wulf.model.job import Job, JobState, Origin
from wulf.store.base import ArrayRow
from wulf.store.sqlite import SqliteStore, store_error


def _job(job_id: int, cwd: str = "/tmp") -> Job:
    return Job(id=job_id, user="u", uid=1000, origin=Origin.BATCH, state=JobState.QUEUED, command="true",
               cwd=cwd, submitted=1.0)


async def _group_with_a_bad_write(path: Path) -> None:
    store = SqliteStore(path)
    try:
        # another connection holds the write lock, so the writes below gather into one group
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        first = store.insert([_job(1)], {})
        await asyncio.sleep(0.2)  # the writer has taken `first` and waits for the lock
        bad = store.insert([_job(2, cwd="/tmp/x\udcff")], {})
        good = store.insert([_job(3)], {"h": '{"A":"1"}'})
        update = store.update([_job(1)])
        blocker.execute("ROLLBACK")
        blocker.close()
        await asyncio.wait_for(first, 10)
        with pytest.raises(UsageError, match="not valid UTF-8"):
            await asyncio.wait_for(bad, 10)
        await asyncio.wait_for(good, 10)
        await asyncio.wait_for(update, 10)
        await asyncio.wait_for(store.insert([_job(4)], {}), 10)  # the writer goes on
        jobs, next_id = store.load(10)
        assert [j.id for j in jobs] == [1, 3, 4] and next_id == 5
        assert store.env("h") == {"A": "1"}
    finally:
        store.close()


def test_one_bad_write_fails_alone_and_the_writer_goes_on(tmp_path: Path) -> None:
    asyncio.run(_group_with_a_bad_write(tmp_path / "wulf.db"))


def test_store_errors_say_what_is_wrong() -> None:
    full = store_error(sqlite3.OperationalError("database or disk is full"))
    assert isinstance(full, WulfError) and "disk is full" in full.message and full.retryable
    assert isinstance(store_error(UnicodeEncodeError("utf-8", "\udcff", 0, 1, "surrogates not allowed")),
                      UsageError)
    other = store_error(sqlite3.OperationalError("disk I/O error"))
    assert isinstance(other, WulfError) and "disk I/O error" in other.message


async def _changed_and_reopened(path: Path) -> None:
    store = SqliteStore(path)
    first = _job(1)
    first.array_id, first.array_index = 1, 1
    try:
        await store.insert([first], {}, arrays=[ArrayRow(1, "1-3%1", "true\n", (2, 3))])
        first.name, first.cpu_req, first.mem_req, first.time_limit, first.depend = "new", 2.0, 64.0, 60.0, "afterok:9"
        first.queue = "night"
        await store.update([first], [(1, "1-3%2")])
    finally:
        store.close()
    store = SqliteStore(path)
    try:
        kept = store.get(1)
        assert kept is not None
        assert (kept.name, kept.cpu_req, kept.mem_req, kept.time_limit, kept.depend, kept.queue) == (
            "new", 2.0, 64.0, 60.0, "afterok:9", "night")
        assert store.arrays() == {1: "1-3%2"}
    finally:
        store.close()


def test_what_jmod_changes_is_stored_with_an_arrays_new_spec(tmp_path: Path) -> None:
    asyncio.run(_changed_and_reopened(tmp_path / "wulf.db"))
