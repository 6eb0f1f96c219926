"""The simulator's engine: the real policy on a virtual clock (small, seeded cases; no timing)."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest

from wulf.config import Config
from wulf.model.job import JobState
from wulf.policy import scheduler
from wulf.policy.placement import EPS, NodePool
from wulf.policy.settings import Policy
from wulf.policy.snapshot import node_free
from wulf.server import state as state_module
from wulf.sim import engine as engine_module
from wulf.sim.engine import Engine
from wulf.sim.metrics import Summary, jain
from wulf.sim.workload import OutsideLoad, QueueSpec, SimJob, SimNode, Workload, generate, numbered

POLICY = Policy.from_config(Config())
ALLOCATION_ONLY = replace(POLICY, observe=False)


def _nodes(n: int, cpus: float = 8, mem: float = 32768, outside: OutsideLoad | None = None) -> list[SimNode]:
    return [SimNode(f"n{i}", cpus, mem, {"name": f"n{i}"}, frozenset(), outside) for i in range(n)]


def _job(user: str, cpu: float = 1, duration: float = 100, arrival: float = 0, used: float | None = None,
         queue: str = "default") -> SimJob:
    return SimJob(0, arrival, user, queue, cpu, 512, duration, cpu if used is None else used, 400)


def _w(nodes: list[SimNode], jobs: list[SimJob], queues: tuple[QueueSpec, ...] = ()) -> Workload:
    return Workload(tuple(nodes), numbered(jobs), queues, "test")


class Checked(Engine):
    """An engine that checks, as it goes, that the clock never goes back and every job ends once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.times: list[float] = []
        self.starts: Counter[int] = Counter()
        self.ends: Counter[int] = Counter()
        started, ended = self.rec.started, self.rec.ended

        def start(job: SimJob, t: float) -> None:
            self.starts[job.id] += 1
            started(job, t)

        def end(job: SimJob, t: float) -> None:
            self.ends[job.id] += 1
            ended(job, t)

        self.rec.started = start  # type: ignore[method-assign]
        self.rec.ended = end  # type: ignore[method-assign]

    def _batch(self, t: float) -> None:
        assert not self.times or t >= self.times[-1], "the virtual clock went back"
        self.times.append(t)
        super()._batch(t)


@contextmanager
def placements_checked() -> Iterator[list[int]]:
    """Wrap the engine's calls of the real schedule: no pass books more on a node than the room the
    policy sees there (its free room by the policy's accounting, from the node's view)."""
    real = scheduler.schedule
    passes: list[int] = []

    def checked(queues: Any, users: Any, pool: NodePool, *args: Any) -> scheduler.PassResult:
        room = {name: node_free(view, pool._observe) for name, view in pool.views.items()}
        queues = [replace(q, jobs=list(q.jobs)) for q in queues]  # (read once: the engine's are lazy)
        asked = {j.id: j for q in queues for j in q.jobs}
        result = real(queues, users, pool, *args)
        booked: dict[str, list[float]] = {}
        for p in result.placements:
            assert (p.cpu, p.mem_mb) == (asked[p.job_id].cpu, asked[p.job_id].mem_mb)
            b = booked.setdefault(p.node, [0.0, 0.0])
            b[0] += p.cpu
            b[1] += p.mem_mb
        for name, (cpu, mem) in booked.items():
            assert cpu <= room[name].cpu + 1e-6 and mem <= room[name].mem + 1e-6, (name, cpu, room[name])
        passes.append(len(result.placements))
        return result

    state_module.schedule = checked  # type: ignore[assignment]
    try:
        yield passes
    finally:
        state_module.schedule = real


