"""Many nodes on one machine (issue 16): N agent connections from one process, speaking the real protocol
to a real `wulf server`, to see how one server keeps up with a large cluster.

Each fake agent says a signed hello (the cluster key the server made), reports every ``interval``
seconds (its phase spread over the interval) a sample and its jobs' use and ``clusters`` process
clusters of outside work (3 % of them new at each report, as people start and stop programs, and the use
of 10 % changed; as deltas, as the agent sends them, unless --full-reports), and
answers a start at once: the job is reported started, and exited ``run`` seconds later (its exit resent
until the server acknowledges it). Meanwhile the bench measures the server from outside:

- its cpu (% of one core) and resident memory while only the reports come;
- ``jobs`` trivial jobs submitted in one call, first submission to last exit recorded: jobs/s;
- during that run, `qr` round trips and listings (`jstat --json`'s request, and with --external): how
  long a user waits, and how large the listing is.

Run alone: ``python -m bench.fakeagents --nodes 1000 --clusters 65``. Nothing here is a real agent:
no process is started, nothing is measured on the nodes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
from websockets.asyncio.client import ClientConnection, unix_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from wulf.agent.backoff import Backoff
from wulf.auth import credential
from wulf.auth.key import ClusterKey, load_key
from wulf.client import Client
from wulf.model.deltas import Deltas
from wulf.protocol import (
    Ack,
    Cluster,
    Exited,
    Hello,
    JobExit,
    JobStarted,
    JobUse,
    NodeInfo,
    NodeSample,
    Report,
    Resync,
    Start,
    Started,
    server_message,
)

BIN = Path(sys.executable).parent
RECONNECT_MAX = 30.0
"""[agent] reconnect_max's default."""
CHANGING = 0.1
"""The share of a node's outside clusters whose use changes from one report to the next (besides the 3 %
that end and are replaced)."""


