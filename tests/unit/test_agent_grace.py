"""The enforcer's grace between TERM and KILL ([agent] kill_grace), and what it keeps."""

from __future__ import annotations

from wulf.agent.enforcer import Enforcer, Kill, Term
from wulf.agent.limits import Limits, Usage


def _nothing(job: int, limits: Limits, wall: float) -> Usage:
    return Usage(wall)


def test_the_agent_says_when_the_grace_is_over() -> None:
    e = Enforcer(grace=0.5)
    assert e.grace_over(1) == []  # not being stopped
    assert e.stop(1, now=10.0) == [Term(1, "")]
    assert e.grace_over(1) == [Kill(1)]
    assert e.grace_over(1) == [] and e.tick(20.0, _nothing) == []  # killed once
    e.forget(1)
    assert e.grace_over(1) == []  # it ended meanwhile


def test_a_tick_after_the_grace_kills_too() -> None:
    e = Enforcer(grace=0.0)
    e.stop(1, now=10.0)
    assert e.tick(10.0, _nothing) == [Kill(1)]
    assert e.grace_over(1) == []


def test_jobs_without_limits_are_kept_only_once_stopped() -> None:
    e = Enforcer(grace=10.0)
    e.watch(1, Limits(), 0.0)
    e.watch(2, Limits(time=5.0), 0.0)
    assert e.busy() and not e.stopping(1)
    e.forget(2)
    assert not e.busy()
    assert e.stop(1, 3.0) == [Term(1, "")] and e.stopping(1) and e.busy()
