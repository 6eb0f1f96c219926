"""Jobs of several tasks on one node or several (issue 13 §1): their shape, their allocation by the
scheduling pass (all or nothing, never over-committed, reserved against starvation), and the server's
books of the slots they hold on their other nodes."""

from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wulf.cli.compat.scontrol import hostnames
from wulf.config import Config, ServerConfig
from wulf.errors import UsageError
from wulf.model.job import Job, JobState, Origin
from wulf.model.tasks import Shape, alloc_text, compact, node_file, parse_alloc, shape, tasks_per_node
from wulf.policy.placement import EPS, NodePool
from wulf.policy.rank import compile_rank
from wulf.policy.scheduler import PassResult, schedule
from wulf.policy.snapshot import NodeView, QueuedJob, QueueView, RunningUse, UserView, node_free
from wulf.protocol import JobExit, NodeInfo, Signal
from wulf.server.events import CancelRequested, JobsExited, NodeDown, NodeUp, SchedulePass, Submitted, Tick
from wulf.server.instructions import Send, StartJobs
from wulf.server.state import ServerState

RANK = compile_rank("cpu_free * 1e9 + mem_free_mb")
T0 = 1_000_000.0


# ------------------------------------------------------------------ shapes and host lists

def test_shapes_from_the_options() -> None:
    assert shape(None, None, None) == Shape(1, 0, 0) and Shape().single
    assert shape(None, 3, 2) == Shape(6, 3, 2)
    assert shape(6, 3, 2) == Shape(6, 3, 2)
    assert shape(None, 3, None) == Shape(3, 3, 0)
    assert shape(5, 2, None) == Shape(5, 2, 0)
    assert shape(8, None, 4) == Shape(8, 2, 4)
    assert shape(4, None, None) == Shape(4, 0, 0) and not Shape(4).single
    assert shape(1, 1, None).single


@pytest.mark.parametrize(("args", "message"), [
    ((5, 3, 2), "--ntasks 5 does not agree with --nodes 3 × --ntasks-per-node 2 = 6"),
    ((2, 3, None), "--ntasks 2 is fewer than --nodes 3"),
    ((5, None, 2), "--ntasks 5 is not a multiple of --ntasks-per-node 2"),
    ((0, None, None), "--ntasks: 0 is not a number of ntasks"),
    ((None, 300, 300), "asks for 90000 tasks"),
])
def test_shapes_that_make_no_sense_are_refused(args: tuple[int | None, int | None, int | None], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        shape(*args)


def test_compact_host_lists() -> None:
    assert compact(["node1", "node2", "node3", "node7"]) == "node[1-3,7]"
    assert compact(["n01", "n02", "gpu", "n10"]) == "n[01-02],gpu,n10"
    assert compact(["n3", "n1", "n2"]) == "n[1-3]"
    assert compact(["a"]) == "a"
    assert tasks_per_node([("a", 2), ("b", 2), ("c", 2), ("d", 1)]) == "2(x3),1"
    assert node_file([("a", 2), ("b", 1)]) == "a\na\nb\n"
    assert parse_alloc(alloc_text([("n1", 2), ("n2", 3)])) == [("n1", 2), ("n2", 3)]


@given(st.lists(st.sampled_from(["n", "gpu", "x-"]).flatmap(
    lambda p: st.integers(0, 120).map(lambda i: f"{p}{i}")), min_size=1, max_size=30, unique=True))
def test_compact_host_lists_read_back_as_the_same_names(names: list[str]) -> None:
    assert sorted(hostnames(compact(names))) == sorted(names)


# ------------------------------------------------------------------ the scheduling pass

def _node(name: str, cpus: float, busy: int = 0) -> NodeView:
    jobs = tuple(RunningUse(1.0, 32, 1.0, 32, "other") for _ in range(busy))
    return NodeView(name, cpus, 64_000, jobs=jobs, observed_cpu=busy, observed_mem=32 * busy)


ONE = Shape()


def _job(i: int, user: str, sh: Shape = ONE, cpu: float = 1.0) -> QueuedJob:
    return QueuedJob(i, user, "default", cpu, 32, shape=sh)


shapes = st.one_of(
    st.just(Shape()),
    st.builds(lambda t: Shape(t), st.integers(2, 12)),
    st.builds(lambda n, m: Shape(n * m, n, m), st.integers(1, 4), st.integers(1, 3)),
    st.builds(lambda n, extra: Shape(n + extra, n, 0), st.integers(1, 4), st.integers(0, 4)),
)


def _check_pass(nodes: list[NodeView], jobs: dict[int, QueuedJob], out: PassResult) -> None:
    """No partial allocation, no over-commit, nothing on a reserved node."""
    placed: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    reserved = {n for names in out.reserved.values() for n in names}
    for n, p in enumerate(out.placements):
        job = jobs[p.job_id]
        sh = job.shape
        if sh.single:
            assert not p.slots
            spread = [(p.node, 1)]
        else:
            spread = list(p.slots)
            assert p.slots[0][0] == p.node
            assert sum(k for _, k in spread) == sh.ntasks  # all its tasks, never a part
            assert len({n for n, _ in spread}) == len(spread) and all(k > 0 for _, k in spread)
            if sh.nodes:
                assert len(spread) == sh.nodes
            if sh.per_node:
                assert all(k == sh.per_node for _, k in spread)
        for name, k in spread:
            assert n < out.reserved_after or name not in reserved
            placed[name][0] += job.cpu * k
            placed[name][1] += job.mem_mb * k
    for view in nodes:
        free = node_free(view)
        cpu, mem = placed.get(view.name, (0.0, 0.0))
        assert cpu <= max(free.cpu, 0.0) + EPS and mem <= max(free.mem, 0.0) + EPS  # no over-commit


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 8), st.integers(0, 8)), min_size=1, max_size=6),
       st.lists(st.tuples(st.sampled_from(["ann", "bob", "cy"]), shapes, st.sampled_from([0.5, 1.0, 2.0])),
                min_size=1, max_size=25))
