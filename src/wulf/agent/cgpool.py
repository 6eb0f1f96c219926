"""Job cgroups, made for a job or taken from spares that ended jobs left.

Making a cgroup and removing it are the costly parts of running a short job in one: on cgroup v1 a
job has a directory in two hierarchies (memory and cpuacct), and the kernel makes and tears down some
thirty files in each. So on v1 an ended job's cgroup, once empty, is kept as a *spare*
(``spare-<n>``) with its counters reset, and the next job without a memory limit takes it under its
own name (``job-<id>``: a rename, which v1 allows). The ``job-<id>`` name is what a restarted agent
looks for, so a spare is never in use under another name.

A spare must measure the next job as a fresh cgroup would, so one is kept only when:

* the job had no memory limit (its limit and the OOM killer's count would have to be undone);
* no process is left in it, in either hierarchy;
* its cpu time and peak memory can be reset (``cpuacct.usage``, ``memory.max_usage_in_bytes``);
* what is still charged to it (page cache and kernel memory the job left) is at most
  ``LEFTOVER_MAX``: the next job's memory counts it, and the kernel's own batching of charges makes
  a cgroup's figures uncertain by about as much (up to 64 pages per cpu). A job that left more
  (it wrote or read files) gives up its cgroup, which is removed as before (:func:`may_keep`).

A job with a memory limit gets a cgroup made for it; on v2, which can neither rename a cgroup nor
reset its counters, every job does. Spares left by an earlier run are removed at the agent's start
(:meth:`Cgroups.remove_stale`), and spares unused for ``SPARE_IDLE`` seconds when the agent is idle.
"""

from __future__ import annotations

import logging
from typing import Final

from wulf.agent.cgroups import Cgroups, JobCgroup, job_dir_name, spare_dir_name

log = logging.getLogger(__name__)

SPARES_MAX: Final = 64
"""Spare cgroups kept at most: more jobs than this starting at once get new cgroups for the rest."""
OPEN_MAX: Final = 64
"""Cgroups at most (spares and in use) whose counter files are kept open: three files each."""
SPARE_IDLE: Final = 60.0
"""Seconds a spare is kept unused before it is removed."""
LEFTOVER_MAX: Final = 1 << 20
"""Bytes still charged to an ended job's empty cgroup up to which it is kept as a spare."""


def may_keep(leftover: int | None) -> bool:
    """Whether an ended job's empty cgroup with ``leftover`` bytes still charged to it (None: not
    known) may serve the next job (see the module's notes)."""
    return leftover is not None and leftover <= LEFTOVER_MAX


class CgroupPool:
    """This agent's job cgroups: :meth:`take` one for a job, :meth:`give_back` it at the job's end."""

    def __init__(self, cgroups: Cgroups, spares_max: int = SPARES_MAX, idle: float = SPARE_IDLE) -> None:
        self.cgroups = cgroups
        self.spares_max = spares_max
        self.idle = idle
        self._spares: list[tuple[JobCgroup, float]] = []  # (spare, when it was kept), the newest last
        self._next = 0  # the number of the next spare's name
        self._open = 0  # cgroups made here that keep their counter files open, not yet removed
        self.made = self.reused = 0  # cgroups made for a job / spares taken (for the log and tests)

    @property
    def spares(self) -> int:
        return len(self._spares)

    def take(self, job_id: int, mem_limit_mb: float | None) -> JobCgroup:
        """The cgroup of a job that starts now, with its memory limit. Raises OSError when it cannot
        be made."""
        if mem_limit_mb is None:
            while self._spares:
                spare, _ = self._spares.pop()
                try:
                    spare.rename(job_dir_name(job_id))
                except OSError as e:  # e.g. a directory of that name left by an earlier run
                    log.debug("spare cgroup %s not taken for job %d: %s", spare.memory_dir, job_id, e)
                    self.remove(spare)
                    break
                spare.reused = spare.pooled = True
                self.reused += 1
                return spare
        cg = self.cgroups.job(job_id)
        try:
            cg.create(mem_limit_mb)
        except OSError:
            cg.remove()
            raise
        self.made += 1
        cg.pooled = True
        if self.cgroups.reusable and not cg.limited and self._open < OPEN_MAX:
            cg.keep_open = True  # it may become a spare: its files are read and reset for every job
            self._open += 1
        return cg

    def give_back(self, cg: JobCgroup, now: float) -> bool:
        """An ended job's cgroup: kept as a spare, or removed. False while processes are left in it
        (it is then neither: the caller ends them and removes it)."""
        if self._may_keep(cg):
            try:
                cg.reset_counters()
                cg.rename(spare_dir_name(self._next))
            except OSError as e:
                log.debug("cgroup %s not kept as a spare: %s", cg.memory_dir, e)
            else:
                self._next += 1
                cg.reused = False
                self._spares.append((cg, now))
                return True
        return self.remove(cg)

    def remove(self, cg: JobCgroup) -> bool:
        """Remove a cgroup of this pool; False while processes remain in it."""
        if not cg.remove():
            return False
        if cg.keep_open:
            cg.keep_open = False
            self._open -= 1
        return True

    def _may_keep(self, cg: JobCgroup) -> bool:
        # one found again after a restart may have a limit set by the earlier run: it goes
        if not (self.cgroups.reusable and cg.pooled) or cg.limited or len(self._spares) >= self.spares_max:
            return False
        return cg.empty() and may_keep(cg.usage_bytes())

    def trim(self, now: float) -> int:
        """Remove the spares unused for ``idle`` seconds; how many were removed."""
        stale = [cg for cg, since in self._spares if now - since >= self.idle]
        if stale:
            self._spares = [(cg, since) for cg, since in self._spares if now - since < self.idle]
            for cg in stale:
                self.remove(cg)
        return len(stale)

    def close(self) -> None:
        """Remove every spare (the agent stops)."""
        for cg, _ in self._spares:
            self.remove(cg)
        self._spares.clear()