@pytest.mark.parametrize("scenario", ["mixed", "flood", "outside"])
@pytest.mark.parametrize("policy", [POLICY, ALLOCATION_ONLY], ids=["default", "allocation-only"])
def test_every_job_starts_and_ends_once_on_a_clock_that_never_goes_back(scenario: str, policy: Policy) -> None:
    w = generate(scenario, 8, 400, 3, None, seed=7)
    with placements_checked() as passes:
        e = Checked(w, policy, seed=7)
        s = e.run()
    # (a job the out-of-memory killer ended ran again: it started once more)
    assert passes and sum(passes) == len(w.jobs) + s.killed_for_memory
    assert s.finished == len(w.jobs) and s.rejected == s.never_started == 0
    assert all(e.starts[j.id] == 1 + e.rec.kills.get(j.id, 0) for j in w.jobs)
    assert set(e.ends.values()) == {1} and len(e.ends) == len(w.jobs)
    assert all(not math.isnan(e.rec.end[j.id]) and e.rec.end[j.id] >= e.rec.start[j.id] + j.duration - 1e-6
               for j in w.jobs)
    assert all(e.rec.start[j.id] >= j.arrival for j in w.jobs)


def test_a_run_is_the_same_for_the_same_seed() -> None:
    w = generate("outside", 6, 300, 3, None, seed=3)

    def figures(s: Summary) -> dict[str, Any]:
        d = s.to_dict()
        for timing in ("wall_seconds", "passes"):
            d.pop(timing)
        return d

    assert figures(Engine(w, POLICY, seed=3).run()) == figures(Engine(w, POLICY, seed=3).run())


def test_a_homogeneous_workload_ends_close_to_its_lower_bound() -> None:
    w = generate("homogeneous", 4, None, 2, None, seed=1)  # 32 cpus, 320 identical jobs
    s = Engine(w, POLICY).run()
    assert s.bound == 10 * 600
    assert s.makespan_over_bound <= 1.05 and s.utilisation >= 0.95


def test_a_flooding_user_does_not_starve_another() -> None:
    s = Engine(generate("flood", 10, 3000, 2, None, seed=2), POLICY).run()
    assert s.jain is not None and s.jain >= 0.98
    assert s.contended_seconds > 0


def test_a_user_with_larger_jobs_is_not_starved_by_one_with_small_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(5)
    jobs = [_job("flood", 1, rng.uniform(300, 900)) for _ in range(1200)]
    jobs += [_job("big", 4, rng.uniform(300, 900), arrival=60) for _ in range(100)]
    w = _w(_nodes(6), jobs)
    s = Engine(w, POLICY).run()
    assert s.jain is not None and s.jain >= 0.9
    assert s.users["big"]["running_mean_contended"] > 0.6 * s.users["flood"]["running_mean_contended"]
    monkeypatch.setattr(scheduler, "MAX_HOLDS", 0)  # no room kept: every freed cpu goes to a small job
    s = Engine(w, POLICY).run()
    assert s.users["big"]["running_mean_contended"] == 0


def test_outside_work_slows_the_jobs_placed_beside_it() -> None:
    busy = _nodes(1, cpus=2, outside=OutsideLoad(cpu=2))
    w = _w(busy, [_job("u", cpu=2, duration=100)])
    s = Engine(w, ALLOCATION_ONLY).run()  # it counts only allocations: the job goes there
    assert s.finished == 1 and s.makespan == pytest.approx(200)  # 4 cpus wanted on 2: half speed
    assert s.outside["taken_by_jobs"] == pytest.approx(0.5)
    s = Engine(w, POLICY).run()  # the default sees the node in use and waits; the run still ends
    assert s.finished == 0 and s.never_started == 1


def test_the_default_keeps_jobs_off_busy_nodes_where_allocation_only_slows_them() -> None:
    nodes = _nodes(2, cpus=4, outside=OutsideLoad(cpu=4)) + _nodes(4, cpus=4)[2:] + _nodes(6, cpus=4)[4:]
    w = _w(nodes, [_job("u", 1, 600) for _ in range(8)])  # 16 free cpus away from the busy nodes
    default, alloc = Engine(w, POLICY).run(), Engine(w, ALLOCATION_ONLY).run()
    assert default.makespan == pytest.approx(600) and default.slowdown_mean == pytest.approx(1.0)
    assert default.outside["taken_by_jobs"] == 0.0
    assert alloc.makespan > default.makespan and alloc.turnaround_mean > default.turnaround_mean
    assert alloc.outside["taken_by_jobs"] > 0


