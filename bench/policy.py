"""The policy alone: one scheduling pass (NodePool built from the node views, then ``schedule``), and a
whole simulation (``wulf sim``) on a virtual clock.

A pass is measured on a cluster of identical nodes (8 cpus, 32 GB) with 10 users' queued jobs (1 cpu,
1 GB each), read as the server reads them: through the history of their kind, which taught that they
use 1 cpu and 1,000 MB (so each is looked up, and sized):

- **cold**: every node empty; the pass places up to capacity.
- **steady**: every node full but a few, one cpu free on each of those; the users run equally many.
- **newcomer**: as steady, and an eleventh user with 4-cpu jobs and nothing running: room is kept for
  their jobs on as many nodes as it takes them to catch up (the most a pass has to do).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from wulf.config import Config
from wulf.policy.history import History, kind_of
from wulf.policy.placement import NodePool
from wulf.policy.rank import DEFAULT_RANK, compile_rank
from wulf.policy.scheduler import schedule
from wulf.policy.settings import Policy
from wulf.policy.snapshot import NodeView, QueuedJob, QueueView, RunningUse, UserView
from wulf.sim.engine import Engine
from wulf.sim.workload import generate

CPUS, MEM = 8, 32768
USERS = 10


def _node(i: int, running: int) -> NodeView:
    jobs = tuple(RunningUse(1.0, 1024, 1.0, 1000, f"u{j % USERS}") for j in range(running))
    return NodeView(f"n{i:04d}", CPUS, MEM, jobs=jobs, observed_cpu=float(running), observed_mem=1000.0 * running,
                    attrs={"name": f"n{i:04d}"})


def _queues(jobs: int, newcomer: bool) -> list[QueueView]:
    per = jobs // USERS
    queues = [QueueView(f"u{u}", "default", [QueuedJob(u * per + i, f"u{u}", "default", 1.0, 1024, "", "fit")
                                              for i in range(per)]) for u in range(USERS)]
    if newcomer:
        queues.append(QueueView("new", "default", [QueuedJob(jobs + i, "new", "default", 4.0, 1024, "", "fit")
                                                   for i in range(per)]))
    return queues


def _history() -> History:
    h = History(5, 60.0)
    for user in [f"u{u}" for u in range(USERS)] + ["new"]:
        for cpu in (1.0, 4.0):
            h.teach(kind_of(user, "fit", cpu, 1024), True, 100.0, 100.0 * cpu, 1000.0)
    return h


def one_pass(nodes: int, jobs: int, kind: str, repeat: int) -> dict[str, Any]:
    rank = compile_rank(DEFAULT_RANK)
    if kind == "cold":
        views = [_node(i, 0) for i in range(nodes)]
        users: dict[str, UserView] = {}
    else:
        free_nodes = max(1, nodes // 100)
        views = [_node(i, CPUS - 1 if i < free_nodes else CPUS) for i in range(nodes)]
        running = (nodes * CPUS - free_nodes) // USERS
        users = {f"u{u}": UserView(f"u{u}", running) for u in range(USERS)}
    waiting = _queues(jobs, kind == "newcomer")
    history = _history()
    build, run, total = [], [], []
    placed = held = 0
    for _ in range(repeat):
        queues = [QueueView(q.user, q.name, map(history.sized, q.jobs)) for q in waiting]
        t0 = time.perf_counter()
        pool = NodePool(views, rank)
        t1 = time.perf_counter()
        result = schedule(queues, users, pool)
        t2 = time.perf_counter()
        build.append((t1 - t0) * 1000)
        run.append((t2 - t1) * 1000)
        total.append((t2 - t0) * 1000)
        placed, held = len(result.placements), len(result.held)
    return {"nodes": nodes, "queued": sum(len(q.jobs) for q in waiting), "placed": placed,  # type: ignore[arg-type]
            "held": held, "pool_ms": statistics.median(build), "schedule_ms": statistics.median(run),
            "median_ms": statistics.median(total), "max_ms": max(total)}


def simulation(nodes: int, jobs: int, scenario: str = "mixed") -> dict[str, Any]:
    w = generate(scenario, nodes, jobs, None, None, 1)
    cpu0, t0 = time.process_time(), time.perf_counter()
    s = Engine(w, Policy.from_config(Config())).run()
    return {"scenario": scenario, "nodes": nodes, "jobs": jobs, "wall_s": time.perf_counter() - t0,
            "cpu_s": time.process_time() - cpu0, "passes": s.passes["count"],
            "pass_mean_ms": s.passes["mean_ms"], "pass_max_ms": s.passes["max_ms"],
            "makespan_over_bound": s.makespan_over_bound, "jain": s.jain}


def run(quick: bool) -> dict[str, Any]:
    nodes, jobs, repeat = (200, 20_000, 3) if quick else (1000, 100_000, 5)
    out: dict[str, Any] = {kind: one_pass(nodes, jobs, kind, repeat) for kind in ("cold", "steady", "newcomer")}
    out["simulation"] = simulation(50, 5_000) if quick else simulation(1000, 100_000)
    return out


def rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    out = []
    for kind in ("cold", "steady", "newcomer"):
        p = r[kind]
        what = f"{p['placed']:,} placed" + (f", {p['held']:,} held" if p["held"] else "")
        out.append((f"pass, {kind}: {p['nodes']:,} nodes, {p['queued']:,} queued ({what})",
                    f"{p['median_ms']:.1f} ms (max {p['max_ms']:.1f})", "<= 100 ms"))
    s = r["simulation"]
    out.append((f"wulf sim, {s['nodes']:,} nodes, {s['jobs']:,} jobs ({s['passes']:,} passes)",
                f"{s['wall_s']:.1f} s (cpu {s['cpu_s']:.1f} s)", "< 60 s" if s["nodes"] >= 1000 else ""))
    return out


if __name__ == "__main__":
    import json
    import sys

    result = run("--quick" in sys.argv)
    print(json.dumps(result, indent=2))
