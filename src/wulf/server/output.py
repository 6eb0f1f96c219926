"""Jobs' output as it is written (``jtail``, ``GET /api/v1/jobs/{id}/output``), read through their node's agent.

The server does not read output files: they are on the job's node, which may share no file system
with it. It asks the node's agent over the agent's own connection (:class:`wulf.protocol.ReadOutput`),
and the agent reads the file as the job's owner (see :mod:`wulf.agent.readout`). Who may ask is
settled here first: the job's owner and administrators.

An answer says where its bytes start and where the next read is to start (``next``), the file's size,
and ``ended``: the job had ended before the file was read and nothing is left after ``next`` (so a
follower stops there).
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any, Final

from wulf.agent.launcher import output_path
from wulf.errors import NotFound, Refused
from wulf.model.job import WAITING_STATES, Job, Origin
from wulf.protocol import MAX_OUTPUT_CHUNK, Output, StartJob

ANSWER_TIMEOUT: Final = 20.0
"""Seconds the server waits for an agent to answer a read (its reader has READ_TIMEOUT, 10 s)."""


class OutputReads:
    """Reads of output in flight: each request's id, the node asked, and the future its agent's answer
    resolves (an answer from another node is ignored)."""

    def __init__(self) -> None:
        self._next = 0
        self._pending: dict[int, tuple[str, asyncio.Future[Output]]] = {}

    def new(self, node: str) -> tuple[int, asyncio.Future[Output]]:
        self._next += 1
        fut: asyncio.Future[Output] = asyncio.get_running_loop().create_future()
        self._pending[self._next] = (node, fut)
        return self._next, fut

    def answer(self, node: str, msg: Output) -> None:
        asked, fut = self._pending.get(msg.req, ("", None))
        if fut is not None and asked == node and not fut.done():
            fut.set_result(msg)

    def drop(self, req: int) -> None:
        self._pending.pop(req, None)


def check_readable(job: Job) -> None:
    """Refuse (Refused) a job that has no output file wulf can read: an interactive one's went to jr."""
    if job.origin is Origin.INTERACTIVE:
        raise Refused(f"job {job.id} is interactive: its output went to jr, not to a file")


def nothing_yet(job: Job, offset: int) -> dict[str, Any]:
    """The answer for a job whose output is not there yet (it waits to start, or has just started)."""
    return reply(job, b"", max(0, offset), 0, ended=False)


def reply(job: Job, data: bytes, start: int, size: int, ended: bool) -> dict[str, Any]:
    nxt = start + len(data)
    return {"id": job.id, "state": str(job.state), "node": job.node or None, "offset": start, "next": nxt,
            "size": size, "ended": ended and nxt >= size, "data": base64.b64encode(data).decode("ascii")}


def answered(job: Job, ended_before: bool, got: Output, offset: int) -> dict[str, Any]:
    """The API's answer from an agent's: the bytes, or the error the user is told."""
    if got.missing:
        if not ended_before:
            return nothing_yet(job, offset)  # it has not opened its output yet
        raise NotFound(f"job {job.id}'s output is no longer on {job.node}: {got.error}")
    if got.error:
        raise Refused(f"cannot read job {job.id}'s output on {job.node}: {got.error}")
    try:
        data = base64.b64decode(got.data, validate=True)[:MAX_OUTPUT_CHUNK]
    except ValueError:
        raise Refused(f"the agent of {job.node} answered a read of job {job.id}'s output with bad data") from None
    return reply(job, data, got.offset, got.size, ended_before)


def waiting(job: Job) -> bool:
    """Whether the job has not started yet (its output is not there to read); NotFound for one that
    ended without ever running."""
    if job.state in WAITING_STATES:
        return True
    if not job.node:
        raise NotFound(f"job {job.id} never ran ({job.state}): it has no output")
    return False


def path_of(start: StartJob, node: str) -> str:
    """Where the job's output is on its node: where its agent opened it (the same pattern, filled the same way)."""
    return output_path(start, node)
