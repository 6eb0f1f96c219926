"""Job cgroups on the real kernel: an ended job's cgroup serves the next one (cgroup v1), under the
next job's name and with its counters reset; spares are removed when the agent stops and, left by an
earlier run, when it starts.

An agent in this process, with cgroups, and without a server. Needs root and cgroups (as in CI).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from wulf.agent import cgpool
from wulf.agent.cgroups import BASE, detect, group_name
from wulf.agent.main import Agent, state_tag
from wulf.protocol import JobExit, StartJob
from wulfproc import agent_in_process

LAYOUT = detect()
pytestmark = pytest.mark.skipif(os.geteuid() != 0 or LAYOUT is None, reason="needs root and cgroups")

# what a job prints (v1): its memory cgroup, and that directory's inode (a cgroup renamed keeps it)
WHERE = ("m=$(grep :memory: /proc/self/cgroup | cut -d: -f3); echo \"$m\"; "
         f"stat -c %i \"{LAYOUT.memory.point if LAYOUT else ''}$m\"")
BURN = "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done"


def _job(job_id: int, command: str, cwd: Path, **limits: float) -> StartJob:
    return StartJob(id=job_id, name="t", user="root", uid=0, queue="default", command=command, script=None,
                    cwd=str(cwd), env={"PATH": os.environ.get("PATH", os.defpath)}, output="", keep_script=False,
                    cpu=1.0, mem_mb=32.0, **limits)


def _group_dirs(tmp_path: Path) -> list[Path]:
    assert LAYOUT is not None
    group = group_name("cg", state_tag(tmp_path / "state"))
    mounts = {LAYOUT.memory.point} | ({LAYOUT.cpu.point} if LAYOUT.cpu is not None else set())
    return [Path(m, BASE, group) for m in mounts]


def _run(tmp_path: Path, steps: Callable[[Agent], Awaitable[None]]) -> None:
    async def main() -> None:
        async with agent_in_process(tmp_path, "cg", cgroups=True) as agent:
            await _until(lambda: agent.cgpool is not None)
            await steps(agent)

    asyncio.run(main())


async def _until(check: Callable[[], object], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def _ran(agent: Agent, job: StartJob) -> JobExit:
    """Start ``job`` and wait until it has ended and its cgroup is given back."""
    agent.start_jobs([job])
    await _until(lambda: job.id in agent.unacked and not agent._ended_cgroups)
    await asyncio.sleep(0.05)  # the flush that gives back its cgroup
    return agent.unacked[job.id]


def test_a_spare_serves_the_next_job_renamed_and_reset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert LAYOUT is not None
    if LAYOUT.version != 1 or LAYOUT.cpu is None:
        pytest.skip("spares need cgroup v1 with cpuacct")
    # what the kernel leaves charged after a job (per-cpu charge batches) varies with the machine;
    # the rule itself is tested on its own (tests/unit/test_agent_cgpool.py)
    monkeypatch.setattr(cgpool, "LEFTOVER_MAX", 256 << 20)
    out: dict[int, list[str]] = {}

    async def steps(agent: Agent) -> None:
        assert agent.cgpool is not None
        first = await _ran(agent, _job(1, f"{WHERE}; {BURN}", tmp_path))
        assert agent.cgpool.spares == 1
        second = await _ran(agent, _job(2, WHERE, tmp_path))
        limited = await _ran(agent, _job(3, WHERE, tmp_path, mem_limit_mb=100.0))
        for i in (1, 2, 3):
            out[i] = (tmp_path / f"wulf-{i}.out").read_text().split()
        assert agent.cgpool.reused == 1 and agent.cgpool.made == 2
        assert first.exit_code == second.exit_code == limited.exit_code == 0
        assert first.cpu_time > 0.1 and second.cpu_time < first.cpu_time / 2  # not the first job's cpu
        assert second.peak_mem_mb < 20  # what the first job left charged, at most

    _run(tmp_path, steps)
    assert out[1][0].endswith("/job-1") and out[2][0].endswith("/job-2") and out[3][0].endswith("/job-3")
    assert out[2][1] == out[1][1]  # the same cgroup, under the second job's name
    assert out[3][1] != out[1][1]  # a job with a memory limit has a cgroup of its own
    assert not any(d.exists() for d in _group_dirs(tmp_path))  # spares removed when the agent stopped


def test_spares_left_by_an_earlier_run_are_removed_at_start(tmp_path: Path) -> None:
    for d in _group_dirs(tmp_path):
        (d / "spare-5").mkdir(parents=True)

    async def steps(agent: Agent) -> None:
        assert agent.cgroups is not None and agent.cgroups.spare_names() == []
        exit = await _ran(agent, _job(1, "true", tmp_path))
        assert exit.exit_code == 0

    _run(tmp_path, steps)
    assert not any(d.exists() for d in _group_dirs(tmp_path))
