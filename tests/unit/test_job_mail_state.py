"""Mail about one job (qr --mail-type/--mail-user): what the state machine asks for, where it goes, what it
says, and the directives of Slurm, PBS and Grid Engine that ask for it."""

from __future__ import annotations

from datetime import UTC

import pytest

from wulf.auth.identity import Caller
from wulf.cli.qr import _parser, build_specs
from wulf.compat.directives import read
from wulf.compat.request import DirectiveError, Where
from wulf.config import Config, MailConfig
from wulf.errors import UsageError
from wulf.model.job import Job, JobState, Origin
from wulf.model.mailtypes import parse_mail_types
from wulf.policy.settings import Policy
from wulf.protocol import JobExit, JobSpec, JobStarted, NodeInfo
from wulf.server import intake, jobmail
from wulf.server.events import CancelRequested, JobsExited, JobsStarted, NodeUp, SchedulePass, Submitted
from wulf.server.instructions import Commit, CommitSoon, Instruction, Mail
from wulf.server.state import ServerState

T0 = 1_000_000.0


def _state() -> ServerState:
    state = ServerState(Config())
    state.handle(NodeUp(NodeInfo(name="n1", hostname="n1", cpus=16, mem_mb=16384), "10.0.0.1", 0, (), (), T0))
    return state


def _job(state: ServerState, mail_type: str, to: str = "alice@example.org") -> Job:
    job = Job(id=state.new_id(), user="alice", uid=1000, origin=Origin.BATCH, state=JobState.QUEUED, command="x",
              name="sim", cwd="/", cpu_req=2.0, mem_req=400.0, cpu=2.0, mem_mb=400.0, submitted=T0,
              mail_type=mail_type, mail_user=to if mail_type else "")
    state.handle(Submitted((job,)))
    return job


def _mails(todo: list[Instruction]) -> list[tuple[str, int, str]]:
    return [(i.to, i.job.id, i.kind) for i in todo if isinstance(i, Mail)]


def _run(state: ServerState, job: Job) -> list[Instruction]:
    state.handle(SchedulePass(T0))
    assert job.state is JobState.RUNNING
    return state.handle(JobsStarted("n1", (JobStarted(id=job.id, pid=42, time=T0 + 1),)))


def _exit(state: ServerState, job: Job, code: int | None, reason: str = "") -> list[Instruction]:
    return state.handle(JobsExited("n1", (JobExit(id=job.id, exit_code=code, time=T0 + 61, cpu_time=60.0,
                                                  peak_mem_mb=100.0, reason=reason),), T0 + 61))


def test_begin_mails_when_the_job_starts_after_its_start_is_noted() -> None:
    state = _state()
    job = _job(state, "BEGIN,END")
    todo = _run(state, job)
    assert _mails(todo) == [("alice@example.org", job.id, "begin")]
    assert isinstance(todo[0], CommitSoon)
    assert _mails(_exit(state, job, 0)) == [("alice@example.org", job.id, "end")]


def test_end_mails_however_it_ends_after_the_commit() -> None:
    state = _state()
    done, failed, cancelled = (_job(state, "END") for _ in range(3))
    for job in (done, failed, cancelled):
        assert _mails(_run(state, job)) == []  # no BEGIN asked for
    todo = _exit(state, done, 0)
    assert _mails(todo) == [("alice@example.org", done.id, "end")]
    assert next(n for n, i in enumerate(todo) if isinstance(i, Commit)) < next(
        n for n, i in enumerate(todo) if isinstance(i, Mail))
    assert _mails(_exit(state, failed, 3)) == [("alice@example.org", failed.id, "end")]
    todo = state.handle(CancelRequested((cancelled,), "alice", T0 + 2))
    assert _mails(todo) == [("alice@example.org", cancelled.id, "end")]


def test_fail_mails_only_a_failure_and_once() -> None:
    state = _state()
    ok, bad, lost = (_job(state, "FAIL") for _ in range(3))
    both = _job(state, "END,FAIL")
    for job in (ok, bad, lost, both):
        _run(state, job)
    assert _mails(_exit(state, ok, 0)) == []
    assert _mails(_exit(state, bad, None, "killed: over its time limit")) == [("alice@example.org", bad.id, "end")]
    assert _mails(_exit(state, both, 1)) == [("alice@example.org", both.id, "end")]  # one mail, not two
    todo = state.handle(NodeUp(NodeInfo(name="n1", hostname="n1", cpus=16, mem_mb=16384), "10.0.0.1", 0, (), (),
                               T0 + 100))
    assert lost.state is JobState.FAILED  # lost: the node no longer knows it, a failure
    assert _mails(todo) == [("alice@example.org", lost.id, "end")]


