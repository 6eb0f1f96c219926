"""Adaptive allocation and the renice penalty."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from wulf.policy.adapt import MIN_CPU, AdaptSettings, Holding, adapt, adapt_jobs, penalty_nice, steady
from wulf.policy.snapshot import Free

S = AdaptSettings(settle_seconds=300, shrink_samples=3, shrink_below=0.5, nice_penalty=10)
ROOM, FULL = Free(4, 4000), Free(-1, 4000)


def test_before_settling_a_job_holds_what_it_asked() -> None:
    job = Holding(cpu=2, mem=100, cpu_used=0.1, mem_used=10, age=60)
    assert adapt(job, ROOM, S) == job


def test_after_settling_it_holds_what_it_uses() -> None:
    job = adapt(Holding(cpu=2, mem=100, cpu_used=0.5, mem_used=40, age=301), ROOM, S)
    assert (job.cpu, job.mem, job.settled) == (0.5, 40, True)
    idle = adapt(Holding(cpu=2, mem=100, cpu_used=0.0, mem_used=0, age=301), ROOM, S)
    assert idle.cpu == MIN_CPU and idle.mem > 0


def test_growth_is_granted_while_the_node_has_room() -> None:
    job = adapt(Holding(cpu=1, mem=100, cpu_used=2.0, mem_used=100, age=10), ROOM, S)
    assert job.cpu == 2.0 and not job.penalized


def test_growth_on_a_full_node_is_penalized_and_forgiven_later() -> None:
    job = adapt(Holding(cpu=1, mem=100, cpu_used=2.0, mem_used=100, age=10), FULL, S)
    assert job.cpu == 1 and job.penalized and "reniced" in job.note
    assert penalty_nice(0, job.penalized, S) == 10 and penalty_nice(15, True, S) == 19
    again = adapt(job._replace(cpu_used=0.9), FULL, S)  # back within what it holds
    assert not again.penalized and again.note == ""
    grown = adapt(job, ROOM, S)  # room came back: it holds what it uses
    assert not grown.penalized and grown.cpu == 2.0


def test_a_job_using_far_less_gives_room_back_after_some_reports() -> None:
    job = Holding(cpu=4, mem=1000, cpu_used=0.5, mem_used=900, age=400, settled=True)
    for n in range(1, 3):
        job = adapt(job, ROOM, S)
        assert job.low_samples == n and job.cpu == 4
    job = adapt(job, ROOM, S)
    assert job.cpu == 0.5 and job.mem == 1000 and job.low_samples == 0
    busy = adapt(job._replace(cpu_used=0.5, low_samples=2, cpu=0.6), ROOM, S)
    assert busy.low_samples == 0  # one report in use breaks the run


@given(cpu=st.floats(0.05, 16), used=st.floats(0, 32), mem=st.floats(1, 1e5), mem_used=st.floats(0, 2e5),
       age=st.floats(0, 1e4), settled=st.booleans(), low=st.integers(0, 2), free=st.floats(-8, 8))
def test_allocation_stays_positive_and_never_grows_without_room(cpu: float, used: float, mem: float,
                                                                mem_used: float, age: float, settled: bool,
                                                                low: int, free: float) -> None:
    job = Holding(cpu, mem, used, mem_used, age, settled, low)
    out = adapt(job, Free(free, free * 1000), S)
    assert out.cpu >= MIN_CPU and out.mem > 0 and 0 <= out.low_samples < S.shrink_samples
    if free < -1e-6 and (settled or age < S.settle_seconds):
        assert out.cpu <= cpu and out.mem <= mem  # a full node gives nobody more


def test_room_a_job_gives_back_is_seen_by_the_next_job_of_the_node() -> None:
    settling = Holding(cpu=2, mem=100, cpu_used=0.5, mem_used=100, age=301)  # gives back 1.5 cpus
    growing = Holding(cpu=1, mem=100, cpu_used=1.8, mem_used=100, age=10)  # wants 0.8 more
    full = Free(-0.5, 1000)
    assert adapt(growing, full, S).penalized
    first, second = adapt_jobs([settling, growing], full, S)
    assert first == adapt(settling, full, S) and first.cpu == 0.5
    assert second.cpu == 1.8 and not second.penalized
    # in the other order the growing job comes first and finds the node full
    assert adapt_jobs([growing, settling], full, S)[0].penalized


def test_the_server_adapts_running_batch_jobs_and_allocation_only_never_does() -> None:
    from wulf.config import Config
    from wulf.model.job import Job, JobState, Origin
    from wulf.policy.settings import Policy
    from wulf.server.adaptive import adapt_node
    from wulf.server.nodes import Node

    def node() -> Node:
        job = Job(1, "u", 1000, Origin.BATCH, JobState.RUNNING, "sleep", cpu=2, mem_mb=100, started=0.0,
                  cpu_used=0.5, mem_used=40)
        return Node("n1", jobs={1: job})

    policy = Policy.from_config(Config())
    n = node()
    changed, _ = adapt_node(n, n.view, 301.0, policy)  # settled: it holds what it uses
    assert [(j.cpu, j.mem_mb, j.settled) for j in changed] == [(0.5, 40, True)]
    n = node()
    changed, renice = adapt_node(n, n.view, 301.0, replace(policy, observe=False))
    assert (changed, renice) == ([], []) and (n.jobs[1].cpu, n.jobs[1].mem_mb) == (2, 100)


_figure = st.floats(min_value=0, max_value=64, allow_nan=False)


@given(cpu=_figure, mem=_figure, cpu_used=_figure, mem_used=_figure, age=st.floats(0, 1000), settled=st.booleans(),
       low=st.integers(0, 5), penalized=st.booleans(), free_cpu=st.floats(-8, 8), free_mem=st.floats(-8000, 8000))
def test_a_steady_job_is_left_as_it_is_whatever_the_room(cpu: float, mem: float, cpu_used: float, mem_used: float,
                                                         age: float, settled: bool, low: int, penalized: bool,
                                                         free_cpu: float, free_mem: float) -> None:
    """What lets a server skip adapting the jobs of a report where every job is steady (and not even look
    at its node's room): a steady job is one adapt leaves as it is."""
    job = Holding(cpu, mem, cpu_used, mem_used, age, settled, low, penalized, "reniced: x" if penalized else "")
    if steady(job, S):
        assert adapt(job, Free(free_cpu, free_mem), S) == job
    # a job that uses what it holds, settled, is steady
    assert steady(Holding(2, 100, 1.5, 80, 400, settled=True), S)
    assert not steady(Holding(2, 100, 0.5, 80, 400, settled=True), S)  # uses far less cpu: it may shrink
