"""jmod in the server's state machine (issue 11 §5): events in, instructions out, nothing half-done."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wulf.config import Config, LimitsConfig, SchedulerConfig
from wulf.errors import Forbidden, UsageError
from wulf.model.array import parse_array
from wulf.model.job import Job, JobState, Origin
from wulf.protocol import JobExit, JobStarted, Limit, NodeInfo, Renice
from wulf.server.events import (
    HoldRequested,
    JobChanges,
    JobsExited,
    ModifyRequested,
    NodeDown,
    NodeUp,
    SchedulePass,
    Submitted,
)
from wulf.server.instructions import Commit, Instruction, JobEnded, Log, Send, StartJobs, Wake
from wulf.server.intake import new_tasks
from wulf.server.state import ServerState

T0 = 1_000_000.0
Ins = TypeVar("Ins")


def _state(config: Config | None = None) -> ServerState:
    return ServerState(config or Config())


def _up(state: ServerState, cpus: float = 4, running: Sequence[JobStarted] = ()) -> list[Instruction]:
    info = NodeInfo(name="n1", hostname="n1", cpus=cpus, mem_mb=4096)
    return state.handle(NodeUp(info, "10.0.0.1", 0, tuple(running), (), T0))


def _job(state: ServerState, user: str = "alice", queue: str = "default", depend: str = "",
         time_limit: float | None = None, nice: int = 0) -> Job:
    return Job(id=state.new_id(), user=user, uid=1000, origin=Origin.BATCH, state=JobState.QUEUED, command="x",
               name="x", cwd="/", queue=queue, submitted=T0, depend=depend, time_limit=time_limit, nice=nice)


def _submit(state: ServerState, *jobs: Job) -> list[Job]:
    state.handle(Submitted(tuple(jobs)))
    return list(jobs)


def _array(state: ServerState, spec: str) -> list[Job]:
    a = parse_array(spec)
    first = _job(state)
    tasks = new_tasks(first, a)
    state.next_id = first.id + a.count
    state.handle(Submitted(tuple(tasks), ((first.id, a),)))
    return tasks


def _mod(state: ServerState, jobs: Sequence[Job], admin: bool = False, arrays: Sequence[int] = (),
         **changes: object) -> list[Instruction]:
    return state.handle(ModifyRequested(tuple(jobs), JobChanges(**changes), "alice", admin, T0 + 5,  # type: ignore[arg-type]
                                        frozenset(arrays)))


def _of(todo: list[Instruction], kind: type[Ins]) -> list[Ins]:
    return [i for i in todo if isinstance(i, kind)]


def _started(todo: list[Instruction]) -> list[Job]:
    return [j for i in todo if isinstance(i, StartJobs) for j in i.jobs]


def _in_line(state: ServerState, queue: str = "default", user: str = "alice") -> list[int]:
    q = state.book.queues.get((user, queue))
    return list(q.jobs) if q is not None else []


def _run(state: ServerState) -> list[Job]:
    return _started(state.handle(SchedulePass(T0 + 1)))


def test_a_queued_jobs_cpu_and_memory_change_is_committed_and_the_scheduler_places_the_new_request() -> None:
    state = _state()
    [job] = _submit(state, _job(state))
    todo = _mod(state, [job], cpu=3.0, mem_mb=512.0)
    [commit] = _of(todo, Commit)
    assert commit.jobs == (job,)
    assert todo.index(commit) < todo.index(Wake())
    assert any("cpu 1.0 -> 3.0" in log.text for log in _of(todo, Log))
    _up(state, cpus=2)
    assert _run(state) == []  # 3 cpus do not fit a node of 2: it asks for 3 now
    state.handle(NodeDown("n1", T0))
    _up(state, cpus=4)
    [placed] = _run(state)
    assert (placed.id, placed.cpu, placed.mem_mb, placed.cpu_req) == (job.id, 3.0, 512.0, 3.0)


def test_a_running_jobs_cpu_is_refused_and_a_request_with_it_changes_nothing() -> None:
    state = _state()
    _up(state, cpus=1)
    running, waiting = _submit(state, _job(state), _job(state))
    assert [j.id for j in _run(state)] == [running.id]
    with pytest.raises(UsageError, match=f"job {running.id} is running: --cpu"):
        _mod(state, [waiting, running], cpu=2.0, name="new")
    assert (waiting.cpu_req, waiting.name, running.name) == (1.0, "x", "x")  # all or nothing


def test_a_queue_move_keeps_the_submit_order_in_the_new_queue() -> None:
    state = _state()
    a, b, c = _submit(state, _job(state, queue="night"), _job(state), _job(state, queue="night"))
    todo = _mod(state, [b], queue="night")
    assert _of(todo, Commit)[0].jobs == (b,)
    assert b.queue == "night"
    assert _in_line(state, "night") == [a.id, b.id, c.id]
    assert _in_line(state, "default") == []


def test_a_bad_queue_name_is_refused() -> None:
    state = _state()
    [job] = _submit(state, _job(state))
    with pytest.raises(UsageError, match="not a queue name"):
        _mod(state, [job], queue="a:b")
    assert job.queue == "default"


def test_a_held_job_changes_and_stays_held() -> None:
    state = _state()
    [job] = _submit(state, _job(state))
    state.handle(HoldRequested((job,), "alice"))
    _mod(state, [job], cpu=2.0, queue="other", name="renamed")
    assert (job.state, job.cpu_req, job.queue, job.name) == (JobState.HELD, 2.0, "other", "renamed")
    assert _in_line(state, "other") == []


def test_a_running_jobs_nice_goes_up_to_its_agent_after_the_commit_and_down_only_for_administrators() -> None:
    state = _state()
    _up(state)
    [job] = _submit(state, _job(state, nice=5))
    _run(state)
    todo = _mod(state, [job], nice=9)
    assert job.nice == 9
    [send] = _of(todo, Send)
    assert send == Send("n1", Renice(id=job.id, nice=9))
    assert todo.index(_of(todo, Commit)[0]) < todo.index(send)
    with pytest.raises(Forbidden, match="only an administrator may lower it"):
        _mod(state, [job], nice=2)
    _mod(state, [job], nice=2, admin=True)
    assert job.nice == 2


def test_a_waiting_jobs_nice_is_checked_as_a_submissions() -> None:
    state = _state(Config(scheduler=SchedulerConfig(job_nice=10)))
    [job] = _submit(state, _job(state, nice=10))
    with pytest.raises(Forbidden, match="nice 10 or more"):
        _mod(state, [job], nice=3)
    _mod(state, [job], nice=15)
    assert job.nice == 15


def test_a_running_jobs_time_limit_goes_down_to_its_agent_and_up_only_for_administrators() -> None:
    state = _state()
    _up(state)
    [job, free] = _submit(state, _job(state, time_limit=3600.0), _job(state))
    _run(state)
    todo = _mod(state, [job], time_limit=60.0)
    assert job.time_limit == 60.0
    assert _of(todo, Send) == [Send("n1", Limit(id=job.id, time_limit=60.0))]
    with pytest.raises(Forbidden, match="only an administrator may raise it"):
        _mod(state, [job], time_limit=120.0)
    _mod(state, [free], time_limit=600.0)  # it had none: any limit is lower
    assert free.time_limit == 600.0
    _mod(state, [job], time_limit=7200.0, admin=True)
    assert job.time_limit == 7200.0


def test_an_agent_that_was_away_is_told_a_changed_time_limit_again() -> None:
    state = _state()
    _up(state)
    [job] = _submit(state, _job(state, time_limit=3600.0))
    _run(state)
    _mod(state, [job], time_limit=60.0)
    state.handle(NodeDown("n1", T0 + 6))
    todo = _up(state, running=[JobStarted(id=job.id, pid=42, time=T0 + 1)])
    assert Send("n1", Limit(id=job.id, time_limit=60.0)) in todo


def test_a_waiting_jobs_time_limit_is_checked_against_the_sites_most() -> None:
    state = _state(Config(limits=LimitsConfig(time_max="1:00:00")))
    [job] = _submit(state, _job(state))
    with pytest.raises(UsageError, match="more than the"):
        _mod(state, [job], time_limit=7200.0)
    _mod(state, [job], time_limit=1800.0)
    assert job.time_limit == 1800.0


def test_an_ended_job_and_an_empty_request_are_refused() -> None:
    state = _state()
    _up(state)
    [job] = _submit(state, _job(state))
    _run(state)
    state.handle(JobsExited("n1", (JobExit(id=job.id, exit_code=0, time=T0 + 2),), T0 + 2))
    with pytest.raises(UsageError, match="has ended"):
        _mod(state, [job], name="late")
    with pytest.raises(UsageError, match="nothing to change"):
        _mod(state, [job])


def test_a_new_dependency_takes_a_job_out_of_line_and_none_puts_it_back() -> None:
    state = _state()
    first, second = _submit(state, _job(state), _job(state))
    _mod(state, [second], depend=f"afterok:{first.id}")
    assert second.depend == f"afterok:{first.id}" and _in_line(state) == [first.id]
    assert "waiting for job" in second.reason
    _mod(state, [second], depend="")
    assert (second.depend, second.reason) == ("", "")
    assert _in_line(state) == [first.id, second.id]


def test_a_dependency_on_an_unknown_job_or_a_cycle_is_refused_and_nothing_changes() -> None:
    state = _state()
    a, b = _submit(state, _job(state), _job(state))
    [c] = _submit(state, _job(state, depend=f"afterok:{b.id}"))
    with pytest.raises(UsageError, match="no job 999"):
        _mod(state, [a], depend="afterok:999")
    with pytest.raises(UsageError, match="dependency cycle"):
        _mod(state, [b], depend=f"afterany:{c.id}")  # c waits for b
    with pytest.raises(UsageError, match="dependency cycle"):
        _mod(state, [a, b], depend=f"afterok:{a.id}")
    assert (a.depend, b.depend) == ("", "")
    assert _in_line(state) == [a.id, b.id]


def test_a_dependency_on_a_job_that_failed_cancels_the_dependent_at_once() -> None:
    state = _state()
    _up(state, cpus=1)
    failing, waiting = _submit(state, _job(state), _job(state))
    state.handle(HoldRequested((waiting,), "alice"))  # (so that it does not start meanwhile)
    _run(state)
    state.handle(JobsExited("n1", (JobExit(id=failing.id, exit_code=3, time=T0 + 2),), T0 + 2))
    todo = _mod(state, [waiting], depend=f"afterok:{failing.id}")
    assert [i.job.id for i in _of(todo, JobEnded)] == [waiting.id]
    assert waiting.state is JobState.CANCELLED and "never satisfied" in waiting.reason


def test_the_throttle_of_an_array_changes_which_tasks_wait_in_line() -> None:
    state = _state()
    _up(state, cpus=2)
    tasks = _array(state, "1-8%2")
    aid = tasks[0].id
    assert len(_run(state)) == 2
    todo = _mod(state, tasks, arrays=[aid], throttle=4)
    assert _of(todo, Commit)[0].arrays == ((aid, "1-8%4"),)
    assert _in_line(state) == [t.id for t in tasks[2:4]]  # two run: two more may wait in line
    _mod(state, tasks, arrays=[aid], throttle=1)
    assert _in_line(state) == []  # two still run (they go on), none more
    _mod(state, tasks, arrays=[aid], throttle=0)
    assert _in_line(state) == [t.id for t in tasks[2:]]
    assert state.arrays.arrays[aid].text == "1-8"


def test_a_throttle_needs_an_array_named_whole() -> None:
    state = _state()
    tasks = _array(state, "1-3")
    [single] = _submit(state, _job(state))
    with pytest.raises(UsageError, match="not an array"):
        _mod(state, [single], throttle=2)
    with pytest.raises(UsageError, match="is task 2 of array"):
        _mod(state, [tasks[1]], throttle=2)


def test_an_array_named_whole_changes_its_waiting_tasks_and_its_running_ones_take_only_their_niceness() -> None:
    state = _state()
    _up(state, cpus=2)
    tasks = _array(state, "1-4")
    _run(state)
    todo = _mod(state, tasks, arrays=[tasks[0].id], cpu=0.5, nice=7)
    assert [j.id for j in _of(todo, Commit)[0].jobs] == [t.id for t in tasks]
    assert [(t.cpu_req, t.nice) for t in tasks] == [(1.0, 7), (1.0, 7), (0.5, 7), (0.5, 7)]
    with pytest.raises(UsageError, match="no job named waits: --cpu"):
        _mod(state, tasks[:2], arrays=[tasks[0].id], cpu=0.25)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["throttle", "exit", "pass"]), st.integers(0, 5)), max_size=25))
def test_a_changed_throttle_is_never_exceeded(steps: list[tuple[str, int]]) -> None:
    """Whatever the throttle becomes (raised, lowered, taken away), no more tasks start than it allows
    beside those already running."""
    state = _state()
    _up(state, cpus=16)
    tasks = _array(state, "1-12%3")
    aid = tasks[0].id
    throttle = 3
    now = T0
    for what, n in steps:
        now += 1
        running = [t for t in tasks if t.state is JobState.RUNNING]
        if what == "throttle":
            throttle = n
            _mod(state, tasks, arrays=[aid], throttle=n)
        elif what == "exit" and running:
            done = running[n % len(running)]
            state.handle(JobsExited("n1", (JobExit(id=done.id, exit_code=0, time=now),), now))
        else:
            before = len(running)
            started = _run(state)
            if throttle:
                assert not started or before + len(started) <= throttle
        in_line = _in_line(state)
        if throttle:
            assert len([t for t in tasks if t.state is JobState.RUNNING]) + len(in_line) <= max(throttle, len(running))


def test_a_task_that_gets_a_dependency_gives_its_room_under_the_throttle_to_the_next() -> None:
    state = _state()
    [blocker] = _submit(state, _job(state))
    tasks = _array(state, "1-4%2")
    assert _in_line(state) == [blocker.id, tasks[0].id, tasks[1].id]
    _mod(state, [tasks[0]], depend=f"afterok:{blocker.id}")
    assert _in_line(state) == [blocker.id, tasks[1].id, tasks[2].id]  # the next parked task waits in line
    assert state.waits.waiting(tasks[0].id)
