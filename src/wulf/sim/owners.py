"""``wulf sim --scenario owner-returns``: what wulf's batch jobs on workstations cost their owners, and
what it costs the jobs to get out of the way (issue 13 §3), under three strategies.

A smaller model than the engine's (:mod:`wulf.sim.engine`), one workstation at a time, on a clock that
ticks at the agents' report interval; the decisions are wulf's own (:mod:`wulf.policy.migrate`, fed as
the server feeds it). Each workstation always has batch work waiting elsewhere: while its owner is away
it runs one job that wants all its cpus. Its owner comes in on weekdays (about 09:00, out for lunch,
gone about 17:30, each day a little different) and, while there, alternates thinking (an editor's
trickle of cpu) with computations that want one cpu or all of them. The cpus are shared as Linux's
scheduler shares them (:func:`wulf.sim.engine.shares`): a reniced job weighs little against the owner.

- **default** (renice only): the jobs stay, reniced to the penalty once the owner is back.
- **suspend**: reniced, then stopped (SIGSTOP) if the owner's work is still starved ``grace_seconds``
  after the owner came back; resumed when they go.
- **checkpoint-migrate**: every job is ``--checkpoint``: told to checkpoint when the owner is back, it
  goes on elsewhere; restarting costs it ``RESTART_SECONDS`` of work (reading its state, warming up),
  wasted. The workstation takes a new job once the owner has gone.

Reported: the owners' lost cpu (cpu time their work wanted and did not get), the jobs' wasted work (cpu
time done and thrown away) and the jobs' work done on the workstations, in cpu hours.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wulf.policy import migrate
from wulf.sim.engine import cfs_weight, shares

STRATEGIES = ("default", "suspend", "checkpoint-migrate")
#: the work a job that checkpointed loses on restart elsewhere (seconds of its cpus)
RESTART_SECONDS = 60.0
#: what an owner who is there but thinking uses (an editor, a browser): under any sane busy_cpu
IDLE_CPU = 0.05
DAY = 86400.0


@dataclass(frozen=True)
class Setup:
    nodes: int = 20
    cpus: int = 2
    days: int = 5  # weekdays
    interval: float = 5.0
    nice_penalty: int = 10
    settings: migrate.Settings = dataclasses.field(default_factory=lambda: migrate.Settings(away_seconds=900.0))


@dataclass
class Result:
    strategy: str
    owner_wanted: float = 0.0  # cpu seconds
    owner_lost: float = 0.0
    job_done: float = 0.0
    job_wasted: float = 0.0
    migrations: int = 0
    suspended: float = 0.0  # seconds jobs spent stopped

    def to_dict(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "owner_wanted_cpu_hours": round(self.owner_wanted / 3600, 2),
                "owner_lost_cpu_hours": round(self.owner_lost / 3600, 2),
                "job_done_cpu_hours": round(self.job_done / 3600, 2),
                "job_wasted_cpu_hours": round(self.job_wasted / 3600, 2),
                "migrations": self.migrations, "suspended_hours": round(self.suspended / 3600, 2)}


def owner_wants(setup: Setup, rng: random.Random) -> list[float]:
    """What the owner's work wants, tick by tick, over the days simulated."""
    tick = setup.interval
    out = [0.0] * int(setup.days * DAY / tick)
    for day in range(setup.days):
        come = day * DAY + rng.gauss(9.0, 0.75) * 3600
        lunch = day * DAY + rng.gauss(12.25, 0.25) * 3600
        back = lunch + rng.uniform(0.5, 1.25) * 3600
        go = day * DAY + rng.gauss(17.5, 1.0) * 3600
        for start, end in ((come, lunch), (back, go)):
            t = start
            while t < end:
                think = rng.expovariate(1 / 900.0)  # about 15 minutes between computations
                run = rng.expovariate(1 / 240.0)  # of about 4 minutes
                want = rng.choice((1.0, float(setup.cpus)))
                for i in range(int(t / tick), min(int(min(t + think, end) / tick), len(out))):
                    out[i] = IDLE_CPU
                for i in range(int((t + think) / tick), min(int(min(t + think + run, end) / tick), len(out))):
                    out[i] = want
                t += think + run
    return out


