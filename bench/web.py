"""The web interface's reads, in the server's process: what the overview and the jobs list cost the
server with 1,000 nodes (each running 4 jobs, with outside load) and 100,000 jobs in memory.

Measured on the server's state directly (the views and their JSON), not through HTTP: the figure is
the server's time for one read of a page, which the issue bounds at 300 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench import print_table
from wulf.auth.identity import WEB, Caller
from wulf.config import Config
from wulf.model.job import Job, JobState, Origin
from wulf.protocol import JobStarted, JobUse, NodeInfo, NodeSample, Report
from wulf.server.events import JobsStarted, NodeUp, Reported, SchedulePass, Submitted
from wulf.server.state import ServerState
from wulf.server.webviews import JobFilter, job_page, overview

T0 = 1_000_000.0


def cluster(nodes: int, jobs: int) -> ServerState:
    state = ServerState(Config())
    for i in range(nodes):
        state.handle(NodeUp(NodeInfo(name=f"n{i:04d}", hostname=f"n{i:04d}", cpus=4, mem_mb=16384), "10.0.0.1", 0,
                            (), (), T0))
    made = [Job(id=state.new_id(), user=f"u{i % 50}", uid=2000 + i % 50, origin=Origin.BATCH, state=JobState.QUEUED,
                command=f"./run {i}", name=f"job{i}", cwd="/", queue="default", cpu_req=1.0, mem_req=32, cpu=1.0,
                mem_mb=32, submitted=T0 + i) for i in range(jobs)]
    state.handle(Submitted(tuple(made)))
    state.handle(SchedulePass(T0 + 1))
    for name, node in state.nodes.items():
        started = tuple(JobStarted(id=j.id, pid=1000 + j.id, time=T0 + 2) for j in node.jobs.values())
        state.handle(JobsStarted(name, started))
        uses = [JobUse(id=j.id, cpu=0.9, mem_mb=20.0) for j in node.jobs.values()]
        sample = NodeSample(time=T0 + 3, load1=4.5, used_cpu=0.9 * len(uses) + 0.5, used_mem_mb=2000.0)
        state.handle(Reported(name, Report(sample=sample, jobs=uses)))
    return state


def _time(f: Callable[[], Any], runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        json.dumps(f())
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def run(quick: bool) -> dict[str, Any]:
    nodes, jobs = (100, 10_000) if quick else (1000, 100_000)
    state = cluster(nodes, jobs)
    me = Caller("u1", 2001, 2001, WEB)
    runs = 5 if quick else 11
    return {
        "nodes": nodes, "jobs": jobs,
        "overview_ms": _time(lambda: overview(state, T0, me), runs),
        "jobs_first_page_ms": _time(lambda: job_page(state, T0, me, JobFilter(origin="wulf")), runs),
        "jobs_deep_sorted_ms": _time(lambda: job_page(state, T0, me, JobFilter(), "name", True, jobs // 2, 50), runs),
        "jobs_filtered_ms": _time(lambda: job_page(state, T0, me, JobFilter(user="u7", state="queued")), runs),
        "overview_kb": len(json.dumps(overview(state, T0, me))) // 1024,
    }


def rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    size = f"{r['nodes']:,} nodes, {r['jobs']:,} jobs"
    return [
        (f"web overview, {size} ({r['overview_kb']} KB)", f"{r['overview_ms']:.0f} ms", "<= 300 ms"),
        ("web jobs list, first page", f"{r['jobs_first_page_ms']:.0f} ms", "<= 300 ms"),
        ("web jobs list, sorted by name, middle page", f"{r['jobs_deep_sorted_ms']:.0f} ms", "<= 300 ms"),
        ("web jobs list, one user's queued", f"{r['jobs_filtered_ms']:.0f} ms", "<= 300 ms"),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(prog="bench.web", description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results = run(args.quick)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    table = rows(results)
    print_table(table, 10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
