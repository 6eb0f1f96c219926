"""The server's state machine without processes: events in, instructions out (wulf.server.state)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wulf.config import Config, ServerConfig
from wulf.errors import UsageError
from wulf.model.job import Job, JobState, Origin
from wulf.protocol import Ack, Cluster, JobExit, JobStarted, NodeInfo, NodeSample, Renice, Report, Signal
from wulf.server.events import (
    CancelRequested,
    HoldRequested,
    JobsExited,
    JobsStarted,
    NodeDown,
    NodeUp,
    QueueChanged,
    ReleaseRequested,
    ReniceRequested,
    Reported,
    SchedulePass,
    SessionFailed,
    Submitted,
    Tick,
)
from wulf.server.instructions import (
    Commit,
    Instruction,
    JobEnded,
    Mail,
    RecordExits,
    Send,
    StartJobs,
    Wake,
)
from wulf.server.state import EXTERNAL_GONE_AFTER, ServerState

T0 = 1_000_000.0
Ins = TypeVar("Ins")


def _state(**server: float) -> ServerState:
    return ServerState(Config(server=ServerConfig(**server)))  # type: ignore[arg-type]


def _up(state: ServerState, name: str = "n1", cpus: float = 2, running: Sequence[JobStarted] = (),
        finished: Sequence[JobExit] = (), now: float = T0) -> list[Instruction]:
    info = NodeInfo(name=name, hostname=name, cpus=cpus, mem_mb=4096)
    return state.handle(NodeUp(info, "10.0.0.1", 0, tuple(running), tuple(finished), now))


def _submit(state: ServerState, n: int, user: str = "alice", cpu: float = 1.0, queue: str = "default") -> list[Job]:
    jobs = [Job(id=state.new_id(), user=user, uid=1000, origin=Origin.BATCH, state=JobState.QUEUED, command="x",
                name="x", cwd="/", queue=queue, cpu_req=cpu, mem_req=32, cpu=cpu, mem_mb=32, submitted=T0)
            for _ in range(n)]
    assert state.handle(Submitted(tuple(jobs))) == [Wake()]
    return jobs


def _of(todo: list[Instruction], kind: type[Ins]) -> list[Ins]:
    return [i for i in todo if isinstance(i, kind)]


def _index(todo: list[Instruction], kind: type) -> int:
    return next(n for n, i in enumerate(todo) if isinstance(i, kind))


def _ended(todo: list[Instruction]) -> list[int]:
    return [i.job.id for i in todo if isinstance(i, JobEnded)]


def _started(todo: list[Instruction]) -> list[int]:
    return [j.id for i in todo if isinstance(i, StartJobs) for j in i.jobs]


def _committed(todo: list[Instruction]) -> set[int]:
    return {j.id for i in todo if isinstance(i, Commit) for j in i.jobs}


def test_a_pass_commits_its_placements_before_it_starts_them() -> None:
    state = _state()
    _up(state, cpus=2)
    a, b, c = _submit(state, 3)
    todo = state.handle(SchedulePass(T0))
    assert _started(todo) == [a.id, b.id]
    assert _committed(todo) == {a.id, b.id}
    assert _index(todo, Commit) < _index(todo, StartJobs)
    assert [i.node for i in _of(todo, StartJobs)] == ["n1"]
    assert (a.state, a.node, c.state) == (JobState.RUNNING, "n1", JobState.QUEUED)
    assert state.running["alice"] == 2
    assert _started(state.handle(SchedulePass(T0))) == []  # no room left


def test_an_exit_ends_the_job_and_the_next_takes_its_room_in_the_same_commit() -> None:
    state = _state()
    _up(state, cpus=2)
    a, b, c = _submit(state, 3)
    state.handle(SchedulePass(T0))
    todo = state.handle(JobsExited("n1", (JobExit(id=a.id, exit_code=0, time=T0 + 5, cpu_time=4.0),), T0 + 5))
    commits = _of(todo, Commit)
    assert len(commits) == 1 and _committed(todo) == {a.id, c.id}
    assert _ended(todo) == [a.id]
    assert _started(todo) == [c.id]
    assert _index(todo, Commit) < _index(todo, JobEnded) and _index(todo, Commit) < _index(todo, StartJobs)
    assert todo[-1] == Send("n1", Ack(ids=[a.id]))  # acknowledged last: after the commit, after the starts
    assert (a.state, a.ended, a.cpu_time) == (JobState.DONE, T0 + 5, 4.0)
    assert set(state.nodes["n1"].jobs) == {b.id, c.id}
    assert state.running["alice"] == 2


def test_exits_that_leave_placing_to_the_moment_s_pass() -> None:
    """The simulator hands over a moment's exits node by node with ``place=False``: each is recorded and
    acknowledged, the room they leave is filled by the one pass that follows."""
    state = _state()
    _up(state, "n1", cpus=1)
    _up(state, "n2", cpus=1)
    a, b, c, d = _submit(state, 4)
    assert sorted(_started(state.handle(SchedulePass(T0)))) == [a.id, b.id]
    for job in (a, b):
        todo = state.handle(JobsExited(job.node, (JobExit(id=job.id, exit_code=0, time=T0 + 5),), T0 + 5,
                                       place=False))
        assert _ended(todo) == [job.id] and _started(todo) == [] and Wake() in todo
        assert todo[-1] == Send(job.node, Ack(ids=[job.id]))
    assert sorted(_started(state.handle(SchedulePass(T0 + 5)))) == [c.id, d.id]


def test_a_failed_exit_and_an_unknown_one() -> None:
    state = _state()
    _up(state)
    [a] = _submit(state, 1)
    state.handle(SchedulePass(T0))
    todo = state.handle(JobsExited("n1", (JobExit(id=a.id, exit_code=3, time=T0), JobExit(id=99, exit_code=0,
                                                                                            time=T0)), T0))
    assert a.state is JobState.FAILED and a.exit_code == 3
    assert _ended(todo) == [a.id]
    assert todo[-1] == Send("n1", Ack(ids=[a.id, 99]))  # an exit it does not know is acknowledged all the same
    assert "alice" not in state.running


def test_an_exit_of_a_job_only_the_store_still_has_records_its_figures() -> None:
    state = _state()
    _up(state)
    old = Job(id=7, user="alice", uid=1000, origin=Origin.BATCH, state=JobState.CANCELLED, command="x", ended=T0)
    todo = state.handle(JobsExited("n1", (JobExit(id=7, exit_code=0, time=T0 + 1, cpu_time=2.0),), T0, {7: old}))
    assert _ended(todo) == [] and _committed(todo) == {7}
    assert (old.state, old.cpu_time, old.ended) == (JobState.CANCELLED, 2.0, T0)


def test_cancel_of_a_queued_and_a_running_job() -> None:
    state = _state()
    _up(state, cpus=1)
    a, b = _submit(state, 2)
    state.handle(SchedulePass(T0))
    assert a.state is JobState.RUNNING and b.state is JobState.QUEUED
    todo = state.handle(CancelRequested((a, b), "alice", T0 + 1))
    assert (a.state, b.state) == (JobState.CANCELLED, JobState.CANCELLED)
    assert a.reason == "cancelled by alice" and a.ended == T0 + 1
    assert _committed(todo) == {a.id, b.id}
    assert _index(todo, Commit) < _index(todo, JobEnded)
    assert sorted(_ended(todo)) == [a.id, b.id]
    assert _of(todo, Send) == [Send("n1", Signal(ids=[a.id], signal=15))]  # only the running one is signalled
    assert todo[-1] == Wake()
    assert not state.book.any_waiting() and not state.nodes["n1"].jobs and not state.running
    assert state.handle(CancelRequested((a,), "alice", T0 + 2)) == []  # ended already: nothing more


def test_hold_and_release() -> None:
    state = _state()
    _up(state, cpus=1)
    a, b = _submit(state, 2)
    todo = state.handle(HoldRequested((a,), "alice"))
    assert a.state is JobState.HELD and _committed(todo) == {a.id}
    assert _started(state.handle(SchedulePass(T0))) == [b.id]  # the held one is passed over
    state.handle(JobsExited("n1", (JobExit(id=b.id, exit_code=0, time=T0),), T0))
    assert a.state is JobState.HELD
    todo = state.handle(ReleaseRequested((a, b)))
    assert (a.state, _committed(todo), todo[-1]) == (JobState.QUEUED, {a.id}, Wake())
    assert _started(state.handle(SchedulePass(T0))) == [a.id]
    assert state.handle(HoldRequested((a,), "alice")) == []  # running: not held


def test_renice_of_running_jobs_is_committed_then_sent() -> None:
    state = _state()
    _up(state, cpus=1)
    a, b = _submit(state, 2)
    state.handle(SchedulePass(T0))
    todo = state.handle(ReniceRequested((a, b, a), 7))
    assert (a.nice, b.nice) == (7, 0)  # b waits: left as it is
    assert todo == [Commit((a,)), Send("n1", Renice(id=a.id, nice=7))]


def test_a_queue_change_is_checked_and_wakes_a_pass() -> None:
    state = _state()
    assert state.handle(QueueChanged("alice", "q", {"priority": 5})) == [Wake()]
    assert state.book.settings("alice", "q").priority == 5
    with pytest.raises(UsageError):
        state.handle(QueueChanged("alice", "q", {"window": "sometimes", "priority": 1}))
    assert state.book.settings("alice", "q").priority == 5  # nothing of a refused change is kept


def test_reconcile_a_job_the_agent_reports_running() -> None:
    state = _state()
    _up(state)
    [a] = _submit(state, 1)
    state.handle(SchedulePass(T0))
    state.handle(NodeDown("n1", T0 + 1))
    todo = _up(state, running=[JobStarted(id=a.id, pid=4321, time=T0 + 0.5)], now=T0 + 2)
    assert (a.state, a.pid, a.started) == (JobState.RUNNING, 4321, T0 + 0.5)
    assert _committed(todo) == {a.id} and _ended(todo) == [] and not _of(todo, Send)
    assert state.nodes["n1"].up and "n1" not in state.down_since


def test_reconcile_a_job_the_node_never_got_goes_back_in_line() -> None:
    state = _state()
    _up(state, cpus=1)
    a, b = _submit(state, 2)
    state.handle(SchedulePass(T0))
    state.handle(NodeDown("n1", T0 + 1))
    todo = _up(state, cpus=1, now=T0 + 2)
    assert a.state is JobState.QUEUED and a.node == "" and _committed(todo) == {a.id}
    assert list(state.book.queues[("alice", "default")].jobs) == [a.id, b.id]  # in its old place
    assert not state.running and _ended(todo) == []
    assert _started(state.handle(SchedulePass(T0 + 2))) == [a.id]


def test_reconcile_a_started_job_the_node_lost() -> None:
    state = _state()
    _up(state)
    [a] = _submit(state, 1)
    state.handle(SchedulePass(T0))
    state.handle(JobsStarted("n1", (JobStarted(id=a.id, pid=10, time=T0 + 0.1),)))
    state.handle(NodeDown("n1", T0 + 1))
    todo = _up(state, now=T0 + 2)
    assert a.state is JobState.FAILED and a.reason == "lost: n1 no longer knows this job"
    assert _ended(todo) == [a.id] and a.id in _committed(todo)
    assert _index(todo, Commit) < _index(todo, JobEnded)


def test_reconcile_strays_and_exits_from_the_hello() -> None:
    state = _state()
    _up(state)
    a, b = _submit(state, 2)
    state.handle(SchedulePass(T0))
    state.handle(CancelRequested((b,), "alice", T0))
    state.handle(NodeDown("n1", T0 + 1))
    done = JobExit(id=a.id, exit_code=0, time=T0 + 1)
    todo = _up(state, running=[JobStarted(id=b.id, pid=1, time=T0), JobStarted(id=77, pid=2, time=T0)],
               finished=[done], now=T0 + 2)
    assert Send("n1", Signal(ids=[b.id, 77], signal=9)) in todo  # cancelled while away, and unknown: killed
    assert RecordExits("n1", (done,)) in todo  # recorded as any exit (the shell reads the store first)
    assert a.state is JobState.RUNNING  # until its exit is handed back
    assert _ended(state.handle(JobsExited("n1", (done,), T0 + 2))) == [a.id]


def test_reconcile_adopts_a_waiting_job_the_agent_runs() -> None:
    state = _state()
    _up(state)
    [a] = _submit(state, 1)
    state.handle(SchedulePass(T0))
    state.handle(NodeDown("n1", T0 + 1))
    _up(state, now=T0 + 2)  # it never got it: back in line
    assert a.state is JobState.QUEUED
    state.handle(NodeDown("n1", T0 + 3))
    todo = _up(state, running=[JobStarted(id=a.id, pid=5, time=T0)], now=T0 + 4)  # but it had it after all
    assert (a.state, a.node, a.pid) == (JobState.RUNNING, "n1", 5) and state.running["alice"] == 1
    assert not state.book.any_waiting() and _committed(todo) == {a.id}


def test_a_node_down_too_long_loses_its_jobs() -> None:
    state = _state(node_lost_after=60)
    _up(state, cpus=2)
    a, b = _submit(state, 2)
    state.handle(SchedulePass(T0))
    state.handle(NodeDown("n1", T0 + 10))
    assert state.handle(Tick(T0 + 69)) == []
    todo = state.handle(Tick(T0 + 70))
    assert (a.state, b.state) == (JobState.FAILED, JobState.FAILED)
    assert a.reason.startswith("node lost: n1 down since")
    assert _committed(todo) == {a.id, b.id} and sorted(_ended(todo)) == [a.id, b.id] and todo[-1] == Wake()
    assert state.handle(Tick(T0 + 200)) == []  # nothing left to lose
    todo = _up(state, running=[JobStarted(id=a.id, pid=1, time=T0)], now=T0 + 300)  # back, still running one
    assert Send("n1", Signal(ids=[a.id], signal=9)) in todo and a.state is JobState.FAILED


def test_a_node_is_never_lost_when_node_lost_after_is_zero() -> None:
    state = _state(node_lost_after=0)
    _up(state)
    _submit(state, 1)
    state.handle(SchedulePass(T0))
    state.handle(NodeDown("n1", T0))
    assert state.handle(Tick(T0 + 10**6)) == []


def _report(t: float, clusters: Sequence[Cluster] = ()) -> Reported:
    return Reported("n1", Report(sample=NodeSample(time=t, used_cpu=sum(c.cpu for c in clusters)),
                                 clusters=list(clusters)))


def test_ended_outside_work_is_forgotten_on_a_quiet_cluster_too() -> None:
    """Outside work that comes and goes makes jobs that end; the ended jobs kept in memory stay within
    [server] history even when no batch job ever exits (it was only trimmed on exits: on a quiet cluster
    they piled up)."""
    state = _state(history=5)
    _up(state)
    t = T0
    for k in range(40):
        c = Cluster(key=f"{k}:1", pid=100 + k, uid=1001, user="bob", command="x", cpu=0.5, mem_mb=10, nprocs=1,
                    started=t)
        for _ in range(1 + EXTERNAL_GONE_AFTER):  # there for a report, then gone for long enough
            t += 5
            state.handle(_report(t, [c] if _ == 0 else []))
    ended = [j for j in state.jobs.values() if j.final]
    assert 0 < len(ended) <= 5


def test_outside_work_becomes_a_job_while_it_lasts() -> None:
    state = _state()
    _up(state)
    c = Cluster(key="9:1", pid=9, uid=1001, user="bob", command="make -j4", cpu=1.5, mem_mb=100, nprocs=3,
                started=T0 - 50)
    todo = state.handle(_report(T0, [c]))
    [commit] = _of(todo, Commit)
    [ext] = commit.new
    assert (ext.origin, ext.state, ext.user, ext.cpu, ext.node) == (Origin.EXTERNAL, JobState.RUNNING, "bob", 1.5, "n1")
    assert _of(state.handle(_report(T0 + 5, [c])), Commit) == []  # still there: nothing new
    for n in range(1, EXTERNAL_GONE_AFTER):
        assert _ended(state.handle(_report(T0 + 5 + n))) == []
    todo = state.handle(_report(T0 + 20))
    assert _ended(todo) == [ext.id] and _committed(todo) == {ext.id}
    assert (ext.state, ext.ended) == (JobState.DONE, T0 + 20) and not state.nodes["n1"].jobs


def test_an_interactive_job_that_failed_to_start_ends() -> None:
    state = _state()
    _up(state)
    job = Job(id=state.new_id(), user="alice", uid=1000, origin=Origin.INTERACTIVE, state=JobState.RUNNING,
              command="sh", node="n1")
    state.handle(Submitted((job,)))
    assert job.id in state.nodes["n1"].jobs and not state.running  # interactive jobs are not counted
    todo = state.handle(SessionFailed(job.id, "no such user", T0))
    assert (job.state, job.reason) == (JobState.FAILED, "no such user")
    assert _ended(todo) == [job.id] and _index(todo, Commit) < _index(todo, JobEnded)
    assert not state.nodes["n1"].jobs


def test_the_queues_mail_follows_the_end() -> None:
    state = _state()
    _up(state)
    state.book.change("alice", "default", mail="alice@example.org")
    [a] = _submit(state, 1)
    state.handle(SchedulePass(T0))
    todo = state.handle(JobsExited("n1", (JobExit(id=a.id, exit_code=0, time=T0),), T0))
    assert Mail("alice@example.org", a) in todo
    assert _index(todo, Commit) < _index(todo, Mail)


def test_ended_jobs_teach_their_kind() -> None:
    state = _state()
    assert state.kinds is not None
    _up(state, cpus=8)
    [a] = _submit(state, 1, cpu=4)
    state.handle(SchedulePass(T0))
    state.handle(JobsStarted("n1", (JobStarted(id=a.id, pid=1, time=T0),)))
    exit_ = JobExit(id=a.id, exit_code=0, time=T0 + 3600, cpu_time=3600.0, peak_mem_mb=10)  # used one cpu of 4
    state.handle(JobsExited("n1", (exit_,), T0 + 3600))
    [b] = _submit(state, 1, cpu=4)
    assert state.kinds.sized(b).cpu == 1  # the next of its kind starts with what the first used


def test_every_end_goes_through_one_path_once() -> None:
    state = _state(node_lost_after=60)
    seen: Counter[int] = Counter()
    state.end_hooks.append(lambda job: seen.update([job.id]) or [])
    _up(state, "n1", cpus=3)
    _up(state, "n2", cpus=1)
    jobs = _submit(state, 6)
    state.handle(SchedulePass(T0))
    on = {n: [j for j in jobs if j.node == n] for n in ("n1", "n2")}
    queued = [j for j in jobs if j.state is JobState.QUEUED]
    assert len(on["n1"]) == 3 and len(on["n2"]) == 1 and len(queued) == 2
    first, second, third = on["n1"]
    state.handle(CancelRequested((queued[0], first), "alice", T0))  # a queued and a running job
    state.handle(CancelRequested((queued[0], first), "alice", T0))  # again: ended already
    exit_ = JobExit(id=second.id, exit_code=0, time=T0 + 1)
    state.handle(JobsExited("n1", (exit_,), T0 + 1))
    state.handle(JobsExited("n1", (exit_,), T0 + 1))  # the agent sent it again
    state.handle(JobsExited("n1", (JobExit(id=first.id, exit_code=143, time=T0 + 1),), T0 + 1))  # the cancelled one
    state.handle(JobsStarted("n2", tuple(JobStarted(id=j.id, pid=1, time=T0) for j in on["n2"])))
    state.handle(NodeDown("n2", T0 + 2))
    state.handle(Tick(T0 + 100))  # n2 is lost
    state.handle(_report(T0 + 100, [Cluster(key="k", pid=9, uid=1, user="bob", command="x", cpu=1, mem_mb=1,
                                           nprocs=1, started=T0)]))
    for n in range(EXTERNAL_GONE_AFTER):
        state.handle(_report(T0 + 101 + n))
    interactive = Job(id=state.new_id(), user="alice", uid=1000, origin=Origin.INTERACTIVE, state=JobState.RUNNING,
                      command="sh", node="n1")
    state.handle(Submitted((interactive,)))
    state.handle(SessionFailed(interactive.id, "refused", T0 + 200))
    ended = [j for j in state.jobs.values() if j.final]
    assert len(ended) == 6  # two cancelled, an exit, a lost node's, outside work, a session
    assert seen == Counter(j.id for j in ended)  # each ended job once, and only those
    assert third.state is JobState.RUNNING


# ---------------------------------------------------------------------- any order of events

_STEP = st.tuples(st.sampled_from(["submit", "pass", "start", "exit", "cancel", "hold", "release", "down", "up",
                                   "tick"]), st.integers(0, 1000))


def _check_books(state: ServerState) -> None:
    """What must hold after any event: each job where its state says, and counted once."""
    queued = {i for q in state.book.queues.values() for i in q.jobs}
    on_nodes = {i: n.name for n in state.nodes.values() for i in n.jobs}
    running: Counter[str] = Counter()
    for job in state.jobs.values():
        assert (job.id in queued) == (job.state is JobState.QUEUED), job
        assert (job.id in on_nodes) == (job.state is JobState.RUNNING), job
        if job.state is JobState.RUNNING:
            assert on_nodes[job.id] == job.node
            running[job.user] += 1
        assert job.final == (job.ended is not None), job
    assert state.running == running


def _up_again(state: ServerState, k: int, pick: list[Job], now: float) -> None:
    """A node's agent comes back with the picked jobs it runs (and some it was thought not to have)."""
    name = f"n{1 + k % 2}"
    kept = [JobStarted(id=j.id, pid=1, time=now) for j in pick
            if j.node == name and j.state is JobState.RUNNING or j.state is JobState.QUEUED and k % 2]
    todo = _up(state, name, cpus=3 - (1 + k % 2), running=kept, now=now)
    for ins in _of(todo, RecordExits):
        state.handle(JobsExited(ins.node, ins.exits, now))


