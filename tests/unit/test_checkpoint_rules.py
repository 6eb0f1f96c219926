"""Warning signals and self-checkpointing (issue 13 §2): parsing, the enforcer's signals, the agent's start
fields, and the server's rule that a run which checkpointed is queued again (events in, instructions out)."""

from __future__ import annotations

import signal
from collections.abc import Sequence
from typing import TypeVar

import pytest

from wulf.agent.enforcer import Enforcer, Kill, Notices, Notify, Term
from wulf.agent.limits import Limits, Usage
from wulf.config import Config, SchedulerConfig
from wulf.errors import ConfigError, UsageError
from wulf.model import checkpoint
from wulf.model.accounting import acct_row
from wulf.model.checkpoint import Notice
from wulf.model.job import Job, JobState, Origin
from wulf.protocol import Ack, JobExit, JobSpec, JobStarted, NodeInfo, StartJob
from wulf.server import intake
from wulf.server.events import JobsExited, JobsStarted, NodeUp, Requeued, SchedulePass, Submitted
from wulf.server.instructions import Commit, Instruction, JobEnded, Requeue, Send, StartJobs, Wake
from wulf.server.state import ServerState

T0 = 1_000_000.0
USR1, USR2, TERM = int(signal.SIGUSR1), int(signal.SIGUSR2), int(signal.SIGTERM)
Ins = TypeVar("Ins")

# ---------------------------------------------------------------- what qr --signal / --checkpoint say


@pytest.mark.parametrize(("text", "signum", "seconds", "stored"), [
    ("USR1@60", USR1, 60.0, "USR1@60"), ("sigusr2@1:30", USR2, 90.0, "USR2@90"), ("10@5", USR1, 5.0, "USR1@5"),
    ("TERM@0.5", TERM, 0.5, "TERM@0.5"),
])
def test_signal_specs(text: str, signum: int, seconds: float, stored: str) -> None:
    notice = checkpoint.parse_signal(text)
    assert notice == Notice(signum, seconds) and notice.text() == stored
    assert checkpoint.parse_signal(notice.text()) == notice  # what is stored reads back the same


