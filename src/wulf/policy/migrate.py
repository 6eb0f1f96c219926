"""When a workstation's owner comes back (issue 13 §3): what happens to wulf's batch jobs there. Pure:
no I/O, no clock of its own; the server feeds it each report of the node and carries out the steps.

A daemon cannot see a keyboard, but it sees the work it did not start: the owner is taken to be back
when that outside work has used at least ``busy_cpu`` cpus for ``busy_seconds`` in a row, and gone
again when it has stayed below for ``away_seconds`` (so that a short burst, or a short pause, changes
nothing; people think between computations, so a pause is given longer than a burst).
While the owner is back, each batch job on the node, by what it can do:

- a job with ``--checkpoint`` is told to checkpoint; its exit with the checkpoint code queues it again,
  to run elsewhere (``migrating``). One still there ``grace_seconds`` after the owner came back (it did
  not checkpoint) is queued again if it may be, else suspended, starved owner or not;
- the others are reniced to the penalty (as adaptive allocation does to a job on a full node); if the
  owner's work is still starved ``grace_seconds`` after the owner came back, a job that may be queued
  again is (it starts over elsewhere), and the others are suspended (SIGSTOP of the whole job:
  ``suspended: owner busy``).

When the owner has gone, suspended jobs are resumed and reniced ones get their niceness back (a job told
to checkpoint that is still there runs on as before; should it exit to checkpoint, it runs again). Whether
the owner's work is starved (it wants more cpu than it gets) is the caller's measurement.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum


class Fate(StrEnum):
    """What has been done to a job because of the owner, so far."""

    RUNNING = "running"  # nothing
    RENICED = "reniced"  # at the penalty
    MIGRATING = "migrating"  # told to checkpoint; its exit queues it again elsewhere
    SUSPENDED = "suspended"  # stopped (SIGSTOP) until the owner goes
    REQUEUED = "requeued"  # being stopped, to be queued again


class Step(StrEnum):
    """What the server is to do to one job now (each step moves it to the fate of the same name)."""

    CHECKPOINT = "checkpoint"  # send its checkpoint signal; -> MIGRATING
    RENICE = "renice"  # to the penalty; -> RENICED
    SUSPEND = "suspend"  # SIGSTOP the whole job; -> SUSPENDED
    REQUEUE = "requeue"  # stop it and queue it again; -> REQUEUED
    RESUME = "resume"  # SIGCONT (if suspended) and its own niceness back; -> RUNNING


#: what jstat shows of a job in each fate (a job running as usual shows nothing)
SHOWN = {Fate.RENICED: "reniced: owner busy", Fate.MIGRATING: "migrating", Fate.SUSPENDED: "suspended: owner busy",
         Fate.REQUEUED: "requeued: owner busy"}
_AFTER = {Step.CHECKPOINT: Fate.MIGRATING, Step.RENICE: Fate.RENICED, Step.SUSPEND: Fate.SUSPENDED,
          Step.REQUEUE: Fate.REQUEUED, Step.RESUME: Fate.RUNNING}


def fate_after(step: Step) -> Fate:
    """The fate a job has once ``step`` is done."""
    return _AFTER[step]


@dataclass(frozen=True)
class Settings:
    """``[migrate]``: how much outside work, for how long, means the owner is back; how long the owner's
    work may stay starved before jobs are suspended or queued again."""

    busy_cpu: float = 0.5
    busy_seconds: float = 30.0
    grace_seconds: float = 120.0
    away_seconds: float | None = None  # below busy_cpu this long: the owner has gone (None: busy_seconds)


@dataclass(frozen=True)
class Watch:
    """What one node's decisions remember from report to report."""

    over_since: float | None = None  # outside work at least busy_cpu since then (None: it is below)
    under_since: float | None = None  # below busy_cpu since then (None: it is at or over)
    back_since: float | None = None  # the owner is back, since then (None: away)

    @property
    def back(self) -> bool:
        return self.back_since is not None


@dataclass(frozen=True)
class JobView:
    """One batch job on the node, as the decision sees it."""

    id: int
    checkpoint: bool  # qr --checkpoint: it can save its state and go on elsewhere
    requeueable: bool  # it may be queued again and start over (it has retries left)
    fate: Fate = Fate.RUNNING


def observe(watch: Watch, now: float, outside_cpu: float, s: Settings) -> Watch:
    """The node's watch after a report at ``now`` in which outside work used ``outside_cpu`` cpus."""
    if outside_cpu >= s.busy_cpu:
        watch = replace(watch, under_since=None, over_since=watch.over_since if watch.over_since is not None else now)
        assert watch.over_since is not None
        if not watch.back and now - watch.over_since >= s.busy_seconds:
            watch = replace(watch, back_since=now)
        return watch
    watch = replace(watch, over_since=None, under_since=watch.under_since if watch.under_since is not None else now)
    assert watch.under_since is not None
    away = s.busy_seconds if s.away_seconds is None else s.away_seconds
    if watch.back and now - watch.under_since >= away:
        watch = replace(watch, back_since=None)
    return watch


def decide(watch: Watch, now: float, starved: bool, jobs: Iterable[JobView], s: Settings) -> list[tuple[int, Step]]:
    """The steps due now for the node's batch jobs, one at most a job (jobs with none are left out)."""
    out: list[tuple[int, Step]] = []
    for job in jobs:
        step = _while_back(job, now - watch.back_since, starved, s) if watch.back_since is not None else _gone(job)
        if step is not None:
            out.append((job.id, step))
    return out


def _gone(job: JobView) -> Step | None:
    """The owner is away: what was done for them is undone (a job queued again goes on its way)."""
    return Step.RESUME if job.fate in (Fate.RENICED, Fate.SUSPENDED, Fate.MIGRATING) else None


def _while_back(job: JobView, back_for: float, starved: bool, s: Settings) -> Step | None:
    """The owner has been back for ``back_for`` seconds."""
    fate = job.fate
    if fate in (Fate.SUSPENDED, Fate.REQUEUED):
        return None  # (done already: it waits for the owner to go, or for its exit)
    late = back_for >= s.grace_seconds
    if job.checkpoint and fate is not Fate.MIGRATING:
        return Step.CHECKPOINT
    if fate is Fate.RUNNING:
        return Step.RENICE
    if fate is Fate.MIGRATING and not late:
        return None  # it has the grace to checkpoint and exit
    if late and (starved or fate is Fate.MIGRATING):  # (a job that did not go when told stops in any case)
        return Step.REQUEUE if job.requeueable else Step.SUSPEND
    return None
