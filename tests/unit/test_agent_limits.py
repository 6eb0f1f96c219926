"""Run-time limits: which one a job went over, the reasons users read, and the job shell's prologue."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from wulf.agent.launcher import build_launch, join_lines, prologue, run_line
from wulf.agent.limits import (
    CPU_BACKSTOP_MARGIN,
    Limits,
    Usage,
    exceeded,
    exit_reason,
    hms,
    rlimit_lines,
)
from wulf.protocol import StartJob


def _job(**kw: Any) -> StartJob:
    base: dict[str, Any] = dict(id=7, name="j", user="u", uid=1000, queue="default", command="echo hi", script=None,
                                cwd="/tmp", env={}, output="", keep_script=False, cpu=1.0, mem_mb=32.0)
    base.update(kw)
    return StartJob(**base)


def test_hms() -> None:
    assert hms(2) == "0:00:02"
    assert hms(3725) == "1:02:05"
    assert hms(100 * 3600) == "100:00:00"
    assert hms(1.5) == "0:00:01.5"


def test_limits_of_a_job() -> None:
    assert not Limits.of(_job())
    limits = Limits.of(_job(time_limit=60.0, cputime_limit=30.0, mem_limit_mb=100.0))
    assert limits == Limits(60.0, 30.0, 100.0) and limits
    assert not Limits.of(_job(time_limit=0.0, cputime_limit=-1.0, mem_limit_mb=0.0))


@pytest.mark.parametrize(
    ("limits", "usage", "reason"),
    [
        (Limits(), Usage(1e9, 1e9, 1e9), None),
        (Limits(time=2.0), Usage(1.9), None),
        (Limits(time=2.0), Usage(2.1), "exceeded its time limit of 0:00:02"),
        (Limits(cpu=5.0), Usage(100.0, cpu=4.9), None),
        (Limits(cpu=5.0), Usage(1.0, cpu=5.2), "exceeded its cpu time limit of 0:00:05"),
        (Limits(cpu=5.0), Usage(1.0), None),  # not measured: no decision
        (Limits(mem_mb=100.0), Usage(1.0, mem_mb=99.0), None),
        (Limits(mem_mb=100.0), Usage(1.0, mem_mb=100.5), "exceeded its memory limit of 100 MB"),
        (Limits(mem_mb=100.0), Usage(1.0, oom_kills=1), "exceeded its memory limit of 100 MB"),
        (Limits(mem_mb=0.5), Usage(1.0, mem_mb=1.0), "exceeded its memory limit of 0.5 MB"),
        (Limits(), Usage(1.0, oom_kills=3), None),  # no limit of its own: not its fault
        # several at once: memory, then cpu, then time
        (Limits(2.0, 5.0, 100.0), Usage(9.0, 9.0, 200.0), "exceeded its memory limit of 100 MB"),
        (Limits(2.0, 5.0, 100.0), Usage(9.0, 9.0, 50.0), "exceeded its cpu time limit of 0:00:05"),
    ],
)
def test_exceeded(limits: Limits, usage: Usage, reason: str | None) -> None:
    assert exceeded(limits, usage) == reason


def test_exit_reason() -> None:
    mem = Limits(mem_mb=50.0)
    assert exit_reason(mem, 0.1, oom_kills=1, succeeded=False) == "exceeded its memory limit of 50 MB"
    assert exit_reason(mem, 0.1, oom_kills=1, succeeded=True) == "exceeded its memory limit of 50 MB"
    assert exit_reason(mem, 0.1, oom_kills=0, succeeded=False) is None
    cpu = Limits(cpu=10.0)
    assert exit_reason(cpu, 15.0, 0, succeeded=False) == "exceeded its cpu time limit of 0:00:10"
    assert exit_reason(cpu, 15.0, 0, succeeded=True) is None  # it finished on its own
    assert exit_reason(cpu, 5.0, 0, succeeded=False) is None
    assert exit_reason(Limits(), 1e6, 5, succeeded=False) is None


def test_rlimit_lines() -> None:
    assert rlimit_lines(Limits(), memory=True) == []
    assert rlimit_lines(Limits(cpu=1.5, mem_mb=100.0), memory=False) == [
        f"ulimit -t {2 + CPU_BACKSTOP_MARGIN} 2>/dev/null"
    ]
    assert rlimit_lines(Limits(mem_mb=100.0), memory=True) == ["ulimit -v 102400 2>/dev/null"]


# ---------------------------------------------------------------- the prologue


def test_prologue_without_cgroup_or_limits() -> None:
    text = prologue(_job(cwd="/some dir"))
    assert text == "umask 0022\ncd -- '/some dir' || exit 1\n"


def test_the_supervisor_runs_the_job_in_a_session_of_its_own_and_keeps_its_status() -> None:
    line = run_line(_job(command="exec x"), None)
    assert line.endswith(' -c "$1" 8>&- 9<&-; _wulf_rc=$?; echo "$_wulf_rc" >&8; exit "$_wulf_rc"')
    assert "exec x" not in line  # the command is the supervisor's $1, never quoted into its text
    assert run_line(_job(script="#!/bin/bash\n"), "/s/wulf-7.script").split()[1] == "/s/wulf-7.script"


def test_prologue_without_cgroup_takes_rlimits() -> None:
    lines = join_lines(_job(cputime_limit=60.0, mem_limit_mb=10.0), [])
    assert lines == [f"ulimit -t {60 + CPU_BACKSTOP_MARGIN} 2>/dev/null", "ulimit -v 10240 2>/dev/null"]


def test_prologue_joins_every_hierarchy_first() -> None:
    job = _job(mem_limit_mb=10.0, cputime_limit=60.0)
    text = prologue(job, ["/cg/memory/wulf/g/job-7/cgroup.procs", "/cg/cpu acct/job-7/cgroup.procs"])
    first, *rest = text.splitlines()
    assert first.startswith(
        "{ echo $$ > /cg/memory/wulf/g/job-7/cgroup.procs && echo $$ > '/cg/cpu acct/job-7/cgroup.procs'; }"
        " 2>/dev/null || { echo 'wulf: job 7 could not join its cgroup"
    )
    assert first.endswith("; ulimit -v 10240 2>/dev/null; }")  # the memory rlimit only when it fails
    assert rest[0] == f"ulimit -t {60 + CPU_BACKSTOP_MARGIN} 2>/dev/null"
    assert rest[1] == "umask 0022"
    assert rest[2].startswith("cd -- ")


def _run(launch_argv: list[str], rc: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a supervisor as the agent does: its exit-status file as fd 8."""
    argv = ["/bin/sh", "-c", 'exec 8>"$0"; exec "$@"', str(rc or os.devnull), *launch_argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def test_the_shell_joins_its_cgroup(tmp_path: Path) -> None:
    procs = [tmp_path / "a.procs", tmp_path / "b.procs"]  # stand-ins: plain files take the pid too
    launch = build_launch(_job(command="echo $PPID", cwd=str(tmp_path)), str(tmp_path), str(tmp_path),
                          [str(p) for p in procs])
    p = _run(launch.argv, Path(launch.rc_file))
    assert p.returncode == 0 and p.stderr == ""
    pid = p.stdout.strip()
    assert [f.read_text().strip() for f in procs] == [pid, pid]
    assert Path(launch.rc_file).read_text().strip() == "0"


def test_a_shell_that_cannot_join_runs_anyway_under_rlimits(tmp_path: Path) -> None:
    missing = tmp_path / "gone" / "cgroup.procs"
    job = _job(command="ulimit -v; echo ran", cwd=str(tmp_path), mem_limit_mb=4096.0)
    p = _run(build_launch(job, str(tmp_path), str(tmp_path), [str(missing)]).argv)
    assert p.returncode == 0
    assert p.stdout == f"{4096 * 1024}\nran\n"
    assert p.stderr == "wulf: job 7 could not join its cgroup; its limits are enforced without it\n"
