"""Failover under a burst of submissions (issue 16 §3): two `wulf server`s share one PostgreSQL store, one
leads and one stands by; clients submit a burst of jobs one at a time (each with its own idempotency key,
tried again with the same key until acknowledged, as `qr` does) and the leader is killed (SIGKILL) a third of
the way through. Reported: acknowledged jobs lost (0 is the only right answer), jobs started twice (0
likewise), how long after the kill the standby led, and the longest time no submission was acknowledged.

Run: ``.venv/bin/python -m bench.failover [--jobs N] [--clients K] [--pg URL]`` (as root without --pg: the
tests' private PostgreSQL, fsync on, is started for the run).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench import print_table
from bench.store import _pg_databases, _private_pg
from wulf.client import Client, new_key
from wulf.errors import WulfError

BIN = Path(sys.executable).parent


class _Burst:
    """``clients`` threads submitting ``jobs`` jobs between them, one at a time, each until acknowledged."""

    def __init__(self, urls: str, work: Path, jobs: int, clients: int) -> None:
        self.urls, self.work = urls, work
        self.acked: list[int] = []
        self.acked_at: list[float] = []  # monotonic time of each acknowledgement
        self.errors: list[str] = []
        self._lock = threading.Lock()
        share = [jobs // clients + (i < jobs % clients) for i in range(clients)]
        self.threads = [threading.Thread(target=self._submit, args=(n,), daemon=True) for n in share]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self.threads)

    def _submit(self, n: int) -> None:
        spec = {"command": f"echo $WULF_JOB_ID >> {self.work}/started", "cwd": str(self.work), "cpu": 0.1}
        with contextlib.closing(Client(self.urls, timeout=10)) as client:
            for _ in range(n):
                key, give_up = new_key(), time.monotonic() + 60
                while True:
                    try:
                        ids = client.submit([spec], env={}, key=key)
                        break
                    except WulfError as e:
                        if not e.retryable or time.monotonic() > give_up:
                            with self._lock:
                                self.errors.append(e.message)
                            return
                        time.sleep(0.05)
                with self._lock:
                    self.acked += ids
                    self.acked_at.append(time.monotonic())


def _wait(what: str, check: Callable[[], Any], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"failover bench: {what} did not happen within {timeout:g} s")
        time.sleep(0.02)


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def run(database: str, jobs: int = 10_000, clients: int = 8, cpus: int = 16) -> dict[str, Any]:
    """The burst against a leader and a standby on ``database`` (a PostgreSQL URL of an empty database)."""
    with tempfile.TemporaryDirectory(prefix="wulf-failover-") as d:
        root = Path(d)
        work = root / "work"
        work.mkdir()
        os.chmod(work, 0o777)
        (root / "wulf.toml").write_text(f'[store]\nurl = "{database}"\n[auth]\nkey_file = "{root}/cluster.key"\n')
        env = dict(os.environ, WULF_CONFIG=str(root / "wulf.toml"))
        urls = f"unix:{root}/a/wulf.sock,unix:{root}/b/wulf.sock"
        env["WULF_SERVER"] = urls
        logs = {name: root / f"{name}.log" for name in ("a", "b", "agent")}
        procs: dict[str, subprocess.Popen[bytes]] = {}

        def start(name: str, argv: list[str]) -> None:
            with open(logs[name], "ab") as out:
                procs[name] = subprocess.Popen([str(BIN / "wulf"), *argv], stdout=out, stderr=out, env=env)

        try:
            start("a", ["server", "--state", str(root / "a"), "--listen", ""])
            _wait("the leader's socket", lambda: (root / "a" / "wulf.sock").exists(), 30)
            start("b", ["server", "--state", str(root / "b"), "--listen", ""])
            _wait("the standby to stand by", lambda: "standing by" in _text(logs["b"]), 30)
            start("agent", ["agent", "--server", urls, "--name", "n1", "--cpus", str(cpus), "--mem", "16G",
                            "--state", str(root / "agent")])
            burst = _Burst(urls, work, jobs, clients)
            t0 = time.monotonic()
            burst.start()
            _wait("a third of the burst", lambda: len(burst.acked) >= jobs // 3, 300)
            procs["a"].send_signal(signal.SIGKILL)
            killed = time.monotonic()
            procs["a"].wait()
            _wait("the standby to lead", lambda: "this server leads" in _text(logs["b"]), 60)
            leading = time.monotonic() - killed
            if not burst.join(600):
                raise RuntimeError("failover bench: the burst did not end")
            burst_s = time.monotonic() - t0
            times = sorted(burst.acked_at)
            with contextlib.closing(Client(urls, timeout=60)) as client:
                reply = client.wait(burst.acked, timeout=600)
                status = client.status(all_jobs=True, brief=True)
            known = {j["id"]: j["state"] for j in status["jobs"]}
            jstat = subprocess.run([str(BIN / "jstat")], env=env, capture_output=True, text=True, timeout=60).stdout
            started = Counter(int(x) for x in _text(work / "started").split())
            return {"jobs": jobs, "clients": clients, "acked": len(burst.acked), "errors": len(burst.errors),
                    "first_error": burst.errors[0] if burst.errors else "",
                    "acked_twice": len(burst.acked) - len(set(burst.acked)),
                    "lost": sum(1 for i in burst.acked if i not in known),
                    "not_done": sum(1 for i in burst.acked if known.get(i) != "done") if reply.get("done") else -1,
                    "started_twice": sum(1 for n in started.values() if n > 1),
                    "never_started": sum(1 for i in burst.acked if i not in started),
                    "standby_leading_s": leading,
                    "longest_ack_gap_s": max((b - a for a, b in itertools.pairwise(times)), default=0.0),
                    "burst_seconds": burst_s, "leader_pid": (status.get("leader") or {}).get("pid"),
                    "standby_pid": procs["b"].pid,
                    "jstat_leader": next((line for line in jstat.splitlines() if "leads" in line), "")}
        finally:
            for p in procs.values():
                if p.poll() is None:
                    p.terminate()
            for p in procs.values():
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [
        (f"failover in {r['jobs']:,} submissions: acknowledged jobs lost", str(r["lost"]), "0"),
        ("failover: jobs started twice", str(r["started_twice"]), "0"),
        ("failover: the standby leads, after the kill", f"{r['standby_leading_s']:.2f} s", "<= 10 s"),
        ("failover: the longest time no submission was acknowledged", f"{r['longest_ack_gap_s']:.2f} s", ""),
    ]


def postgresql_here() -> bool:
    """Whether this machine has PostgreSQL's programs (for a private server)."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
    import pgserver

    return pgserver.bindir() is not None


def private(jobs: int, clients: int = 8) -> dict[str, Any]:
    """The bench on a private PostgreSQL (fsync on), started and stopped for it."""
    with _private_pg() as new_database:
        return run(new_database(), jobs, clients)


@contextlib.contextmanager
def _given(url: str) -> Iterator[Callable[[], str]]:
    yield _pg_databases(url)


def main() -> int:
    ap = argparse.ArgumentParser(prog="bench.failover", description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--pg", metavar="URL", help="a PostgreSQL to use instead of a private one")
    ap.add_argument("--json", action="store_true", help="print only the JSON")
    args = ap.parse_args()
    with (_private_pg() if args.pg is None else _given(args.pg)) as new_database:
        result = run(new_database(), args.jobs, args.clients)
    if args.json:
        print(json.dumps(result))
    else:
        print_table(rows(result), 8)
    return 0 if result["lost"] == result["started_twice"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
