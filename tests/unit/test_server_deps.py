"""Dependencies and retries in the server's state machine (issue 11 §3, §4): events in, instructions out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wulf.config import Config, SchedulerConfig, ServerConfig
from wulf.errors import ConfigError, UsageError
from wulf.model import depend
from wulf.model.job import Job, JobState, Origin
from wulf.protocol import Ack, JobExit, JobStarted, NodeInfo, Signal
from wulf.server import intake
from wulf.server.events import (
    CancelRequested,
    HoldRequested,
    JobsExited,
    JobsStarted,
    NodeDown,
    NodeUp,
    ReleaseRequested,
    Requeued,
    SchedulePass,
    Submitted,
    Tick,
)
from wulf.server.instructions import (
    Commit,
    Instruction,
    JobEnded,
    RecordExits,
    Requeue,
    Send,
    StartJobs,
    Wake,
)
from wulf.server.state import ServerState
from wulf.server.views import waiting_reason

T0 = 1_000_000.0
Ins = TypeVar("Ins")


def _state(**server: float) -> ServerState:
    return ServerState(Config(server=ServerConfig(**server)))  # type: ignore[arg-type]


def _up(state: ServerState, name: str = "n1", cpus: float = 4, running: Sequence[JobStarted] = (),
        finished: Sequence[JobExit] = (), now: float = T0) -> list[Instruction]:
    info = NodeInfo(name=name, hostname=name, cpus=cpus, mem_mb=4096)
    return state.handle(NodeUp(info, "10.0.0.1", 0, tuple(running), tuple(finished), now))


def _job(state: ServerState, after: str = "", retries: int = 0) -> Job:
    return Job(id=state.new_id(), user="alice", uid=1000, origin=Origin.BATCH, state=JobState.QUEUED,
               command="x", name="x", cwd="/", submitted=T0, depend=after, retries=retries)


def _submit(state: ServerState, after: str = "", retries: int = 0,
            known: dict[int, Job] | None = None) -> tuple[Job, list[Instruction]]:
    job = _job(state, after, retries)
    return job, state.handle(Submitted((job,), known=known or {}))


def _of(todo: list[Instruction], kind: type[Ins]) -> list[Ins]:
    return [i for i in todo if isinstance(i, kind)]


def _ended(todo: list[Instruction]) -> list[int]:
    return [i.job.id for i in todo if isinstance(i, JobEnded)]


def _started(todo: list[Instruction]) -> list[int]:
    return [j.id for i in todo if isinstance(i, StartJobs) for j in i.jobs]


def _committed(todo: list[Instruction]) -> set[int]:
    return {j.id for i in todo if isinstance(i, Commit) for j in i.jobs}


def _in_line(state: ServerState, job: Job) -> bool:
    return any(job.id in q.jobs for q in state.book.queues.values())


def _exit(state: ServerState, job: Job, code: int | None = 0, now: float = T0 + 5, reason: str = "",
          signal: int | None = None) -> list[Instruction]:
    e = JobExit(id=job.id, exit_code=code, signal=signal, time=now, reason=reason)
    return state.handle(JobsExited(job.node or "n1", (e,), now))


# ---------------------------------------------------------------- the model


def test_parse_and_write_dependencies() -> None:
    dep = depend.parse("afterok:13:12, afterany:14,afterok:15")
    assert depend.text(dep) == "afterok:12:13:15,afterany:14"
    assert depend.ids_of(dep) == {12, 13, 14, 15}
    assert depend.of_ids(depend.After.NOTOK, ["3,4", "5"]) == "afternotok:3:4:5"


@pytest.mark.parametrize("text", ["after:12", "afterok", "afterok:", "afterok:x", "afterok:0", "afterok:-1",
                                  "singleton", "afterok:1?afterany:2", "aftercorr:3", "afterok:１"])
def test_bad_dependencies_are_refused(text: str) -> None:
    with pytest.raises(UsageError):
        depend.parse(text)


def test_a_dependency_names_at_most_so_many_jobs() -> None:
    with pytest.raises(UsageError, match="at most"):
        depend.parse("afterok:" + ":".join(str(i) for i in range(1, depend.MAX_IDS + 2)))


@pytest.mark.parametrize(("kind", "states", "verdict"), [
    (depend.After.OK, [JobState.DONE, JobState.DONE], depend.Verdict.MET),
    (depend.After.OK, [JobState.DONE, JobState.RUNNING], depend.Verdict.WAIT),
    (depend.After.OK, [JobState.QUEUED, JobState.FAILED], depend.Verdict.NEVER),
    (depend.After.OK, [JobState.CANCELLED], depend.Verdict.NEVER),
    (depend.After.ANY, [JobState.FAILED, JobState.CANCELLED, JobState.DONE], depend.Verdict.MET),
    (depend.After.ANY, [JobState.FAILED, JobState.HELD], depend.Verdict.WAIT),
    (depend.After.NOTOK, [JobState.FAILED, JobState.CANCELLED], depend.Verdict.MET),
    (depend.After.NOTOK, [JobState.FAILED, JobState.DONE], depend.Verdict.NEVER),
    (depend.After.NOTOK, [JobState.RUNNING], depend.Verdict.WAIT),
])
def test_the_one_check_over_a_set_of_jobs(kind: depend.After, states: list[JobState],
                                          verdict: depend.Verdict) -> None:
    assert depend.clause_verdict(kind, states) is verdict


def test_unknown_jobs_and_cycles_are_refused_at_submission() -> None:
    state = _state()
    a = _job(state)
    b = _job(state, f"afterok:{a.id}")
    assert intake.check_dependencies([b], lambda i: i == a.id) == {a.id}
    with pytest.raises(UsageError, match="no job 99"):
        intake.check_dependencies([_job(state, "afterok:99")], lambda i: False)
    me = _job(state)
    me.depend = f"afterany:{me.id}"
    with pytest.raises(UsageError, match="itself"):
        intake.check_dependencies([me], lambda i: True)
    first, second = _job(state), _job(state)
    second.depend = f"afterok:{first.id}"
    with pytest.raises(UsageError, match="same submission"):
        intake.check_dependencies([first, second], lambda i: True)


# ---------------------------------------------------------------- dependencies


def test_a_dependent_waits_out_of_line_until_its_dependency_is_done() -> None:
    state = _state()
    _up(state)
    a, _ = _submit(state)
    d, todo = _submit(state, f"afterok:{a.id}")
    assert todo == [Wake()]
    assert not _in_line(state, d) and d.state is JobState.QUEUED
    assert d.reason == f"waiting for job {a.id} (after ok)"
    assert waiting_reason(state, d, True) == f"waiting for job {a.id} (after ok)"
    assert _started(state.handle(SchedulePass(T0))) == [a.id]
    assert _started(state.handle(SchedulePass(T0 + 1))) == []  # room, but it waits
    todo = _exit(state, a, 0)  # in line at once, and it takes the room a leaves
    assert d.id in _committed(todo) and _started(todo) == [d.id] and d.reason == ""


def test_a_dependency_that_can_never_be_met_ends_the_dependents_at_once() -> None:
    state = _state()
    _up(state)
    a, _ = _submit(state)
    b, _ = _submit(state, f"afterok:{a.id}")
    c, _ = _submit(state, f"afterok:{b.id}")
    e, _ = _submit(state, f"afterany:{c.id}")
    state.handle(SchedulePass(T0))
    todo = _exit(state, a, 3)
    assert _ended(todo) == [c.id, b.id, a.id]  # all in this one event, the last dependent first
    assert (b.state, b.reason) == (JobState.CANCELLED, f"dependency never satisfied: job {a.id} failed")
    assert (c.state, c.reason) == (JobState.CANCELLED, f"dependency never satisfied: job {b.id} was cancelled")
    # an after-any dependent of a cancelled job may run: it takes the room at once
    assert e.id in _started(todo)
    for job in (b, c):  # each end is committed before it is told
        i = next(n for n, ins in enumerate(todo) if isinstance(ins, JobEnded) and ins.job is job)
        assert any(isinstance(ins, Commit) and job in ins.jobs for ins in todo[:i])
    assert len(state.waits) == 0


def test_after_any_runs_after_a_failure_and_after_notok_only_after_one() -> None:
    state = _state()
    _up(state)
    a, _ = _submit(state)
    b, _ = _submit(state)
    anyone, _ = _submit(state, f"afterany:{a.id}")
    notok, _ = _submit(state, f"afternotok:{a.id}")
    notok_b, _ = _submit(state, f"afternotok:{b.id}")
    assert notok.reason == f"waiting for job {a.id} (after not ok)"
    state.handle(SchedulePass(T0))
    todo = _exit(state, a, None, signal=9)
    assert set(_started(todo)) == {anyone.id, notok.id}
    todo = _exit(state, b, 0)
    assert _ended(todo) == [notok_b.id, b.id]
    assert notok_b.reason == f"dependency never satisfied: job {b.id} succeeded"


def test_a_dependency_on_jobs_that_ended_is_decided_at_submission() -> None:
    state = _state()
    _up(state)
    ok, failed = _job(state), _job(state)
    ok.state, failed.state = JobState.DONE, JobState.FAILED
    d, todo = _submit(state, f"afterok:{ok.id}", known={ok.id: ok, failed.id: failed})
    assert todo == [Wake()] and _in_line(state, d)
    n, todo = _submit(state, f"afterok:{ok.id}:{failed.id}", known={ok.id: ok, failed.id: failed})
    assert n.state is JobState.CANCELLED and _ended(todo) == [n.id] and n.id in _committed(todo)
    assert n.reason == f"dependency never satisfied: job {failed.id} failed"


def test_a_held_dependent_and_a_cancelled_one() -> None:
    state = _state()
    _up(state)
    a, _ = _submit(state)
    d, _ = _submit(state, f"afterok:{a.id}")
    c, _ = _submit(state, f"afterok:{a.id}")
    state.handle(HoldRequested((d,), "alice"))
    state.handle(ReleaseRequested((d,)))
    assert d.state is JobState.QUEUED and not _in_line(state, d)  # released, it still waits for a
    state.handle(HoldRequested((d,), "alice"))
    state.handle(CancelRequested((c,), "alice", T0))
    assert not state.waits.waiting(c.id)
    state.handle(SchedulePass(T0))
    _exit(state, a, 0)
    assert d.state is JobState.HELD and not _in_line(state, d)  # its dependency is met; the hold stays
    state.handle(ReleaseRequested((d,)))
    assert _in_line(state, d)


def test_the_waits_are_rebuilt_at_a_restart_and_settled() -> None:
    old = _state()
    a, b, c = _job(old), _job(old), _job(old)
    d = _job(old, f"afterok:{a.id}")
    e = _job(old, f"afterok:{b.id}")
    f = _job(old, f"afterany:{c.id}")
    b.state, c.state = JobState.FAILED, JobState.DONE  # ended while the server was away
    state = _state()
    state.restore([a, b, c, d, e, f], 10, {}, [], T0)
    assert state.waits.waiting(d.id) and not _in_line(state, d)
    assert _in_line(state, f) and not state.waits.waiting(f.id)
    todo = state.settle(T0 + 1)
    assert _ended(todo) == [e.id] and e.state is JobState.CANCELLED
    assert d.state is JobState.QUEUED and state.waits.waiting(d.id)


# ---------------------------------------------------------------- retries


def _running(state: ServerState, retries: int, after_job: Job | None = None) -> Job:
    job, _ = _submit(state, retries=retries)
    assert job.id in _started(state.handle(SchedulePass(T0)))
    state.handle(JobsStarted("n1", (JobStarted(id=job.id, pid=10, time=T0 + 1),)))
    return job


def test_a_failed_job_with_retries_goes_back_in_line_after_its_exit_is_acknowledged() -> None:
    state = _state()
    _up(state)
    job = _running(state, retries=2)
    d, _ = _submit(state, f"afterok:{job.id}")
    todo = _exit(state, job, 1)
    assert _ended(todo) == [] and job.state is JobState.QUEUED and job.restarts == 1
    assert job.id in _committed(todo) and _started(todo) == []  # not started before the ack
    ack = todo.index(Send("n1", Ack(ids=[job.id])))
    assert isinstance(todo[ack + 1], Requeue) and todo[ack + 1].jobs == (job,)
    assert not _in_line(state, job) and job.reason.startswith("queued again after attempt 1 of 3 failed")
    assert state.waits.waiting(d.id)  # a failed attempt that will be retried does not end its dependents
    assert state.handle(Requeued((job,))) == [Wake()] and _in_line(state, job)
    assert _started(state.handle(SchedulePass(T0 + 6))) == [job.id]
    assert (job.node, job.started, job.public(T0)["attempts"]) == ("n1", None, 1)
    state.handle(JobsStarted("n1", (JobStarted(id=job.id, pid=11, time=T0 + 7),)))
    assert job.public(T0)["attempts"] == 2
    _exit(state, job, None, signal=9, now=T0 + 8)  # killed by a signal: retried too
    state.handle(Requeued((job,)))
    state.handle(SchedulePass(T0 + 9))
    todo = _exit(state, job, 1, now=T0 + 10)
    assert _ended(todo)[-1] == job.id and job.state is JobState.FAILED and job.restarts == 2  # none left
    assert d.state is JobState.CANCELLED


def test_a_job_that_goes_over_its_own_limit_or_is_cancelled_is_not_retried() -> None:
    state = _state()
    _up(state)
    job = _running(state, retries=3)
    todo = _exit(state, job, None, signal=9, reason="exceeded its time limit of 00:01:00")
    assert _ended(todo) == [job.id] and job.state is JobState.FAILED and job.restarts == 0
    job = _running(state, retries=3)
    todo = state.handle(CancelRequested((job,), "alice", T0 + 2))
    assert _ended(todo) == [job.id] and job.state is JobState.CANCELLED
    _exit(state, job, None, signal=15)
    assert job.state is JobState.CANCELLED and job.restarts == 0


def test_the_default_retries_come_from_the_config() -> None:
    assert Config(scheduler=SchedulerConfig(default_retries=2)).scheduler.default_retries == 2
    with pytest.raises(ConfigError, match="default_retries"):
        SchedulerConfig(default_retries=-1)


def test_a_lost_node_fails_its_jobs_or_requeues_those_with_retries() -> None:
    state = _state(node_lost_after=60)
    _up(state)
    plain = _running(state, retries=0)
    retried = _running(state, retries=1)
    state.handle(NodeDown("n1", T0 + 10))
    assert state.handle(Tick(T0 + 30)) == []
    todo = state.handle(Tick(T0 + 71))
    assert _ended(todo) == [plain.id]
    assert plain.state is JobState.FAILED and plain.reason.startswith("node lost: n1 down since ")
    assert retried.state is JobState.QUEUED and retried.restarts == 1 and _in_line(state, retried)
    assert {plain.id, retried.id} <= _committed(todo)
    assert "node lost" in retried.reason
    # the agent comes back and tells the old run's exit: that run is over already; the new attempt waits
    # out of line until that exit is acknowledged (the agent would not start a job whose exit it keeps)
    old = JobExit(id=retried.id, exit_code=1, time=T0 + 20)
    todo = _up(state, finished=[old])
    assert retried.state is JobState.QUEUED and retried.restarts == 1 and not _in_line(state, retried)
    [record] = _of(todo, RecordExits)
    todo = state.handle(JobsExited("n1", record.exits, T0 + 80))
    assert (retried.state, retried.exit_code, _started(todo)) == (JobState.QUEUED, None, [])
    assert todo[-2:] == [Send("n1", Ack(ids=[retried.id])), Requeue((retried,))]
    state.handle(Requeued((retried,)))
    assert _started(state.handle(SchedulePass(T0 + 80))) == [retried.id]


def test_an_agent_that_still_runs_a_requeued_job_has_it_killed() -> None:
    state = _state(node_lost_after=60)
    _up(state)
    job = _running(state, retries=1)
    state.handle(NodeDown("n1", T0 + 10))
    state.handle(Tick(T0 + 71))
    todo = _up(state, running=[JobStarted(id=job.id, pid=10, time=T0 + 1)])
    assert job.state is JobState.QUEUED  # not adopted: that run is the lost attempt
    assert Send("n1", Signal(ids=[job.id], signal=9)) in todo
    assert _started(state.handle(SchedulePass(T0 + 80))) == []  # not while that run goes on
    todo = _exit(state, job, None, signal=9, now=T0 + 81)
    assert job.state is JobState.QUEUED and job.restarts == 1 and _ended(todo) == []  # not this attempt's end
    state.handle(Requeued(_of(todo, Requeue)[0].jobs))
    assert _started(state.handle(SchedulePass(T0 + 82))) == [job.id]


def test_the_exit_of_a_lost_run_does_not_end_the_job_running_again_elsewhere() -> None:
    state = _state(node_lost_after=60)
    _up(state, "n1", cpus=1)
    job = _running(state, retries=1)
    state.handle(NodeDown("n1", T0 + 10))
    state.handle(Tick(T0 + 71))
    _up(state, "n2", cpus=1, now=T0 + 72)
    assert _started(state.handle(SchedulePass(T0 + 72))) == [job.id] and job.node == "n2"
    todo = _up(state, "n1", cpus=1, running=[JobStarted(id=job.id, pid=10, time=T0 + 1)], now=T0 + 73)
    assert Send("n1", Signal(ids=[job.id], signal=9)) in todo  # the lost run is killed
    todo = state.handle(JobsExited("n1", (JobExit(id=job.id, exit_code=None, signal=9, time=T0 + 74),), T0 + 74))
    assert job.state is JobState.RUNNING and job.node == "n2" and _ended(todo) == []
    assert todo[-1] == Send("n1", Ack(ids=[job.id]))


def test_a_node_lost_again_before_it_tells_of_an_earlier_run_gives_that_run_up() -> None:
    state = _state(node_lost_after=60)
    _up(state)
    job = _running(state, retries=1)
    state.handle(NodeDown("n1", T0 + 10))
    state.handle(Tick(T0 + 71))
    _up(state, running=[JobStarted(id=job.id, pid=10, time=T0 + 1)], now=T0 + 72)
    assert not _in_line(state, job)
    state.handle(HoldRequested((job,), "alice"))
    state.handle(ReleaseRequested((job,)))
    assert not _in_line(state, job)  # released, it still waits for that run's end
    state.handle(NodeDown("n1", T0 + 73))
    state.handle(Tick(T0 + 140))
    assert _in_line(state, job) and job.state is JobState.QUEUED


def test_a_job_lost_twice_waits_for_the_first_runs_end_before_it_runs_on_that_node_again() -> None:
    """(Found by the hypothesis test.) Lost on n1, run again on n2; n1 comes back still running the first
    run (it is told to kill it); then n2 is lost: queued for a third attempt, the job must not start on
    n1 (or anywhere) until n1 has told of that first run's end."""
    state = _state(node_lost_after=60)
    _up(state, "n1", cpus=1)
    job = _running(state, retries=2)
    state.handle(NodeDown("n1", T0 + 10))
    state.handle(Tick(T0 + 71))  # lost: queued again
    _up(state, "n2", cpus=1, now=T0 + 72)
    assert job.id in _started(state.handle(SchedulePass(T0 + 72)))
    state.handle(NodeDown("n2", T0 + 73))
    todo = _up(state, "n1", cpus=1, running=[JobStarted(id=job.id, pid=10, time=T0 + 1)], now=T0 + 74)
    assert Send("n1", Signal(ids=[job.id], signal=9)) in todo  # the first run is killed
    state.handle(Tick(T0 + 140))  # n2 lost: queued for the third attempt
    assert job.state is JobState.QUEUED and job.restarts == 2
    assert not _started(state.handle(SchedulePass(T0 + 141))) and not _in_line(state, job)
    todo = state.handle(JobsExited("n1", (JobExit(id=job.id, exit_code=None, signal=9, time=T0 + 142),),
                                   T0 + 142))  # the first run's end
    assert job.state is JobState.QUEUED and job.exit_code is None and Send("n1", Ack(ids=[job.id])) in todo
    for requeue in _of(todo, Requeue):
        state.handle(Requeued(requeue.jobs))
    assert job.id in _started(state.handle(SchedulePass(T0 + 143)))