class FakeAgent:
    """One node: a connection, its outside work, the jobs it was told to start and their exits."""

    def __init__(self, name: str, key: ClusterKey, sock: str, clusters: int, interval: float, run: float,
                 seed: int) -> None:
        self.name, self.key, self.sock = name, key, sock
        self.interval, self.run = interval, run
        self.rng = random.Random(f"{seed}:{name}")
        self.next_key = 0
        self.clusters = [self._cluster() for _ in range(clusters)]
        self.running: dict[int, float] = {}  # job -> started
        self.unacked: dict[int, JobExit] = {}
        self.ws: ClientConnection | None = None
        self.up = asyncio.Event()
        self.reports = 0
        self.failures: dict[str, int] = {}  # why a connection failed or went -> how often
        self.changing = CHANGING
        self.deltas = True  # reports as deltas, as the agent sends them (False: every report full)
        self.delta = Deltas()

    def _cluster(self) -> Cluster:
        self.next_key += 1
        pid = 10_000 + self.next_key
        return Cluster(key=f"{pid}:{self.next_key}", pid=pid, uid=2000 + self.rng.randrange(20),
                       user=f"u{self.rng.randrange(20)}", command=f"program-{self.rng.randrange(50)} --input data",
                       cpu=round(self.rng.uniform(0.0, 0.3), 3), mem_mb=round(self.rng.uniform(5, 400), 1),
                       nprocs=self.rng.randrange(1, 4), started=time.time())

    def _hello(self) -> str:
        auth = credential.encode(self.key, credential.AGENT, os.geteuid(), os.getegid(), self.name, time.time(),
                                 credential.agent_digest(self.name))
        info = NodeInfo(name=self.name, hostname=self.name, cpus=32, mem_mb=131072, arch="x86_64", os="linux")
        running = [JobStarted(id=i, pid=i, time=t) for i, t in self.running.items()]
        return Hello(node=info, auth=auth, running=running, finished=list(self.unacked.values())).model_dump_json()

    def _report(self) -> str:
        for k in range(len(self.clusters)):  # a few programs end and others start; some work harder
            r = self.rng.random()
            if r < 0.03:
                self.clusters[k] = self._cluster()
            elif r < 0.03 + self.changing:
                c = self.clusters[k]
                self.clusters[k] = c.model_copy(update={"cpu": round(self.rng.uniform(0.0, 1.0), 3),
                                                        "mem_mb": round(c.mem_mb * self.rng.uniform(0.9, 1.1), 1)})
        used = sum(c.cpu for c in self.clusters) + len(self.running)
        mem = sum(c.mem_mb for c in self.clusters) + 10.0 * len(self.running)
        sample = NodeSample(time=time.time(), load1=used, cpu_user=used / 32, cpu_idle=max(0.0, 1 - used / 32),
                            mem_total_mb=131072, mem_available_mb=131072 - mem, nprocs=len(self.clusters) * 2,
                            used_cpu=used, used_mem_mb=mem)
        jobs = [JobUse(id=i, cpu=1.0, mem_mb=10.0) for i in self.running]
        if not self.deltas:
            return Report(sample=sample, jobs=jobs, clusters=self.clusters).model_dump_json()
        return self.delta.report(sample, jobs, self.clusters).model_dump_json()

    async def live(self, stop: asyncio.Event) -> None:
        """Connect (again, after a pause as the agent's, should the connection go), report, start and end
        jobs."""
        backoff = Backoff(RECONNECT_MAX, self.rng)
        while not stop.is_set():
            began = time.monotonic()
            try:
                # (the real agent's open timeout: a handshake the server leaves waiting longer fails)
                async with unix_connect(self.sock, "ws://localhost/api/v1/agent", max_size=64 * 2**20,
                                        open_timeout=10, ping_interval=None, compression=None) as ws:
                    self.ws = ws
                    await ws.send(self._hello())
                    self.delta.resync()
                    reporter = asyncio.create_task(self._reports(ws, stop))
                    try:
                        async for text in ws:
                            await self._handle(ws, text)
                    finally:
                        reporter.cancel()
                        self.ws = None
            except (OSError, ConnectionClosed, TimeoutError, InvalidHandshake) as e:
                why = _why(e)
                self.failures[why] = self.failures.get(why, 0) + 1
            self.up.clear()
            if time.monotonic() - began > 10:
                backoff.reset()
            if not stop.is_set():
                await asyncio.sleep(backoff.next())

    async def _reports(self, ws: ClientConnection, stop: asyncio.Event) -> None:
        await asyncio.sleep(self.rng.uniform(0, self.interval))  # (the nodes' phases spread)
        while not stop.is_set():
            await ws.send(self._report())
            self.reports += 1
            await asyncio.sleep(self.interval)

    async def _handle(self, ws: ClientConnection, text: str) -> None:
        msg = server_message.validate_json(text)
        if msg.type == "welcome":
            self.up.set()
        elif isinstance(msg, Start):
            now = time.time()
            for j in msg.jobs:
                self.running[j.id] = now
            await ws.send(Started(jobs=[JobStarted(id=j.id, pid=j.id, time=now) for j in msg.jobs]).model_dump_json())
            asyncio.get_running_loop().call_later(self.run, self._exit, [j.id for j in msg.jobs])
        elif isinstance(msg, Resync):
            self.delta.resync()
        elif isinstance(msg, Ack):
            for i in msg.ids:
                self.unacked.pop(i, None)

    def _exit(self, ids: list[int]) -> None:
        now = time.time()
        exits = []
        for i in ids:
            started = self.running.pop(i, None)
            if started is not None:
                e = self.unacked[i] = JobExit(id=i, exit_code=0, time=now, cpu_time=0.001, peak_mem_mb=1.0)
                exits.append(e)
        if exits and self.ws is not None:
            task = asyncio.ensure_future(self.ws.send(Exited(jobs=exits).model_dump_json()))
            task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)


def _why(e: BaseException) -> str:
    """A failed or lost connection, named for the bench's tally."""
    if isinstance(e, ConnectionClosed):
        frame = e.rcvd
        return f"closed {frame.code} {frame.reason[:40]}".strip() if frame is not None else "closed (no frame)"
    if isinstance(e, TimeoutError):
        return "timeout (opening handshake)"
    return type(e).__name__


def _cpu(pid: int, seconds: float) -> tuple[float, float]:
    """% of one core the process ``pid`` used over ``seconds``, and this one (the fake agents: on a loaded
    machine they may be what is slow)."""
    p, me = psutil.Process(pid), psutil.Process()
    t0, m0 = sum(p.cpu_times()[:2]), sum(me.cpu_times()[:2])
    time.sleep(seconds)
    return (100.0 * (sum(p.cpu_times()[:2]) - t0) / seconds, 100.0 * (sum(me.cpu_times()[:2]) - m0) / seconds)


