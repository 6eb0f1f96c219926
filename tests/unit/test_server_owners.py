"""Workstations whose owner comes back (issue 13 §3), through the server's state machine: reports in,
messages to the agent out (wulf.server.owners over wulf.policy.migrate)."""

from __future__ import annotations

from collections.abc import Sequence

from wulf.config import Config, MigrateConfig, NodesConfig
from wulf.model.job import Job, JobState, Origin
from wulf.protocol import Cluster, JobExit, JobStarted, JobUse, NodeInfo, NodeSample, Renice, Report, Signal
from wulf.server.events import (
    CancelRequested,
    JobsExited,
    JobsStarted,
    NodeUp,
    Reported,
    Requeued,
    SchedulePass,
    Submitted,
)
from wulf.server.instructions import Instruction, Requeue, Send, StartJobs
from wulf.server.state import ServerState

T0 = 1_000_000.0
USR1, TERM, STOP, CONT = 10, 15, 19, 18


def _state(owners: dict[str, str]) -> ServerState:
    return ServerState(Config(nodes=NodesConfig(owners=owners),
                              migrate=MigrateConfig(busy_cpu=0.5, busy_seconds=10, away_seconds=10,
                                                    grace_seconds=30)))


def _up(state: ServerState, name: str, cpus: float = 4, running: Sequence[Job] = ()) -> None:
    still = tuple(JobStarted(id=j.id, pid=j.pid or 1, time=T0) for j in running)
    state.handle(NodeUp(NodeInfo(name=name, hostname=name, cpus=cpus, mem_mb=4096), "10.0.0.1", 0, still, (), T0))


def _jobs(state: ServerState) -> dict[str, Job]:
    """bob's three 1-cpu jobs, placed on n1 and started: one that checkpoints, one that may be queued
    again (it has a retry), one that may not."""
    kinds = {"ckpt": {"checkpoint": "USR1"}, "retry": {"retries": 1}, "plain": {}}
    jobs = {}
    for name, extra in kinds.items():
        jobs[name] = Job(id=state.new_id(), user="bob", uid=1001, origin=Origin.BATCH, state=JobState.QUEUED,
                         command="x", name=name, cwd="/", cpu_req=1, mem_req=32, cpu=1, mem_mb=32, submitted=T0,
                         **extra)  # type: ignore[arg-type]
    state.handle(Submitted(tuple(jobs.values())))
    todo = state.handle(SchedulePass(T0))
    assert {j.id for i in todo if isinstance(i, StartJobs) for j in i.jobs} == {j.id for j in jobs.values()}
    state.handle(JobsStarted("n1", tuple(JobStarted(id=j.id, pid=100 + j.id, time=T0) for j in jobs.values())))
    return jobs


def _report(state: ServerState, t: float, owner_cpu: float, who: str = "alice", node: str = "n1",
            jobs: Sequence[Job] = ()) -> list[Instruction]:
    clusters = [Cluster(key="7:1", pid=7, uid=1000, user=who, command="make", cpu=owner_cpu, mem_mb=100, nprocs=1,
                        started=T0)] if owner_cpu else []
    uses = [JobUse(id=j.id, cpu=1.0, mem_mb=32) for j in jobs if j.state is JobState.RUNNING]
    sample = NodeSample(time=t, used_cpu=owner_cpu + len(uses))
    return state.handle(Reported(node, Report(sample=sample, jobs=uses, clusters=clusters)))


def _sent(todo: list[Instruction]) -> list[tuple[str, object]]:
    return [(i.node, i.msg) for i in todo if isinstance(i, Send)]