def test_adaptive_allocation_gives_back_what_jobs_do_not_use() -> None:
    jobs = [_job("u", 1, 1000, used=0.25) for _ in range(3)]
    e = Engine(_w(_nodes(1, cpus=2), jobs), POLICY)
    e.run()
    # two start at once; the third starts once the first two have settled (300 s) to what they use,
    # not when one of them ends (1000 s)
    assert e.rec.start[2] == pytest.approx(300, abs=e.interval + 1)


def test_allocation_only_keeps_what_jobs_asked_for() -> None:
    jobs = [_job("u", 1, 1000, used=0.25) for _ in range(3)]
    e = Engine(_w(_nodes(1, cpus=2), jobs), ALLOCATION_ONLY)
    e.run()
    # what the first two use is never looked at: the third starts when one of them ends
    assert e.rec.start[2] == pytest.approx(1000)


def test_jobs_that_no_node_can_run_are_set_aside_and_stopped_queues_never_start() -> None:
    jobs = [_job("u", cpu=64), _job("u"), _job("v", queue="stopped")]
    s = Engine(_w(_nodes(2), jobs, (QueueSpec("v", "stopped", stopped=True),)), POLICY).run()
    assert (s.finished, s.rejected, s.never_started) == (1, 1, 1)
    assert any("largest node has 8" in why for why in s.rejections)


def test_a_night_queue_starts_its_jobs_when_the_night_begins() -> None:
    jobs = [_job("u", queue="night"), _job("u")]
    e = Engine(_w(_nodes(1), jobs, (QueueSpec("u", "night", window="nights"),)), POLICY)
    e.run()
    # the virtual clock starts on a Monday at 08:00 UTC; nights begin at 19:00
    assert e.rec.start[1] == 0 and e.rec.start[0] == pytest.approx(11 * 3600, abs=1)


def test_the_simulator_runs_the_server_s_own_state_machine() -> None:
    """What the server keeps of the simulated jobs is what it would keep of real ones: each ended done,
    with the node it ran on and its start and end on the virtual clock."""
    w = generate("mixed", 4, 60, 2, None, seed=4)
    e = Engine(w, POLICY, seed=4)
    s = e.run()
    assert s.finished == len(w.jobs)
    jobs = [e.state.jobs[j.id + 1] for j in w.jobs]
    assert all(j.state is JobState.DONE and j.node in e.by_name for j in jobs)
    assert all(j.started == pytest.approx(engine_module.EPOCH + e.rec.start[j.id - 1]) for j in jobs)
    assert all(j.ended == pytest.approx(engine_module.EPOCH + e.rec.end[j.id - 1]) for j in jobs)
    assert not e.state.book.any_waiting() and not any(n.jobs for n in e.state.nodes.values())


def test_jain_index() -> None:
    assert jain([3, 3, 3]) == 1.0
    assert jain([1, 0]) == 0.5
    assert jain([0, 0]) == 1.0


def test_the_kept_pool_ends_as_a_pool_built_anew() -> None:
    """Room kept for jobs (booked in the pool the server's state keeps) is all given back once they have run."""
    jobs = [_job("flood", 1, 300) for _ in range(64)] + [_job("big", 8, 300, arrival=10) for _ in range(4)]
    e = Engine(_w(_nodes(4), jobs), POLICY)
    s = e.run()
    assert s.finished == len(jobs)
    pool = e.state.pool()
    fresh = NodePool((n.view() for n in e.state.nodes.values()), POLICY.rank, POLICY.observe)
    for name in e.state.nodes:
        assert abs(pool.free[name].cpu - fresh.free[name].cpu) < EPS


