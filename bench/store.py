"""Store insert throughput: jobs committed per second, SQLite against PostgreSQL (issue 16 §3).

Each store is driven as the server drives it (JobStore.insert from one event loop), in three shapes:
- ``one by one``: one job a call, each awaited before the next (a lone `qr -c`: commit latency);
- ``concurrent``: 64 callers at once, one job a call (many users' `qr` at once: group commit);
- ``bulk``: 1,000 jobs a call (a `qr -s` file).
SQLite runs as the server runs it by default (WAL, synchronous=full) and with synchronous=normal;
PostgreSQL is a private server on this machine with its defaults (fsync on, synchronous_commit on),
reached over loopback TCP, or the one ``--pg URL`` names (a new database for each run is made in it).

Run: ``.venv/bin/python -m bench.store [--jobs N] [--pg URL]`` (as root without --pg: the private
server runs as a throwaway user, as in the tests).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import print_table
from wulf.model.job import Job, JobState, Origin
from wulf.store import open_store
from wulf.store.base import JobStore

CALLERS = 64
BULK = 1000


def _job(i: int) -> Job:
    return Job(id=i, user="alice", uid=1000, origin=Origin.BATCH, state=JobState.QUEUED, command="true",
               cwd="/home/alice", name="true", env_hash="e", output="/dev/null", submitted=time.time())


async def _one_by_one(store: JobStore, n: int) -> None:
    for i in range(1, n + 1):
        await store.insert([_job(i)], {})


async def _concurrent(store: JobStore, n: int) -> None:
    async def caller(k: int) -> None:
        for i in range(k, n + 1, CALLERS):
            await store.insert([_job(i)], {})

    await asyncio.gather(*(caller(k) for k in range(1, CALLERS + 1)))


async def _bulk(store: JobStore, n: int) -> None:
    for first in range(1, n + 1, BULK):
        await store.insert([_job(i) for i in range(first, min(first + BULK, n + 1))], {})


SHAPES: dict[str, tuple[Callable[[JobStore, int], Any], int]] = {
    # shape: (driver, how many jobs of --jobs it inserts: one by one is slow on a synchronous disk)
    "one by one": (_one_by_one, 10),
    "concurrent": (_concurrent, 1),
    "bulk": (_bulk, 1),
}


def _rate(where: str, synchronous: str, shape: str, jobs: int) -> float:
    driver, fraction = SHAPES[shape]
    n = max(jobs // fraction, 100)
    store = open_store(where, synchronous)
    try:
        t0 = time.perf_counter()
        asyncio.run(driver(store, n))
        return n / (time.perf_counter() - t0)
    finally:
        store.close()


@contextmanager
def _private_pg() -> Iterator[Callable[[], str]]:
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
    import pgserver  # the tests' private PostgreSQL, here with fsync on

    server, owner = pgserver.start(fsync=True)
    try:
        yield server.new_database
    finally:
        pgserver.finish(server, owner)


def _pg_databases(url: str) -> Callable[[], str]:
    import psycopg

    count = iter(range(1, 1_000_000))

    def new() -> str:
        name = f"wulf_bench_{int(time.time())}_{next(count)}"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return url.rsplit("/", 1)[0] + "/" + name

    return new


def main() -> int:
    ap = argparse.ArgumentParser(prog="bench.store", description=__doc__)
    ap.add_argument("--jobs", type=int, default=20000, help="jobs per run (one by one: a tenth)")
    ap.add_argument("--pg", metavar="URL", help="a PostgreSQL to use instead of a private one")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON here")
    args = ap.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="wulf-bench-store-") as tmp:
        runs = iter(range(1, 1000))
        for sync in ("full", "normal"):
            results[f"sqlite synchronous={sync}"] = {
                shape: _rate(f"{tmp}/s{next(runs)}.db", sync, shape, args.jobs) for shape in SHAPES}
    with (_private_pg() if args.pg is None else _nullcontext(_pg_databases(args.pg))) as new_database:
        results["postgresql"] = {shape: _rate(new_database(), "full", shape, args.jobs) for shape in SHAPES}
    rows = [(f"{store}, {shape}", f"{rate:,.0f}", "jobs/s committed") for store, rates in results.items()
            for shape, rate in rates.items()]
    print_table(rows, 10, header=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


@contextmanager
def _nullcontext(value: Callable[[], str]) -> Iterator[Callable[[], str]]:
    yield value


if __name__ == "__main__":
    sys.exit(main())
