"""The enforcer as a state machine: measured use and a clock in, TERM and KILL out."""

from __future__ import annotations

from wulf.agent.enforcer import Enforcer, Kill, Term
from wulf.agent.limits import Limits, Usage


class FakeMeter:
    """Measures what the test says each job uses; remembers who was measured."""

    def __init__(self) -> None:
        self.cpu: dict[int, float] = {}
        self.mem: dict[int, float] = {}
        self.calls: list[int] = []

    def __call__(self, job: int, limits: Limits, wall: float) -> Usage:
        self.calls.append(job)
        return Usage(wall, self.cpu.get(job), self.mem.get(job))


def test_a_job_over_its_time_is_termed_then_killed_after_the_grace() -> None:
    e = Enforcer(grace=10.0)
    meter = FakeMeter()
    e.watch(1, Limits(time=2.0), started=100.0)
    assert e.busy()
    assert e.tick(101.0, meter) == []
    assert e.tick(102.5, meter) == [Term(1, "exceeded its time limit of 0:00:02")]
    assert e.stopping(1) and e.reason(1) == "exceeded its time limit of 0:00:02"
    assert e.tick(105.0, meter) == []  # within the grace: it is not measured or termed again
    assert meter.calls == [1, 1]
    assert e.tick(112.5, meter) == [Kill(1)]
    assert e.tick(130.0, meter) == []  # killed once
    e.forget(1)
    assert not e.busy() and e.reason(1) == ""


def test_cpu_and_memory() -> None:
    e = Enforcer(grace=5.0)
    meter = FakeMeter()
    e.watch(1, Limits(cpu=10.0), 0.0)
    e.watch(2, Limits(mem_mb=100.0), 0.0)
    meter.cpu[1], meter.mem[2] = 9.0, 90.0
    assert e.tick(1.0, meter) == []
    meter.cpu[1], meter.mem[2] = 10.5, 150.0
    assert e.tick(2.0, meter) == [Term(1, "exceeded its cpu time limit of 0:00:10"),
                                  Term(2, "exceeded its memory limit of 100 MB")]


def test_jobs_without_limits_are_not_measured() -> None:
    e = Enforcer(grace=5.0)
    meter = FakeMeter()
    e.watch(1, Limits(), 0.0)
    assert not e.busy()
    assert e.tick(1e6, meter) == [] and meter.calls == []


def test_a_cancel_stops_with_no_reason_and_only_once() -> None:
    e = Enforcer(grace=10.0)
    e.watch(1, Limits(time=100.0), 0.0)
    assert e.stop(1, 5.0) == [Term(1, "")]
    assert e.stop(1, 6.0) == []
    meter = FakeMeter()
    assert e.tick(200.0, meter) == [Kill(1)] and meter.calls == []  # being stopped: no limit check
    assert e.reason(1) == ""


def test_a_limit_stop_keeps_its_reason_when_cancelled_too() -> None:
    e = Enforcer(grace=10.0)
    e.watch(1, Limits(time=1.0), 0.0)
    e.tick(2.0, FakeMeter())
    assert e.stop(1, 3.0) == []
    assert e.reason(1) == "exceeded its time limit of 0:00:01"


def test_an_unwatched_job_can_be_stopped() -> None:
    e = Enforcer(grace=1.0)
    assert e.stop(9, 0.0) == [Term(9, "")]
    assert e.busy()
    assert e.tick(1.0, FakeMeter()) == [Kill(9)]


def test_a_lowered_time_limit_stops_a_running_job_and_a_job_being_stopped_keeps_its_reason() -> None:
    """jmod --time on a running job: the agent's new limit is checked from the next tick, against the
    job's own start (a job that had no limit is watched from then on)."""
    e = Enforcer(grace=10.0)
    meter = FakeMeter()
    e.watch(1, Limits(time=3600.0), started=100.0)
    e.watch(2, Limits(), started=100.0)  # no limit: not watched
    assert e.tick(150.0, meter) == []
    e.relimit(1, Limits(time=30.0), started=100.0)
    e.relimit(2, Limits(time=60.0), started=100.0)
    assert e.tick(151.0, meter) == [Term(1, "exceeded its time limit of 0:00:30")]
    assert e.tick(161.0, meter) == [Kill(1), Term(2, "exceeded its time limit of 0:01:00")]
    e.relimit(1, Limits(time=10.0), started=100.0)
    assert e.reason(1) == "exceeded its time limit of 0:00:30" and e.stopping(1)
