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


#: a task's line: its node, user, memory cgroup's name and that cgroup's limit (cgroups v1 or v2)
TASK = ("if [ -d /sys/fs/cgroup/memory ]; then "
        "cg=$(grep :memory: /proc/self/cgroup | cut -d: -f3); f=/sys/fs/cgroup/memory$cg/memory.limit_in_bytes; "
        "else cg=$(grep ^0:: /proc/self/cgroup | cut -d: -f3); f=/sys/fs/cgroup$cg/memory.max; fi; "
        "echo $WULF_NODE $(id -un) ${cg##*/} $(cat $f)")


@pytest.mark.skipif(os.geteuid() != 0 or LAYOUT is None, reason="needs root and cgroups")
def test_tasks_run_in_the_jobs_cgroup_on_each_node_within_its_memory_limit(shared_tmp: Path) -> None:
    """Each task in the job's cgroup on its first node, and in one made for its tasks on the other; the
    job's --mem-limit holds on both (the second had none)."""
    with running_cluster(shared_tmp) as c:
        c.agent("n1", cpus=2)
        c.agent("n2", cpus=2)
        script = shared_tmp / "tasks.sh"
        script.write_text(f"#!/bin/sh\n{BIN / 'wulf'} launch -l sh -c '{TASK}'\n")
        script.chmod(0o755)
        [jid] = c.submit("--nodes", "2", "--mem-limit", "64M", "-s", str(script))
        c.run("qwait", str(jid), check=False)
        job = c.job(jid)
        out = (c.work / f"wulf-{jid}.out").read_text()
        assert job["state"] == "done", out
        first, second = (part.split(":")[0] for part in job["alloc"].split(","))
        limit = 64 * 2**20
        assert sorted(out.splitlines()) == [f"0: {first} root job-{jid} {limit}",
                                            f"1: {second} root job-{jid} {limit}"], out
