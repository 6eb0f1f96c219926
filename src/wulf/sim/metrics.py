"""What a simulation measures, and the summary of a run.

- **makespan**: from the first arrival to the last end; with the lower bound
  max(total work / total cpus, longest job, and arrival + duration of each job), and their ratio.
- **utilisation**: cpu-seconds the jobs used / (total cpus x makespan); and **idle while waiting**: the
  part of the cpus nobody used (neither jobs nor outside load) while jobs were queued.
- **waits** (start - arrival): mean, median, p95, max; also turnaround (end - arrival) and slowdown
  ((end - start) / duration, 1 when a job never shared its cpus).
- **per user**: their share of the running jobs over time, and of the cpu-seconds used.
- **fairness**: Jain's index (sum x)^2 / (n sum x^2) over the users that have jobs queued, while at
  least two do, where x is a user's running jobs divided by their share weight. ``jain`` is the index of
  each user's average x over the times they were among those competing; ``jain_instant`` the time
  average of the index at each moment (stricter: it counts the time a newcomer needs to get their
  share, as running jobs end).
- **jobs of several nodes** (when the workload has them): how many finished and never started (none may
  starve: the server reserves nodes for the first that does not fit), and their waits beside the
  single-node jobs' (a job of several nodes waits for all its slots to be free at once).
- **outside load**: the cpu-seconds it wanted and the part it did not get (taken by jobs).
- **started as taught**: jobs that started with less than they asked for, as the last jobs of their kind
  used (wulf.policy.history).
- **passes**: how many, and the wall time of each call of the real ``schedule``.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from wulf.sim.workload import SimJob, Workload

if TYPE_CHECKING:
    from wulf.sim.engine import Engine

#: at most this many points of each series are kept (the step doubles when there would be more)
MAX_POINTS = 2000


@dataclass
class Series:
    """State at regular times: for the plot."""

    step: float
    users: list[str]
    t: list[float] = field(default_factory=list)
    utilisation: list[float] = field(default_factory=list)  # fraction of all cpus used by jobs
    outside: list[float] = field(default_factory=list)  # fraction used by the outside load
    queued: list[int] = field(default_factory=list)
    running: list[int] = field(default_factory=list)
    running_by_user: list[list[int]] = field(default_factory=list)  # per point, in the order of users

    def thin(self) -> None:
        self.step *= 2
        for name in ("t", "utilisation", "outside", "queued", "running", "running_by_user"):
            setattr(self, name, getattr(self, name)[::2])


@dataclass
class Summary:
    policy: str
    jobs: int
    finished: int
    rejected: int  # no node can ever run them
    never_started: int  # waited until the end (stopped queues, or no room ever), or killed too often
    makespan: float
    bound: float
    makespan_over_bound: float
    utilisation: float
    idle_while_waiting: float  # fraction of the cpus idle while jobs were queued
    wait: dict[str, float]
    turnaround_mean: float
    slowdown_mean: float
    jain: float | None
    jain_instant: float | None
    contended_seconds: float  # time with two or more users queued
    users: dict[str, dict[str, float]]
    outside: dict[str, float]
    passes: dict[str, float]
    wall_seconds: float
    series: Series
    rejections: dict[str, int] = field(default_factory=dict)
    killed_for_memory: int = 0  # jobs the out-of-memory killer ended (each ran again from the start)
    killed_run_seconds: float = 0.0  # how long they had run
    started_as_taught: int = 0  # jobs that started with less than they asked for, as their kind taught
    #: jobs of several nodes (empty without any): jobs, finished, rejected (no set of nodes can ever hold
    #: them), never_started (not counting those), wait_mean, wait_median,
    #: wait_p95, wait_max; and the same waits of the single-node jobs beside them (single_wait_mean, ...)
    multinode: dict[str, float] = field(default_factory=dict)

    def to_dict(self, series: bool = False) -> dict[str, Any]:
        d = asdict(self)
        if not series:
            d.pop("series")
        return d


def _pct(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, math.ceil(p * len(sorted_values)) - 1))
    return sorted_values[k]


def jain(xs: list[float]) -> float:
    """Jain's fairness index of ``xs``: 1 when all are equal, 1/n when one has everything."""
    total = sum(xs)
    squares = sum(x * x for x in xs)
    return 1.0 if squares == 0 else total * total / (len(xs) * squares)