def test_owner_back_checkpoints_renices_then_suspends_or_requeues_and_resumes_when_gone() -> None:
    state = _state({"n1": "alice"})
    _up(state, "n1")
    jobs = _jobs(state)
    ckpt, retry, plain = jobs["ckpt"], jobs["retry"], jobs["plain"]
    run = list(jobs.values())
    assert _sent(_report(state, T0 + 1, 1.0, jobs=run)) == []  # outside work, not yet for busy_seconds
    todo = _report(state, T0 + 11, 1.0, jobs=run)  # 4 cpus busy: the owner's work is starved too
    assert sorted(_sent(todo), key=str) == sorted([
        ("n1", Signal(ids=[ckpt.id], signal=USR1)),
        ("n1", Renice(id=retry.id, nice=10)), ("n1", Renice(id=plain.id, nice=10))], key=str)
    assert (ckpt.reason, retry.reason, plain.reason) == ("migrating", "reniced: owner busy", "reniced: owner busy")
    assert _sent(_report(state, T0 + 20, 1.0, jobs=run)) == []  # within the grace: nothing more
    todo = _report(state, T0 + 41, 1.0, jobs=run)  # starved after the grace; ckpt did not leave
    assert sorted(_sent(todo), key=str) == sorted([
        ("n1", Signal(ids=[ckpt.id], signal=STOP)),  # (it did not go when told; no retries: stopped)
        ("n1", Signal(ids=[retry.id], signal=TERM)), ("n1", Signal(ids=[plain.id], signal=STOP))], key=str)
    assert plain.reason == ckpt.reason == "suspended: owner busy" and retry.reason == "requeued: owner busy"
    # the job with a retry dies of TERM and is queued again; the others stay
    state.handle(JobsExited("n1", (JobExit(id=retry.id, exit_code=None, signal=TERM, time=T0 + 42),), T0 + 42))
    assert retry.state is JobState.QUEUED
    run = [ckpt, plain]
    # the owner goes: their work is over after two reports without it, then below busy_cpu for busy_seconds
    for t in (T0 + 50, T0 + 55, T0 + 60):
        assert _sent(_report(state, t, 0.0, jobs=run)) == []
    todo = _report(state, T0 + 66, 0.0, jobs=run)
    assert sorted(_sent(todo), key=str) == sorted([
        ("n1", Signal(ids=[plain.id], signal=CONT)), ("n1", Renice(id=plain.id, nice=0)),
        ("n1", Signal(ids=[ckpt.id], signal=CONT)), ("n1", Renice(id=ckpt.id, nice=0))], key=str)
    assert plain.reason == ckpt.reason == ""
    assert _sent(_report(state, T0 + 70, 0.0, jobs=run)) == []  # (once)


def test_a_checkpointed_job_runs_elsewhere_while_the_owner_is_back() -> None:
    state = _state({"n1": "alice"})
    _up(state, "n1")
    jobs = _jobs(state)
    ckpt = jobs["ckpt"]
    _up(state, "n2", cpus=1)  # room for one job, and no owner
    _report(state, T0 + 1, 1.0, jobs=list(jobs.values()))
    _report(state, T0 + 11, 1.0, jobs=list(jobs.values()))
    assert ckpt.reason == "migrating"
    todo = state.handle(JobsExited("n1", (JobExit(id=ckpt.id, exit_code=85, time=T0 + 12),), T0 + 12))
    assert ckpt.state is JobState.QUEUED and any(isinstance(i, Requeue) for i in todo)
    state.handle(Requeued((ckpt,)))
    todo = state.handle(SchedulePass(T0 + 12))
    assert [(i.node, [j.id for j in i.jobs]) for i in todo if isinstance(i, StartJobs)] == [("n2", [ckpt.id])]
    assert ckpt.checkpoints == 1


def test_a_busy_owner_keeps_new_jobs_off_their_workstation_until_they_go() -> None:
    state = _state({"n1": "alice"})
    _up(state, "n1")
    for t in (T0, T0 + 10):
        _report(state, t, 1.0)
    job = Job(id=state.new_id(), user="bob", uid=1001, origin=Origin.BATCH, state=JobState.QUEUED, command="x",
              cwd="/", cpu_req=1, mem_req=32, cpu=1, mem_mb=32, submitted=T0)
    state.handle(Submitted((job,)))
    assert not [i for i in state.handle(SchedulePass(T0 + 10)) if isinstance(i, StartJobs)]
    from wulf.cli.jstat import nodes_table

    assert state.nodes["n1"].public()["owner_back"] is True
    assert "up (owner)" in nodes_table([state.nodes["n1"].public()])
    for t in (T0 + 20, T0 + 25, T0 + 30, T0 + 40):
        _report(state, t, 0.0)
    assert [i.node for i in state.handle(SchedulePass(T0 + 40)) if isinstance(i, StartJobs)] == ["n1"]


def test_only_the_owners_own_outside_work_on_their_own_workstation_counts() -> None:
    state = _state({"n1": "alice"})
    _up(state, "n1")
    jobs = _jobs(state)
    for t in (T0 + 1, T0 + 11, T0 + 21):  # carol's work on alice's workstation is not alice sitting down
        assert _sent(_report(state, t, 1.0, who="carol", jobs=list(jobs.values()))) == []
    other = _state({"n9": "alice"})  # n1 is no one's workstation
    _up(other, "n1")
    jobs = _jobs(other)
    for t in (T0 + 1, T0 + 11, T0 + 21):
        assert not [m for _, m in _sent(_report(other, t, 1.0, jobs=list(jobs.values())))
                    if isinstance(m, Signal)]