def test_a_pass_never_starts_part_of_a_job_nor_over_commits(sizes: list[tuple[int, int]],
                                                            specs: list[tuple[str, Shape, float]]) -> None:
    nodes = [_node(f"n{i}", c, min(b, c)) for i, (c, b) in enumerate(sizes)]
    jobs = {i: _job(i, user, sh, cpu) for i, (user, sh, cpu) in enumerate(specs)}
    by_user: dict[str, list[QueuedJob]] = defaultdict(list)
    for job in jobs.values():
        by_user[job.user].append(job)
    queues = [QueueView(u, "default", js) for u, js in by_user.items()]
    out = schedule(queues, {}, NodePool(nodes, RANK))
    _check_pass(nodes, jobs, out)
    assert len(out.reserved) <= 1


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 8), st.integers(0, 8)), min_size=1, max_size=12),
       st.integers(1, 5), st.integers(1, 4), st.sampled_from([0.5, 1.0, 2.0]))
def test_nodes_times_tasks_takes_the_first_ranked_nodes_with_room(sizes: list[tuple[int, int]], n: int, m: int,
                                                                  cpu: float) -> None:
    # pick_slots stops at the first N nodes with room for M tasks: what fit() makes of every node's room
    from wulf.policy.slots import fit, slots_in

    pool = NodePool([_node(f"n{i}", c, min(b, c)) for i, (c, b) in enumerate(sizes)], RANK)
    sh = Shape(n * m, n, m)
    room = [(e[2], slots_in(pool.free[e[2]].cpu, pool.free[e[2]].mem, cpu, 32)) for e in sorted(pool._entry.values())]
    assert pool.pick_slots(cpu, 32, sh) == fit(sh, room)


def test_a_job_of_several_tasks_starts_only_when_all_its_slots_are_free() -> None:
    nodes = [_node("n0", 2), _node("n1", 2), _node("n2", 2, busy=1)]
    out = schedule([QueueView("ann", "default", [_job(1, "ann", Shape(6, 3, 2))])], {}, NodePool(nodes, RANK))
    assert out.placements == [] and out.reserved == {1: ["n0", "n1", "n2"]}
    assert out.reasons[("ann", "default")] == ("waiting for room: needs 6 tasks on 3 nodes of 1 cpu and 32 MB "
                                               "(nodes n[0-2] are reserved for it)")
    nodes[2] = _node("n2", 2)
    out = schedule([QueueView("ann", "default", [_job(1, "ann", Shape(6, 3, 2))])], {}, NodePool(nodes, RANK))
    assert [(p.job_id, p.slots) for p in out.placements] == [(1, (("n0", 2), ("n1", 2), ("n2", 2)))]


def test_a_job_no_set_of_nodes_can_hold_is_stepped_over() -> None:
    nodes = [_node("n0", 2), _node("n1", 2)]
    out = schedule([QueueView("ann", "default", [_job(1, "ann", Shape(6, 3, 2)), _job(2, "ann")])], {},
                   NodePool(nodes, RANK))
    assert out.impossible == {1: "needs 3 nodes × 2 tasks of 1 cpus and 32 MB; the 2 nodes could never hold "
                                 "them all at once"}
    assert [p.job_id for p in out.placements] == [2]