@pytest.mark.parametrize(("text", "match"), [
    ("USR1", "SIG@SECONDS"), ("USR1@", "SIG@SECONDS"), ("NOPE@10", "not a signal"), ("KILL@10", "cannot be caught"),
    ("STOP@10", "cannot be caught"), ("USR1@-3", "not a duration"), ("USR1@0", "more than zero"), ("99@10", "not a signal"),
])
def test_bad_signal_specs_are_refused(text: str, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        checkpoint.parse_signal(text)


def test_checkpoint_specs() -> None:
    assert checkpoint.parse_checkpoint("USR1") == Notice(USR1, None)
    assert checkpoint.parse_checkpoint("usr1@10:00").text() == "USR1@600"  # type: ignore[union-attr]
    assert checkpoint.parse_checkpoint("CRIU") is None  # the caller decides (and refuses)
    with pytest.raises(UsageError, match="SIG"):
        checkpoint.parse_checkpoint("USR1@")
    with pytest.raises(UsageError, match="not a signal"):
        checkpoint.parse_checkpoint("bogus@10")


def test_the_checkpoint_exit_code_comes_from_the_environment_or_the_config() -> None:
    assert checkpoint.exit_code_of({}, 85) == 85
    assert checkpoint.exit_code_of({"WULF_CHECKPOINT_EXIT": "42"}, 85) == 42
    for bad in ("0", "256", "x", "-1"):
        with pytest.raises(UsageError, match="exit code"):
            checkpoint.exit_code_of({"WULF_CHECKPOINT_EXIT": bad}, 85)
    assert SchedulerConfig(checkpoint_exit_code=99).checkpoint_exit_code == 99
    with pytest.raises(ConfigError, match="checkpoint_exit_code"):
        SchedulerConfig(checkpoint_exit_code=0)


# ---------------------------------------------------------------- the server takes them (intake)


class _Caller:
    user, uid, gid, admin = "alice", 1000, 1000, False


def _new(spec: JobSpec, env: dict[str, str] | None = None, config: Config | None = None) -> Job:
    from wulf.policy.settings import Policy

    config = config or Config()
    return intake.new_job(1, spec, _Caller(), "h", Origin.BATCH, T0, config, Policy.from_config(config),  # type: ignore[arg-type]
                          env=env)


def test_a_warning_signal_needs_a_time_limit() -> None:
    with pytest.raises(UsageError, match="needs a time limit"):
        _new(JobSpec(command="x", cwd="/", warn_signal="USR1@60"))
    job = _new(JobSpec(command="x", cwd="/", warn_signal="usr1@1:00", time_limit=600))
    assert job.warn_signal == "USR1@60"


def test_a_checkpoint_is_stored_with_the_exit_code_that_means_it() -> None:
    job = _new(JobSpec(command="x", cwd="/", checkpoint="USR1@30"))
    assert (job.checkpoint, job.checkpoint_exit) == ("USR1@30", 85)
    job = _new(JobSpec(command="x", cwd="/", checkpoint="USR2"), env={"WULF_CHECKPOINT_EXIT": "3"})
    assert (job.checkpoint, job.checkpoint_exit) == ("USR2", 3)
    job = _new(JobSpec(command="x", cwd="/", checkpoint="USR2"),
               config=Config(scheduler=SchedulerConfig(checkpoint_exit_code=70)))
    assert job.checkpoint_exit == 70
    with pytest.raises(UsageError, match="criu"):
        _new(JobSpec(command="x", cwd="/", checkpoint="criu"))


def test_the_agent_is_told_the_signals_and_an_old_agent_is_sent_none_it_does_not_know() -> None:
    fields = checkpoint.start_fields("USR2@60", "USR1@600", 85, 1)
    assert fields == {"warn_signal": USR2, "warn_before": 60.0, "checkpoint_signal": USR1,
                      "checkpoint_every": 600.0, "checkpoint_exit": 85, "append_output": True}
    base = dict(id=1, name="x", user="a", uid=1, queue="q", command="x", script=None, cwd="/", env={}, output="",
                keep_script=False, cpu=1.0, mem_mb=32.0)
    plain = StartJob(**base).model_dump()  # type: ignore[arg-type]
    assert not set(fields) & set(plain)
    sent = StartJob(**base, **fields).model_dump()  # type: ignore[arg-type]
    assert {k: sent[k] for k in fields} == fields
    assert checkpoint.start_fields("", "USR1", 85, 0) == {"checkpoint_signal": USR1, "checkpoint_every": None,
                                                          "checkpoint_exit": 85}


# ---------------------------------------------------------------- the agent's enforcer sends them


def _use(job: int, limits: Limits, wall: float) -> Usage:
    return Usage(wall)


def test_the_warning_comes_so_long_before_the_time_limit_once() -> None:
    e = Enforcer(grace=10.0)
    e.watch(1, Limits(time=100.0), started=0.0, notices=Notices(warn=USR1, warn_before=30.0))
    assert e.busy()
    assert e.tick(69.0, _use) == []
    assert e.tick(70.0, _use) == [Notify(1, USR1, "a warning before its time limit")]
    assert e.tick(71.0, _use) == []  # once
    assert not e.stopping(1)  # a warning does not stop it
    assert e.tick(100.5, _use) == [Term(1, "exceeded its time limit of 0:01:40")]


def test_a_new_time_limit_is_warned_of_again() -> None:
    e = Enforcer(grace=10.0)
    e.watch(1, Limits(time=100.0), started=0.0, notices=Notices(warn=USR1, warn_before=30.0))
    assert len(e.tick(75.0, _use)) == 1
    e.relimit(1, Limits(time=200.0), 0.0)
    assert e.tick(100.5, _use) == []
    assert e.tick(170.0, _use) == [Notify(1, USR1, "a warning before its time limit")]


def test_checkpoints_every_interval_and_the_grace_before_the_time_limit() -> None:
    e = Enforcer(grace=10.0)
    e.watch(1, Limits(time=100.0), started=0.0, notices=Notices(checkpoint=USR2, every=40.0))
    e.watch(2, Limits(), started=0.0, notices=Notices(checkpoint=USR1, every=25.0))  # no limit: kept for its clock
    assert e.busy()
    assert e.tick(24.0, _use) == []
    assert e.tick(25.0, _use) == [Notify(2, USR1, "checkpoint")]
    assert e.tick(40.0, _use) == [Notify(1, USR2, "checkpoint")]
    assert e.tick(50.0, _use) == [Notify(2, USR1, "checkpoint")]
    assert e.tick(80.0, _use) == [Notify(1, USR2, "checkpoint"), Notify(2, USR1, "checkpoint")]
    assert e.tick(90.0, _use) == [Notify(1, USR2, "checkpoint before its time limit")]  # 100 - the grace
    assert e.tick(99.0, _use) == []  # its interval starts again from that one
    assert e.tick(100.5, _use)[0] == Term(1, "exceeded its time limit of 0:01:40")
    assert e.tick(111.0, _use)[0] == Kill(1)


def test_a_job_told_only_before_its_time_limit() -> None:
    e = Enforcer(grace=5.0)
    e.watch(1, Limits(time=60.0), 0.0, Notices(checkpoint=USR1))
    assert e.tick(54.0, _use) == []
    assert e.tick(55.0, _use) == [Notify(1, USR1, "checkpoint before its time limit")]
    assert e.tick(59.0, _use) == []
    e.watch(2, Limits(), 0.0, Notices(checkpoint=USR1))  # no limit, no interval: nothing to tell it
    assert e.tick(1e6, _use) == [Term(1, "exceeded its time limit of 0:01:00")]


# ---------------------------------------------------------------- the server's rule: checkpointed -> queued again


def _state() -> ServerState:
    state = ServerState(Config())
    info = NodeInfo(name="n1", hostname="n1", cpus=4, mem_mb=4096)
    state.handle(NodeUp(info, "10.0.0.1", 0, (), (), T0))
    return state


def _of(todo: Sequence[Instruction], kind: type[Ins]) -> list[Ins]:
    return [i for i in todo if isinstance(i, kind)]


def _run(state: ServerState, job: Job, now: float) -> None:
    started = [j.id for s in _of(state.handle(SchedulePass(now)), StartJobs) for j in s.jobs]
    assert started == [job.id]
    state.handle(JobsStarted("n1", (JobStarted(id=job.id, pid=10, time=now),)))


def _running(state: ServerState, ckpt: str = "USR1@60", retries: int = 0, code: int = 85) -> Job:
    job = Job(id=state.new_id(), user="alice", uid=1000, origin=Origin.BATCH, state=JobState.QUEUED, command="x",
              cwd="/", submitted=T0, checkpoint=ckpt, checkpoint_exit=code, retries=retries)
    state.handle(Submitted((job,), known={}))
    _run(state, job, T0 + 1)
    return job


def _exit(state: ServerState, job: Job, code: int | None, now: float, signal: int | None = None,
          reason: str = "") -> list[Instruction]:
    e = JobExit(id=job.id, exit_code=code, signal=signal, time=now, reason=reason, cpu_time=3.0)
    return state.handle(JobsExited("n1", (e,), now))


def test_a_run_that_checkpointed_is_queued_again_not_failed() -> None:
    state = _state()
    job = _running(state)
    todo = _exit(state, job, 85, T0 + 10)
    assert _of(todo, JobEnded) == [] and job.state is JobState.QUEUED
    assert (job.restarts, job.checkpoints, job.node, job.started) == (1, 1, "", None)
    assert job.id in {j.id for c in _of(todo, Commit) for j in c.jobs}  # durable before the ack
    assert _of(todo, StartJobs) == []  # the same node keeps the exit until it has the ack
    ack = todo.index(Send("n1", Ack(ids=[job.id])))
    assert todo[ack + 1] == Requeue((job,))
    assert "checkpointed (exit 85)" in job.reason
    assert state.handle(Requeued((job,))) == [Wake()]
    _run(state, job, T0 + 11)  # the same id runs again (restart 1: WULF_RESTART_COUNT=1, output appended)
    fields = checkpoint.start_fields(job.warn_signal, job.checkpoint, job.checkpoint_exit, job.checkpoints)
    assert fields["append_output"] is True
    todo = _exit(state, job, 0, T0 + 20)
    assert [i.job for i in _of(todo, JobEnded)] == [job] and job.state is JobState.DONE
    assert (job.restarts, job.checkpoints, job.public(T0)["attempts"]) == (1, 1, 2)
    row = acct_row(job)
    assert (row["attempts"], row["checkpoints"], row["state"]) == (2, 1, "done")


def test_a_checkpoint_after_the_time_limit_signal_still_counts() -> None:
    """The job got its checkpoint signal, then TERM at its limit, saved and exited 85: queued again."""
    state = _state()
    job = _running(state)
    _exit(state, job, 85, T0 + 10, reason="exceeded its time limit of 0:01:00")
    assert job.state is JobState.QUEUED and job.checkpoints == 1


@pytest.mark.parametrize(("ckpt", "code", "signal", "expected"), [
    ("", 85, None, JobState.FAILED),  # no --checkpoint: 85 is a failure like any other
    ("USR1", 84, None, JobState.FAILED),  # not its checkpoint code
    ("USR1", None, 9, JobState.FAILED),  # killed
    ("USR1", 0, None, JobState.DONE),
])
def test_only_a_checkpoint_job_exiting_with_its_code_is_queued_again(ckpt: str, code: int | None, signal: int | None,
                                                                     expected: JobState) -> None:
    state = _state()
    job = _running(state, ckpt)
    todo = _exit(state, job, code, T0 + 10, signal=signal)
    assert job.state is expected and [i.job.id for i in _of(todo, JobEnded)] == [job.id]
    assert job.checkpoints == 0


def test_the_jobs_own_exit_code_is_the_one() -> None:
    state = _state()
    job = _running(state, code=42)
    _exit(state, job, 42, T0 + 10)
    assert job.state is JobState.QUEUED and job.checkpoints == 1


def test_checkpoints_do_not_use_up_retries() -> None:
    state = _state()
    job = _running(state, retries=1)
    for i in range(3):  # checkpointed three times: still one retry left
        _exit(state, job, 85, T0 + 10 + 10 * i)
        state.handle(Requeued((job,)))
        _run(state, job, T0 + 15 + 10 * i)
    assert (job.restarts, job.checkpoints) == (3, 3)
    _exit(state, job, 1, T0 + 50)  # a failure: retried (its one retry)
    assert job.state is JobState.QUEUED and job.reason.startswith("queued again after attempt 1 of 2 failed")
    state.handle(Requeued((job,)))
    _run(state, job, T0 + 55)
    todo = _exit(state, job, 1, T0 + 60)  # failed again: no retry left
    assert job.state is JobState.FAILED and [i.job.id for i in _of(todo, JobEnded)] == [job.id]
    assert (job.restarts, job.checkpoints) == (4, 3)


def test_the_python_api_takes_them_as_qr_does() -> None:
    from wulf.api.spec import Options, common

    out = common(Options(cwd="/", signal="usr1@1:00", checkpoint="USR2@10"))
    assert (out["warn_signal"], out["checkpoint"]) == ("USR1@60", "USR2@10")
    with pytest.raises(UsageError, match="cannot be caught"):
        common(Options(cwd="/", checkpoint="KILL"))
