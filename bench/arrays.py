"""A job array of 100,000 tasks (issue 11's figure): how long its submission takes (one API call, answered
once committed), how much the server's resident memory grows, and what the store keeps per task.

A real `wulf server` with no agent (the tasks stay queued); the script is a few kilobytes, so a store
that kept a copy per task would grow by hundreds of megabytes. Run alone with
``python -m bench.arrays [--tasks N]``, or as part of ``./dev bench``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from bench import print_table

#: a script of a realistic size: what the store must not hold once a task
SCRIPT = "#!/bin/sh\n" + "".join(f"# setting {i}: {'x' * 60}\n" for i in range(60)) + "echo $WULF_ARRAY_TASK_ID\n"


def _rss_mb(pid: int) -> float:
    return float(psutil.Process(pid).memory_info().rss) / 2**20


def _settled_rss(pid: int, timeout: float = 30.0) -> float:
    """The server's resident memory once it has stopped growing (its scheduling pass over the tasks is done)."""
    last = _rss_mb(pid)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = _rss_mb(pid)
        if abs(now - last) < 0.5:
            return now
        last = now
    return last


def _db_bytes(state: Path) -> int:
    return sum(p.stat().st_size for p in state.glob("*.db*")) + sum(p.stat().st_size for p in state.glob("*.sqlite*"))


def one(tasks: int, throttle: int) -> dict[str, Any]:
    from bench.__main__ import local  # (here: bench.__main__ imports this module)

    spec = f"1-{tasks}" + (f"%{throttle}" if throttle else "")
    with local(None) as c:
        c.client.submit([{"command": "warm", "script": "true\n", "cwd": str(c.root), "output": "/dev/null",
                          "array": "1-10"}])  # warm up: the first write, the first pass
        before = _settled_rss(c.server.pid)
        db_before = _db_bytes(c.root / "server")
        t = time.perf_counter()
        [aid] = c.client.submit([{"command": "bench", "script": SCRIPT, "cwd": str(c.root), "output": "/dev/null",
                                  "array": spec}])
        seconds = time.perf_counter() - t
        after = _settled_rss(c.server.pid)
        status = c.client.get(f"/api/v1/jobs/{aid + tasks - 1}")
        assert status["array_id"] == aid and status["array_index"] == tasks, status
        db_after = _db_bytes(c.root / "server")
        return {"tasks": tasks, "spec": spec, "submit_s": seconds, "rss_before_mb": before, "rss_after_mb": after,
                "rss_growth_mb": after - before, "store_bytes_per_task": (db_after - db_before) / tasks,
                "script_bytes": len(SCRIPT)}


def run(quick: bool, tasks: int | None = None) -> list[dict[str, Any]]:
    n = tasks or (10_000 if quick else 100_000)
    return [one(n, 0), one(n, 50)]


def rows(results: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    out = []
    for r in results:
        out.append((f"array {r['spec']}: submit", f"{r['submit_s']:.2f} s", "<= 1 s"))
        out.append((f"array {r['spec']}: server memory growth", f"{r['rss_growth_mb']:.0f} MB", "<= 200 MB"))
        out.append((f"array {r['spec']}: store per task", f"{r['store_bytes_per_task']:.0f} bytes",
                    f"script {r['script_bytes']} bytes, kept once"))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(prog="bench.arrays", description=__doc__)
    ap.add_argument("--tasks", type=int, default=100_000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results = run(False, args.tasks)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    table = rows(results)
    print_table(table, 14)
    return 0


if __name__ == "__main__":
    sys.exit(main())