def _job_view(job_id: int, strategy: str, fate: migrate.Fate) -> migrate.JobView:
    return migrate.JobView(job_id, strategy == "checkpoint-migrate", False, fate)


def simulate(setup: Setup, strategy: str, wants: list[list[float]]) -> Result:
    """One strategy over every workstation (``wants``: each owner's, from :func:`owner_wants`)."""
    s = setup.settings
    if strategy == "default":  # the jobs are reniced and stay, whatever the grace
        s = dataclasses.replace(s, grace_seconds=math.inf)
    res = Result(strategy)
    tick, cpus = setup.interval, float(setup.cpus)
    reniced_weight = cfs_weight(setup.nice_penalty) / cfs_weight(0)
    for owner in wants:
        watch, fate, job = migrate.Watch(), migrate.Fate.RUNNING, 1
        present = True  # a job runs on the workstation (not gone elsewhere)
        starved = False
        for k, want in enumerate(owner):
            now = k * tick
            running = present and fate is not migrate.Fate.SUSPENDED
            weight = reniced_weight if fate is migrate.Fate.RENICED else 1.0
            job_speed, owner_speed = shares(cpus, cpus if running else 0.0, want, weight)
            got = want * owner_speed
            res.owner_wanted += want * tick
            res.owner_lost += (want - got) * tick
            starved = got < want - 1e-9
            if running:
                res.job_done += cpus * job_speed * tick
            elif present:
                res.suspended += tick
            watch = migrate.observe(watch, now, want, s)  # (the owner's use is what the agent sees)
            if not present and not watch.back:  # the owner has gone: a new job from the queue
                present, fate, job = True, migrate.Fate.RUNNING, job + 1
            if not present:
                continue
            for _, step in migrate.decide(watch, now, starved, [_job_view(job, strategy, fate)], s):
                fate = migrate.fate_after(step)
                if step is migrate.Step.CHECKPOINT:  # it saves its state and goes on elsewhere
                    present = False
                    res.migrations += 1
                    res.job_wasted += cpus * RESTART_SECONDS  # (what its restart there costs it)
    return res


def run(setup: Setup, seed: int) -> list[Result]:
    rng = random.Random(seed)
    wants = [owner_wants(setup, rng) for _ in range(setup.nodes)]
    return [simulate(setup, name, wants) for name in STRATEGIES]


def table(setup: Setup, results: list[Result]) -> str:
    """The results for people: one column per strategy."""
    s = setup.settings
    head = (f"owner-returns: {setup.nodes} workstations of {setup.cpus} cpus, {setup.days} weekdays, owners' "
            f"sessions by time of day; [migrate] busy_cpu {s.busy_cpu:g}, busy_seconds {s.busy_seconds:g}, "
            f"away_seconds {s.away_seconds if s.away_seconds is not None else s.busy_seconds:g}, "
            f"grace_seconds {s.grace_seconds:g}; nice penalty {setup.nice_penalty}")
    rows: list[tuple[str, Callable[[Result], str]]] = [("owners' cpu wanted", lambda r: f"{r.owner_wanted / 3600:,.1f} cpu-h"),
            ("owners' lost cpu", lambda r: f"{r.owner_lost / 3600:,.2f} cpu-h "
                                           f"({100 * r.owner_lost / max(r.owner_wanted, 1e-9):.1f}%)"),
            ("jobs' work on workstations", lambda r: f"{r.job_done / 3600:,.1f} cpu-h"),
            ("jobs' wasted work", lambda r: f"{r.job_wasted / 3600:,.2f} cpu-h"),
            ("jobs moved elsewhere", lambda r: f"{r.migrations:,}"),
            ("jobs' time suspended", lambda r: f"{r.suspended / 3600:,.1f} h")]
    width = max(len(name) for name, _ in rows)
    cols = [[f(r) for r in results] for _, f in rows]
    cw = [max(len(r.strategy), *(len(c[i]) for c in cols)) for i, r in enumerate(results)]
    lines = [head, "", " " * width + "  " + "  ".join(r.strategy.rjust(cw[i]) for i, r in enumerate(results))]
    for (name, _), col in zip(rows, cols, strict=True):
        lines.append(name.ljust(width) + "  " + "  ".join(v.rjust(cw[i]) for i, v in enumerate(col)))
    return "\n".join(lines)
