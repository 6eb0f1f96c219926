"""Jobs run as their owners, end to end: real users submit with the real commands; the agent (root)
starts their jobs with their ids, groups, environment, umask and directory; an agent that is not root
runs only its own user's jobs.
"""

from __future__ import annotations

import grp
import json
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from users import User, Users
from wulf.agent.cgroups import detect
from wulfproc import Cluster, running_cluster, wait_until

REPORT = ("id -u; id -g; id -G; umask; echo \"$HOME|$USER|$LOGNAME|$SHELL\"; pwd; echo \"[$MYVAR][$OTHER]\"; "
          "touch made; cat /proc/self/cgroup")


@pytest.fixture
def owners(shared_tmp: Path, users: Users) -> Iterator[Cluster]:
    with running_cluster(shared_tmp) as c:
        c.agent("n1", cpus=4)
        yield c


def home(c: Cluster, user: User, name: str = "work", mode: int = 0o700) -> Path:
    """A directory of ``user``'s own (only they may enter it)."""
    d = c.root / f"{user.name}-{name}"
    d.mkdir()
    os.chown(d, user.uid, user.gid)
    d.chmod(mode)
    return d


def run_and_wait(c: Cluster, user: User, cwd: Path, *args: str, env: dict[str, str] | None = None,
                 umask: int | None = None) -> dict[str, object]:
    p = c.run_as(user, "qr", "--json", *args, cwd=cwd, env=env, umask=umask)
    [jid] = json.loads(p.stdout)["jobs"]
    c.run("qwait", str(jid), check=False)
    return c.job(jid)


def test_a_job_runs_as_its_owner(owners: Cluster, users: Users) -> None:
    alice = users.alice
    d = home(owners, alice)
    job = run_and_wait(owners, alice, d, "-c", REPORT, env={"MYVAR": "mine", "OTHER": "too"}, umask=0o027)
    assert job["state"] == "done", job
    out = d / f"wulf-{job['id']}.out"
    lines = out.read_text().splitlines()
    extra = grp.getgrnam(users.extra).gr_gid
    assert lines[0] == str(alice.uid) and lines[1] == str(alice.gid)
    assert set(map(int, lines[2].split())) == {alice.gid, extra}  # supplementary groups too
    assert lines[3] == "0027"
    assert lines[4] == f"{alice.home}|{alice.name}|{alice.name}|/bin/sh"
    assert lines[5] == str(d)
    assert lines[6] == "[mine][too]"  # the environment qr was called with
    for f in (out, d / "made"):
        st = f.stat()
        assert (st.st_uid, st.st_gid) == (alice.uid, alice.gid), f
        assert stat.S_IMODE(st.st_mode) == 0o640, f  # her umask
    if detect() is not None:  # in its own cgroup, joined before it ran anything
        assert any(f"/job-{job['id']}" in line for line in lines[7:]), lines[7:]


def test_qr_env_narrows_the_environment(owners: Cluster, users: Users) -> None:
    alice = users.alice
    d = home(owners, alice)
    env = {"MYVAR": "mine", "OTHER": "too"}
    job = run_and_wait(owners, alice, d, "--env", "NONE", "-c", "env | sort", env=env)
    seen = dict(line.split("=", 1) for line in (d / f"wulf-{job['id']}.out").read_text().splitlines() if "=" in line)
    assert "MYVAR" not in seen and "OTHER" not in seen
    assert seen["USER"] == alice.name and seen["HOME"] == alice.home and seen["WULF_JOB_ID"] == str(job["id"])
    job = run_and_wait(owners, alice, d, "--env", "MYVAR,EXTRA=x", "-c", 'echo "[$MYVAR][$OTHER][$EXTRA]"', env=env)
    assert (d / f"wulf-{job['id']}.out").read_text() == "[mine][][x]\n"


def test_nobody_writes_where_they_may_not(owners: Cluster, users: Users) -> None:
    alice, bob = users.alice, users.bob
    mine = home(owners, alice)
    shared = home(owners, bob, "shared", 0o755)  # bob's, which alice may read but not write
    job = run_and_wait(owners, alice, shared, "-c", "echo hi")
    assert job["state"] == "failed"
    assert str(job["reason"]).startswith("could not start: ") and "Permission denied" in str(job["reason"])
    assert not (shared / f"wulf-{job['id']}.out").exists()
    # the output path is opened as the owner: -o cannot reach into another's directory either
    job = run_and_wait(owners, bob, shared, "-o", str(mine / "stolen.out"), "-c", "echo hi")
    assert job["state"] == "failed" and not (mine / "stolen.out").exists()


def test_jr_runs_as_its_owner(owners: Cluster, users: Users) -> None:
    alice = users.alice
    d = home(owners, alice)
    p = owners.run_as(alice, "jr", "sh", "-c", "id -u; pwd; echo $USER", cwd=d)
    assert p.stdout.splitlines() == [str(alice.uid), str(d), alice.name]


def test_an_agent_that_is_not_root_runs_only_its_users_jobs(shared_tmp: Path, users: Users) -> None:
    alice, bob = users.alice, users.bob
    with running_cluster(shared_tmp) as c:
        key = shared_tmp / "alice.key"  # alice's copy of the key: her agent vouches for nobody but her
        shutil.copyfile(c.key_path, key)
        os.chown(key, alice.uid, alice.gid)
        key.chmod(0o600)
        state = home(c, alice, "agent")
        c.agents["mine"] = c.spawn_as(alice, "wulf", "agent", "--server", c.url, "--name", "mine", "--cpus", "2",
                                      "--state", str(state), "--key", str(key), "--socket", "",
                                      "--interval", "0.5")
        c.wait_node("mine")
        d, theirs = home(c, alice), home(c, bob)
        job = run_and_wait(c, alice, d, "-c", "id -u")
        assert job["state"] == "done" and (d / f"wulf-{job['id']}.out").read_text() == f"{alice.uid}\n"
        # bob's job is not sent there: it waits, saying why (the agent would refuse it: see test_agent_owner)
        why = (f"no node runs {bob.name}'s jobs: the agents run as {alice.name}, not as root, and so run only "
               f"their own user's jobs")
        [jid] = json.loads(c.run_as(bob, "qr", "--json", "-c", "id -u", cwd=theirs).stdout)["jobs"]
        wait_until("bob's job to say why it waits", lambda: c.job(jid)["reason"] == why)
        assert c.job(jid)["state"] == "queued"
        c.run_as(bob, "qcancel", str(jid))
        p = c.run_as(bob, "jr", "id", cwd=theirs, check=False)
        assert p.returncode == 5 and p.stderr.strip().endswith(why), p.stderr
