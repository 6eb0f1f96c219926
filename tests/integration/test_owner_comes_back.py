"""A job leaves a workstation whose owner comes back (issue 13 §3), with the real server and two agents.

Both agents run on this machine and see all its processes, so "outside work on one node only" is made
so: the owner's cpu hog is started before the second node's agent, which is told to ignore it
(WULF_IGNORE_PIDS, as the test runner's own processes are ignored). Only the owner's own processes say
they are back, so other work on this shared machine does not.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

from programs import COUNTER
from users import Users
from wulfproc import busy_loop_of, running_cluster, wait_until


def _desk_of(owner: str, migrate: str, agent: str = "") -> str:
    """A configuration where node ``desk`` is ``owner``'s workstation, with these [migrate] settings (and
    [agent] ones); outside work counts from 0.02 cpu."""
    return (f'[nodes]\nowners = {{ desk = "{owner}" }}\n[migrate]\n{migrate}\n'
            f"[agent]\nexternal_min_cpu = 0.02\n{agent}")


def test_a_checkpointing_job_moves_off_a_workstation_when_its_owner_comes_back(shared_tmp: Path,
                                                                               users: Users) -> None:
    alice = users.alice
    config = _desk_of(alice.name, "busy_cpu = 0.3\nbusy_seconds = 2\ngrace_seconds = 600")
    with running_cluster(shared_tmp, config=config) as c:
        c.agent("desk", cpus=16)
        prog = c.work / "counter.py"
        prog.write_text(COUNTER)
        state = c.work / "moved.count"
        [jid] = c.submit("--checkpoint", "USR1", "-o", "moved.out",
                         "-c", f"trap '' USR1; exec python3 {prog} {state} 400")
        out = c.work / "moved.out"
        wait_until("the job to count on desk", lambda: out.exists() and "run 0 starts at 0" in out.read_text(),
                   timeout=60)
        assert c.job(jid)["node"] == "desk"
        hog = busy_loop_of(alice, shared_tmp)
        try:
            c.agent("spare", cpus=4, env_extra={"WULF_IGNORE_PIDS": f"{os.getpid()},{hog}"})
            wait_until("the job to run again on spare",
                       lambda: (j := c.job(jid))["node"] == "spare" and j["state"] == "running", timeout=90)
            c.run("qwait", str(jid), timeout=120)
        finally:
            os.kill(hog, signal.SIGKILL)
        job = c.job(jid)
        text = out.read_text()
        assert job["state"] == "done" and job["exit_code"] == 0 and job["node"] == "spare", (job, text, c.logs())
        runs = [(int(a), int(b)) for a, b in re.findall(r"run (\d+) starts at (\d+)", text)]
        saved = [int(n) for n in re.findall(r"saved (\d+) on signal 10", text)]
        assert runs[0] == (0, 0) and len(runs) == 2 and saved == [runs[1][1]] and 0 < saved[0] < 400, text
        assert "run 1 counted to 400" in text, text
        assert job["checkpoints"] == job["restarts"] == 1, job
        assert not list(c.work.glob(f"wulf-{jid}*")), "one output file"
        assert f"job {jid} on desk: checkpoint" in (c.root / "server.log").read_text()


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "T"


def test_a_plain_job_is_suspended_while_the_owner_is_starved_and_resumed_when_they_go(shared_tmp: Path,
                                                                                      users: Users) -> None:
    alice = users.alice
    # desk has half a cpu: the owner's hog leaves it no idle cpu (starved), the job's 0.1 cpu fits
    config = _desk_of(alice.name, "busy_cpu = 0.2\nbusy_seconds = 2\naway_seconds = 2\ngrace_seconds = 1")
    with running_cluster(shared_tmp, config=config) as c:
        c.agent("desk", cpus=0.5)
        pidfile = c.work / "plain.pid"
        [jid] = c.submit("--cpu", "0.1", "-o", "plain.out", "-c",
                         f"echo $$ > {pidfile}; i=0; while [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; echo end")
        wait_until("the job to start", lambda: pidfile.exists() and pidfile.read_text().strip() != "", timeout=60)
        pid = int(pidfile.read_text())
        hog = busy_loop_of(alice, shared_tmp)
        try:
            wait_until("the job to be suspended", lambda: c.job(jid)["reason"] == "suspended: owner busy",
                       timeout=60)
            wait_until("its shell to be stopped", lambda: _stopped(pid), timeout=10)
            assert "suspended: owner busy" in c.run("jstat", "--jobs").stdout
        finally:
            os.kill(hog, signal.SIGKILL)
        wait_until("the job to be resumed", lambda: c.job(jid)["reason"] == "", timeout=60)
        assert not _stopped(pid)
        c.run("qwait", str(jid), timeout=120)
        job = c.job(jid)
        assert job["state"] == "done" and job["node"] == "desk", (job, c.logs())
        assert (c.work / "plain.out").read_text().strip() == "end"


def test_a_requeue_job_is_stopped_and_started_over_elsewhere_while_the_owner_is_starved(shared_tmp: Path,
                                                                                          users: Users) -> None:
    alice = users.alice
    config = _desk_of(alice.name, "busy_cpu = 0.2\nbusy_seconds = 2\ngrace_seconds = 1", "kill_grace = 2\n")
    with running_cluster(shared_tmp, config=config) as c:
        c.agent("desk", cpus=0.5)
        [jid] = c.submit("--requeue", "--cpu", "0.1", "-o", "again.out", "-c",
                         "echo run $WULF_RESTART_COUNT on $WULF_NODE; "
                         "i=0; while [ $i -lt 150 ]; do sleep 0.1; i=$((i+1)); done; echo end")
        out = c.work / "again.out"
        wait_until("the job to run on desk", lambda: out.exists() and "run 0 on desk" in out.read_text(), timeout=60)
        hog = busy_loop_of(alice, shared_tmp)
        try:
            c.agent("spare", cpus=4, env_extra={"WULF_IGNORE_PIDS": f"{os.getpid()},{hog}"})
            wait_until("the job to run again on spare",
                       lambda: (j := c.job(jid))["node"] == "spare" and j["state"] == "running", timeout=90)
            c.run("qwait", str(jid), timeout=120)
        finally:
            os.kill(hog, signal.SIGKILL)
        job = c.job(jid)
        assert job["state"] == "done" and job["node"] == "spare", (job, out.read_text(), c.logs())
        assert (job["restarts"], job["vacated"], job["checkpoints"], job["retries"]) == (1, 1, 0, 0), job
        assert out.read_text().split("\n")[:1] == ["run 1 on spare"]  # (started over: its output too)
        assert f"({job['vacated']} vacated)" in c.run("jstat", "-a", "--jobs").stdout
