"""wulf launch on one machine with two agents (n1, n2) that use cgroups: each task runs in its job's
cgroup on its node (issue 13 §1). (As root: a job of another user could not reach this checkout's
commands; the tasks take the job's owner as jr's sessions do, see wulf.agent.owner.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wulf.agent.cgroups import detect
from wulfproc import BIN, running_cluster

LAYOUT = detect()


@pytest.mark.skipif(os.geteuid() != 0 or LAYOUT is None, reason="needs root and cgroups")
def test_tasks_run_in_the_jobs_cgroup_on_each_node(shared_tmp: Path) -> None:
    with running_cluster(shared_tmp) as c:
        c.agent("n1", cpus=2)
        c.agent("n2", cpus=2)
        script = shared_tmp / "tasks.sh"
        script.write_text("#!/bin/sh\n"
                          f"{BIN / 'wulf'} launch -l sh -c 'echo $WULF_NODE $(id -un) "
                          "$(grep -e :memory: /proc/self/cgroup | sed s:.*/::)'\n")
        script.chmod(0o755)
        [jid] = c.submit("--nodes", "2", "-s", str(script))
        c.run("qwait", str(jid), check=False)
        job = c.job(jid)
        out = (c.work / f"wulf-{jid}.out").read_text()
        assert job["state"] == "done", out
        first, second = (part.split(":")[0] for part in job["alloc"].split(","))
        assert sorted(out.splitlines()) == [f"0: {first} root job-{jid}", f"1: {second} root job-{jid}"]


@pytest.mark.skipif(os.geteuid() != 0 or LAYOUT is None, reason="needs root and cgroups")
def test_a_memory_limit_holds_on_every_node(shared_tmp: Path) -> None:
    """--mem-limit is the job's cgroup's on its first node, and its tasks' cgroup's on each other node."""
    with running_cluster(shared_tmp) as c:
        c.agent("n1", cpus=2)
        c.agent("n2", cpus=2)
        script = shared_tmp / "limits.sh"
        script.write_text(
            "#!/bin/sh\n"
            f"{BIN / 'wulf'} launch -l sh -c '"
            "if [ -d /sys/fs/cgroup/memory ]; then "
            "f=/sys/fs/cgroup/memory$(grep :memory: /proc/self/cgroup | cut -d: -f3)/memory.limit_in_bytes; "
            "else f=/sys/fs/cgroup$(grep ^0:: /proc/self/cgroup | cut -d: -f3)/memory.max; fi; "
            "echo $WULF_NODE $(cat $f)'\n")
        script.chmod(0o755)
        [jid] = c.submit("--nodes", "2", "--mem-limit", "64M", "-s", str(script))
        c.run("qwait", str(jid), check=False)
        out = (c.work / f"wulf-{jid}.out").read_text()
        assert c.job(jid)["state"] == "done", out
        limits = {line.split()[1]: line.split()[2] for line in out.splitlines()}
        assert limits == {"n1": str(64 * 2**20), "n2": str(64 * 2**20)}, out