def _qr(env: dict[str, str], cwd: Path) -> float:
    t = time.perf_counter()
    subprocess.run([str(BIN / "qr"), "-c", "true", "-o", "/dev/null"], env=env, check=True, cwd=cwd,
                   stdout=subprocess.DEVNULL)
    return (time.perf_counter() - t) * 1000


def _listing(url: str, external: bool) -> tuple[float, int]:
    """A listing as `jstat --json` asks it (``external``: as `jstat --json --external` does, every outside
    process cluster a job): seconds (the best of three), and the size of the answer."""
    client = Client(url, timeout=120)
    try:
        times = []
        for _ in range(3):
            t = time.perf_counter()
            reply = client.status(external=external)
            times.append(time.perf_counter() - t)
        return min(times), len(json.dumps(reply))
    finally:
        client.close()


async def _drive(agents: list[FakeAgent], stop: asyncio.Event) -> None:
    tasks = [asyncio.create_task(a.live(stop)) for a in agents]
    await stop.wait()
    for t in tasks:
        t.cancel()
    with contextlib.suppress(BaseException):
        await asyncio.gather(*tasks, return_exceptions=True)


def _count_up(url: str) -> int:
    client = Client(url, timeout=30)
    try:
        return sum(1 for n in client.nodes() if n["state"] == "up")
    except Exception:  # (not answering yet)
        return -1
    finally:
        client.close()


def _wait_up(url: str, nodes: int, timeout: float) -> tuple[int, float]:
    """How many nodes are up once all are (or ``timeout`` passed), and the seconds it took."""
    t0 = time.perf_counter()
    up = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        up = _count_up(url)
        if up == nodes:
            break
        time.sleep(0.5)
    return up, time.perf_counter() - t0


def _tally(agents: list[FakeAgent]) -> dict[str, int]:
    out: dict[str, int] = {}
    for a in agents:
        for why, n in a.failures.items():
            out[why] = out.get(why, 0) + n
        a.failures.clear()
    return out


def _restart(c: Any, agents: list[FakeAgent], nodes: int) -> dict[str, Any]:
    """Restart the server under the connected fake agents: how long until all are back, and what failed
    on the way (the agents' tally; the server log's handshake timeouts and tracebacks)."""
    _tally(agents)
    log_before = len((c.root / "server.log").read_bytes())
    t = time.perf_counter()
    stopping = c.restart_server()
    answering = time.perf_counter() - t
    down = _tally(agents)  # (while the old server stopped and the new one read its store)
    up, back = _wait_up(c.url, nodes, max(120.0, nodes / 20))
    log = (c.root / "server.log").read_bytes()[log_before:].decode(errors="replace")
    return {"restart_old_stopped_s": stopping, "restart_answering_s": answering, "restart_all_back_s": answering + back, "restart_up": up,
            "restart_agent_failures_while_away": down, "restart_agent_failures": _tally(agents),
            "restart_log_hello_timeouts": log.count("no hello within"),
            "restart_log_tracebacks": log.count("Traceback"),
            "restart_log_errors": sum(1 for line in log.splitlines() if " ERROR " in line)}