def test_cpu_is_shared_by_weight_as_linux_does() -> None:
    assert engine_module.shares(8, 4, 4) == (1.0, 1.0)  # room for all
    assert engine_module.shares(8, 8, 8) == (0.5, 0.5)  # alike: an equal share each
    jobs, outside = engine_module.shares(8, 8, 4, job_weight=0.25)  # niced jobs: outside comes first
    assert outside == 1.0 and jobs == pytest.approx(0.5)
    jobs, outside = engine_module.shares(4, 4, 8, job_weight=0.25)  # even outside alone wants it all
    assert jobs == pytest.approx(outside / 4) and 4 * jobs + 8 * outside == pytest.approx(4)
    assert engine_module.cfs_weight(0) == 1024 and engine_module.cfs_weight(5) == pytest.approx(335.5, abs=0.1)


def test_outside_work_takes_longer_when_jobs_share_its_node() -> None:
    # a person's computation is an amount of work: slowed by jobs beside it, it wants its cpus for longer
    node = _nodes(1, cpus=2, outside=OutsideLoad(cpu=2, on=1000, off=1e9))
    w = _w(node, [_job("u", cpu=2, duration=50_000)])
    alone = Engine(_w(node, [_job("u", cpu=2, duration=50_000, arrival=1e7)]), ALLOCATION_ONLY).run()
    shared = Engine(w, ALLOCATION_ONLY).run()
    assert shared.outside["cpu_seconds_wanted"] == pytest.approx(2 * alone.outside["cpu_seconds_wanted"], rel=1e-6)


def test_the_out_of_memory_killer_ends_the_largest_process_and_the_job_runs_again() -> None:
    nodes = _nodes(1, cpus=4, mem=1000)
    # each asks for 400 MB and uses 600: allocations fit, use does not
    jobs = [SimJob(0, 0, "u", "default", 1, 400, 100, 1, 600), SimJob(0, 0, "u", "default", 1, 400, 100, 1, 600)]
    e = Checked(_w(nodes, jobs), ALLOCATION_ONLY)
    s = e.run()
    assert s.finished == 2 and s.killed_for_memory >= 1 and s.makespan > 200
    assert e.starts[0] == 1 and e.starts[1] == 1 + s.killed_for_memory  # the newer one ran again, and again
    # it was the server's own retries that ran it again (the workload's jobs have --retries 3)
    first, second = e.state.jobs[1], e.state.jobs[2]
    assert (first.state, first.restarts) == (JobState.DONE, 0)
    assert (second.state, second.restarts) == (JobState.DONE, s.killed_for_memory)
    assert s.killed_run_seconds == 0  # (killed the moment it came)
    # (the default fares no better: what the job asks for fits beside what the other uses)
    # an outside computation that uses the most memory is the one killed
    busy = _nodes(1, cpus=4, mem=1000, outside=OutsideLoad(cpu=1, mem_mb=800, on=1e6, off=10))
    s = Engine(_w(busy, [SimJob(0, 100, "u", "default", 1, 400, 100, 1, 300)]), ALLOCATION_ONLY).run()
    if s.outside["killed_for_memory"]:  # (it was on when the job came)
        assert s.killed_for_memory == 0 and s.finished == 1


def test_a_job_that_never_fits_in_memory_is_given_up_after_a_few_runs() -> None:
    jobs = [SimJob(0, 0, "u", "default", 1, 400, 100, 1, 2000)]  # uses twice the node's memory
    s = Engine(_w(_nodes(1, cpus=4, mem=1000), jobs), POLICY).run()
    assert s.killed_for_memory == engine_module.MAX_RESUBMITS + 1 and s.finished == 0 and s.never_started == 1


def test_niced_jobs_leave_outside_work_its_cpu() -> None:
    busy = _nodes(1, cpus=2, outside=OutsideLoad(cpu=1))
    w = _w(busy, [_job("u", cpu=2, duration=100)])
    alike = Engine(w, ALLOCATION_ONLY).run()
    niced = Engine(w, replace(ALLOCATION_ONLY, job_nice=10)).run()
    assert alike.outside["taken_by_jobs"] == pytest.approx(1 / 3)  # 3 threads on 2 cpus, alike
    assert niced.outside["taken_by_jobs"] == 0.0 and niced.makespan == pytest.approx(200)  # the job gets 1 cpu
