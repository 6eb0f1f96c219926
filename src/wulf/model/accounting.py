"""Accounting: what a query of ended jobs asks for, and what each job's line says (pure; no I/O).

The store answers an :class:`AcctQuery` (see wulf.store.sqlite); the server turns each job into
:func:`acct_row`; jacct and jeff print those rows. Everything derived from a job (wait, run time,
efficiency, attempts) is computed here, once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wulf.model.job import FINAL_STATES, Job

#: most job ids one query may name
MAX_IDS = 1000
#: most users one summary lists (a cluster has fewer; the bound keeps the answer small)
MAX_SUMMARY_USERS = 100_000
FINAL = tuple(sorted(str(s) for s in FINAL_STATES))


@dataclass(frozen=True)
class AcctQuery:
    """Jobs that ended in ``[start, end)`` (all of them when ``ids`` are named, whenever they ended), of
    ``users`` (none: every user), in ``states`` (none: every final state), of a queue (``queue_user``
    empty: of anyone), ordered by (ended, id); a page: the first ``limit`` after the cursor ``after``."""

    users: tuple[str, ...] = ()
    start: float = 0.0
    end: float = float("inf")
    states: tuple[str, ...] = ()
    queue: str = ""
    queue_user: str = ""
    ids: tuple[int, ...] = ()
    after: tuple[float, int] | None = None
    limit: int = 5000


def attempts(job: Job) -> int:
    """How many times the job was started: its earlier runs (``restarts``: it was queued again after
    each) and its last, if it started."""
    return job.restarts + (job.started is not None)


def _span(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else max(0.0, b - a)


def cpu_efficiency(cpu_time: float | None, run: float | None, cpus: float) -> float | None:
    """cpu time / (run time x cpus allocated), as a fraction; None when it cannot be told."""
    if cpu_time is None or not run or cpus <= 0:
        return None
    return cpu_time / (run * cpus)


def acct_row(job: Job) -> dict[str, Any]:
    """One job's accounting line, as the API, `jacct --json` and `jacct --csv` give it."""
    wait = _span(job.submitted, job.started)
    run = _span(job.started, job.ended)
    eff = cpu_efficiency(job.cpu_time, run, job.cpu)
    return {
        "id": job.id,
        "user": job.user,
        "name": job.name,
        "queue": job.queue,
        "origin": str(job.origin),
        "state": str(job.state),
        "node": job.node or None,
        "exit_code": job.exit_code,
        "signal": job.signal,
        "reason": job.reason,
        "submitted": job.submitted,
        "started": job.started,
        "ended": job.ended,
        "wait": None if wait is None else round(wait, 3),
        "run": None if run is None else round(run, 3),
        "cpu_req": job.cpu_req,
        "cpu_alloc": job.cpu,
        "cpu_time": job.cpu_time,
        "cpu_used": None if job.cpu_time is None or not run else round(job.cpu_time / run, 3),
        "cpu_eff": None if eff is None else round(eff, 4),
        "mem_req_mb": job.mem_req,
        "peak_mem_mb": job.peak_mem_mb,
        "mem_eff": None if job.peak_mem_mb is None or job.mem_req <= 0 else round(job.peak_mem_mb / job.mem_req, 4),
        "attempts": attempts(job),
        "checkpoints": job.checkpoints,  # of its earlier runs, those that checkpointed (the rest failed)
        "command": job.command,
    }


#: the columns of `jacct --csv`, in order (the keys of acct_row)
CSV_COLUMNS = (
    "id", "user", "name", "queue", "origin", "state", "node", "exit_code", "signal", "reason", "submitted",
    "started", "ended", "wait", "run", "cpu_req", "cpu_alloc", "cpu_time", "cpu_used", "cpu_eff", "mem_req_mb",
    "peak_mem_mb", "mem_eff", "attempts", "command",
)


def summary_row(user: str, jobs: int, cpu_time: float, waited: float, started: int, alloc_time: float) -> dict[str, Any]:
    """One user's totals: ``cpu_time`` (s) used, ``waited`` (s) over the ``started`` jobs that started,
    ``alloc_time`` (cpu x s) held by the jobs whose cpu time is known."""
    return {
        "user": user,
        "jobs": jobs,
        "cpu_hours": round(cpu_time / 3600, 4),
        "mean_wait": round(waited / started, 3) if started else None,
        "cpu_eff": round(cpu_time / alloc_time, 4) if alloc_time > 0 else None,
    }