class Recorder:
    """Integrates the engine's state over virtual time; the engine keeps ``busy``, ``out_busy``,
    ``out_wanted`` (cpu rates now) and ``queued`` (jobs waiting now) up to date."""

    def __init__(self, workload: Workload, users: list[str], cpus: float, step: float) -> None:
        n = len(workload.jobs)
        self.w = workload
        self.cpus = cpus
        self.t = workload.jobs[0].arrival if workload.jobs else 0.0
        self.first = self.t
        self.busy = self.out_busy = self.out_wanted = 0.0
        self.queued = 0
        self.busy_s = self.out_busy_s = self.out_wanted_s = 0.0
        self.idle_queued_s = self.queued_s = 0.0  # idle cpu-seconds, and seconds, while jobs were queued
        self.start = array("d", [math.nan]) * n
        self.end = array("d", [math.nan]) * n
        self.rejections: dict[str, int] = {}
        self.rejected_n = 0
        self.rejected_ids: set[int] = set()
        self.renices = 0
        self.sized = 0  # jobs that started with less than they asked for, as their kind taught
        self.killed_n = 0  # jobs the out-of-memory killer ended (each ran again)
        self.lost_s = 0.0  # the seconds they had run
        self.outside_killed = 0  # outside computations it ended
        self.kills: dict[int, int] = {}  # job id -> times killed
        self.last_end = self.first
        self.pass_times: list[float] = []
        self.placements = 0
        k = len(users)
        self.running_s = [0.0] * k  # running jobs x seconds, per user
        self.fair_x = [0.0] * k  # (running / share) x seconds while competing, per user
        self.fair_t = [0.0] * k  # seconds competing, per user
        self.jain_s = 0.0  # index x seconds, while two or more compete
        self.contended = 0.0
        self.series = Series(step, users)
        self.next_point = self.t

    def advance(self, t: float, engine: Engine) -> None:
        """The state held from the last call until ``t``."""
        dt = t - self.t
        if dt <= 0:
            return
        users = list(engine.users.values())
        while self.next_point < t:
            self._point(users)
        self.busy_s += self.busy * dt
        self.out_busy_s += self.out_busy * dt
        self.out_wanted_s += self.out_wanted * dt
        if self.queued:
            self.queued_s += dt
            self.idle_queued_s += max(0.0, self.cpus - self.busy - self.out_busy) * dt
        running_s = self.running_s
        competing = []
        for u in users:
            running_s[u.index] += u.running * dt
            if u.queued > 0:
                competing.append(u)
        if len(competing) >= 2:
            xs = [u.running / (u.share or 1.0) for u in competing]
            self.jain_s += jain(xs) * dt
            self.contended += dt
            for u, x in zip(competing, xs, strict=True):
                self.fair_x[u.index] += x * dt
                self.fair_t[u.index] += dt
        self.t = t

    def _point(self, users: list[Any]) -> None:
        s = self.series
        s.t.append(self.next_point)
        s.utilisation.append(self.busy / self.cpus)
        s.outside.append(self.out_busy / self.cpus)
        s.queued.append(self.queued)
        s.running.append(sum(u.running for u in users))
        s.running_by_user.append([u.running for u in users])
        if len(s.t) >= MAX_POINTS:
            s.thin()
            self.next_point = s.t[-1]
        self.next_point += s.step

    def started(self, job: SimJob, t: float) -> None:
        self.start[job.id] = t

    def ended(self, job: SimJob, t: float) -> None:
        self.end[job.id] = t
        self.last_end = max(self.last_end, t)

    def killed(self, job: SimJob, ran: float) -> int:
        """A run of ``job`` was killed after ``ran`` seconds; how many times it has been, now."""
        self.killed_n += 1
        self.lost_s += ran
        self.start[job.id] = math.nan  # its wait lasts until a run that finishes starts
        times = self.kills[job.id] = self.kills.get(job.id, 0) + 1
        return times

    def rejected(self, job: SimJob, why: str) -> None:
        self.rejected_n += 1
        self.rejected_ids.add(job.id)
        self.rejections[why] = self.rejections.get(why, 0) + 1

    def passed(self, seconds: float, placed: int) -> None:
        self.pass_times.append(seconds)
        self.placements += placed

    def summary(self, engine: Engine, wall: float) -> Summary:
        jobs = self.w.jobs
        waits, turnaround, slowdown = [], [], []
        by_user: dict[str, dict[str, float]] = {u: {"jobs": 0, "cpu_seconds": 0.0, "wait_sum": 0.0}
                                                for u in engine.users}
        multi: list[float] = []
        single: list[float] = []
        for j in jobs:
            start, end = self.start[j.id], self.end[j.id]
            if math.isnan(start):
                continue
            waits.append(start - j.arrival)
            (multi if j.multinode else single).append(start - j.arrival)
            u = by_user[j.user]
            u["wait_sum"] += start - j.arrival
            if not math.isnan(end):
                turnaround.append(end - j.arrival)
                slowdown.append((end - start) / j.duration)
                u["jobs"] += 1
                u["cpu_seconds"] += j.work
        waits.sort()
        finished = len(turnaround)
        makespan = self.last_end - self.first if finished else 0.0
        bound = self.w.bound()
        total_cpu_s = sum(u["cpu_seconds"] for u in by_user.values()) or 1.0
        total_running_s = sum(self.running_s) or 1.0
        users: dict[str, dict[str, float]] = {}
        for name, u in by_user.items():
            i = engine.users[name].index
            started = u["jobs"] or 1
            users[name] = {
                "jobs": u["jobs"],
                "running_share": self.running_s[i] / total_running_s,
                "cpu_share": u["cpu_seconds"] / total_cpu_s,
                "wait_mean": u["wait_sum"] / started,
                "running_mean_contended": self.fair_x[i] / self.fair_t[i] if self.fair_t[i] else 0.0,
            }
        competing = [self.fair_x[i] / self.fair_t[i] for i in range(len(self.fair_t)) if self.fair_t[i]]
        times = sorted(self.pass_times)
        return Summary(
            policy="allocation-only" if not engine.policy.observe else "default",
            jobs=len(jobs), finished=finished, rejected=self.rejected_n,
            never_started=len(jobs) - len(waits) - self.rejected_n,
            makespan=makespan, bound=bound, makespan_over_bound=makespan / bound if bound else 0.0,
            utilisation=self.busy_s / (self.cpus * makespan) if makespan else 0.0,
            idle_while_waiting=self.idle_queued_s / (self.cpus * self.queued_s) if self.queued_s else 0.0,
            wait={"mean": sum(waits) / len(waits) if waits else 0.0, "median": _pct(waits, 0.5),
                  "p95": _pct(waits, 0.95), "max": waits[-1] if waits else 0.0},
            turnaround_mean=sum(turnaround) / finished if finished else 0.0,
            slowdown_mean=sum(slowdown) / finished if finished else 0.0,
            jain=jain(competing) if len(competing) >= 2 else None,
            jain_instant=self.jain_s / self.contended if self.contended else None,
            contended_seconds=self.contended,
            users=users,
            outside={"cpu_seconds_wanted": self.out_wanted_s,
                     "taken_by_jobs": 1 - self.out_busy_s / self.out_wanted_s if self.out_wanted_s else 0.0,
                     "killed_for_memory": self.outside_killed},
            killed_for_memory=self.killed_n,
            killed_run_seconds=self.lost_s,
            started_as_taught=self.sized,
            passes={"count": len(times), "placements": self.placements,
                    "mean_ms": 1000 * sum(times) / len(times) if times else 0.0,
                    "p99_ms": 1000 * _pct(times, 0.99), "max_ms": 1000 * times[-1] if times else 0.0,
                    "total_s": sum(times), "pool_updates_s": engine.update_seconds,
                    "renices": self.renices},
            wall_seconds=wall,
            series=self.series,
            rejections=dict(self.rejections),
            multinode=self._multinode(multi, single),
        )

    def _multinode(self, multi: list[float], single: list[float]) -> dict[str, float]:
        """The jobs of several nodes' figures, and the single-node jobs' waits beside them."""
        jobs = [j for j in self.w.jobs if j.multinode]
        if not jobs:
            return {}
        out: dict[str, float] = {"jobs": len(jobs),
                                 "finished": sum(1 for j in jobs if not math.isnan(self.end[j.id])),
                                 "rejected": sum(1 for j in jobs if j.id in self.rejected_ids),
                                 "never_started": sum(1 for j in jobs if math.isnan(self.start[j.id])
                                                      and j.id not in self.rejected_ids)}
        for prefix, waits in (("", multi), ("single_", single)):
            waits.sort()
            out |= {f"{prefix}wait_mean": sum(waits) / len(waits) if waits else 0.0,
                    f"{prefix}wait_median": _pct(waits, 0.5), f"{prefix}wait_p95": _pct(waits, 0.95),
                    f"{prefix}wait_max": waits[-1] if waits else 0.0}
        return out