def test_no_mail_unless_asked_and_none_for_outside_work() -> None:
    state = _state()
    plain = _job(state, "")
    _run(state, plain)
    assert _mails(_exit(state, plain, 0)) == []
    outside = Job(id=99, user="alice", uid=1000, origin=Origin.EXTERNAL, state=JobState.DONE, command="x",
                  mail_type="END", mail_user="alice@example.org")
    assert jobmail.on_end(outside) == [] and jobmail.on_start(outside) == []


def test_requeue_mails_when_asked() -> None:
    job = Job(id=5, user="alice", uid=1000, origin=Origin.BATCH, state=JobState.QUEUED, command="x",
              mail_type="REQUEUE", mail_user="a@b.org")
    assert jobmail.on_requeue(job) == [Mail("a@b.org", job, "requeue")]
    job.mail_type = "END"
    assert jobmail.on_requeue(job) == []


def test_mail_types() -> None:
    assert parse_mail_types("end,begin") == "BEGIN,END"
    assert parse_mail_types("ALL") == "BEGIN,END,FAIL,REQUEUE"
    assert parse_mail_types("ALL,ARRAY_TASKS") == "BEGIN,END,FAIL,REQUEUE,ARRAY_TASKS"
    assert parse_mail_types("NONE") == ""
    for bad in ("", "END,", "TIME_LIMIT", "begin end"):
        with pytest.raises(UsageError, match="--mail-type"):
            parse_mail_types(bad)


def _config(**mail: object) -> Config:
    return Config(mail=MailConfig(**mail))  # type: ignore[arg-type]


def test_where_it_goes() -> None:
    assert jobmail.resolve("END", "", "alice", _config(domain="example.org")) == ("END", "alice@example.org")
    assert jobmail.resolve("BEGIN", "", "alice", _config()) == ("BEGIN", "alice")  # delivered on the SMTP host
    assert jobmail.resolve("", "bob@example.org", "alice", _config()) == ("END", "bob@example.org")
    assert jobmail.resolve("NONE", "bob@example.org", "alice", _config()) == ("", "")
    assert jobmail.resolve("", "", "alice", _config(domain="example.org")) == ("", "")
    with pytest.raises(UsageError, match=r"^--mail-user: wulf mails only addresses in example.org"):
        jobmail.resolve("END", "eve@elsewhere.net", "alice", _config(allowed_domains=["example.org"]))
    with pytest.raises(UsageError, match="^--mail-user: bad mail address"):
        jobmail.resolve("END", "a@b.org, c@d.org", "alice", _config())


def test_a_submission_carries_its_mail() -> None:
    config = _config(domain="example.org")
    caller = Caller(user="alice", uid=1000, gid=1000, via="unix")
    job = intake.new_job(1, JobSpec(command="x", cwd="/", mail_type="begin,end"), caller, "", Origin.BATCH, T0,
                         config, Policy.from_config(config))
    assert (job.mail_type, job.mail_user) == ("BEGIN,END", "alice@example.org")
    with pytest.raises(UsageError, match="--mail-type"):
        intake.new_job(2, JobSpec(command="x", cwd="/", mail_type="SOMETIMES"), caller, "", Origin.BATCH, T0,
                       config, Policy.from_config(config))