# ---------------------------------------------------------------- any order of events (hypothesis)

# submissions, passes and exits are what make dependents and retries: they come more often
_STEP = st.tuples(st.sampled_from(["submit", "pass", "exit"] * 3 + ["start", "cancel", "hold", "release"]
                                  + ["down", "up", "tick"] * 2), st.integers(0, 1000))


class _Run:
    """Drives a state machine as its shell and its agents would, keeping what the agents really run: a
    run goes on until the agent reports its exit (a node that is down keeps its runs, and tells of them
    when it is back); a Requeue is handed back after the ack before it. Checks every start: a dependent
    starts only once its dependency holds, and a job starts only when no run of it goes on at a node that
    is up (a run on a node given up for lost is the one exception), nor on a node that keeps its exit."""

    def __init__(self) -> None:
        self.state = _state(node_lost_after=10)  # (two steps)
        self.runs: set[tuple[str, int]] = set()  # (node, job): runs going on there
        self.unacked: set[tuple[str, int]] = set()  # exits told to the state machine, not yet acknowledged
        for name, cpus in (("n1", 2), ("n2", 1)):
            self.apply(_up(self.state, name, cpus=cpus))

    def apply(self, todo: list[Instruction]) -> None:
        for ins in todo:
            if isinstance(ins, StartJobs):
                for job in ins.jobs:
                    if job.state is JobState.RUNNING:  # (the shell leaves out those ended meanwhile)
                        self.check_start(job, ins.node)
            elif isinstance(ins, Send) and isinstance(ins.msg, Ack):
                self.unacked -= {(ins.node, i) for i in ins.msg.ids}
            elif isinstance(ins, Requeue):
                self.apply(self.state.handle(Requeued(ins.jobs)))
            elif isinstance(ins, RecordExits):
                self.apply(self.state.handle(JobsExited(ins.node, ins.exits, T0)))

    def check_start(self, job: Job, node: str) -> None:
        nodes = self.state.nodes
        going = [n for n, i in self.runs if i == job.id and nodes[n].up]
        assert not going, f"job {job.id} started on {node} while it runs on {going}"
        assert (node, job.id) not in self.unacked, f"job {job.id} started before its exit was acknowledged"
        if job.depend:
            dep = depend.parse(job.depend)
            verdict, _, _ = depend.verdict(dep, lambda i: self.state.jobs[i].state)
            assert verdict is depend.Verdict.MET, f"job {job.id} started before {job.depend} held"
        self.runs.add((node, job.id))

    def submit(self, k: int) -> None:
        ids = sorted(self.state.jobs)
        after = ""
        if ids and k % 3:
            kind = ("afterok", "afterany", "afternotok")[k % 3]
            after = f"{kind}:" + ":".join(str(i) for i in ids[-1 - k % 2:])
        job = _job(self.state, after, retries=k % 3)
        self.apply(self.state.handle(Submitted((job,))))

    def exits(self, k: int, now: float) -> None:
        """Some runs on nodes that are up end, and their agents say so."""
        for node in ("n1", "n2"):
            if not self.state.nodes[node].up:
                continue
            mine = sorted(i for n, i in self.runs if n == node and (i + k) % 3 == 0)
            if not mine:
                continue
            for i in mine:
                self.runs.discard((node, i))
                self.unacked.add((node, i))
            self.apply(self.state.handle(JobsExited(node, tuple(
                JobExit(id=i, exit_code=(k + i) % 2, time=now) for i in mine), now)))

    def up(self, name: str, k: int, now: float) -> None:
        running = [JobStarted(id=i, pid=1, time=now) for n, i in sorted(self.runs) if n == name]
        self.apply(_up(self.state, name, cpus=3 - (1 + k % 2), running=running, now=now))

    def step(self, what: str, k: int, now: float) -> None:
        state = self.state
        jobs = sorted(state.jobs.values(), key=lambda j: j.id)
        pick = [j for n, j in enumerate(jobs) if (n + k) % 3 == 0]
        if what == "submit":
            self.submit(k)
        elif what == "pass":
            self.apply(state.handle(SchedulePass(now)))
        elif what == "start":
            for node in ("n1", "n2"):
                state.handle(JobsStarted(node, tuple(JobStarted(id=j.id, pid=1, time=now) for j in pick
                                                     if j.node == node and j.state is JobState.RUNNING)))
        elif what == "exit":
            self.exits(k, now)
        elif what == "cancel":
            self.apply(state.handle(CancelRequested(tuple(pick), "u0", now)))
        elif what == "hold":
            self.apply(state.handle(HoldRequested(tuple(pick), "u0")))
        elif what == "release":
            self.apply(state.handle(ReleaseRequested(tuple(pick))))
        elif what == "down":
            state.handle(NodeDown(f"n{1 + k % 2}", now))
        elif what == "up":
            self.up(f"n{1 + k % 2}", k, now)
        else:
            self.apply(state.handle(Tick(now)))