def _exits(state: ServerState, k: int, pick: list[Job], now: float) -> None:
    for node in ("n1", "n2"):
        state.handle(JobsExited(node, tuple(JobExit(id=j.id, exit_code=k % 2, time=now) for j in pick
                                            if j.node == node), now))


def _starts(state: ServerState, pick: list[Job], now: float) -> None:
    for node in ("n1", "n2"):
        state.handle(JobsStarted(node, tuple(JobStarted(id=j.id, pid=1, time=now) for j in pick
                                             if j.node == node and j.state is JobState.RUNNING)))


def _step(state: ServerState, what: str, k: int, now: float) -> None:
    jobs = sorted(state.jobs.values(), key=lambda j: j.id)
    pick = [j for n, j in enumerate(jobs) if (n + k) % 3 == 0]
    steps = {
        "submit": lambda: _submit(state, 1 + k % 3, user=f"u{k % 2}"),
        "pass": lambda: state.handle(SchedulePass(now)),
        "start": lambda: _starts(state, pick, now),
        "exit": lambda: _exits(state, k, pick, now),
        "cancel": lambda: state.handle(CancelRequested(tuple(pick), "u0", now)),
        "hold": lambda: state.handle(HoldRequested(tuple(pick), "u0")),
        "release": lambda: state.handle(ReleaseRequested(tuple(pick))),
        "down": lambda: state.handle(NodeDown(f"n{1 + k % 2}", now)),
        "up": lambda: _up_again(state, k, pick, now),
        "tick": lambda: state.handle(Tick(now)),
    }
    steps[what]()


