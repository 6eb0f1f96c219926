"""Measure one running job: from its cgroup once its shell has joined it, else from its processes.

The two sources differ in cost and in truth. A cgroup counts everything the job ever ran, children it
never waited for included, at the price of reading a file or two. Without one (an agent that is not
root, or a shell that could not join), cpu time is summed over the job's processes and memory is their
PSS (see :mod:`wulf.agent.jobprocs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from wulf.agent import jobprocs
from wulf.agent.cgroups import JobCgroup
from wulf.agent.limits import Limits, Usage


@dataclass(frozen=True)
class Ending:
    """What a job's cgroup tells at its end; None for what it cannot tell."""

    cpu: float | None  # seconds, ended and never-waited-for children included
    peak_mb: float | None
    oom_kills: int


class JobMeter:
    def __init__(self, pid: int, cgroup: JobCgroup | None) -> None:
        self.pid = pid  # the job's shell
        self.cgroup = cgroup
        self.peak_mb = 0.0  # the highest memory measured for a report
        self.cpu_seen = 0.0  # the most cpu time measured by the enforcer (processes may end unwaited)
        self._joined = False

    def joined(self) -> JobCgroup | None:
        """The job's cgroup once its shell is seen in it (then for good), else None."""
        if self.cgroup is not None and not self._joined:
            self._joined = self.cgroup.holds(self.pid)
        return self.cgroup if self._joined else None

    def usage(self, limits: Limits, wall: float) -> Usage:
        """What the enforcer needs to check ``limits``, and no more (it runs every second)."""
        cg = self.joined()
        cpu = cg.cpu_seconds() if cg is not None and limits.cpu is not None else None
        mem: float | None = None
        oom_kills = 0
        if cg is not None and limits.mem_mb is not None:
            oom_kills = cg.oom_kills()
            if not cg.limited:
                mem = cg.memory_mb()
        by_procs = (limits.cpu is not None and cpu is None) or (limits.mem_mb is not None and cg is None)
        if by_procs:
            pids = jobprocs.tree(self.pid)
            summed = jobprocs.use(pids)
            if limits.cpu is not None and cpu is None:
                cpu = summed.cpu_seconds
                self.cpu_seen = max(self.cpu_seen, cpu)
            if limits.mem_mb is not None and cg is None:
                mem = summed.rss_mb
                if mem > limits.mem_mb:  # resident sizes overcount shared pages: look closer
                    mem = jobprocs.pss_mb(pids) or mem
        return Usage(wall, cpu, mem, oom_kills)

    def memory_mb(self, pids: Sequence[int]) -> float | None:
        """The job's memory for a report: its cgroup's working set, else the PSS of ``pids`` (its
        processes in the monitor's scan); None when neither can be read."""
        cg = self.joined()
        mem = cg.memory_mb() if cg is not None else None
        if mem is None:
            mem = jobprocs.pss_mb(pids)
        if mem is not None:
            self.peak_mb = max(self.peak_mb, mem)
        return mem

    def ending(self, oom_kills: bool = True) -> Ending | None:
        """At the job's end (its shell has ended): its cgroup's account, if the job was in it (the OOM
        killer's count only if ``oom_kills``: it matters only to a job with a memory limit)."""
        cg = self.cgroup
        if cg is None:
            return None
        cpu, peak = cg.cpu_seconds(), cg.peak_mb()
        # the shell got in if it used cpu there (a spare's peak is not 0: what was left charged to it)
        if not (self._joined or (cpu or 0.0) > 0 or (not cg.reused and (peak or 0.0) > 0)):
            return None  # the shell never got in: nothing was counted there
        return Ending(cpu, peak, cg.oom_kills() if oom_kills else 0)
