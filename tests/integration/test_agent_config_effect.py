"""[agent] cgroups and kill_grace with the real server and agent: with cgroups off a job still runs and
is measured (its copy-on-write memory once), and a job that ignores TERM is killed after kill_grace."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from programs import copy_on_write, shell
from wulfproc import Cluster, running_cluster, wait_until

COW = shell(copy_on_write(10, "forked"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A server, and an agent 'n1' whose config turns cgroups off and gives a job 1 s after TERM."""
    root = tmp_path_factory.mktemp("agentcfg")
    cfg = root / "agent.toml"
    cfg.write_text('[agent]\ncgroups = "off"\nkill_grace = 1.0\n')
    with running_cluster(root) as c:
        c.agent("n1", cpus=16, env_extra={"WULF_CONFIG": str(cfg)})
        yield c


def _ended(cluster: Cluster, job_id: int) -> dict[str, Any]:
    cluster.run("qwait", str(job_id), check=False)
    return cluster.job(job_id)


def test_without_cgroups_a_job_runs_outside_them_and_is_measured(cluster: Cluster) -> None:
    [jid] = cluster.submit("-c", "cat /proc/self/cgroup; python3 -c 'x = bytearray(200 << 20); sum(range(3000000))'")
    job = _ended(cluster, jid)
    assert job["state"] == "done", job
    assert "/job-" not in (cluster.work / f"wulf-{jid}.out").read_text()
    assert job["peak_mem_mb"] >= 200 and job["cpu_time"] > 0  # from its wait status
    assert "cgroups are off" in (cluster.root / "agent-n1.log").read_text()


def test_without_cgroups_copy_on_write_memory_counts_once(cluster: Cluster) -> None:
    [jid] = cluster.submit("-c", COW)
    out = cluster.work / f"wulf-{jid}.out"
    wait_until("the job to fork", lambda: out.exists() and out.read_text() == "forked\n")
    job = wait_until("a report of its memory", lambda: (j := cluster.job(jid))["mem_used_mb"] >= 100 and j)
    assert job["mem_used_mb"] < 300  # by PSS: resident sizes would add up to 1.1 GB
    cluster.run("qcancel", str(jid))
    assert _ended(cluster, jid)["state"] == "cancelled"


def test_a_job_that_ignores_term_is_killed_after_the_grace(cluster: Cluster) -> None:
    [jid] = cluster.submit("--time", "0:00:01", "-c", "trap '' TERM; sleep 60")
    job = _ended(cluster, jid)
    assert job["state"] == "failed" and job["reason"] == "exceeded its time limit of 0:00:01", job
    # TERM within a second or two of the limit, KILL 1 s later; the default grace alone is 10 s
    assert job["ended"] - job["started"] < 8
    assert "killing it" in (cluster.root / "agent-n1.log").read_text()
