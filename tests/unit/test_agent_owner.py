"""Whom a job runs as, and what its shell does first when it runs as its owner (pure parts)."""

from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path
from typing import Any

import pytest

from wulf.agent import launcher
from wulf.agent.owner import CannotRun, Owner, owner_of, umask_of
from wulf.protocol import StartJob

ALICE = pwd.struct_passwd(("alice", "x", 1000, 100, "Alice", "/home/alice", "/bin/zsh"))


def _job(**kw: Any) -> StartJob:
    base: dict[str, Any] = dict(id=7, name="j", user="alice", uid=1000, queue="default", command="echo hi",
                                script=None, cwd="/tmp", env={}, output="", keep_script=False, cpu=1.0, mem_mb=32.0)
    base.update(kw)
    return StartJob(**base)


def _getpwuid(uid: int) -> pwd.struct_passwd:
    if uid == 1000:
        return ALICE
    raise KeyError(uid)


def _groups(name: str, gid: int) -> list[int]:
    return [gid, 200, 300]


def owner(job: StartJob, agent_uid: int) -> Owner | None:
    return owner_of(job, "n7", agent_uid, _getpwuid, _groups)


def test_a_root_agent_runs_a_job_as_its_owner() -> None:
    o = owner(_job(), 0)
    assert o == Owner(1000, 100, (100, 200, 300), "alice", "/home/alice", "/bin/zsh")
    assert o.env({"USER": "root", "HOME": "/root", "X": "1"}) == {
        "USER": "alice", "LOGNAME": "alice", "HOME": "/home/alice", "SHELL": "/bin/zsh", "X": "1"}


def test_the_group_submitted_with_if_it_is_still_theirs() -> None:
    assert owner(_job(gid=300), 0).gid == 300  # type: ignore[union-attr]
    assert owner(_job(gid=999), 0).gid == 100  # type: ignore[union-attr]  (no longer theirs: the primary)


def test_root_jobs_and_the_agents_own_user_need_no_change() -> None:
    assert owner(_job(uid=0, user="root"), 0) is None
    assert owner(_job(), 1000) is None


def test_a_non_root_agent_refuses_other_users_jobs() -> None:
    with pytest.raises(CannotRun, match="the agent of n7 runs as .*not as root, so it runs only .*this one is alice's"):
        owner(_job(), 1001)


def test_a_user_unknown_on_the_node_is_refused() -> None:
    with pytest.raises(CannotRun, match=r"bob \(uid 2000\) is not a user on n7"):
        owner(_job(uid=2000, user="bob"), 0)


def test_umask() -> None:
    assert umask_of(_job()) == 0o022 and umask_of(_job(umask=0o077)) == 0o077


def test_the_owners_shell_waits_for_its_cgroup_then_opens_its_output_as_itself() -> None:
    text = launcher.owner_prologue(_job(cwd="/w d", umask=0o027, mem_limit_mb=10.0), in_cgroup=True)
    lines = text.splitlines()
    assert lines[:5] == ["read _wulf_joined || :", "exec </dev/null 8>&1", "umask 0027", "cd -- '/w d' || exit 1",
                         "exec >'/w d/wulf-7.out' 2>&1"]
    assert lines[5].startswith('[ "$_wulf_joined" = 1 ] || { echo ') and "ulimit -v 10240" in lines[5]
    assert lines[-1] == "unset _wulf_joined"
    with_env = launcher.owner_prologue(_job(), in_cgroup=True, env_fd=True).splitlines()
    assert with_env[-1] == ". /proc/self/fd/9"  # the job's environment, once the shell is its owner's
    no_cgroup = launcher.owner_prologue(_job(mem_limit_mb=10.0), in_cgroup=False).splitlines()
    assert "ulimit -v 10240 2>/dev/null" in no_cgroup and not any("_wulf_joined\" =" in x for x in no_cgroup)


def test_the_owners_shell_runs(tmp_path: Path) -> None:
    """The prologue as /bin/sh runs it: told it is in its cgroup, it runs the job; its exit status
    goes to fd 8; what it says before the output is open goes to stderr."""
    job = _job(cwd=str(tmp_path), command="echo out; exit 3", umask=0o077)
    launch = launcher.build_launch(job, str(tmp_path), str(tmp_path), ["/x"], Owner(0, 0, (), "r", "/", "/bin/sh"))
    rc = tmp_path / "7.rc"
    with open(rc, "w") as out, open(tmp_path / "7.err", "w") as err:
        p = subprocess.run(launch.argv, input=b"1\n", stdout=out, stderr=err)
    assert p.returncode == 3 and rc.read_text() == "3\n" and (tmp_path / "wulf-7.out").read_text() == "out\n"
    assert oct(os.stat(tmp_path / "wulf-7.out").st_mode & 0o777) == "0o600"
    assert launcher.start_error(str(tmp_path / "7.err")) == ""
    bad = _job(cwd=str(tmp_path / "missing"))
    launch = launcher.build_launch(bad, str(tmp_path), str(tmp_path), [], Owner(0, 0, (), "r", "/", "/bin/sh"))
    with open(rc, "w") as out, open(tmp_path / "7.err", "w") as err:
        p = subprocess.run(launch.argv, input=b"0\n", stdout=out, stderr=err)
    assert p.returncode == 1
    assert launcher.start_error(str(tmp_path / "7.err")).startswith("could not start: ")
    assert "missing" in launcher.start_error(str(tmp_path / "7.err"))


def test_a_script_is_staged_afresh_never_through_a_planted_link(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.write_text("keep me")
    job = _job(script="#!/bin/sh\necho hi\n")
    launch = launcher.build_launch(job, str(tmp_path), str(tmp_path))
    assert launch.script_file is not None
    Path(launch.script_file).symlink_to(target)
    launcher.stage_script(launch, job)
    assert target.read_text() == "keep me"
    assert not Path(launch.script_file).is_symlink() and Path(launch.script_file).read_text() == job.script
