"""The load of the cluster and of each node over the last hour and day, and of each job over the last
hour of its run, for the web page's plots.

Sampled from the server's state (see :func:`wulf.server.webviews.node_load`): a point every
HOUR_STEP seconds kept for an hour, and a point every DAY_STEP seconds kept for a day, per node and for
the whole cluster; a point every HOUR_STEP seconds for each running job (its cpu and memory in use),
kept for an hour and, once it has ended, for the last KEEP_ENDED jobs. Points are kept in flat arrays of floats (a few KB a node), in memory only: a restart
of the server starts the plots afresh.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable

#: what a point holds, after its time
FIELDS = ("cpu_wulf", "cpu_outside", "mem_wulf_mb", "mem_outside_mb", "cpus", "mem_total_mb")
JOB_FIELDS = ("cpu_used", "mem_used_mb")
KEEP_ENDED = 2000
HOUR_STEP = 15.0
DAY_STEP = 300.0
SPANS = {"hour": (HOUR_STEP, int(3600 / HOUR_STEP)), "day": (DAY_STEP, int(86400 / DAY_STEP))}
CLUSTER = ""  # the key of the whole cluster's points


class Ring:
    """The last ``size`` points, oldest first, in flat arrays."""

    def __init__(self, size: int, width: int = len(FIELDS)) -> None:
        self.size, self.width = size, width
        self.times = array("d", [math.nan] * size)
        self.values = array("f", [math.nan] * (size * width))
        self.next = 0  # where the next point goes
        self.last = -math.inf  # the time of the latest point

    def add(self, t: float, values: Iterable[float]) -> None:
        i = self.next
        self.times[i] = t
        w = self.width
        self.values[i * w:(i + 1) * w] = array("f", values)
        self.next = (i + 1) % self.size
        self.last = t

    def points(self) -> list[list[float]]:
        w, out = self.width, []
        for k in range(self.size):
            i = (self.next + k) % self.size
            if not math.isnan(self.times[i]):
                out.append([round(self.times[i], 1), *(round(v, 2) for v in self.values[i * w:(i + 1) * w])])
        return out


class LoadHistory:
    def __init__(self) -> None:
        self._rings: dict[tuple[str, str], Ring] = {}  # (node or CLUSTER, span) -> its points
        self._jobs: dict[int, Ring] = {}  # job -> its last hour's points (the running ones last)

    def record(self, now: float, loads: dict[str, tuple[float, ...]]) -> None:
        """Take the nodes' loads now (node -> FIELDS), and their sum as the cluster's, into each span
        whose step has passed since its last point."""
        total = [sum(v[k] for v in loads.values()) for k in range(len(FIELDS))]
        for span, (step, size) in SPANS.items():
            for key, values in [*loads.items(), (CLUSTER, tuple(total))]:
                ring = self._rings.get((key, span))
                if ring is None:
                    ring = self._rings[(key, span)] = Ring(size)
                if now - ring.last >= step * 0.99:
                    ring.add(now, values)

    def record_jobs(self, now: float, uses: dict[int, tuple[float, float]]) -> None:
        """Take the running jobs' use now (job -> JOB_FIELDS); forget all but the last KEEP_ENDED of
        those that no longer run."""
        step, size = SPANS["hour"]
        for job_id, values in uses.items():
            ring = self._jobs.pop(job_id, None) or Ring(size, len(JOB_FIELDS))
            self._jobs[job_id] = ring  # (to the end: the running ones stay in the last places)
            if now - ring.last >= step * 0.99:
                ring.add(now, values)
        ended = len(self._jobs) - len(uses)
        for job_id in list(self._jobs)[:max(0, ended - KEEP_ENDED)]:
            del self._jobs[job_id]

    def job_points(self, job_id: int) -> list[list[float]] | None:
        ring = self._jobs.get(job_id)
        return ring.points() if ring is not None else None

    def forget(self, keep: Iterable[str]) -> None:
        """Drop the points of nodes the server no longer knows."""
        names = {*keep, CLUSTER}
        self._rings = {k: r for k, r in self._rings.items() if k[0] in names}

    def points(self, key: str, span: str) -> list[list[float]] | None:
        """The points of ``key`` (a node's name, or CLUSTER) over ``span``, oldest first; None if none."""
        ring = self._rings.get((key, span))
        return ring.points() if ring is not None else None
