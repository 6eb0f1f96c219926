"""jtail and GET /api/v1/jobs/{id}/output, end to end: a job's output read through its node's agent,
as the job's owner, by its owner (and administrators) only."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from users import User, Users
from wulf.errors import Refused
from wulfproc import BIN, Cluster, running_cluster, wait_until


def jtail(c: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return c.run("jtail", *args, check=False)


def test_jtail_shows_a_running_jobs_output(cluster: Cluster) -> None:
    [jid] = cluster.submit("-c", "i=1; while [ $i -le 30 ]; do echo line $i; i=$((i+1)); done; sleep 60")
    try:
        # (a loaded machine may keep it waiting for room a while)
        wait_until("the job's 30 lines", lambda: jtail(cluster, "-n", "3", str(jid)).stdout == "line 28\nline 29\nline 30\n",
                   timeout=90)
        assert jtail(cluster, str(jid)).stdout == "".join(f"line {i}\n" for i in range(21, 31))  # 10 by default
        assert jtail(cluster, "-c", "10", str(jid)).stdout == "9\nline 30\n"
        assert jtail(cluster, "-n", "100", str(jid)).stdout == "".join(f"line {i}\n" for i in range(1, 31))
        client = cluster.client()
        try:
            reply = client.output(jid, 0, 7)  # the Python API
        finally:
            client.close()
        assert (reply["data"], reply["offset"], reply["next"], reply["ended"]) == (b"line 1\n", 0, 7, False)
        assert reply["size"] == len("".join(f"line {i}\n" for i in range(1, 31)))
        assert reply["state"] == "running"
    finally:
        cluster.run("qcancel", str(jid))


def test_jtail_follows_until_the_job_ends(cluster: Cluster) -> None:
    go = cluster.work / "go"
    [jid] = cluster.submit("-c", f"echo start; while [ ! -e '{go}' ]; do sleep 0.1; done; echo middle; sleep 1; "
                                 "echo end; exit 3")
    seen = cluster.root / "followed"
    with open(seen, "wb") as out:
        follower = subprocess.Popen([str(BIN / "jtail"), "-f", str(jid)], stdout=out, stderr=subprocess.PIPE,
                                    env=cluster.env)
    try:
        wait_until("jtail -f to show the start", lambda: seen.read_bytes() == b"start\n", timeout=90)
        assert follower.poll() is None  # it goes on following
        go.touch()
        assert follower.wait(timeout=60) == 0  # the job ended (exit 3): jtail ends, 0
        assert seen.read_bytes() == b"start\nmiddle\nend\n"
        assert cluster.job(jid)["state"] == "failed"
    finally:
        follower.kill()
        follower.wait()
        assert follower.stderr is not None
        follower.stderr.close()
    done = jtail(cluster, "-f", str(jid))  # an ended job whose file is there: shown, then jtail ends
    assert (done.returncode, done.stdout) == (0, "start\nmiddle\nend\n")


def test_jtail_of_a_job_that_waits_or_never_ran(cluster: Cluster) -> None:
    [jid] = cluster.submit("--constraint", "arch=nowhere", "-c", "echo hi")  # no node fits: it waits
    p = jtail(cluster, str(jid))
    assert (p.returncode, p.stdout) == (0, "")
    assert p.stderr.strip() == f"jtail: job {jid} is queued: it has no output yet"
    cluster.run("qcancel", str(jid))
    p = jtail(cluster, str(jid))
    assert p.returncode == 4 and p.stderr.strip() == f"jtail: job {jid} never ran (cancelled): it has no output"
    p = jtail(cluster, "-n", "x", str(jid))
    assert p.returncode == 2 and p.stderr.count("\n") == 1
    p = jtail(cluster, "999999")
    assert p.returncode == 4 and "no job 999999" in p.stderr


@pytest.fixture
def owners(shared_tmp: Path, users: Users) -> Iterator[Cluster]:
    with running_cluster(shared_tmp, config=f'[server]\nadmin_group = "{users.admins}"\n') as c:
        c.agent("n1", cpus=4)
        yield c


def home(c: Cluster, user: User) -> Path:
    d = c.root / f"{user.name}-work"
    d.mkdir()
    os.chown(d, user.uid, user.gid)
    d.chmod(0o700)
    return d


def submit_as(c: Cluster, user: User, cwd: Path, command: str) -> int:
    p = c.run_as(user, "qr", "--json", "-c", command, cwd=cwd)
    [jid] = json.loads(p.stdout)["jobs"]
    return int(jid)


def test_only_the_owner_and_administrators_read_a_jobs_output(owners: Cluster, users: Users) -> None:
    alice, bob, carol = users.alice, users.bob, users.carol
    jid = submit_as(owners, alice, home(owners, alice), "echo private; sleep 60")
    try:
        wait_until("alice to read her job's output",
                   lambda: owners.run_as(alice, "jtail", str(jid), check=False).stdout == "private\n", timeout=90)
        p = owners.run_as(bob, "jtail", str(jid), check=False)
        assert (p.returncode, p.stdout) == (5, "")
        assert p.stderr.strip() == (f"jtail: job {jid} belongs to {alice.name}, not to {bob.name}: only its owner "
                                    "or an administrator may read the output of it")
        assert owners.run_as(carol, "jtail", str(jid)).stdout == "private\n"  # an administrator: audited
        audit = [json.loads(line) for line in (owners.state / "audit.jsonl").read_text().splitlines()]
        assert [(a["who"], a["action"], a["target"], a["result"]) for a in audit if a["action"] == "read output"] \
            == [(carol.name, "read output", f"job {jid} ({alice.name})", "ok")]
    finally:
        owners.run("qcancel", str(jid))


def test_a_link_planted_as_the_output_is_not_followed(owners: Cluster, users: Users) -> None:
    """The job replaces its output file with a link to a file only root may read: jtail (of the owner,
    or of root) shows nothing of it. A FIFO in its place does not hang the agent either."""
    alice = users.alice
    secret = owners.root / "secret"
    secret.write_text("TOPSECRET\n")
    secret.chmod(0o600)  # root's alone
    d = home(owners, alice)
    linked = submit_as(owners, alice, d, f'echo before; out="wulf-$WULF_JOB_ID.out"; rm -f "$out"; '
                                         f'ln -s {secret} "$out"; touch planted; sleep 60')
    fifo = submit_as(owners, alice, d, 'out="wulf-$WULF_JOB_ID.out"; rm -f "$out"; mkfifo "$out"; sleep 60')
    try:
        wait_until("the link to be planted", lambda: (d / "planted").exists(), timeout=90)
        assert (d / f"wulf-{linked}.out").is_symlink()
        for p in (owners.run_as(alice, "jtail", "-c", "100", str(linked), check=False),
                  owners.run("jtail", "-c", "100", str(linked), check=False)):  # root: still read as alice
            assert "TOPSECRET" not in p.stdout + p.stderr
            assert (p.returncode, p.stdout) == (5, "")
            assert "is a symbolic link, which is not followed" in p.stderr, p.stderr
        client = owners.client()
        with pytest.raises(Refused) as refused:  # the API, as root
            client.output(linked)
        client.close()
        assert "TOPSECRET" not in refused.value.message and "symbolic link" in refused.value.message
        wait_until("the FIFO", lambda: (d / f"wulf-{fifo}.out").is_fifo(), timeout=90)
        p = owners.run_as(alice, "jtail", str(fifo), check=False)
        assert (p.returncode, p.stdout) == (5, "") and "is not a regular file" in p.stderr, p.stderr
    finally:
        owners.run("qcancel", str(linked), str(fifo))


def test_jtail_of_a_job_whose_node_is_down(cluster: Cluster) -> None:
    [jid] = cluster.submit("-c", "echo hi; sleep 120")
    wait_until("it to run", lambda: cluster.job(jid)["pid"], timeout=90)
    cluster.agents["n1"].kill(signal.SIGTERM)  # the agent stops; its job goes on (killed at the test's end)
    cluster.wait_node("n1", "down")
    p = jtail(cluster, str(jid))
    assert (p.returncode, p.stdout) == (5, "")
    assert p.stderr.strip() == f"jtail: node n1 is down: job {jid}'s output cannot be read now"


def test_jtail_of_the_first_task_of_an_array(cluster: Cluster) -> None:
    """The first task's id is its array's: jtail of it shows that task's output (the server once took it
    for all the array's tasks and answered 500)."""
    [array] = cluster.submit("--array", "1-2", "-c", "echo task $WULF_ARRAY_TASK_ID")
    cluster.run("qwait", str(array))
    for jid, text in ((array, "task 1\n"), (array + 1, "task 2\n")):
        p = jtail(cluster, str(jid))
        assert (p.returncode, p.stdout, p.stderr) == (0, text, "")
