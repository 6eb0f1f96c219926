"""A workstation's owner comes back (issue 13 §3), on namespaced test hosts: ``desk`` is alice's workstation,
``spare`` a node of the cluster. Each host sees only its own processes, so the owner's work is simply her
processes on desk, started there as her and not by wulf, as if she had sat down at it (on one machine,
tests/integration/test_owner_comes_back.py has to hide them from the second agent instead)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

from hosts import HostPopen, TestNetwork

from programs import COUNTER
from users import User, Users
from wulfproc import Cluster, free_port, running_cluster, wait_until

#: alice is back once her processes take 0.2 cpu for 2 s, gone 2 s after; a job that does not go is stopped
#: once her work has been starved 8 s (more than the 2 s the counter below takes to save its count)
CONFIG = """[nodes]
owners = {{ desk = "{owner}" }}
[migrate]
busy_cpu = 0.2
busy_seconds = 2
away_seconds = 2
grace_seconds = 8
[agent]
external_min_cpu = 0.02
"""


def _sits_down(net: TestNetwork, user: User, cwd: Path) -> HostPopen:
    """The owner's busy loop on desk: hers, in desk's process table, not started by wulf."""
    return net["desk"].popen(["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups",
                              "/bin/sh", "-c", "while :; do :; done"], cwd=cwd, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _state_on_desk(net: TestNetwork, pid: int) -> str:
    """The state letter (``T``: stopped) of the process ``pid`` of desk's process table."""
    p = net["desk"].run(["cat", f"/proc/{pid}/stat"], capture_output=True, text=True, check=True)
    return str(p.stdout.rsplit(")", 1)[1].split()[0])


def _jobs_table(c: Cluster) -> str:
    return c.run("jstat", "--jobs").stdout


def test_a_checkpointing_job_moves_and_a_plain_one_is_suspended_when_the_owner_comes_back(
        make_test_network: Callable[..., TestNetwork], shared_tmp: Path, users: Users) -> None:
    alice = users.alice
    net = make_test_network(["desk", "spare"])
    port = free_port(net.gateway)
    with running_cluster(shared_tmp, listen=f"{net.gateway}:{port}", config=CONFIG.format(owner=alice.name)) as c:
        server = f"http://{net.gateway}:{port}"
        # desk has half a cpu: the owner's loop leaves it no idle cpu (her work is starved), the jobs fit
        c.agent("desk", cpus=0.5, server=server, popen=net["desk"].popen)
        prog = c.work / "counter.py"
        prog.write_text(COUNTER)
        [mover] = c.submit("--checkpoint", "USR1", "--cpu", "0.1", "-o", "moved.out",
                           "-c", f"trap '' USR1; exec python3 {prog} {c.work / 'moved.count'} 200 2")
        pidfile, go = c.work / "plain.pid", c.work / "go"
        [plain] = c.submit("--cpu", "0.1", "-o", "plain.out",
                           "-c", f"echo $$ > {pidfile}; while [ ! -e {go} ]; do sleep 0.1; done; echo end")
        out = c.work / "moved.out"
        wait_until("the counter to count on desk", lambda: out.exists() and "run 0 starts at 0" in out.read_text(),
                   timeout=60)
        wait_until("the plain job to start", lambda: pidfile.exists() and pidfile.read_text().strip() != "",
                   timeout=60)
        assert c.job(mover)["node"] == c.job(plain)["node"] == "desk"
        pid = int(pidfile.read_text())
        c.agent("spare", cpus=2, server=server, popen=net["spare"].popen)
        hog = _sits_down(net, alice, shared_tmp)
        try:
            wait_until("jstat to show the counter migrating",
                       lambda: re.search(rf"^\s*{mover}\b.*migrating", _jobs_table(c), re.M), timeout=60)
            wait_until("the counter to run again on spare",
                       lambda: (j := c.job(mover))["node"] == "spare" and j["state"] == "running", timeout=90)
            wait_until("the plain job to be suspended", lambda: c.job(plain)["reason"] == "suspended: owner busy",
                       timeout=60)
            wait_until("its shell to be stopped", lambda: _state_on_desk(net, pid) == "T", timeout=10)
            assert re.search(rf"^\s*{plain}\b.*suspended: owner busy", _jobs_table(c), re.M), _jobs_table(c)
        finally:
            hog.kill()
            hog.wait()
        wait_until("the plain job to be resumed", lambda: c.job(plain)["reason"] == "", timeout=60)
        assert _state_on_desk(net, pid) != "T"
        go.touch()
        c.run("qwait", str(mover), str(plain), timeout=120)
        job, text = c.job(mover), out.read_text()
        assert job["state"] == "done" and job["exit_code"] == 0 and job["node"] == "spare", (job, text, c.logs())
        runs = [(int(a), int(b)) for a, b in re.findall(r"run (\d+) starts at (\d+)", text)]
        saved = [int(n) for n in re.findall(r"saved (\d+) on signal 10", text)]
        assert runs[0] == (0, 0) and len(runs) == 2 and saved == [runs[1][1]] and 0 < saved[0] < 200, text
        assert "run 1 counted to 200" in text, text
        assert (job["checkpoints"], job["restarts"], job["reason"]) == (1, 1, ""), job
        assert not list(c.work.glob(f"wulf-{mover}*")), "one output file"
        assert f"job {mover} on desk: checkpoint" in (c.root / "server.log").read_text()
        job = c.job(plain)
        assert (job["state"], job["node"], job["restarts"]) == ("done", "desk", 0), (job, c.logs())
        assert (c.work / "plain.out").read_text().strip() == "end"
