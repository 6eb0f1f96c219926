"""The web page: the cluster at a glance, refreshed every few seconds (no script needed)."""

from __future__ import annotations

import html
import time
from typing import Any

_STYLE = """
body{font:14px system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin-bottom:2em}
th,td{padding:.25em .8em;text-align:left;border-bottom:1px solid #ddd}
th{background:#f4f4f4} .up{color:#080} .down{color:#b00} .drain{color:#a60}
.running{color:#06c} .queued{color:#666} .failed{color:#b00}
"""


def _row(cells: list[Any], cls: str = "") -> str:
    tds = "".join(f"<td>{html.escape('' if c is None else str(c))}</td>" for c in cells)
    return f"<tr class='{cls}'>{tds}</tr>"


def render(status: dict[str, Any], queues: list[dict[str, Any]] | None = None) -> str:
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
    qrows = "".join(
        _row([f"{q['user']}:{q['name']}", q["priority"], "stopped" if q["stopped"] else q["window"], q["queued"],
              q["running"], q["reason"]])
        for q in queues or []
    )
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(status["server"]["time"]))
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>wulf</title>
<meta http-equiv="refresh" content="5"><style>{_STYLE}</style></head><body>
<h1>wulf</h1><p>{html.escape(when)}: {len(status['nodes'])} nodes, {len(status['jobs'])} jobs</p>
<h2>Nodes</h2><table><tr><th>node</th><th>state</th><th>cpus</th><th>load</th><th>free cpus</th><th>free MB</th>
<th>jobs</th><th>features</th></tr>
{nodes}</table>
<h2>Queues</h2><table><tr><th>queue</th><th>priority</th><th>runs</th><th>queued</th><th>running</th>
<th>waiting because</th></tr>{qrows}</table>
<h2>Jobs</h2><table><tr><th>id</th><th>user</th><th>queue</th><th>origin</th><th>state</th><th>node</th><th>cpu</th>
<th>MB</th><th>command</th><th>reason</th></tr>{jobs}</table></body></html>"""
