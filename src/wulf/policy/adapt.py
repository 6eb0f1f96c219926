"""Adaptive allocation: what a running job holds follows what it is measured to use.

A job starts with what it asked for (or the default). Once it has run for the settling time, its
allocation becomes its measured use. If it then uses more than it holds, it is given more while its
node has room; when others have taken the room, it is reniced by the penalty instead (and given its
old niceness back once it fits again). A job that, report after report, uses far less than it holds
gives the room back.

Pure: :func:`adapt` maps one job's figures and its node's room to what the job should hold now;
:func:`adapt_jobs` does it for the jobs of one node in turn.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from wulf.policy.snapshot import Free

#: the least a job holds: what an idle process costs, so that room is never handed out twice
MIN_CPU = 0.05
MIN_MEM = 1.0
#: how far use may pass the allocation before it counts as growth (measurements are noisy)
GROW_SLACK_CPU = 0.1
GROW_SLACK_MEM = 0.1  # of the allocation


@dataclass(frozen=True, slots=True)
class AdaptSettings:
    settle_seconds: float = 300.0
    shrink_samples: int = 6
    shrink_below: float = 0.5
    nice_penalty: int = 10


class Holding(NamedTuple):
    """What a running job holds and uses, and the adaptation state carried from report to report (a
    tuple: a server makes one for every job on every report)."""

    cpu: float  # allocated now
    mem: float
    cpu_used: float
    mem_used: float
    age: float  # seconds since it started
    settled: bool = False  # its allocation has been set from its measured use
    low_samples: int = 0  # reports in a row it used far less than it holds
    penalized: bool = False  # reniced for taking more than it holds on a full node
    note: str = ""


def adapt(job: Holding, node_free: Free, s: AdaptSettings) -> Holding:
    """What ``job`` should hold now. ``node_free`` is its node's room, the job counted at the larger
    of what it holds and what it uses (see wulf.policy.snapshot.node_use), so negative when full."""
    if not job.settled:
        if job.age < s.settle_seconds:
            return _grow_or_penalize(job, node_free)
        job = job._replace(cpu=max(MIN_CPU, job.cpu_used), mem=max(MIN_MEM, job.mem_used), settled=True,
                      low_samples=0)
        return _grow_or_penalize(job, node_free)
    job = _grow_or_penalize(job, node_free)
    return _shrink(job, s)


def steady(job: Holding, s: AdaptSettings) -> bool:
    """Whether :func:`adapt` leaves ``job`` as it is whatever its node's room: it uses what it holds
    (neither more, nor far less), is not penalized, and has no low reports counted; and it has settled,
    or is still settling. Most jobs on most reports are: their node's room need not even be looked at."""
    if job.penalized or job.low_samples:
        return False
    if job.cpu_used > job.cpu + GROW_SLACK_CPU or job.mem_used > job.mem * (1 + GROW_SLACK_MEM) + MIN_MEM:
        return False
    if not job.settled:
        return job.age < s.settle_seconds
    return not (job.cpu > MIN_CPU and job.cpu_used < job.cpu * s.shrink_below
                or job.mem > MIN_MEM and job.mem_used < job.mem * s.shrink_below)


def adapt_jobs(jobs: Iterable[Holding], node_free: Free, s: AdaptSettings) -> list[Holding]:
    """What each of one node's jobs should hold now, in order. ``node_free`` is the node's room before
    any of them adapts; the room a job takes or gives back is seen by the jobs after it."""
    out = []
    free = node_free
    for before in jobs:
        after = adapt(before, free, s)
        if after is not before and after != before:
            cpu = max(after.cpu, after.cpu_used) - max(before.cpu, before.cpu_used)
            mem = max(after.mem, after.mem_used) - max(before.mem, before.mem_used)
            if cpu or mem:
                free = Free(free.cpu - cpu, free.mem - mem)
        out.append(after)
    return out


def _grow_or_penalize(job: Holding, free: Free) -> Holding:
    over_cpu = job.cpu_used > job.cpu + GROW_SLACK_CPU
    over_mem = job.mem_used > job.mem * (1 + GROW_SLACK_MEM) + MIN_MEM
    if not (over_cpu or over_mem):
        return job._replace(penalized=False, note="") if job.penalized else job
    if free.cpu >= -1e-9 and free.mem >= -1e-9:  # the node has room for what it uses: it holds it now
        return job._replace(cpu=max(job.cpu, job.cpu_used), mem=max(job.mem, job.mem_used), penalized=False,
                       note="", low_samples=0)
    what = (f"uses {job.cpu_used:.2f} cpus of {job.cpu:.2f} held" if over_cpu
            else f"uses {job.mem_used:.0f} MB of {job.mem:.0f} MB held")
    return job._replace(penalized=True, note=f"reniced: {what} on a full node", low_samples=0)


def _shrink(job: Holding, s: AdaptSettings) -> Holding:
    low_cpu = job.cpu > MIN_CPU and job.cpu_used < job.cpu * s.shrink_below
    low_mem = job.mem > MIN_MEM and job.mem_used < job.mem * s.shrink_below
    if not (low_cpu or low_mem):
        return job._replace(low_samples=0) if job.low_samples else job
    n = job.low_samples + 1
    if n < s.shrink_samples:
        return job._replace(low_samples=n)
    cpu = max(MIN_CPU, job.cpu_used) if low_cpu else job.cpu
    mem = max(MIN_MEM, job.mem_used) if low_mem else job.mem
    return job._replace(cpu=cpu, mem=mem, low_samples=0)


def penalty_nice(user_nice: int, penalized: bool, s: AdaptSettings) -> int:
    """The niceness a job should run at: the user's own, plus the penalty while it is penalized."""
    return min(19, user_nice + s.nice_penalty) if penalized else user_nice