def test_tasks_without_a_node_count_go_on_one_node_when_one_has_the_room() -> None:
    nodes = [_node("n0", 4), _node("n1", 8)]
    out = schedule([QueueView("ann", "default", [_job(1, "ann", Shape(6))])], {}, NodePool(nodes, RANK))
    assert out.placements[0].slots == (("n1", 6),)
    out = schedule([QueueView("ann", "default", [_job(1, "ann", Shape(10))])], {}, NodePool(nodes, RANK))
    assert out.placements[0].slots == (("n1", 8), ("n0", 2))


def _simulate(specs: list[tuple[str, Shape, int]], cpus: list[int], passes: int = 400) -> dict[int, int]:
    """Passes on a virtual clock: each job placed runs for its length in passes, then ends. Returns the
    pass each job started in. Checks every pass as the property test does."""
    jobs = {i: _job(i, user, sh) for i, (user, sh, _) in enumerate(specs)}
    length = {i: n for i, (_, _, n) in enumerate(specs)}
    running: dict[int, tuple[int, tuple[tuple[str, int], ...]]] = {}  # job -> (ends at, slots)
    started: dict[int, int] = {}
    waiting = list(jobs)
    reserved_for: dict[int, list[str]] = {}
    pool_keep: NodePool | None = None
    for t in range(passes):
        for i in [i for i, (end, _) in running.items() if end <= t]:
            del running[i]
        use: dict[str, list[RunningUse]] = defaultdict(list)
        for i, (_, slots) in running.items():
            for name, k in slots:
                use[name] += [RunningUse(1.0, 32, 1.0, 32, jobs[i].user)] * k
        nodes = [NodeView(f"n{k}", c, 64_000, jobs=tuple(use[f"n{k}"]), observed_cpu=len(use[f"n{k}"]),
                          observed_mem=32 * len(use[f"n{k}"])) for k, c in enumerate(cpus)]
        counts: dict[str, int] = defaultdict(int)
        for i in running:
            counts[jobs[i].user] += 1
        by_user: dict[str, list[QueuedJob]] = defaultdict(list)
        for i in waiting:
            by_user[jobs[i].user].append(jobs[i])
        pool = NodePool(nodes, RANK)
        if pool_keep is not None:
            pool._reserved_for = reserved_for  # (what a pool kept between passes remembers)
        out = schedule([QueueView(u, "default", js) for u, js in by_user.items()],
                       {u: UserView(u, counts[u]) for u in by_user}, pool)
        pool_keep, reserved_for = pool, pool._reserved_for
        _check_pass(nodes, jobs, out)
        for p in out.placements:
            running[p.job_id] = (t + length[p.job_id], p.slots or ((p.node, 1),))
            started[p.job_id] = t
            waiting.remove(p.job_id)
        if not waiting and not running:
            break
    return started


def test_a_large_job_is_not_starved_by_a_stream_of_small_ones() -> None:
    # bob's one-cpu jobs would take each cpu as it frees; ann's 3 × 2 job needs two free on each node
    specs = [("bob", Shape(), 3 + i % 4) for i in range(300)] + [("ann", Shape(6, 3, 2), 5)]
    started = _simulate(specs, [2, 2, 2])
    assert 300 in started
    assert started[300] < max(started.values())  # it ran before bob's stream was through


def test_two_jobs_that_each_need_most_nodes_both_run_one_after_the_other() -> None:
    specs = [("ann", Shape(4, 2, 2), 6), ("bob", Shape(4, 2, 2), 6), ("cy", Shape(), 4), ("cy", Shape(), 4)]
    started = _simulate(specs, [2, 2, 2])
    assert set(started) == {0, 1, 2, 3}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["ann", "bob", "cy"]), shapes, st.integers(1, 6)), min_size=1, max_size=30),
       st.lists(st.integers(2, 8), min_size=3, max_size=5))
def test_every_job_that_fits_some_nodes_ends_up_running(specs: list[tuple[str, Shape, int]], cpus: list[int]) -> None:
    """Fairness with mixed sizes: no job waits for ever (no deadlock, no starvation), whatever the mix."""
    fits = {i for i, (_, sh, _) in enumerate(specs)
            if not NodePool([NodeView(f"n{k}", c, 64_000) for k, c in enumerate(cpus)], RANK).possible_slots(
                1.0, 32, sh) or sh.single}
    started = _simulate(specs, cpus, passes=2000)
    assert set(started) == fits


# ------------------------------------------------------------------ the server's books

def _state() -> ServerState:
    return ServerState(Config(server=ServerConfig(node_lost_after=60)))


def _up(state: ServerState, name: str, cpus: float = 2) -> None:
    state.handle(NodeUp(NodeInfo(name=name, hostname=name, cpus=cpus, mem_mb=4096), "10.0.0.1", 0, (), (), T0))