def test_a_requeue_job_starts_over_elsewhere_without_using_a_retry() -> None:
    state = _state({"n1": "alice"})
    _up(state, "n1", cpus=1.5)
    job = Job(id=state.new_id(), user="bob", uid=1001, origin=Origin.BATCH, state=JobState.QUEUED, command="x",
              cwd="/", cpu_req=1, mem_req=32, cpu=1, mem_mb=32, submitted=T0, requeue=True, retries=1)
    state.handle(Submitted((job,)))
    state.handle(SchedulePass(T0))
    state.handle(JobsStarted("n1", (JobStarted(id=job.id, pid=200, time=T0),)))
    _up(state, "n2", cpus=1)
    for t in (T0 + 1, T0 + 11):
        _report(state, t, 1.0, jobs=[job])
    assert _sent(_report(state, T0 + 41, 1.0, jobs=[job])) == [("n1", Signal(ids=[job.id], signal=TERM))]
    todo = state.handle(JobsExited("n1", (JobExit(id=job.id, exit_code=None, signal=TERM, time=T0 + 42),), T0 + 42))
    assert job.state is JobState.QUEUED and (job.restarts, job.vacated, job.checkpoints) == (1, 1, 0)
    assert job.reason == "queued again to start over elsewhere: the owner of n1 came back"
    state.handle(Requeued(next(i for i in todo if isinstance(i, Requeue)).jobs))
    assert [i.node for i in state.handle(SchedulePass(T0 + 42)) if isinstance(i, StartJobs)] == ["n2"]
    # its retry is still there: a failure of this run queues it again
    state.handle(JobsStarted("n2", (JobStarted(id=job.id, pid=300, time=T0 + 43),)))
    state.handle(JobsExited("n2", (JobExit(id=job.id, exit_code=1, time=T0 + 50),), T0 + 50))
    assert job.state is JobState.QUEUED and job.restarts == 2


def test_a_job_that_fails_on_its_own_on_a_busy_workstation_is_not_vacated() -> None:
    state = _state({"n1": "alice"})
    _up(state, "n1")
    jobs = _jobs(state)
    for t in (T0 + 1, T0 + 11):
        _report(state, t, 1.0, jobs=list(jobs.values()))
    plain = jobs["plain"]  # reniced, not stopped: its failure is its own
    state.handle(JobsExited("n1", (JobExit(id=plain.id, exit_code=3, time=T0 + 12),), T0 + 12))
    assert plain.state is JobState.FAILED and plain.vacated == 0


def test_a_job_suspended_before_a_restart_of_the_server_is_resumed_after_it() -> None:
    state = _state({"n1": "alice"})
    _up(state, "n1")
    jobs = _jobs(state)
    plain, ckpt = jobs["plain"], jobs["ckpt"]
    for t in (T0 + 1, T0 + 11, T0 + 41):
        _report(state, t, 1.0, jobs=list(jobs.values()))
    assert plain.reason == ckpt.reason == "suspended: owner busy"
    again = _state({"n1": "alice"})  # a new server, from the store: the jobs' records, reasons and all
    again.restore(list(jobs.values()), max(jobs["retry"].id, plain.id, ckpt.id) + 1, {}, [], T0 + 50)
    _up(again, "n1", running=list(jobs.values()))
    for t in (T0 + 50, T0 + 55):  # still taken to be back, until seen away for busy_seconds
        assert _sent(_report(again, t, 0.0, jobs=list(jobs.values()))) == []
    assert sorted(_sent(_report(again, T0 + 60, 0.0, jobs=list(jobs.values()))), key=str) == sorted([
        ("n1", Signal(ids=[plain.id], signal=CONT)), ("n1", Renice(id=plain.id, nice=0)),
        ("n1", Signal(ids=[ckpt.id], signal=CONT)), ("n1", Renice(id=ckpt.id, nice=0))], key=str)
    assert plain.reason == ckpt.reason == ""


def test_a_suspended_job_that_is_cancelled_is_continued_after_its_term() -> None:
    state = _state({"n1": "alice"})
    _up(state, "n1")
    jobs = _jobs(state)
    for t in (T0 + 1, T0 + 11, T0 + 41):
        _report(state, t, 1.0, jobs=list(jobs.values()))
    plain, retry = jobs["plain"], jobs["retry"]
    assert plain.reason == "suspended: owner busy"
    todo = state.handle(CancelRequested((plain, retry), "bob", T0 + 45))
    assert _sent(todo) == [("n1", Signal(ids=[plain.id, retry.id], signal=TERM)),
                           ("n1", Signal(ids=[plain.id], signal=CONT))]


def test_a_node_no_longer_a_workstation_resumes_its_jobs_and_takes_new_ones() -> None:
    state = _state({"n1": "alice"})
    _up(state, "n1")
    jobs = _jobs(state)
    for t in (T0 + 1, T0 + 11, T0 + 41):
        _report(state, t, 1.0, jobs=list(jobs.values()))
    plain = jobs["plain"]
    assert plain.reason == "suspended: owner busy" and not state.view(state.nodes["n1"]).schedulable
    state.reload(Config())  # [nodes.owners] no longer names n1
    todo = _report(state, T0 + 45, 1.0, jobs=list(jobs.values()))
    assert ("n1", Signal(ids=[plain.id], signal=CONT)) in _sent(todo)
    assert plain.reason == "" and state.view(state.nodes["n1"]).schedulable