def run(nodes: int, clusters: int, interval: float, jobs: int, seconds: float, job_seconds: float = 0.0,
        seed: int = 1, listings: bool = True, restart: bool = False, deltas: bool = True) -> dict[str, Any]:
    from bench.__main__ import local  # (here: bench.__main__ may import this module)

    with local(None) as c:
        key = load_key(c.root / "server" / "cluster.key")
        sock = c.url[len("unix:"):]
        agents = [FakeAgent(f"f{i:05d}", key, sock, clusters, interval, job_seconds, seed) for i in range(nodes)]
        for a in agents:
            a.deltas = deltas
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()
        import threading

        thread = threading.Thread(target=loop.run_until_complete, args=(_drive(agents, stop),), daemon=True)
        thread.start()
        up, connected_s = _wait_up(c.url, nodes, max(60.0, nodes / 20))
        time.sleep(interval + 1)  # every node has reported
        out: dict[str, Any] = {"nodes": nodes, "up": up, "clusters_per_node": clusters, "interval_s": interval,
                               "report_deltas": deltas,
                               "connect_s": connected_s, "connect_agent_failures": _tally(agents)}
        out["server_cpu_pct_reports_only"], out["fakeagents_cpu_pct"] = _cpu(c.server.pid, max(seconds, 2 * interval))
        out["server_rss_mb"] = psutil.Process(c.server.pid).memory_info().rss / 2**20
        if listings:
            listing_s, listing_bytes = _listing(c.url, external=False)
            out["listing_s"], out["listing_mb"] = listing_s, listing_bytes / 2**20
            listing_s, listing_bytes = _listing(c.url, external=True)
            out["listing_external_s"], out["listing_external_mb"] = listing_s, listing_bytes / 2**20
        if jobs:
            # a run of trivial jobs while the reports go on; qr round trips in the meantime
            specs = [{"command": "true", "cwd": str(c.root), "output": "/dev/null"} for _ in range(jobs)]
            t = time.perf_counter()
            ids = c.client.submit(specs)
            qr_ms = [_qr(c.env, c.root) for _ in range(5)]
            reply = c.client.wait(ids, timeout=600)
            dt = time.perf_counter() - t
            out["jobs"] = jobs
            out["jobs_done"] = reply["counts"].get("done", 0)
            out["jobs_per_s"] = jobs / dt
            out["qr_during_run_median_ms"] = statistics.median(qr_ms)
            out["qr_during_run_max_ms"] = max(qr_ms)
        out["reports"] = sum(a.reports for a in agents)
        if restart:
            out.update(_restart(c, agents, nodes))
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
        if not thread.is_alive():
            loop.close()
        log = (c.root / "server.log").read_text(errors="replace")
        out["server_log_tracebacks"] = log.count("Traceback")
        return out


def rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    n = f"{r['nodes']:,} fake nodes, {r['clusters_per_node']} outside clusters each"
    how = "as deltas" if r.get("report_deltas", True) else "full"
    out = [(f"server cpu, {n}, reports ({how}) every {r['interval_s']:g} s", f"{r['server_cpu_pct_reports_only']:.0f} % of a core",
            "")]
    if "restart_all_back_s" in r:
        failed = sum(r["restart_agent_failures"].values()) + sum(r["restart_agent_failures_while_away"].values())
        out.append((f"server restarted under {r['nodes']:,} agents: all back", f"{r['restart_all_back_s']:.1f} s "
                    f"({r['restart_log_hello_timeouts']} hello timeouts, {failed} failed tries)", "<= 30 s, none"))
    if "listing_s" not in r or "jobs_per_s" not in r:
        return out
    return out + [
        (f"jstat --json, {n}", f"{r['listing_s'] * 1000:.0f} ms ({r['listing_mb']:.1f} MB)", "<= 300 ms"),
        ("jstat --json --external (every outside cluster a job)",
         f"{r['listing_external_s']:.2f} s ({r['listing_external_mb']:.0f} MB)", ""),
        (f"{r['jobs']:,} x true across {r['nodes']:,} fake nodes", f"{r['jobs_per_s']:,.0f} jobs/s", ""),
        ("qr round trip meanwhile, median (max)", f"{r['qr_during_run_median_ms']:.0f} ms "
                                                  f"({r['qr_during_run_max_ms']:.0f} ms)", ""),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.fakeagents", description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=200)
    ap.add_argument("--clusters", type=int, default=30, help="outside process clusters per node")
    ap.add_argument("--interval", type=float, default=5.0, help="seconds between a node's reports")
    ap.add_argument("--jobs", type=int, default=2000, help="trivial jobs run across the nodes")
    ap.add_argument("--seconds", type=float, default=10.0, help="how long the server's cpu is measured")
    ap.add_argument("--no-listings", action="store_true", help="do not time jstat's listings")
    ap.add_argument("--restart", action="store_true",
                    help="at the end, restart the server under the agents: how long until all are back")
    ap.add_argument("--full-reports", action="store_true",
                    help="every report carries all the node's clusters (as before reports were deltas)")
    args = ap.parse_args()
    r = run(args.nodes, args.clusters, args.interval, args.jobs, args.seconds, listings=not args.no_listings,
            restart=args.restart, deltas=not args.full_reports)
    print(json.dumps(r, indent=2))
    for what, result, _ in rows(r):
        print(f"{what:<70} {result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
