"""The writes of a store, made by one thread in the order they were asked for, each group that gathered
while the last commit went on committed as one transaction (SQLite's and PostgreSQL's stores alike).

A caller gets a future, done once its write is committed (or failed with a WulfError). A write that fails
on its own data is taken out of its group and fails alone; the rest of the group is tried again. A
failure of the database fails the whole group.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from wulf import cycletrace
from wulf.errors import WulfError

log = logging.getLogger("wulf.store")

Op = Callable[[Any], None]  # a write: what it does with the store's write connection
Batch = list[tuple[Op, "asyncio.Future[None]"]]


class GroupWriter:
    """The writer thread and its queue. A store sets itself up, then calls :meth:`_start_writer`; it
    gives :meth:`_try` (one attempt at a group, in one transaction) and :meth:`_error` (what a caller is
    told of a failure), and may look at its connection when the queue stays empty (:meth:`_idle`)."""

    commits = 0  # for the benchmark and tests: how many transactions were committed

    def _start_writer(self) -> None:
        self._queue: queue.SimpleQueue[tuple[Op, asyncio.Future[None]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._writer, name="wulf-store", daemon=True)
        self._thread.start()

    def _submit(self, op: Op) -> asyncio.Future[None]:
        """Queue a write now (writes keep the order of these calls); await the result to know it is committed."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put((op, fut))
        return fut

    def _submit_counting(self, op: Op, counts: list[int]) -> asyncio.Future[int]:
        """:meth:`_submit` for a write that appends how many rows it touched to ``counts``: the future gives
        their sum once committed."""
        out: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def done(fut: asyncio.Future[None]) -> None:
            if out.done():
                return
            error = None if fut.cancelled() else fut.exception()
            if error is not None:
                out.set_exception(error)
            else:
                out.set_result(sum(counts))

        self._submit(op).add_done_callback(done)
        return out

    def _stop_writer(self) -> None:
        """Let the writer commit what is queued, then end it."""
        self._queue.put(None)
        self._thread.join(timeout=10)

    # ------------------------------------------------------------------ what a store gives

    def _try(self, batch: Batch) -> tuple[int | None, BaseException | None]:
        """One attempt: ``(None, None)`` when committed; else the index of the write to blame (None when it
        is the database's failure) and the error; rolled back on failure."""
        raise NotImplementedError

    def _error(self, e: BaseException) -> WulfError:
        raise NotImplementedError

    def _idle_after(self) -> float | None:
        """Seconds the queue may stay empty before :meth:`_idle` (None: no limit)."""
        return None

    def _idle(self) -> None:
        """Called in the writer thread when the queue stayed empty for :meth:`_idle_after` seconds."""

    # ------------------------------------------------------------------ the writer thread

    def _writer(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self._idle_after())
            except queue.Empty:
                self._idle()
                continue
            if item is None:
                return
            batch = [item]
            while True:  # take everything that gathered while we were busy
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
            try:
                self._commit(batch)
            except BaseException as e:  # a bug here must not end the thread: every later write would hang
                log.exception("the store's writer failed")
                for _, fut in batch:
                    settle_soon(fut, self._error(e))

    def _commit(self, batch: Batch) -> None:
        """Commit the batch in one transaction. A write that fails on its own data is taken out (its
        caller gets the error) and the rest is tried again without it."""
        while batch:
            failed, error = self._try(batch)
            if error is None:
                self.commits += 1
                cycletrace.mark("store_commit", ())
                for _, fut in batch:
                    settle_soon(fut, None)
                return
            if failed is None:  # the database failed, not one write: the whole group fails
                log.error("could not write the database: %s", error)
                for _, fut in batch:
                    settle_soon(fut, self._error(error))
                return
            log.warning("a write could not be stored: %s", error)
            settle_soon(batch[failed][1], self._error(error))
            batch = batch[:failed] + batch[failed + 1:]


def settle_soon(fut: asyncio.Future[None], error: BaseException | None) -> None:
    """Settle ``fut`` on its own loop (from the writer thread)."""
    with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
        fut.get_loop().call_soon_threadsafe(_settle, fut, error)


def _settle(fut: asyncio.Future[None], error: BaseException | None) -> None:
    if fut.done():
        return
    if error is None:
        fut.set_result(None)
    else:
        fut.set_exception(error)
