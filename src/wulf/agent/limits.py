"""A job's run-time limits and the decision whether it has gone over one. Pure: no I/O.

A job may have a wall-time limit (from its start), a cpu-time limit (the whole job: every process,
the ones already ended included) and a memory limit. The agent measures (see
:mod:`wulf.agent.jobmeter`), :func:`exceeded` decides, and the enforcer stops the job. The reason
given is the one the user reads in ``jstat``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from wulf import rlimits
from wulf.protocol import LIMIT_REASON, StartJob

CPU_BACKSTOP_MARGIN: Final = 5
"""Seconds over its cpu limit at which the rlimit of each process stops it, should the agent's own
check (every second) not have come first (while the agent is down or restarting)."""


MAX_SECONDS: Final = 100 * 365 * 86400.0
"""The largest time limit taken (a century): anything above is a mistake, not a limit."""
MAX_MB: Final = float(2**40)
"""The largest memory limit taken, in MB (an exabyte): past it the kernel's own counters overflow."""


def _positive(value: float | None, what: str, top: float) -> float | None:
    """A limit; one of 0 or less is none. Raises ValueError for one that is not a finite number within
    ``top``: NaN would compare as no limit at all, and 1e308 overflows what the kernel takes."""
    if value is None:
        return None
    if not math.isfinite(value) or value > top:
        raise ValueError(f"its {what} limit ({value}) is not a number within {top:g}")
    return value if value > 0 else None


@dataclass(frozen=True)
class Limits:
    time: float | None = None  # seconds of wall time
    cpu: float | None = None  # seconds of cpu time
    mem_mb: float | None = None  # MB

    @classmethod
    def of(cls, job: StartJob) -> Limits:
        """A job's limits; one of 0 or less is taken as none (a limit nothing can meet is a mistake).
        Raises ValueError for one that is not a finite number within bounds."""
        return cls(_positive(job.time_limit, "time", MAX_SECONDS), _positive(job.cputime_limit, "cpu time", MAX_SECONDS),
                   _positive(job.mem_limit_mb, "memory", MAX_MB))

    def __bool__(self) -> bool:
        return self.time is not None or self.cpu is not None or self.mem_mb is not None


@dataclass(frozen=True)
class Usage:
    """What a job has used, as measured at one moment; None for what was not measured."""

    wall: float  # seconds since it started
    cpu: float | None = None  # seconds
    mem_mb: float | None = None
    oom_kills: int = 0  # processes of it the kernel killed at its cgroup's memory limit


def hms(seconds: float) -> str:
    """``H:MM:SS`` (hours unbounded), as ``--time`` takes it; a fraction of a second is kept."""
    whole = int(seconds)
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    frac = seconds - whole
    sec = f"{s:02d}" if frac < 0.05 else f"{s + frac:04.1f}"
    return f"{h}:{m:02d}:{sec}"


def _mb(value: float) -> str:
    return f"{value:.0f}" if value == round(value) else f"{value:.1f}"


def memory_reason(limit_mb: float) -> str:
    return f"{LIMIT_REASON}memory limit of {_mb(limit_mb)} MB"


def time_reason(limit: float) -> str:
    return f"{LIMIT_REASON}time limit of {hms(limit)}"


def cpu_reason(limit: float) -> str:
    return f"{LIMIT_REASON}cpu time limit of {hms(limit)}"


def exceeded(limits: Limits, usage: Usage) -> str | None:
    """The reason to stop a job that has gone over one of its limits (memory, then cpu, then wall
    time); None while it is within them."""
    if limits.mem_mb is not None and (
        usage.oom_kills > 0 or (usage.mem_mb is not None and usage.mem_mb > limits.mem_mb)
    ):
        return memory_reason(limits.mem_mb)
    if limits.cpu is not None and usage.cpu is not None and usage.cpu > limits.cpu:
        return cpu_reason(limits.cpu)
    if limits.time is not None and usage.wall > limits.time:
        return time_reason(limits.time)
    return None


def exit_reason(limits: Limits, cpu: float, oom_kills: int, succeeded: bool) -> str | None:
    """Why a job that the agent did not stop ended, when a limit did it: the kernel killed part of it
    at its memory limit (which fails the job whatever its shell then did), or it failed after using
    up its cpu time (an rlimit killed it)."""
    if limits.mem_mb is not None and oom_kills > 0:
        return memory_reason(limits.mem_mb)
    if limits.cpu is not None and not succeeded and cpu >= limits.cpu:
        return cpu_reason(limits.cpu)
    return None


def open_files_lines() -> list[str]:
    """A shell line giving the job back the open-file limit the agent was given, if it raised its own."""
    return [] if rlimits.given is None else [f"ulimit -Sn {rlimits.given}"]


def rlimit_lines(limits: Limits, memory: bool) -> list[str]:
    """Shell lines setting a job's rlimits: the cpu backstop (always, see ``CPU_BACKSTOP_MARGIN``) and,
    when ``memory`` (no cgroup limits the job), its address space (``ulimit -v``, in KB)."""
    lines = []
    if limits.cpu is not None:
        lines.append(f"ulimit -t {math.ceil(limits.cpu) + CPU_BACKSTOP_MARGIN} 2>/dev/null")
    if memory and limits.mem_mb is not None:
        lines.append(f"ulimit -v {max(math.ceil(limits.mem_mb * 1024), 1)} 2>/dev/null")
    return lines
