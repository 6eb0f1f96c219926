"""A simulation's results: a table for people (one column per policy), JSON for machines."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from wulf.sim.metrics import Summary
from wulf.sim.workload import Workload


def to_json(w: Workload, runs: Sequence[Summary], series: bool = False) -> dict[str, Any]:
    return {
        "workload": {"description": w.description, "nodes": len(w.nodes), "cpus": w.cpus, "jobs": len(w.jobs),
                     "users": w.users, "nodes_with_outside_load": sum(1 for n in w.nodes if n.outside),
                     "multinode_jobs": sum(1 for j in w.jobs if j.multinode)},
        "runs": [r.to_dict(series) for r in runs],
    }


def _secs(s: float) -> str:
    if s >= 3 * 3600:
        return f"{s / 3600:,.1f} h"
    if s >= 600:
        return f"{s / 60:,.0f} min"
    return f"{s:,.1f} s" if s < 10 else f"{s:,.0f} s"


def _ms(s: float) -> str:
    return f"{s:.3f} ms" if s < 1 else f"{s:.1f} ms"


def _jain(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


_ROWS: list[tuple[str, Callable[[Summary], str]]] = [
    ("jobs finished", lambda r: f"{r.finished:,} of {r.jobs:,}"),
    ("jobs no node can run", lambda r: f"{r.rejected:,}"),
    ("jobs never started", lambda r: f"{r.never_started:,}"),
    ("makespan", lambda r: f"{_secs(r.makespan)} ({r.makespan:,.0f} s)"),
    ("lower bound", lambda r: f"{r.bound:,.0f} s"),
    ("makespan / bound", lambda r: f"{r.makespan_over_bound:.4f}"),
    ("utilisation", lambda r: f"{100 * r.utilisation:.1f} %"),
    ("cpus idle while jobs wait", lambda r: f"{100 * r.idle_while_waiting:.1f} %"),
    ("wait mean", lambda r: _secs(r.wait["mean"])),
    ("wait median", lambda r: _secs(r.wait["median"])),
    ("wait p95", lambda r: _secs(r.wait["p95"])),
    ("wait max", lambda r: _secs(r.wait["max"])),
    ("turnaround mean", lambda r: _secs(r.turnaround_mean)),
    ("slowdown mean (run / duration)", lambda r: f"{r.slowdown_mean:.3f}"),
    ("Jain, 2+ users queued", lambda r: _jain(r.jain)),
    ("Jain, moment by moment", lambda r: _jain(r.jain_instant)),
    ("time 2+ users queued", lambda r: _secs(r.contended_seconds)),
    ("jobs killed for memory (ran again)", lambda r: f"{r.killed_for_memory:,} ({_secs(r.killed_run_seconds)} lost)"
     if r.killed_for_memory else "0"),
    ("outside work killed for memory", lambda r: f"{r.outside['killed_for_memory']:,.0f}"
     if r.outside["cpu_seconds_wanted"] else "-"),
    ("outside load's cpu taken by jobs", lambda r: f"{100 * r.outside['taken_by_jobs']:.1f} %"
     if r.outside["cpu_seconds_wanted"] else "-"),
    ("jobs started with what their kind used", lambda r: f"{r.started_as_taught:,}"),
    ("renices (penalty on/off)", lambda r: f"{r.passes['renices']:,.0f}"),
    ("scheduling passes", lambda r: f"{r.passes['count']:,.0f}"),
    ("schedule() mean", lambda r: _ms(r.passes["mean_ms"])),
    ("schedule() p99", lambda r: _ms(r.passes["p99_ms"])),
    ("schedule() max", lambda r: _ms(r.passes["max_ms"])),
    ("simulation wall time", lambda r: f"{r.wall_seconds:.2f} s"),
]


def _waits(r: Summary, prefix: str) -> str:
    m = r.multinode
    return " / ".join(_secs(m[f"{prefix}wait_{k}"]) for k in ("mean", "p95", "max"))


#: shown when the workload has jobs of several nodes (after the waits)
_MULTINODE_ROWS: list[tuple[str, Callable[[Summary], str]]] = [
    ("multi-node jobs finished", lambda r: f"{r.multinode['finished']:,.0f} of {r.multinode['jobs']:,.0f}"),
    ("multi-node jobs never started", lambda r: f"{r.multinode['never_started']:,.0f}"
     + (f" ({r.multinode['rejected']:,.0f} more no nodes can hold)" if r.multinode["rejected"] else "")),
    ("multi-node wait mean / p95 / max", lambda r: _waits(r, "")),
    ("single-node wait mean / p95 / max", lambda r: _waits(r, "single_")),
]


def table(w: Workload, runs: Sequence[Summary]) -> str:
    spec = _ROWS
    if any(r.multinode for r in runs):
        at = next(i for i, (name, _) in enumerate(_ROWS) if name == "wait max") + 1
        spec = [*_ROWS[:at], *_MULTINODE_ROWS, *_ROWS[at:]]
    rows = [(name, [f(r) for r in runs]) for name, f in spec]
    users = sorted({u for r in runs for u in r.users})
    if len(users) > 1:
        rows.append(("per user: running share / cpu share / mean wait", ["" for _ in runs]))
        for u in users:
            cells = []
            for r in runs:
                d = r.users.get(u)
                cells.append("-" if d is None else f"{100 * d['running_share']:.1f} % / "
                             f"{100 * d['cpu_share']:.1f} % / {_secs(d['wait_mean'])}")
            rows.append((f"  {u}", cells))
    head = ["", *(r.policy for r in runs)]
    width0 = max(len(name) for name, _ in rows)
    widths = [max(len(head[i + 1]), *(len(cells[i]) for _, cells in rows)) for i in range(len(runs))]
    lines = [w.description, ""]
    lines.append("  ".join([f"{head[0]:<{width0}}", *(f"{h:>{wd}}" for h, wd in zip(head[1:], widths, strict=True))]))
    for name, cells in rows:
        lines.append("  ".join([f"{name:<{width0}}", *(f"{c:>{wd}}" for c, wd in zip(cells, widths, strict=True))])
                     .rstrip())
    return "\n".join(lines)