@settings(max_examples=300, deadline=None)
@given(st.lists(_STEP, min_size=20, max_size=60))
def test_no_dependent_starts_early_and_no_job_runs_twice_at_once(steps: list[tuple[str, int]]) -> None:
    run = _Run()
    for n, (what, k) in enumerate(steps, 1):
        run.step(what, k, T0 + 7 * n)
    state = run.state
    for job in state.jobs.values():  # nothing waits for a job that has ended
        if state.waits.waiting(job.id):
            dep = depend.parse(job.depend)
            assert depend.verdict(dep, lambda i: state.jobs[i].state)[0] is depend.Verdict.WAIT, job
            assert not job.final


def test_a_requeued_job_held_when_its_lost_run_comes_back_waits_for_that_runs_end() -> None:
    """(Found by the hypothesis test.) Lost, queued again, held; its node comes back still running the
    old run: released, it must wait for that run's exit, not start beside it."""
    state = _state(node_lost_after=60)
    _up(state)
    job = _running(state, retries=1)
    state.handle(NodeDown("n1", T0 + 10))
    state.handle(Tick(T0 + 71))
    assert job.state is JobState.QUEUED and job.restarts == 1
    state.handle(HoldRequested((job,), "alice"))
    _up(state, running=[JobStarted(id=job.id, pid=10, time=T0 + 1)], now=T0 + 72)
    state.handle(ReleaseRequested((job,)))
    assert _started(state.handle(SchedulePass(T0 + 73))) == []  # not while that run goes on
    todo = _exit(state, job, None, signal=9, now=T0 + 74)
    state.handle(Requeued(_of(todo, Requeue)[0].jobs))
    assert _started(state.handle(SchedulePass(T0 + 75))) == [job.id]


def test_a_job_submitted_held_waits_out_of_line_and_its_dependency_is_kept() -> None:
    state = _state()
    _up(state)
    a, _ = _submit(state)
    h = _job(state, f"afterok:{a.id}")
    h.state = JobState.HELD  # sbatch -H (intake.new_job makes it so)
    free = _job(state)
    free.state = JobState.HELD
    never = _job(state, "afterok:999")
    never.state = JobState.HELD
    todo = state.handle(Submitted((h, free, never), known={}))
    assert _ended(todo) == [never.id] and never.state is JobState.CANCELLED  # it could never start
    assert state.waits.waiting(h.id) and not _in_line(state, h) and not _in_line(state, free)
    assert _started(state.handle(SchedulePass(T0))) == [a.id]
    state.handle(ReleaseRequested((h, free)))
    assert _in_line(state, free) and not _in_line(state, h)  # released, h still waits for a
    _exit(state, a, 0)
    assert not state.waits.waiting(h.id) and (_in_line(state, h) or h.state is JobState.RUNNING)
