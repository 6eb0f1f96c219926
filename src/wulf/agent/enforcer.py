"""The enforcer: stops jobs that go over their limits, and jobs being cancelled, TERM then KILL; and
tells jobs what is coming (issue 13 §2): a warning signal before the time limit (``qr --signal``), the
checkpoint signal every interval and a grace period before the time limit (``qr --checkpoint``).

A state machine without I/O (events in, actions out): the agent tells it which jobs run with which
limits, calls :meth:`Enforcer.tick` every ``CHECK_EVERY`` seconds with a way to measure a job, and
carries out the actions it returns (:class:`Term`, :class:`Kill`). A job being stopped gets TERM at
once and KILL when it is still there ``grace`` seconds later (the agent tells it when the grace is
over, :meth:`Enforcer.grace_over`, and a tick after it kills too); the reason is kept for its exit.
A job told something gets :class:`Notify` (the whole job gets the signal; it is not stopped by it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from wulf.agent.limits import Limits, Usage, exceeded

CHECK_EVERY: Final = 1.0
"""Seconds between two checks of the jobs that have limits."""


@dataclass(frozen=True)
class Term:
    job: int
    reason: str  # "" for a cancel


@dataclass(frozen=True)
class Kill:
    job: int


@dataclass(frozen=True)
class Notify:
    job: int
    signal: int
    why: str  # for the log: "a warning before its time limit", "checkpoint"


@dataclass(frozen=True)
class Notices:
    """What a job is to be told, and when: ``warn`` ``warn_before`` seconds before its time limit; the
    checkpoint signal ``checkpoint`` every ``every`` seconds (None: never on a clock), and once the grace
    period before its time limit."""

    warn: int | None = None
    warn_before: float = 0.0
    checkpoint: int | None = None
    every: float | None = None

    def __bool__(self) -> bool:
        return self.warn is not None or self.checkpoint is not None


Action = Term | Kill | Notify
Measure = Callable[[int, Limits, float], Usage]
"""(job id, its limits, seconds since it started) -> what it uses now."""


@dataclass
class _Watched:
    limits: Limits
    started: float  # epoch seconds
    stopping_since: float | None = None
    reason: str = ""
    killed: bool = False
    notices: Notices = Notices()
    warned: bool = False  # the warning before the time limit is sent
    told_to_checkpoint: bool = False  # the checkpoint before the time limit is sent
    checkpointed: float = 0.0  # when it was last told to checkpoint (its start, at first)


class Enforcer:
    def __init__(self, grace: float) -> None:
        self.grace = grace
        self._jobs: dict[int, _Watched] = {}

    def watch(self, job: int, limits: Limits, started: float, notices: Notices = Notices()) -> None:
        """Check ``job`` against ``limits`` and tell it ``notices`` from now on (a job without either
        needs nothing until it is stopped: it is not kept)."""
        if limits or notices:
            self._jobs[job] = _Watched(limits, started, notices=notices, checkpointed=started)

    def relimit(self, job: int, limits: Limits, started: float) -> None:
        """``job`` (started at ``started``) runs under new limits from now on (jmod --time); a job being
        stopped stays so, for its first reason. What it is told before its time limit is told again
        before the new one."""
        w = self._jobs.get(job)
        if w is None:
            self.watch(job, limits, started)
        else:
            w.limits = limits
            w.warned = w.told_to_checkpoint = False

    def forget(self, job: int) -> None:
        self._jobs.pop(job, None)

    def reason(self, job: int) -> str:
        """Why the enforcer stopped ``job`` ("" if it did not, or for a cancel)."""
        w = self._jobs.get(job)
        return w.reason if w is not None else ""

    def stopping(self, job: int) -> bool:
        """Whether ``job`` is being stopped (TERM sent)."""
        w = self._jobs.get(job)
        return w is not None and w.stopping_since is not None

    def busy(self) -> bool:
        """Whether some job has limits to check or is being stopped."""
        return any(w.limits or w.notices or w.stopping_since is not None for w in self._jobs.values())

    def stop(self, job: int, now: float, reason: str = "") -> list[Action]:
        """Begin stopping ``job``: TERM now, KILL after the grace period. A job already being stopped
        is not stopped again (its first reason stays)."""
        w = self._jobs.get(job)
        if w is None:
            w = self._jobs[job] = _Watched(Limits(), now)
        if w.stopping_since is not None:
            return []
        w.stopping_since, w.reason = now, reason
        return [Term(job, reason)]

    def grace_over(self, job: int) -> list[Action]:
        """``job``'s grace after TERM is over: KILL it, if it is still being stopped and not killed yet."""
        w = self._jobs.get(job)
        if w is None or w.stopping_since is None or w.killed:
            return []
        w.killed = True
        return [Kill(job)]

    def tick(self, now: float, measure: Measure) -> list[Action]:
        """Tell the jobs not being stopped what is due, and check those with limits; KILL those whose
        grace is over."""
        actions: list[Action] = []
        for job, w in list(self._jobs.items()):
            if w.stopping_since is not None:
                if not w.killed and now - w.stopping_since >= self.grace:
                    w.killed = True
                    actions.append(Kill(job))
                continue
            if w.notices:
                actions += self._notify(job, w, now)
            if not w.limits:
                continue
            reason = exceeded(w.limits, measure(job, w.limits, now - w.started))
            if reason is not None:
                actions += self.stop(job, now, reason)
        return actions

    def _notify(self, job: int, w: _Watched, now: float) -> list[Action]:
        """The signals due now: the warning ``warn_before`` seconds before the time limit; the checkpoint
        signal the grace period before it (the job has the grace to save its state and exit before
        TERM), or when its interval is over."""
        n, limit, wall = w.notices, w.limits.time, now - w.started
        out: list[Action] = []
        if n.warn is not None and limit is not None and not w.warned and wall >= limit - n.warn_before:
            w.warned = True
            out.append(Notify(job, n.warn, "a warning before its time limit"))
        if n.checkpoint is None:
            return out
        if limit is not None and not w.told_to_checkpoint and wall >= limit - self.grace:
            w.told_to_checkpoint, w.checkpointed = True, now
            out.append(Notify(job, n.checkpoint, "checkpoint before its time limit"))
        elif n.every is not None and now - w.checkpointed >= n.every:
            w.checkpointed = now
            out.append(Notify(job, n.checkpoint, "checkpoint"))
        return out
