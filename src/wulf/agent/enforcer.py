"""The enforcer: stops jobs that go over their limits, and jobs being cancelled, TERM then KILL.

A state machine without I/O (events in, actions out): the agent tells it which jobs run with which
limits, calls :meth:`Enforcer.tick` every ``CHECK_EVERY`` seconds with a way to measure a job, and
carries out the actions it returns (:class:`Term`, :class:`Kill`). A job being stopped gets TERM at
once and KILL when it is still there ``grace`` seconds later (the agent tells it when the grace is
over, :meth:`Enforcer.grace_over`, and a tick after it kills too); the reason is kept for its exit.
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


Action = Term | Kill
Measure = Callable[[int, Limits, float], Usage]
"""(job id, its limits, seconds since it started) -> what it uses now."""


@dataclass
class _Watched:
    limits: Limits
    started: float  # epoch seconds
    stopping_since: float | None = None
    reason: str = ""
    killed: bool = False


class Enforcer:
    def __init__(self, grace: float) -> None:
        self.grace = grace
        self._jobs: dict[int, _Watched] = {}

    def watch(self, job: int, limits: Limits, started: float) -> None:
        """Check ``job`` against ``limits`` from now on (a job without limits needs nothing until it is
        stopped: it is not kept)."""
        if limits:
            self._jobs[job] = _Watched(limits, started)

    def relimit(self, job: int, limits: Limits, started: float) -> None:
        """``job`` (started at ``started``) runs under new limits from now on (jmod --time); a job being
        stopped stays so, for its first reason."""
        w = self._jobs.get(job)
        if w is None:
            self.watch(job, limits, started)
        else:
            w.limits = limits

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
        return any(w.limits or w.stopping_since is not None for w in self._jobs.values())

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
        """Check every job with limits that is not being stopped; KILL those whose grace is over."""
        actions: list[Action] = []
        for job, w in list(self._jobs.items()):
            if w.stopping_since is not None:
                if not w.killed and now - w.stopping_since >= self.grace:
                    w.killed = True
                    actions.append(Kill(job))
                continue
            if not w.limits:
                continue
            reason = exceeded(w.limits, measure(job, w.limits, now - w.started))
            if reason is not None:
                actions += self.stop(job, now, reason)
        return actions
