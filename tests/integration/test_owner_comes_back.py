"""A job leaves a workstation whose owner comes back (issue 13 §3), with the real server and two agents.

Both agents run on this machine and see all its processes, so "outside work on one node only" is made
so: the owner's cpu hog is started before the second node's agent, which is told to ignore it
(WULF_IGNORE_PIDS, as the test runner's own processes are ignored). Only the owner's own processes say
they are back, so other work on this shared machine does not.

The checkpointing job that moves and the plain job that is suspended and resumed are tested on namespaced
test hosts, each with its own process table (tests/cluster/test_owner_cluster.py); this one-machine test
keeps the `--requeue` job, which starts over elsewhere.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from users import Users
from wulfproc import busy_loop_of, running_cluster, wait_until


def _desk_of(owner: str, migrate: str, agent: str = "") -> str:
    """A configuration where node ``desk`` is ``owner``'s workstation, with these [migrate] settings (and
    [agent] ones); outside work counts from 0.02 cpu."""
    return (f'[nodes]\nowners = {{ desk = "{owner}" }}\n[migrate]\n{migrate}\n'
            f"[agent]\nexternal_min_cpu = 0.02\n{agent}")


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