@settings(max_examples=150, deadline=None)
@given(st.lists(_STEP, max_size=40))
def test_the_books_hold_and_each_job_ends_once_whatever_happens(steps: list[tuple[str, int]]) -> None:
    state = _state(node_lost_after=30)
    ends: Counter[int] = Counter()
    state.end_hooks.append(lambda job: ends.update([job.id]) or [])
    _up(state, "n1", cpus=2)
    _up(state, "n2", cpus=1)
    for n, (what, k) in enumerate(steps, 1):
        _step(state, what, k, T0 + 7 * n)
        _check_books(state)
    assert all(n == 1 for n in ends.values())
    assert set(ends) == {j.id for j in state.jobs.values() if j.final}


def test_a_settling_job_is_sized_when_it_has_settled_though_the_reports_tell_nothing_new() -> None:
    """Reports whose jobs are all steady skip adaptive allocation until one of them has settled (the
    server keeps that verdict until the node changes): the same report after ``settle_seconds`` sizes
    the job to what it uses, and a report whose use changed is looked at again at once."""
    from wulf.protocol import JobUse
    from wulf.server.instructions import CommitSoon

    state = _state()
    _up(state)
    job, = _submit(state, 1, cpu=2.0)
    state.handle(SchedulePass(T0))
    state.handle(JobsStarted("n1", (JobStarted(id=job.id, pid=4242, time=T0),)))
    job.started = T0  # the state machine takes the node's start time

    def report(t: float, cpu: float) -> list[Instruction]:
        use = JobUse(id=job.id, cpu=cpu, mem_mb=20.0, nprocs=1)
        return state.handle(Reported("n1", Report(sample=NodeSample(time=t, used_cpu=cpu), jobs=[use])))

    settle = state.policy.adapt.settle_seconds
    for k in range(1, 4):  # settling: it keeps what it asked for
        assert not _of(report(T0 + k, 0.5), CommitSoon)
    assert job.cpu == 2.0
    sized = _of(report(T0 + settle + 1, 0.5), CommitSoon)
    assert [j.id for c in sized for j in c.jobs] == [job.id]
    assert job.settled and job.cpu < 2.0
    held = job.cpu
    assert not _of(report(T0 + settle + 2, 0.5), CommitSoon)  # settled and steady
    grown = _of(report(T0 + settle + 3, 1.9), CommitSoon)  # it uses more than it holds: it grows
    assert [j.id for c in grown for j in c.jobs] == [job.id] and job.cpu > held
