"""Timestamps of the job cycle, for the benchmark (``bench/cycle.py``); off unless asked for.

With ``WULF_TRACE_CYCLE=FILE`` in its environment, a server or an agent appends one line per step
of the path from one job's exit to the next job's start to FILE: ``<monotonic ns> <step> <ids>``.
The monotonic clock is the machine's, so the lines of a server and an agent on one machine compare.
The steps, in order (agent ``a``, server ``s``):

* a ``reap``: the job's exit seen (its pidfd readable); ``journal``: its exit in the journal;
  ``exit_sent``: the Exited message sent;
* s ``exit_recv``: Exited read; ``placed``: the state machine has recorded the exits and placed
  the next jobs (a ``link`` line names the exits, then ``->``, then the jobs placed in their room);
  ``committed``: the store has committed both; ``start_sent``: the Start message sent (and the
  store notes each transaction it commits, ``store_commit``, from its writer thread);
* a ``start_recv``: Start read; ``intent``: the starts' intents in the journal; ``checked``: the
  job's owner and limits checked (a job late in a Start of several waits here for the spawns before
  it); ``cgroup``: the job has its cgroup (``cgroup_new``: one made for it, not a spare);
  ``spawned``: its process started; ``started_sent``: the Started message sent.

Each line is one ``write`` to a file opened for appending (a few microseconds): a cost for the
benchmark only. Without the variable, :func:`mark` returns at its first test.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

_path = os.environ.get("WULF_TRACE_CYCLE", "")
_fd = -1
ON = bool(_path)


def mark(step: str, ids: Iterable[int]) -> None:
    """Note that ``step`` happened now for the jobs ``ids`` (nothing when tracing is off)."""
    if not ON:
        return
    global _fd
    if _fd < 0:
        _fd = os.open(_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    os.write(_fd, f"{time.monotonic_ns()} {step} {','.join(map(str, ids))}\n".encode())


def link(exits: Iterable[int], placed: Iterable[int]) -> None:
    """Note which jobs were placed in the room that ``exits`` left."""
    if ON:
        mark("link", [*exits, -1, *placed])
