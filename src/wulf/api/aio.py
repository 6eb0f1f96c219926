"""``wulf.AsyncClient``: the Python API for asyncio programs.

It runs :class:`wulf.api.Client`'s calls in threads (``asyncio.to_thread``) rather than speak HTTP
itself. Why: the blocking client is where wulf's transport lives (its own HTTP/1.1 over the Unix
socket or TCP, credentials the local agent signs per request, TLS, slowing down when asked, sending
a submission again with its idempotency key when the answer was lost): a second, native copy would
drift from the first. Every call is short (a wait asks the server for at most 30 s at a time), so a
thread per call in flight costs little. Calls may run concurrently (``asyncio.gather``): each takes a
connection of its own from a small pool, since one connection carries one request at a time.

Cancelling a call (a task's cancel, ``asyncio.timeout``) returns at once; the request in its thread
ends by itself (a wait within 30 s), and its connection goes back to the pool then.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

from wulf.api import spec
from wulf.api.client import Client, JobRefs, Time, states
from wulf.api.records import AccountingRecord, Changed, Job, Node, OutputChunk, Queue, UserSummary, Whoami
from wulf.client import OUTPUT_CHUNK
from wulf.client import Client as LowClient

if TYPE_CHECKING:
    from typing import Self

    from typing_extensions import Unpack

T = TypeVar("T")


class AsyncClient:
    """As :class:`wulf.Client`, with ``await`` (and ``async for`` for :meth:`jobs` and :meth:`follow`).
    Use it as ``async with AsyncClient() as wulf:``, or :meth:`close` it."""

    def __init__(self, url: str | None = None, *, timeout: float = 30.0, token: str | None = None,
                 transport: Callable[[], LowClient] | None = None) -> None:
        self._args = (url, timeout, token, transport)
        self._idle: list[Client] = [self._make()]  # the first is made here: a bad URL is said at once
        self._lock = threading.Lock()
        self.url = self._idle[0].url

    def _make(self) -> Client:
        url, timeout, token, transport = self._args
        return Client(url, timeout=timeout, token=token, transport=transport)

    def _run(self, call: Callable[[Client], T]) -> T:
        """``call`` with an idle client (a new one if none is idle), in a worker thread."""
        with self._lock:
            client = self._idle.pop() if self._idle else None
        if client is None:
            client = self._make()
        try:
            return call(client)
        finally:
            with self._lock:
                self._idle.append(client)

    async def _call(self, call: Callable[[Client], T]) -> T:
        return await asyncio.to_thread(self._run, call)

    async def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for client in idle:
            client.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ submitting

    async def submit(self, command: str | None = None, *, script: str | None = None,
                     env: Mapping[str, str] | None = None, key: str = "", **options: Unpack[spec.SubmitOptions]) -> int:
        """See :meth:`wulf.Client.submit`."""
        return await self._call(lambda c: c.submit(command, script=script, env=env, key=key, **options))

    async def submit_many(self, commands: Iterable[str], *, env: Mapping[str, str] | None = None, key: str = "",
                          **options: Unpack[spec.SubmitOptions]) -> list[int]:
        todo = list(commands)
        return await self._call(lambda c: c.submit_many(todo, env=env, key=key, **options))

    # ------------------------------------------------------------------ looking

    async def job(self, job_id: int) -> Job:
        return await self._call(lambda c: c.job(job_id))

    async def jobs(self, user: str = "", *, queue: str = "", state: str | Iterable[str] = (),
                   ended: bool = True) -> AsyncIterator[Job]:
        """See :meth:`wulf.Client.jobs`: a page is read at a time."""
        wanted = states(state)
        after: int | None = 0
        while after is not None:
            page, after = await self._jobs_page(user, queue, ended, after)
            for job in page:
                if not wanted or job.state in wanted:
                    yield job

    async def _jobs_page(self, user: str, queue: str, ended: bool, after: int) -> tuple[list[Job], int | None]:
        return await self._call(lambda c: c.jobs_page(user, queue, ended, after))

    async def nodes(self) -> list[Node]:
        return await self._call(lambda c: c.nodes())

    async def queues(self, user: str = "") -> list[Queue]:
        return await self._call(lambda c: c.queues(user))

    async def whoami(self) -> Whoami:
        return await self._call(lambda c: c.whoami())

    # ------------------------------------------------------------------ waiting and output

    async def wait(self, ids: JobRefs, *, timeout: float | None = None) -> list[Job]:
        """See :meth:`wulf.Client.wait`."""
        todo = ids if isinstance(ids, (int, str)) else list(ids)
        return await self._call(lambda c: c.wait(todo, timeout=timeout))

    async def read_output(self, job_id: int, offset: int = 0, limit: int = OUTPUT_CHUNK) -> OutputChunk:
        return await self._call(lambda c: c.read_output(job_id, offset, limit))

    async def output(self, job_id: int) -> bytes:
        return await self._call(lambda c: c.output(job_id))

    async def follow(self, job_id: int, offset: int = 0, every: float = 0.5) -> AsyncIterator[bytes]:
        """See :meth:`wulf.Client.follow`; between looks it sleeps on the event loop, not in a thread."""
        wait = every
        while True:
            chunk = await self.read_output(job_id, offset)
            if chunk.size < offset and chunk.state == "running":
                offset = 0  # truncated: from its beginning again, as tail -f does
                continue
            if chunk.data:
                yield chunk.data
                wait = every
            offset = chunk.next
            if chunk.ended:
                return
            if not chunk.data:
                await asyncio.sleep(wait)
                wait = min(wait * 2, every * 4)

    # ------------------------------------------------------------------ acting on jobs

    async def cancel(self, ids: JobRefs) -> Changed:
        todo = ids if isinstance(ids, (int, str)) else list(ids)
        return await self._call(lambda c: c.cancel(todo))

    async def hold(self, ids: JobRefs) -> Changed:
        todo = ids if isinstance(ids, (int, str)) else list(ids)
        return await self._call(lambda c: c.hold(todo))

    async def release(self, ids: JobRefs) -> Changed:
        todo = ids if isinstance(ids, (int, str)) else list(ids)
        return await self._call(lambda c: c.release(todo))

    async def renice(self, ids: JobRefs, nice: int) -> Changed:
        todo = ids if isinstance(ids, (int, str)) else list(ids)
        return await self._call(lambda c: c.renice(todo, nice))

    async def signal(self, ids: JobRefs, signum: int) -> Changed:
        todo = ids if isinstance(ids, (int, str)) else list(ids)
        return await self._call(lambda c: c.signal(todo, signum))

    # ------------------------------------------------------------------ accounting

    async def accounting(self, user: str = "", *, all_users: bool = False, start: Time | None = None,
                         end: Time | None = None, states: Sequence[str] = (), queue: str = "",
                         ids: Iterable[int] = ()) -> list[AccountingRecord]:
        todo = list(ids)
        return await self._call(lambda c: c.accounting(user, all_users=all_users, start=start, end=end,
                                                       states=states, queue=queue, ids=todo))

    async def accounting_summary(self, user: str = "", *, all_users: bool = False, start: Time | None = None,
                                 end: Time | None = None, states: Sequence[str] = (),
                                 queue: str = "") -> list[UserSummary]:
        return await self._call(lambda c: c.accounting_summary(user, all_users=all_users, start=start, end=end,
                                                               states=states, queue=queue))
