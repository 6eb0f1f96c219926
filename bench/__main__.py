"""Measure wulf on this machine and print a table plus JSON (bench/results/latest.json).

Each figure comes from real processes: a `wulf server` and a `wulf agent` started here, driven through
the real commands or the Python API. Run with `./dev bench`; `--quick` for a short run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from bench import arrays, cycle, failover, fakeagents, memory, policy, print_table, web, weblive
from wulf.client import Client

BIN = Path(sys.executable).parent
RESULTS = Path(__file__).parent / "results"


class Local:
    """A server, and optionally one agent, in a temporary directory."""

    def __init__(self, root: Path, cpus: float | None, interval: float = 5.0, config: str = "") -> None:
        self.root = root
        self.url = f"unix:{root}/server/wulf.sock"
        self.env = dict(os.environ, WULF_SERVER=self.url)
        self.env.pop("WULF_CONFIG", None)
        if config:  # the text of a wulf.toml for both daemons
            (root / "wulf.toml").write_text(config)
            self.env["WULF_CONFIG"] = str(root / "wulf.toml")
        out = self._log = open(root / "server.log", "ab")
        self.server = self._start_server()
        self.agent: subprocess.Popen[bytes] | None = None
        self.client = Client(self.url)
        self._wait(lambda: self._status() is not None)
        if cpus is not None:
            env = dict(self.env, WULF_IGNORE_PIDS=f"{os.getpid()},{self.server.pid}")
            self.agent = subprocess.Popen(
                [str(BIN / "wulf"), "agent", "--server", self.url, "--name", "bench", "--cpus", str(cpus),
                 "--mem", "16G", "--state", str(root / "agent"), "--interval", str(interval)],
                stdout=out, stderr=out, env=env)
            self._wait(lambda: any(n["state"] == "up" for n in (self._status() or {}).get("nodes", [])))

    def _start_server(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen([str(BIN / "wulf"), "server", "--state", str(self.root / "server"), "--listen", ""],
                                stdout=self._log, stderr=self._log, env=self.env)

    def restart_server(self) -> float:
        """Stop the server (SIGTERM, as its unit does) and start it again on the same state; returns once
        it answers, with the seconds the old one took to stop."""
        t = time.perf_counter()
        self.server.terminate()
        self.server.wait(timeout=60)
        stopped = time.perf_counter() - t
        self.server = self._start_server()
        self._wait(lambda: self._status() is not None, timeout=120)
        return stopped

    def _status(self) -> dict[str, Any] | None:
        client = Client(self.url, timeout=2)
        try:
            return client.status()
        except Exception:
            return None
        finally:
            client.close()

    @staticmethod
    def _wait(check: Any, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.05)
        raise RuntimeError("the local cluster did not come up")

    def batch(self, command: str, n: int) -> None:
        """``command`` n times in one multi-script file (`qr -s`, as a user submits a batch), waited for to
        the last; every one must end done."""
        script = self.root / "jobs.sh"
        script.write_text("\n#NEXTSCRIPT\n".join([command] * n) + "\n")
        out = subprocess.run([str(BIN / "qr"), "-s", str(script), "-o", "/dev/null", "--json"], env=self.env,
                             check=True, capture_output=True, text=True, cwd=self.root).stdout
        reply = self.client.wait(json.loads(out)["jobs"], timeout=600)
        assert reply["done"] and reply["counts"].get("done") == n, reply["counts"]

    def stop(self) -> None:
        for p in (self.agent, self.server):
            if p is not None:
                p.terminate()
                p.wait(timeout=20)
        self.client.close()
        self._log.close()


@contextmanager
def local(cpus: float | None, interval: float = 5.0, config: str = "") -> Iterator[Local]:
    with tempfile.TemporaryDirectory(prefix="wulf-bench-") as d:
        c = Local(Path(d), cpus, interval, config)
        try:
            yield c
        finally:
            c.stop()


def _specs(n: int, cwd: str, command: str = "true") -> list[dict[str, Any]]:
    return [{"command": command, "cwd": cwd, "output": "/dev/null"} for _ in range(n)]


def qr_round_trip(c: Local, runs: int) -> dict[str, float]:
    """One `qr -c true` as a user runs it: process start to exit, measured from outside."""
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([str(BIN / "qr"), "-c", "true", "-o", "/dev/null"], env=c.env, check=True,
                       stdout=subprocess.DEVNULL, cwd=c.root)
        times.append((time.perf_counter() - t) * 1000)
    c.client.wait([], timeout=60)
    return {"median_ms": statistics.median(times), "p90_ms": sorted(times)[int(len(times) * 0.9)]}


def submit_rate(n: int) -> dict[str, float]:
    """Jobs durably committed per second, submitted in one API call (no agent: they stay queued)."""
    with local(None) as c:
        c.client.submit(_specs(10, str(c.root)))  # warm up
        t = time.perf_counter()
        ids = c.client.submit(_specs(n, str(c.root)))
        dt = time.perf_counter() - t
        assert len(ids) == n
        return {"jobs": n, "seconds": dt, "jobs_per_s": n / dt}


def end_to_end(cpus: int, n: int) -> dict[str, float]:
    """n trivial jobs submitted in one multi-script file (`qr -s`), first submit to last finish."""
    with local(cpus) as c:
        t = time.perf_counter()
        c.batch("true", n)
        dt = time.perf_counter() - t
        return {"slots": cpus, "jobs": n, "seconds": dt, "jobs_per_s": n / dt}


def latency(runs: int, config: str = "") -> dict[str, float]:
    """One trivial job on an idle cluster: submit to start (server clock) and submit to finish. A job
    that does not end in time (a node the machine's other load leaves no room on) is an error, not a
    figure."""
    with local(2, config=config) as c:
        to_finish, to_start = [], []
        for _ in range(runs):
            t = time.perf_counter()
            [jid] = c.client.submit(_specs(1, str(c.root)))
            if not c.client.wait([jid], timeout=30)["done"]:
                raise RuntimeError(f"job {jid} did not end in 30 s: {c.client.job(jid).get('reason')}")
            to_finish.append((time.perf_counter() - t) * 1000)
            job = c.client.job(jid)
            to_start.append((job["started"] - job["submitted"]) * 1000)
            time.sleep(0.02)
        return {"submit_to_start_median_ms": statistics.median(to_start),
                "submit_to_finish_median_ms": statistics.median(to_finish)}


def _cpu_rss(pid: int, seconds: float) -> tuple[float, float]:
    p = psutil.Process(pid)
    t0 = sum(p.cpu_times()[:2])
    time.sleep(seconds)
    t1 = sum(p.cpu_times()[:2])
    return 100.0 * (t1 - t0) / seconds, p.memory_info().rss / 2**20


def agent_cost(procs: int, seconds: float) -> dict[str, float]:
    """The agent at its default interval watching `procs` extra processes; and both daemons idle."""
    sleepers = [subprocess.Popen(["sleep", "3600"]) for _ in range(procs)]
    try:
        with local(2) as c:
            assert c.agent is not None
            time.sleep(6)  # past the first samples
            agent_cpu, agent_rss = _cpu_rss(c.agent.pid, seconds)
            server_cpu, server_rss = _cpu_rss(c.server.pid, 0.1)
            total = len(psutil.pids())
    finally:
        for s in sleepers:
            s.kill()
        for s in sleepers:
            s.wait()
    with local(2) as c:
        assert c.agent is not None
        time.sleep(6)
        idle_agent = _cpu_rss(c.agent.pid, seconds / 2)[0]
        idle_server, _ = _cpu_rss(c.server.pid, seconds / 2)
    return {"processes": total, "agent_cpu_pct": agent_cpu, "agent_rss_mb": agent_rss,
            "server_rss_mb": server_rss, "idle_agent_cpu_pct": idle_agent, "idle_server_cpu_pct": idle_server}


def main() -> int:
    ap = argparse.ArgumentParser(prog="bench", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer runs, for a smoke test")
    ap.add_argument("--json", action="store_true", help="print only the JSON")
    ap.add_argument("--hq", default="", metavar="PYTHON",
                    help="a Python with the hyperqueue package (a venv of its own): the job cycle on it too")
    args = ap.parse_args()
    q = args.quick
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                           "kernel": platform.release()}, "time": time.time()}
    with local(16) as c:
        results["qr_round_trip"] = qr_round_trip(c, 10 if q else 50)
    results["submit"] = submit_rate(2000 if q else 20000)
    results["end_to_end"] = [end_to_end(s, 200 if q else 1000) for s in (2, 16)]
    results["latency"] = latency(10 if q else 50)
    results["agent"] = agent_cost(100 if q else 1000, 5 if q else 30)
    results["policy"] = policy.run(q)
    results["arrays"] = arrays.run(q)
    results["cycle"] = cycle.run(q, hq=args.hq)
    results["fakeagents"] = (fakeagents.run(100, 20, 5.0, 1000, 3.0) if q
                             else fakeagents.run(1000, 65, 5.0, 10000, 10.0))
    results["web"] = web.run(q)
    results["memory"] = memory.run(q)
    if weblive.CHROMIUM.exists():  # (in a real browser: Debian's chromium)
        results["weblive"] = weblive.run(q)
    if os.geteuid() == 0 and failover.postgresql_here():  # (a private PostgreSQL: as root, with Debian's)
        results["failover"] = failover.private(1000 if q else 10_000)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2))
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    rows = [
        ("qr -c true round trip, median", f"{results['qr_round_trip']['median_ms']:.1f} ms", "<= 30 ms"),
        ("bulk submission, committed", f"{results['submit']['jobs_per_s']:,.0f} jobs/s", ">= 20,000 jobs/s"),
    ]
    for e in results["end_to_end"]:
        rows.append((f"end to end, {e['jobs']} x true, {e['slots']} slots", f"{e['jobs_per_s']:,.0f} jobs/s",
                     ">= 500 jobs/s"))
    lat = results["latency"]
    rows += [
        ("submit to start, idle, median", f"{lat['submit_to_start_median_ms']:.1f} ms", ""),
        ("submit to finish, idle, median", f"{lat['submit_to_finish_median_ms']:.1f} ms", "<= 20 ms"),
    ]
    a = results["agent"]
    rows += [
        (f"agent cpu, {a['processes']} processes, default interval", f"{a['agent_cpu_pct']:.2f} % of a core",
         "<= 1 %"),
        ("agent resident memory", f"{a['agent_rss_mb']:.0f} MB", "<= 80 MB"),
        ("idle cpu: agent / server", f"{a['idle_agent_cpu_pct']:.2f} % / {a['idle_server_cpu_pct']:.2f} %",
         "close to 0"),
    ]
    rows += policy.rows(results["policy"])
    rows += arrays.rows(results["arrays"])
    rows += cycle.rows(results["cycle"])
    rows += fakeagents.rows(results["fakeagents"])
    if "failover" in results:
        rows += failover.rows(results["failover"])
    rows += web.rows(results["web"])
    rows += memory.rows(results["memory"])
    if "weblive" in results:
        rows += weblive.rows(results["weblive"])
    print_table(rows, 22, header=True)
    print(f"\nJSON: {RESULTS / 'latest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