def test_the_end_mail_says_what_it_used_against_what_it_asked() -> None:
    job = Job(id=42, user="alice", uid=1000, origin=Origin.BATCH, state=JobState.FAILED, command="./sim",
              name="sim", node="n3", cpu_req=2.0, mem_req=400.0, submitted=T0, started=T0 + 10, ended=T0 + 610,
              exit_code=3, cpu_time=300.0, peak_mem_mb=100.0, time_limit=1200.0, mail_type="END", mail_user="a@b.org")
    msg = jobmail.message("end", job.public(T0), "a@b.org", "wulf@head", "head", tz=UTC)
    assert msg["Subject"] == "wulf: job 42 (sim) failed (exit 3) on n3"
    text = msg.get_content()
    assert "cpu efficiency: 25.0% (0:05:00 of 0:20:00 core-walltime: 2 cpu x 0:10:00)" in text
    assert "memory:         100 MB at its peak, of 400 MB asked (25.0%)" in text
    assert "run time:       0:10:00 of a 0:20:00 limit (50.0%)" in text
    assert text.rstrip().endswith("-- wulf on head")
    begin = jobmail.message("begin", job.public(T0), "a@b.org", "wulf@head", "head", tz=UTC)
    assert begin["Subject"] == "wulf: job 42 (sim) began on n3" and "cpu efficiency" not in begin.get_content()
    assert begin["Message-ID"] != msg["Message-ID"]
    never = Job(id=43, user="alice", uid=1000, origin=Origin.BATCH, state=JobState.CANCELLED, command="x")
    assert "cpu efficiency: not known" in jobmail.message("end", never.public(T0), "a", "w", "h").get_content()


def _where() -> Where:
    return Where(submit_dir="/sub", home="/home/u", script_name="job.sh", user="u")


def test_the_directives_of_each_system_ask_for_mail() -> None:
    req = read("#SBATCH --mail-type=BEGIN,TIME_LIMIT_80,END\n#SBATCH --mail-user=a@b.org\n", _where())
    assert (req.mail_type, req.mail_user) == ("BEGIN,END", "a@b.org")
    assert [str(n) for n in req.notes] == ["#SBATCH --mail-type: wulf does not mail about "
                                           "TIME_LIMIT_80; the other types still mail"]
    assert not any(n.strict for n in req.notes)
    req = read("#PBS -m abe\n#PBS -M a@b.org,c@d.org\n", _where())
    assert (req.mail_type, req.mail_user) == ("FAIL,BEGIN,END", "a@b.org")
    assert read("#PBS -m n\n", _where()).mail_type == "NONE"
    req = read("#$ -m bes\n#$ -M me@x.org\n", _where())
    assert (req.mail_type, req.mail_user) == ("BEGIN,END", "me@x.org")
    with pytest.raises(DirectiveError, match="not a mail point"):
        read("#PBS -m q\n", _where())
    with pytest.raises(DirectiveError, match="not a mail type"):
        read("#SBATCH --mail-type=SOMETIMES\n", _where())


def test_qr_options_and_a_script_become_the_jobs_mail() -> None:
    args = _parser().parse_args(["--mail-type", "end,fail", "--mail-user", "a@b.org", "-c", "true"])
    [spec] = build_specs(args, "/sub")
    assert (spec["mail_type"], spec["mail_user"]) == ("END,FAIL", "a@b.org")
    args = _parser().parse_args(["--mail-type", "none", "-c", "true"])
    assert build_specs(args, "/sub")[0]["mail_type"] == "NONE"
    with pytest.raises(UsageError):
        build_specs(_parser().parse_args(["--mail-type", "often", "-c", "true"]), "/sub")
    args = _parser().parse_args(["--mail-user", "c@d.org"])  # the command line wins over the script
    [spec] = build_specs(args, "/sub", "#!/bin/sh\n#SBATCH --mail-type=ALL\n#SBATCH --mail-user=a@b.org\ntrue\n")
    assert (spec["mail_type"], spec["mail_user"]) == ("ALL", "c@d.org")


def test_where_a_job_mails_is_its_owners_to_know() -> None:
    from wulf.server import views

    job = Job(id=7, user="alice", uid=1000, origin=Origin.BATCH, state=JobState.QUEUED, command="x",
              mail_type="END", mail_user="alice@example.org")
    alice = Caller(user="alice", uid=1000, gid=1000, via="unix")
    bob = Caller(user="bob", uid=1001, gid=1001, via="unix")
    root = Caller(user="root", uid=0, gid=0, via="unix", admin=True)
    assert views.shown(job, bob, T0)["mail_user"] == ""
    assert views.listed(job, job.public(T0), bob)["mail_user"] == ""
    assert views.shown(job, bob, T0)["mail_type"] == "END"
    assert views.shown(job, alice, T0)["mail_user"] == views.shown(job, root, T0)["mail_user"] == "alice@example.org"
