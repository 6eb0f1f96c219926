"""jacct over a million ended jobs (issue 11 §7): one user's last week answers in under a second.

The store is filled directly (SqliteStore.insert, 50,000 jobs a commit): 100 users' jobs ended over
the last 360 days, evenly. Then a real `wulf server` opens it, and the real `jacct` command asks
``jacct -u user7 -S now-7days`` (about 190 lines), timed from process start to exit, several times.
For scale, also every user's last week (``-a``, about 19,000 lines) and a month's ``--summary -a``.

Run: ``.venv/bin/python -m bench.accounting [--jobs N] [--runs N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from wulf.model.job import Job, JobState, Origin
from wulf.store.sqlite import SqliteStore

BIN = Path(sys.executable).parent
USERS = 100
SPAN_DAYS = 360.0
CHUNK = 50_000


def _jobs(first: int, n: int, now: float, rng: random.Random) -> list[Job]:
    out = []
    for i in range(first, first + n):
        ended = now - rng.random() * SPAN_DAYS * 86400
        run = rng.uniform(10, 7200)
        started = ended - run
        cpu = float(rng.choice((1, 1, 2, 4)))
        out.append(Job(
            id=i, user=f"user{i % USERS}", uid=20000 + i % USERS, origin=Origin.BATCH,
            state=JobState.DONE if rng.random() < 0.9 else JobState.FAILED, command=f"./step --input part{i}",
            cwd="/home/x", name=f"step{i % 50}", env_hash="e", output="/dev/null", cpu_req=cpu, cpu=cpu,
            mem_req=1024.0, mem_mb=1024.0, node=f"n{i % 64}", submitted=started - rng.uniform(0, 600),
            started=started, ended=ended, exit_code=0, cpu_time=run * cpu * rng.uniform(0.2, 1.0),
            peak_mem_mb=rng.uniform(50, 1024)))
    return out


def fill(path: Path, n: int) -> float:
    """Fill a new store at ``path`` with ``n`` ended jobs; seconds it took."""
    t = time.perf_counter()
    store = SqliteStore(path, synchronous="normal")
    rng = random.Random(11)
    now = time.time()

    async def go() -> None:
        for first in range(1, n + 1, CHUNK):
            await store.insert(_jobs(first, min(CHUNK, n + 1 - first), now, rng), {"e": "{}"} if first == 1 else {})

    try:
        asyncio.run(go())
    finally:
        store.close()
    return time.perf_counter() - t


def _timed(env: dict[str, str], argv: list[str], runs: int) -> dict[str, Any]:
    times, lines = [], 0
    for _ in range(runs):
        t = time.perf_counter()
        p = subprocess.run([str(BIN / argv[0]), *argv[1:]], env=env, capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - t)
        lines = len(json.loads(p.stdout).get("jobs") or json.loads(p.stdout).get("users") or [])
    return {"command": " ".join(argv), "lines": lines, "median_s": round(statistics.median(times), 3),
            "max_s": round(max(times), 3), "runs": runs}


def run(n: int, runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="wulf-bench-acct-") as d:
        root = Path(d)
        filled = fill(root / "server" / "wulf.db", n)
        env = dict(os.environ, WULF_SERVER=f"unix:{root}/server/wulf.sock")
        env.pop("WULF_CONFIG", None)
        with open(root / "server.log", "ab") as log:
            server = subprocess.Popen([str(BIN / "wulf"), "server", "--state", str(root / "server"), "--listen", ""],
                                      stdout=log, stderr=log, env=env)
        try:
            deadline = time.monotonic() + 120
            while subprocess.run([str(BIN / "jstat"), "--nodes"], env=env, capture_output=True).returncode != 0:
                if time.monotonic() > deadline:
                    raise RuntimeError("the server did not come up")
                time.sleep(0.1)
            one = _timed(env, ["jacct", "-u", "user7", "-S", "now-7days", "--json"], runs)
            every = _timed(env, ["jacct", "-a", "-S", "now-7days", "--json"], max(1, runs // 3))
            summary = _timed(env, ["jacct", "-a", "-S", "now-30days", "--summary", "--json"], max(1, runs // 3))
        finally:
            server.terminate()
            server.wait(timeout=30)
        return {"jobs": n, "fill_s": round(filled, 1), "one_user_week": one, "every_user_week": every,
                "summary_month": summary}


def main() -> int:
    ap = argparse.ArgumentParser(prog="bench.accounting", description=__doc__)
    ap.add_argument("--jobs", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=9)
    args = ap.parse_args()
    r = run(args.jobs, args.runs)
    print(json.dumps(r, indent=2))
    ok = r["one_user_week"]["median_s"] <= 1.0
    print(f"jacct -u user7 -S now-7days over {r['jobs']:,} jobs: {r['one_user_week']['lines']} lines in "
          f"{r['one_user_week']['median_s']:.3f} s (median; max {r['one_user_week']['max_s']:.3f} s): "
          f"{'<= 1 s' if ok else 'MORE THAN 1 s'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
