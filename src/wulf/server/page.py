"""The cluster at a glance as one table (``/table``), refreshed every few seconds: no script needed."""

from __future__ import annotations

import html
import time
from typing import Any

#: waiting jobs the page lists (earliest first); `jstat` lists them all
MAX_WAITING = 200



def _row(cells: list[Any], cls: str = "") -> str:
    tds = "".join(f"<td>{html.escape('' if c is None else str(c))}</td>" for c in cells)
    return f"<tr class='{cls}'>{tds}</tr>"


def _head(*names: str) -> str:
    return "<tr>" + "".join(f"<th>{html.escape(n)}</th>" for n in names) + "</tr>"


def render(status: dict[str, Any], queues: list[dict[str, Any]] | None = None) -> str:
    """The page, from what the daemon says the page shows (Daemon.page_view) and its queues."""
    up = [n for n in status["nodes"] if n["state"] == "up"]
    cpus, free = sum(n["cpus"] for n in up), sum(max(0.0, n["cpu_free"]) for n in up)
    nodes = "".join(
        _row([n["name"], n["state"], n["cpus"], n["load"], f"{n['cpu_free']:.1f}", f"{n['mem_free_mb']:.0f}",
              n["jobs"], " ".join(n.get("features", []))], n["state"])
        for n in status["nodes"]
    )
    jobs = "".join(
        _row([j["id"], j["user"], j["queue"] if j["origin"] == "batch" else "", j["origin"], j["state"], j["node"],
              j["cpu"], f"{j['mem_mb']:.0f}", j["command"][:80], j["reason"]], j["state"])
        for j in status["jobs"]
    )
    more = status["waiting_not_listed"]
    if more:
        jobs += f"<tr><td colspan='10'>and {more:,} more waiting: <code>jstat</code> lists them all</td></tr>"
    qrows = "".join(
        _row([f"{q['user']}:{q['name']}", q["priority"], "stopped" if q["stopped"] else q["window"], q["queued"],
              q["running"], q["reason"]])
        for q in queues or []
    )
    users = status["users"]
    urows = "".join(_row([u["user"], u["running"], f"{u['cpus']:g}", u["queued"], u["held"]]) for u in users)
    running = sum(u["running"] for u in users)
    waiting = sum(u["queued"] + u["held"] for u in users)
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(status["server"]["time"]))
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>wulf</title>
<meta http-equiv="refresh" content="5"><link rel="stylesheet" href="/static/wulf.css"><link rel="icon" href="data:,"></head><body class="table">
<h1>wulf</h1><p>{html.escape(when)}: {len(up)} of {len(status['nodes'])} nodes up, {cpus:g} cpus ({free:.1f} free);
{running:,} jobs running, {waiting:,} waiting</p>
<h2>Users</h2><table>{_head("user", "running", "cpus", "queued", "held")}{urows}</table>
<h2>Nodes</h2><table>{_head("node", "state", "cpus", "load", "free cpus", "free MB", "jobs", "features")}
{nodes}</table>
<h2>Queues</h2><table>{_head("queue", "priority", "runs", "queued", "running", "waiting because")}{qrows}</table>
<h2>Jobs</h2><table>{_head("id", "user", "queue", "origin", "state", "node", "cpu", "MB", "command", "reason")}
{jobs}</table></body></html>"""
