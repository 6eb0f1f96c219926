"""Job arrays: the SPEC parser, task names (ID[i]), and the state machine's throttle (events in,
instructions out; see wulf.server.arrays)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgserver import scalar
from wulf.agent import launcher
from wulf.config import Config, ServerConfig
from wulf.errors import UsageError
from wulf.model.array import MAX_TASKS, ArraySpec, parse_array, parse_job_ref
from wulf.model.job import Job, JobState, Origin
from wulf.protocol import JobExit, JobStarted, NodeInfo, StartJob
from wulf.server.events import (
    CancelRequested,
    HoldRequested,
    JobsExited,
    NodeDown,
    NodeUp,
    ReleaseRequested,
    SchedulePass,
    Submitted,
    Tick,
)
from wulf.server.instructions import Instruction, StartJobs, Wake
from wulf.server.intake import new_tasks
from wulf.server.state import ServerState
from wulf.store import open_store
from wulf.store.base import ArrayRow

T0 = 1_000_000.0

# ---------------------------------------------------------------- the SPEC


@pytest.mark.parametrize(("spec", "indices", "throttle"), [
    ("1-100", list(range(1, 101)), 0),
    ("0-30:3", list(range(0, 31, 3)), 0),
    ("1,4,7-9", [1, 4, 7, 8, 9], 0),
    ("1-1000%50", list(range(1, 1001)), 50),
    ("5", [5], 0),
    (" 3,1,2,3 ", [1, 2, 3], 0),  # sorted, each once
    ("1-3,2-4%2", [1, 2, 3, 4], 2),
])
def test_specs_that_parse(spec: str, indices: list[int], throttle: int) -> None:
    a = parse_array(spec)
    assert list(a.indices) == indices and a.throttle == throttle
    assert parse_array(a.text()) == a or list(parse_array(a.text()).indices) == indices  # its text reads back


@pytest.mark.parametrize("spec", ["", "1-x", "5-1", "1-10%0", "1-10%", "1-10%x", "0-30:0", "1,,2", "-3", "a",
                                  "1-10%-1", f"1-{MAX_TASKS + 1}", "1-2000000000", "١-٣"])
def test_specs_refused_in_one_line(spec: str) -> None:
    with pytest.raises(UsageError) as e:
        parse_array(spec)
    assert "\n" not in e.value.message and "--array" in e.value.message


def test_spec_text_and_positions() -> None:
    assert parse_array("1,4,7-9%3").text() == "1,4,7-9%3"
    assert parse_array("0-30:3").text() == "0-30:3"
    a = parse_array("1,4,7-9")
    assert [a.position(i) for i in (1, 4, 7, 9, 5, 10)] == [0, 1, 2, 4, None, None]
    r = parse_array("0-30:3")
    assert (r.position(6), r.position(7), r.count, r.first, r.last) == (2, None, 11, 0, 30)


def test_job_refs() -> None:
    assert parse_job_ref("12") == (12, None)
    assert parse_job_ref("12[5]") == (12, 5)
    for bad in ("12[", "12[x]", "[5]", "0", "x", "12[5]6", "１２"):
        with pytest.raises(UsageError):
            parse_job_ref(bad)


# ---------------------------------------------------------------- the state machine


def _state() -> ServerState:
    return ServerState(Config(server=ServerConfig(node_lost_after=30)))


def _up(state: ServerState, name: str = "n1", cpus: float = 8, running: tuple[JobStarted, ...] = (),
        now: float = T0) -> list[Instruction]:
    return state.handle(NodeUp(NodeInfo(name=name, hostname=name, cpus=cpus, mem_mb=1 << 20), "10.0.0.1", 0,
                               running, (), now))


def _array(state: ServerState, spec: str, user: str = "alice") -> list[Job]:
    a = parse_array(spec)
    first = Job(id=state.new_id(), user=user, uid=1000, origin=Origin.BATCH, state=JobState.QUEUED, command="x",
                name="x", cwd="/", cpu_req=1, mem_req=32, cpu=1, mem_mb=32, submitted=T0, script="echo hi\n")
    tasks = new_tasks(first, a)
    state.next_id = first.id + a.count
    assert state.handle(Submitted(tuple(tasks), ((first.id, a),))) == [Wake()]
    return tasks


def _started(todo: list[Instruction]) -> list[int]:
    return [j.id for i in todo if isinstance(i, StartJobs) for j in i.jobs]


def _running(state: ServerState, array_id: int) -> int:
    return sum(1 for j in state.jobs.values() if j.array_id == array_id and j.state is JobState.RUNNING)


def test_tasks_are_jobs_of_one_id_block_sharing_one_script() -> None:
    state = _state()
    tasks = _array(state, "1,4,7-9")
    aid = tasks[0].id
    assert [t.id for t in tasks] == list(range(aid, aid + 5))
    assert [(t.array_id, t.array_index) for t in tasks] == [(aid, i) for i in (1, 4, 7, 8, 9)]
    assert len({id(t.script) for t in tasks}) == 1
    assert state.next_id == aid + 5


def test_a_throttled_array_runs_at_most_n_tasks_and_the_next_starts_when_one_ends() -> None:
    state = _state()
    _up(state, cpus=8)
    tasks = _array(state, "1-10%3")
    assert _started(state.handle(SchedulePass(T0))) == [t.id for t in tasks[:3]]
    assert _started(state.handle(SchedulePass(T0))) == []  # room on the node, none under the throttle
    todo = state.handle(JobsExited("n1", (JobExit(id=tasks[1].id, exit_code=0, time=T0 + 1),), T0 + 1))
    assert _started(todo) == [tasks[3].id]  # the next by index, in the same commit as the end
    assert _running(state, tasks[0].id) == 3


def test_an_unthrottled_array_fills_the_node() -> None:
    state = _state()
    _up(state, cpus=4)
    tasks = _array(state, "1-10")
    assert len(_started(state.handle(SchedulePass(T0)))) == 4
    assert {t.id for t in tasks if t.state is JobState.QUEUED} == {t.id for t in tasks[4:]}


def test_cancel_of_a_whole_array_and_of_one_task() -> None:
    state = _state()
    _up(state, cpus=8)
    tasks = _array(state, "1-6%2")
    aid = tasks[0].id
    state.handle(SchedulePass(T0))
    [one] = state.arrays.resolve([f"{aid}[4]"])
    assert one == tasks[3].id  # a parked task
    state.handle(CancelRequested(tuple(state.jobs[i] for i in [one]), "alice", T0))
    assert tasks[3].state is JobState.CANCELLED
    todo = state.handle(CancelRequested(tuple(state.jobs[i] for i in state.arrays.resolve([aid])), "alice", T0))
    assert {t.state for t in tasks} == {JobState.CANCELLED}
    assert _started(todo) == [] and _started(state.handle(SchedulePass(T0))) == []
    assert not state.book.any_waiting()


def test_holding_an_active_task_lets_a_parked_one_wait_in_its_queue() -> None:
    state = _state()
    tasks = _array(state, "1-4%1")  # no node yet: the first task waits in the queue
    queued = {i for q in state.book.queues.values() for i in q.jobs}
    assert queued == {tasks[0].id}
    todo = state.handle(HoldRequested((tasks[0],), "alice"))
    assert Wake() in todo
    assert {i for q in state.book.queues.values() for i in q.jobs} == {tasks[1].id}
    state.handle(ReleaseRequested((tasks[0],)))  # back, but parked: the throttle is taken
    assert {i for q in state.book.queues.values() for i in q.jobs} == {tasks[1].id}
    assert state.arrays.is_parked(tasks[0])


def test_resolve_refs() -> None:
    state = _state()
    plain = Job(id=state.new_id(), user="a", uid=1, origin=Origin.BATCH, state=JobState.QUEUED, command="x")
    state.handle(Submitted((plain,)))
    tasks = _array(state, "0-30:3")
    aid = tasks[0].id
    assert list(state.arrays.resolve([plain.id])) == [plain.id]
    assert list(state.arrays.resolve([aid])) == [t.id for t in tasks]
    assert list(state.arrays.resolve([f"{aid}[6]", f"{aid}"]))[:2] == [tasks[2].id, tasks[0].id]
    for bad in (f"{aid}[7]", f"{plain.id}[1]"):
        with pytest.raises(UsageError):
            list(state.arrays.resolve([bad]))


def test_restore_keeps_the_throttle() -> None:
    """A restarted server: tasks running count against the throttle before any waiting one is queued."""
    state = _state()
    tasks = _array(state, "1-6%2")
    for t in tasks[4:]:
        t.state, t.node = JobState.RUNNING, "n1"
    again = _state()
    again.restore(tasks, tasks[-1].id + 1, {}, [], T0, {tasks[0].id: "1-6%2"})
    assert not again.book.any_waiting()
    _up(again, cpus=8, running=tuple(JobStarted(id=t.id, pid=1, time=T0) for t in tasks[4:]))
    assert _started(again.handle(SchedulePass(T0))) == []


_STEP = st.tuples(st.sampled_from(["array", "pass", "exit", "cancel", "hold", "release", "down", "up", "tick"]),
                  st.integers(0, 1000))


def _step(state: ServerState, what: str, k: int, now: float) -> None:
    jobs = sorted(state.jobs.values(), key=lambda j: j.id)
    pick = tuple(j for n, j in enumerate(jobs) if (n + k) % 3 == 0)
    node = f"n{1 + k % 2}"
    if what == "array":
        _array(state, f"1-{1 + k % 12}%{1 + k % 4}", user=f"u{k % 2}")
    elif what == "pass":
        state.handle(SchedulePass(now))
    elif what == "exit":
        state.handle(JobsExited(node, tuple(JobExit(id=j.id, exit_code=k % 2, time=now) for j in pick
                                            if j.node == node and j.state is JobState.RUNNING), now))
    elif what == "cancel":
        state.handle(CancelRequested(pick, "u0", now))
    elif what == "hold":
        state.handle(HoldRequested(pick, "u0"))
    elif what == "release":
        state.handle(ReleaseRequested(pick))
    elif what == "down":
        state.handle(NodeDown(node, now))
    elif what == "up":  # back with some of its jobs (the others: lost, or back in line)
        kept = tuple(JobStarted(id=j.id, pid=1, time=now) for j in pick if j.node == node
                     and j.state is JobState.RUNNING)
        _up(state, node, cpus=6, running=kept, now=now)
    else:
        state.handle(Tick(now))


@settings(max_examples=200, deadline=None)
@given(st.lists(_STEP, max_size=50))
def test_a_throttle_is_never_exceeded(steps: list[tuple[str, int]]) -> None:
    """Whatever happens (passes, exits, cancels, holds, releases, nodes lost and back), no array has more
    tasks running than its throttle, and a task waits in a queue only when it may start."""
    state = _state()
    _up(state, "n1", cpus=6)
    _up(state, "n2", cpus=6)
    for n, (what, k) in enumerate(steps, 1):
        _step(state, what, k, T0 + 11 * n)
        running: Counter[int] = Counter()
        waiting: Counter[int] = Counter()
        queued = {i for q in state.book.queues.values() for i in q.jobs}
        for job in state.jobs.values():
            if job.array_id is None:
                continue
            if job.state is JobState.RUNNING:
                running[job.array_id] += 1
            if job.id in queued:
                assert job.state is JobState.QUEUED
                waiting[job.array_id] += 1
            if job.state is JobState.QUEUED and job.id not in queued:
                assert state.arrays.is_parked(job)
        for array_id, rec in state.arrays.arrays.items():
            assert running[array_id] + waiting[array_id] <= rec.spec.throttle
    for array_id, rec in state.arrays.arrays.items():  # nothing is parked for good: room frees it
        state.handle(CancelRequested(tuple(j for j in state.jobs.values() if j.array_id == array_id
                                           and j.state is JobState.RUNNING), "u0", T0 + 10**6))
        parked = [j for j in state.jobs.values() if j.array_id == array_id and state.arrays.is_parked(j)]
        assert not parked or len(rec.active) == rec.spec.throttle


def test_array_spec_is_frozen_and_hashable() -> None:
    assert ArraySpec(range(1, 3), 2) == parse_array("1-2%2")


# ---------------------------------------------------------------- the store, the agent, the wire


def test_the_store_keeps_an_arrays_script_once_and_gives_it_back(store_url: str) -> None:
    script = "#!/bin/sh\n" + "# padding\n" * 500 + "echo $WULF_ARRAY_TASK_ID\n"

    async def go() -> None:
        store = open_store(store_url)
        try:
            a = parse_array("0-30:3%2")
            first = Job(id=5, user="u", uid=1000, origin=Origin.BATCH, state=JobState.QUEUED, command="x", cwd="/",
                        script=script, array_id=5, array_index=0)
            plain = Job(id=16, user="u", uid=1000, origin=Origin.BATCH, state=JobState.QUEUED, command="y", cwd="/")
            await store.insert([first, plain], {}, None, [ArrayRow(5, a.text(), script, a.indices[1:])])
            jobs, next_id = store.load(10)
            assert next_id == 17
            tasks = [j for j in jobs if j.array_id == 5]
            assert [(j.id, j.array_index) for j in tasks] == [(5 + k, 3 * k) for k in range(11)]
            assert all(j.script == script and j.command == "x" for j in tasks)
            assert store.arrays() == {5: "0-30:3%2"}
            got = store.get(9)
            assert got is not None and (got.array_index, got.script) == (12, script)
        finally:
            store.close()
        assert scalar(store_url, "SELECT count(*) FROM jobs WHERE script IS NOT NULL") == 0  # on the array's row only
        assert scalar(store_url, "SELECT count(*) FROM arrays WHERE script = ?", script) == 1

    asyncio.run(go())


def _start(**kw: Any) -> StartJob:
    base: dict[str, Any] = dict(id=42, name="run", user="alice", uid=1000, queue="short", command="job.sh",
                                script="echo\n", cwd="/work", env={}, output="", keep_script=False, cpu=1.0,
                                mem_mb=32.0)
    return StartJob(**{**base, **kw})


def test_a_task_sees_its_array_and_names_its_output() -> None:
    task = dict(array_id=40, array_index=6, array_count=11, array_min=0, array_max=30, array_step=3)
    env = launcher.job_env(_start(**task), "n1")
    assert {k: v for k, v in env.items() if k.startswith("WULF_ARRAY") or k == "WULF_JOB_ID"} == {
        "WULF_JOB_ID": "42", "WULF_ARRAY_JOB_ID": "40", "WULF_ARRAY_TASK_ID": "6", "WULF_ARRAY_TASK_COUNT": "11",
        "WULF_ARRAY_TASK_MIN": "0", "WULF_ARRAY_TASK_MAX": "30"}
    env = launcher.job_env(_start(dialect="slurm", **task), "n1")
    assert (env["SLURM_JOB_ID"], env["SLURM_ARRAY_JOB_ID"], env["SLURM_ARRAY_TASK_ID"], env["SLURM_ARRAY_TASK_STEP"],
            env["SLURM_ARRAY_TASK_MAX"]) == ("42", "40", "6", "3", "30")
    env = launcher.job_env(_start(dialect="pbs", **task), "n1")
    assert (env["PBS_ARRAY_INDEX"], env["PBS_ARRAY_ID"], env["PBS_JOBID"]) == ("6", "40[]", "42.n1")
    env = launcher.job_env(_start(dialect="sge", **task), "n1")
    assert (env["JOB_ID"], env["SGE_TASK_ID"], env["SGE_TASK_FIRST"], env["SGE_TASK_LAST"],
            env["SGE_TASK_STEPSIZE"]) == ("40", "6", "0", "30", "3")
    assert "WULF_ARRAY_TASK_ID" not in launcher.job_env(_start(), "n1")
    out = launcher.output_path(_start(output="o/%A_%a-%j-%x-%u-%3a.txt", **task))
    assert out == "/work/o/40_6-42-run-alice-006.txt"
    assert launcher.output_path(_start(output="%A_%a")) == "/work/42_4294967294"  # no array: Slurm's


def test_a_job_that_is_no_task_goes_on_the_wire_as_before_arrays() -> None:
    assert "array" not in _start().model_dump_json()
    assert '"array_index":6' in _start(array_id=40, array_index=6).model_dump_json()


# ---------------------------------------------------------------- an array as a dependency


def _dependent(state: ServerState, dep: str) -> Job:
    job = Job(id=state.new_id(), user="bob", uid=1001, origin=Origin.BATCH, state=JobState.QUEUED, command="y",
              cwd="/", cpu_req=1, mem_req=32, cpu=1, mem_mb=32, submitted=T0, depend=dep)
    state.handle(Submitted((job,)))
    return job


def _end(state: ServerState, task: Job, code: int) -> list[Instruction]:
    return state.handle(JobsExited("n1", (JobExit(id=task.id, exit_code=code, time=T0 + 1),), T0 + 1))


@pytest.mark.parametrize("first_last", [False, True])
def test_a_job_after_an_array_waits_for_all_its_tasks(first_last: bool) -> None:
    state = _state()
    _up(state, cpus=8)
    tasks = _array(state, "1-3")
    after = _dependent(state, f"afterok:{tasks[0].id}")
    assert after.reason == f"waiting for job {tasks[0].id} (after ok)"
    state.handle(SchedulePass(T0))  # the three tasks run; the dependent waits out of line
    assert after.state is JobState.QUEUED and after.node == ""
    order = [tasks[1], tasks[2], tasks[0]] if first_last else tasks
    for task in order[:2]:
        _end(state, task, 0)
        assert state.waits.waiting(after.id), "it started before the whole array ended"
    todo = _end(state, order[2], 0)
    assert not state.waits.waiting(after.id) and after.reason == ""
    assert after.id in _started(todo)  # placed in the room the last task left, in the same commit


def test_a_job_after_an_array_with_a_failed_task_never_runs() -> None:
    state = _state()
    _up(state, cpus=8)
    tasks = _array(state, "1-3")
    after = _dependent(state, f"afterok:{tasks[0].id}")
    any_after = _dependent(state, f"afterany:{tasks[0].id}")
    state.handle(SchedulePass(T0))
    _end(state, tasks[0], 0)
    _end(state, tasks[1], 1)
    assert after.state is JobState.QUEUED  # the array has not ended yet
    _end(state, tasks[2], 0)
    assert after.state is JobState.CANCELLED and "never satisfied" in after.reason
    assert not state.waits.waiting(any_after.id)
