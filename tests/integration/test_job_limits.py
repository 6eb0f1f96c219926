"""Run-time limits end to end: the agent stops jobs over their memory, wall time or cpu time, and
measures a job's memory once however many processes share it.

With the real server and agent (in cgroups when the tests run as root, as in CI), and then an agent
in this process without cgroups, as an agent that is not root runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from programs import copy_on_write, shell
from wulf.agent.cgroups import BASE, detect, group_name
from wulf.agent.main import Agent, state_tag
from wulf.protocol import JobExit, StartJob
from wulfproc import Cluster, agent_in_process, running_cluster, wait_until

MEMORY_REASON = "exceeded its memory limit of 50 MB"
TIME_REASON = "exceeded its time limit of 0:00:02"
CPU_REASON = "exceeded its cpu time limit of 0:00:02"

ALLOCATE = "python3 -c 'x = bytearray(300 << 20); import time; time.sleep(5)'"
BURN = "python3 -c 'while True: pass'"
COW = shell(copy_on_write(20, "forked"))


def _remove_cgroups(group: str) -> None:
    """Kill what a test left in its agent's cgroups (jobs outlive agents) and remove them (spares
    too, which an agent stopped cleanly removes itself)."""
    layout = detect()
    if layout is None:
        return
    for mount in {layout.memory.point, layout.cpu.point if layout.cpu else layout.memory.point}:
        top = Path(mount, BASE, group)
        if not top.is_dir():
            continue
        for job in [*top.glob("job-*"), *top.glob("spare-*")]:
            procs = job / "cgroup.procs"
            for pid in procs.read_text().split():
                with contextlib.suppress(OSError):
                    os.kill(int(pid), signal.SIGKILL)
            wait_until(f"{job} to empty", lambda procs=procs: procs.read_text() == "")
            job.rmdir()
        top.rmdir()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A server and one agent 'n1', shared by this module's tests. It has more cpus than the machine:
    tests elsewhere on the machine may keep its cores busy, which the server would count as n1's load."""
    root = tmp_path_factory.mktemp("limits")
    try:
        with running_cluster(root) as c:
            c.agent("n1", cpus=16)
            yield c
    finally:
        _remove_cgroups(group_name("n1", state_tag(root / "agent-n1")))


def _ended(cluster: Cluster, *ids: int) -> list[dict[str, Any]]:
    cluster.run("qwait", *map(str, ids), check=False)
    return [cluster.job(i) for i in ids]


def test_jobs_over_their_limits_fail_with_the_reason(cluster: Cluster) -> None:
    [memory] = cluster.submit("--mem-limit", "50", "-c", ALLOCATE)
    [wall] = cluster.submit("--time", "0:00:02", "-c", "sleep 30")
    [cpu] = cluster.submit("--cputime", "0:00:02", "-c", BURN)
    [within] = cluster.submit("--time", "0:01:00", "--cputime", "0:01:00", "--mem-limit", "200",
                              "-c", "python3 -c 'x = bytearray(20 << 20)'")
    by_memory, by_time, by_cpu, done = _ended(cluster, memory, wall, cpu, within)
    assert (by_memory["state"], by_memory["reason"]) == ("failed", MEMORY_REASON)
    assert (by_time["state"], by_time["reason"]) == ("failed", TIME_REASON)
    assert by_time["ended"] - by_time["started"] < 30
    assert (by_cpu["state"], by_cpu["reason"]) == ("failed", CPU_REASON)
    assert by_cpu["cpu_time"] >= 2.0
    assert (done["state"], done["reason"], done["exit_code"]) == ("done", "", 0)


def test_copy_on_write_children_are_counted_once(cluster: Cluster) -> None:
    """A 100 MB parent and 20 children sharing its pages use about 100 MB, not 2 GB."""
    [jid] = cluster.submit("-c", COW)
    out = cluster.work / f"wulf-{jid}.out"
    wait_until("the job to fork", lambda: out.exists() and out.read_text() == "forked\n")
    job = wait_until("a report of its memory", lambda: (j := cluster.job(jid))["mem_used_mb"] >= 100 and j)
    assert job["mem_used_mb"] < 400
    cluster.run("qcancel", str(jid))
    assert _ended(cluster, jid)[0]["state"] == "cancelled"


def test_a_job_taken_back_after_an_agent_restart_keeps_its_limit(cluster: Cluster) -> None:
    [jid] = cluster.submit("--time", "0:00:02", "-c", "sleep 30")
    wait_until("the job to run", lambda: cluster.job(jid)["state"] == "running")
    cluster.agents["n1"].kill(signal.SIGTERM)
    cluster.agent("n1", cpus=16)
    [job] = _ended(cluster, jid)
    assert job["state"] == "failed" and job["reason"] == TIME_REASON


# ---------------------------------------------------------------- without cgroups


def _start_job(job_id: int, command: str, cwd: Path, **limits: float) -> StartJob:
    return StartJob(id=job_id, name="t", user="u", uid=os.getuid(), queue="default", command=command, script=None,
                    cwd=str(cwd), env={"PATH": os.environ.get("PATH", os.defpath)}, output="", keep_script=False,
                    cpu=1.0, mem_mb=32.0, **limits)


def _run_agent(tmp_path: Path, jobs: list[StartJob], during: Any = None) -> dict[int, JobExit]:
    """An agent in this process, without cgroups and without a server, runs ``jobs`` to their ends."""

    async def main() -> dict[int, JobExit]:
        async with agent_in_process(tmp_path, "solo", cgroups=False) as agent:
            await asyncio.sleep(0.1)
            agent.start_jobs(jobs)
            if during is not None:
                await during(agent)
            deadline = time.monotonic() + 30
            while len(agent.unacked) < len(jobs) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            return dict(agent.unacked)

    return asyncio.run(main())


def test_limits_without_cgroups(tmp_path: Path) -> None:
    exits = _run_agent(tmp_path, [
        _start_job(1, "sleep 30", tmp_path, time_limit=2.0),
        _start_job(2, BURN, tmp_path, cputime_limit=2.0),
        _start_job(3, f"{BURN} & {BURN} & wait", tmp_path, cputime_limit=2.0),  # the whole job counts
        _start_job(4, "python3 -c 'x = bytearray(20 << 20)'", tmp_path, time_limit=60.0, cputime_limit=60.0,
                   mem_limit_mb=200.0),
    ])
    assert exits[1].reason == TIME_REASON and exits[1].signal == signal.SIGTERM
    assert exits[2].reason == CPU_REASON and exits[2].cpu_time >= 2.0
    assert exits[3].reason == CPU_REASON
    assert exits[4].reason == "" and exits[4].exit_code == 0


def test_memory_without_cgroups_is_proportional(tmp_path: Path) -> None:
    measured: list[float | None] = []

    async def measure(agent: Agent) -> None:
        out = tmp_path / "wulf-1.out"
        deadline = time.monotonic() + 20
        while not (out.exists() and out.read_text() == "forked\n") and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        pid = agent.jobs[1].pid
        _, uses, _ = agent.monitor.sample({pid: 1}, agent.job_memory)
        measured.extend(u.mem_mb for u in uses if u.id == 1)
        agent.signal_jobs([1], signal.SIGTERM)

    exits = _run_agent(tmp_path, [_start_job(1, COW, tmp_path, mem_limit_mb=1000.0)], measure)
    [mem] = measured
    assert mem is not None and 100 <= mem < 400, mem  # resident sizes would add up to 2 GB
    assert "limit" not in exits[1].reason and exits[1].peak_mem_mb >= 100