def _multi(state: ServerState, sh: Shape, retries: int = 0) -> Job:
    job = Job(id=state.new_id(), user="ann", uid=1000, origin=Origin.BATCH, state=JobState.QUEUED, command="x",
              name="x", cwd="/", cpu_req=1, mem_req=32, cpu=1, mem_mb=32, submitted=T0, ntasks=sh.ntasks,
              nodes_req=sh.nodes, tasks_per_node=sh.per_node, retries=retries)
    state.handle(Submitted((job,)))
    return job


def test_the_server_holds_a_jobs_slots_on_all_its_nodes_until_it_ends() -> None:
    state = _state()
    for n in ("n1", "n2", "n3"):
        _up(state, n)
    job = _multi(state, Shape(6, 3, 2))
    todo = state.handle(SchedulePass(T0))
    starts = [i for i in todo if isinstance(i, StartJobs)]
    assert [(s.node, [j.id for j in s.jobs]) for s in starts] == [(job.node, [job.id])]  # the script: first node
    assert sorted(job.node_names) == ["n1", "n2", "n3"] and job.brief(T0)["nodes"] == "n[1-3]"
    for n in ("n1", "n2", "n3"):
        assert node_free(state.view(state.nodes[n])).cpu == 0  # every slot counts as used
    other = _multi(state, Shape())
    assert not [i for i in state.handle(SchedulePass(T0 + 1)) if isinstance(i, StartJobs)]
    todo = state.handle(JobsExited(job.node, (JobExit(id=job.id, exit_code=0, time=T0 + 5),), T0 + 5))
    assert job.state is JobState.DONE and not any(n.shares for n in state.nodes.values())
    todo += state.handle(SchedulePass(T0 + 6))
    assert [j.id for i in todo if isinstance(i, StartJobs) for j in i.jobs] == [other.id]


def test_a_node_lost_under_a_job_of_several_nodes_fails_it_and_kills_its_script() -> None:
    state = _state()
    for n in ("n1", "n2"):
        _up(state, n)
    job = _multi(state, Shape(4, 2, 2), retries=1)
    state.handle(SchedulePass(T0))
    first, second = job.node_names
    state.handle(NodeDown(second, T0 + 1))
    todo = state.handle(Tick(T0 + 100))
    assert Send(first, Signal(ids=[job.id], signal=9)) in todo
    assert job.state is JobState.QUEUED and job.restarts == 1 and job.alloc == ""  # retried
    assert not state.nodes[second].shares


def test_cancel_takes_a_job_off_all_its_nodes() -> None:
    state = _state()
    for n in ("n1", "n2"):
        _up(state, n)
    job = _multi(state, Shape(3))
    state.handle(SchedulePass(T0))
    assert len(job.node_names) == 2
    state.handle(CancelRequested((job,), "ann", T0 + 1))
    assert job.state is JobState.CANCELLED and not any(n.shares for n in state.nodes.values())


def test_tasks_on_another_node_use_the_jobs_slots_not_outside_room() -> None:
    from wulf.protocol import JobUse, NodeSample, Report
    from wulf.server.events import Reported

    state = _state()
    for n in ("n1", "n2"):
        _up(state, n, cpus=4)
    job = _multi(state, Shape(4, 2, 2))
    state.handle(SchedulePass(T0))
    other = job.node_names[1]
    sample = NodeSample(time=T0 + 1, used_cpu=2.0, used_mem_mb=64.0)
    state.handle(Reported(other, Report(sample=sample, jobs=[JobUse(id=job.id, cpu=2.0, mem_mb=64.0)], clusters=[])))
    free = node_free(state.view(state.nodes[other]))
    assert free.cpu == pytest.approx(2.0)  # its two slots, and nothing more for what its tasks use


def test_a_reserved_node_keeps_no_room_for_another_job() -> None:
    # ann's 2 × 2 job is reserved n0 and n1; bob, behind in his share, would have room kept on the
    # node held for him before (n0): he gets another node
    nodes = [_node("n0", 2, busy=1), _node("n1", 2, busy=1), _node("n2", 2, busy=1)]
    pool = NodePool(nodes, RANK)
    out = schedule([QueueView("ann", "default", [_job(1, "ann", Shape(4, 2, 2))]),
                    QueueView("bob", "default", [_job(2, "bob", cpu=2.0)]),
                    QueueView("cy", "default", [_job(3, "cy", cpu=2.0)])],
                   {"ann": UserView("ann", 0), "bob": UserView("bob", 0), "cy": UserView("cy", 5)}, pool,
                   held={2: "n0"})
    assert out.reserved == {1: ["n0", "n1"]} and out.held[2] == "n2"
