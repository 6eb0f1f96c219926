"""The load of the cluster and of each node over the last hour and day, and of each job over the last
hour of its run, for the web page's plots.

Sampled from the server's state (see :func:`wulf.server.webviews.node_load`): a point every
HOUR_STEP seconds kept for an hour, and a point every DAY_STEP seconds kept for a day, per node and for
the whole cluster; a point every HOUR_STEP seconds for each running job (its cpu and memory in use),
kept for an hour and, once it has ended, for the last KEEP_ENDED jobs. Points are kept in flat arrays of
floats (a few KB a node). They are saved in the server's state directory every SAVE_EVERY seconds and
when it stops, and read back when it starts: a restart leaves a gap in the plots, not an empty page.
"""

from __future__ import annotations

import base64
import json
import math
import os
from array import array
from collections.abc import Iterable
from pathlib import Path
from typing import Any

#: what a point holds, after its time
FIELDS = ("cpu_wulf", "cpu_outside", "mem_wulf_mb", "mem_outside_mb", "cpus", "mem_total_mb")
JOB_FIELDS = ("cpu_used", "mem_used_mb")
KEEP_ENDED = 2000
HOUR_STEP = 15.0
DAY_STEP = 300.0
SPANS = {"hour": (HOUR_STEP, int(3600 / HOUR_STEP)), "day": (DAY_STEP, int(86400 / DAY_STEP))}
CLUSTER = ""  # the key of the whole cluster's points
SAVE_EVERY = 300.0
FORMAT = 1  # of the saved file


class BadHistory(ValueError):
    """A saved history that is not one this version wrote."""


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

    def dump(self) -> list[Any]:
        """The ring as saved (its arrays copied: the copy may be written out while the ring goes on)."""
        return [self.next, self.last, self.times.tobytes(), self.values.tobytes()]

    @classmethod
    def undump(cls, size: int, width: int, saved: Any) -> Ring:
        if not isinstance(saved, list) or len(saved) != 4:
            raise BadHistory("a ring is not [next, last, times, values]")
        nxt, last, times, values = saved
        ring = cls(size, width)
        ring.times = array("d", _bytes(times))
        ring.values = array("f", _bytes(values))
        if not isinstance(nxt, int) or not 0 <= nxt < size or not isinstance(last, (int, float)) \
                or len(ring.times) != size or len(ring.values) != size * width:
            raise BadHistory("a ring of another size")
        ring.next, ring.last = nxt, float(last)
        return ring

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

    def forget(self, keep: Iterable[str], now: float) -> None:
        """Drop the points of nodes the server no longer knows, once their newest is a day old (a node it
        does not know yet, whose agent has not come back since the server started, keeps its plots)."""
        names = {*keep, CLUSTER}
        old = now - SPANS["day"][0] * SPANS["day"][1]
        self._rings = {k: r for k, r in self._rings.items() if k[0] in names or r.last > old}

    def points(self, key: str, span: str) -> list[list[float]] | None:
        """The points of ``key`` (a node's name, or CLUSTER) over ``span``, oldest first; None if none."""
        ring = self._rings.get((key, span))
        return ring.points() if ring is not None else None

    # ------------------------------------------------------------------ saved between runs

    def dump(self) -> dict[str, Any]:
        """What :func:`save` writes: copies of every ring (cheap: taken on the event loop)."""
        return {"format": FORMAT, "rings": [[key, span, ring.dump()] for (key, span), ring in self._rings.items()],
                "jobs": [[job_id, ring.dump()] for job_id, ring in self._jobs.items()]}

    @classmethod
    def undump(cls, saved: Any) -> LoadHistory:
        if not isinstance(saved, dict) or saved.get("format") != FORMAT:
            raise BadHistory("not a load history of this version")
        history = cls()
        for key, span, ring in saved.get("rings", ()):
            if not isinstance(key, str) or span not in SPANS:
                raise BadHistory("a ring of no node or span")
            history._rings[(key, span)] = Ring.undump(SPANS[span][1], len(FIELDS), ring)
        for job_id, ring in saved.get("jobs", ()):
            if not isinstance(job_id, int):
                raise BadHistory("a job's ring without its id")
            history._jobs[job_id] = Ring.undump(SPANS["hour"][1], len(JOB_FIELDS), ring)
        return history


def save(path: Path, dumped: dict[str, Any]) -> None:
    """Write a dumped history to ``path`` whole (a new file put in place: a crash leaves the old one)."""
    def text(x: Any) -> Any:
        return base64.b64encode(x).decode() if isinstance(x, bytes) else [text(v) for v in x] \
            if isinstance(x, list) else x

    body = json.dumps({**dumped, "rings": text(dumped["rings"]), "jobs": text(dumped["jobs"])})
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(body)
    os.replace(tmp, path)


def load(path: Path) -> LoadHistory:
    """The history saved at ``path``; an empty one if there is none. Raises BadHistory (or OSError) for a
    file it cannot read."""
    try:
        body = path.read_text()
    except FileNotFoundError:
        return LoadHistory()
    try:
        return LoadHistory.undump(json.loads(body))
    except (ValueError, TypeError) as e:  # (json's errors, base64's, an array of the wrong length)
        raise BadHistory(str(e)) from None


def _bytes(text: Any) -> bytes:
    if not isinstance(text, str):
        raise BadHistory("an array is not text")
    return base64.b64decode(text, validate=True)
