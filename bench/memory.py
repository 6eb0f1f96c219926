"""The idle daemons' memory and the client's start-up (issue 16: idle daemons <= 60 MB resident together;
`qr -c true` median <= 25 ms).

A real `wulf server` and `wulf agent --cpus SLOTS` start in a temporary directory (as the other benches
start them), then nothing happens for a while (the agent reports at its default interval); then each
daemon's memory is read from ``/proc/PID/smaps_rollup``: RSS (resident, shared pages counted in full),
PSS (shared pages divided among the processes that map them) and USS (the pages only it maps: what
ending it gives back). The same for ``wulf up`` (server, agent and the ``wulf up`` process that waits
for them, as a user runs it in a terminal). Then ``qr -c true -o /dev/null`` N times against the idle
cluster, process start to exit, measured from outside: the client's start-up is most of it.

Run alone with ``python -m bench.memory [--idle SECONDS] [--runs N]``, or as part of ``./dev bench``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import print_table

BIN = Path(sys.executable).parent


def smaps(pid: int) -> dict[str, float]:
    """RSS, PSS and USS of one process, in MB (from /proc/PID/smaps_rollup)."""
    kb: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, rest = line.partition(":")
        kb[key] = int(rest.split()[0])
    uss = kb.get("Private_Clean", 0) + kb.get("Private_Dirty", 0)
    return {"rss_mb": kb["Rss"] / 1024, "pss_mb": kb["Pss"] / 1024, "uss_mb": uss / 1024}


def _sum(parts: list[dict[str, float]]) -> dict[str, float]:
    return {k: sum(p[k] for p in parts) for k in ("rss_mb", "pss_mb", "uss_mb")}


def qr_latency(env: dict[str, str], cwd: Path, runs: int) -> dict[str, float]:
    """``qr -c true`` as a user runs it, process start to exit (the job itself is not waited for)."""
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([str(BIN / "qr"), "-c", "true", "-o", "/dev/null"], env=env, check=True,
                       stdout=subprocess.DEVNULL, cwd=cwd)
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return {"runs": runs, "median_ms": statistics.median(times), "p90_ms": times[int(len(times) * 0.9)],
            "min_ms": times[0]}


def server_and_agent(slots: int, idle: float, runs: int) -> dict[str, Any]:
    """`wulf server` + `wulf agent --cpus SLOTS`, idle for ``idle`` seconds: each one's memory; then
    the `qr -c true` start-up against them."""
    from bench.__main__ import local

    with local(slots) as c:
        assert c.agent is not None
        time.sleep(idle)
        server, agent = smaps(c.server.pid), smaps(c.agent.pid)
        out: dict[str, Any] = {"slots": slots, "idle_s": idle, "server": server, "agent": agent,
                               "together": _sum([server, agent])}
        if runs:
            out["qr"] = qr_latency(c.env, c.root, runs)
            c.client.wait([], timeout=60)
        return out


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out += [int(p) for p in text]
    return out


def _stop(up: subprocess.Popen[bytes], started: list[int]) -> None:
    """Ctrl-C to ``wulf up``, which stops its server and agent; else they are ended here."""
    up.send_signal(signal.SIGINT)
    try:
        up.wait(timeout=30)
    except subprocess.TimeoutExpired:
        up.kill()
        up.wait()
    for pid in started:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def wulf_up(idle: float) -> dict[str, Any]:
    """``wulf up`` in the foreground (as a user runs it in a terminal), idle for ``idle`` seconds: the
    memory of it and the server and agent it started."""
    with tempfile.TemporaryDirectory(prefix="wulf-bench-up-") as d:
        env = dict(os.environ)
        env.pop("WULF_CONFIG", None)
        env.pop("WULF_SERVER", None)
        # Ctrl-C stops it; SIGINT's default handler restored, as a shell's background job ignores it
        up = subprocess.Popen([str(BIN / "wulf"), "up", "--state", d, "--listen", "127.0.0.1:0"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        started: list[int] = []
        try:
            pids = Path(d) / "up.pids"
            deadline = time.monotonic() + 60
            while not (pids.exists() and len(_children(up.pid)) == 2):
                if time.monotonic() > deadline or up.poll() is not None:
                    raise RuntimeError("wulf up did not start its server and agent")
                time.sleep(0.1)
            server_pid, agent_pid = started = [int(p) for p in pids.read_text().split()]
            time.sleep(idle)
            parts = {"up": smaps(up.pid), "server": smaps(server_pid), "agent": smaps(agent_pid)}
        finally:
            _stop(up, started)
        return {**parts, "together": _sum(list(parts.values()))}


def run(quick: bool, idle: float | None = None, runs: int | None = None) -> dict[str, Any]:
    idle = idle if idle is not None else (5.0 if quick else 60.0)
    runs = runs if runs is not None else (10 if quick else 50)
    return {"server_agent": server_and_agent(16, idle, runs), "up": wulf_up(idle)}


def rows(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    def mb(m: dict[str, float]) -> str:
        return f"{m['rss_mb']:.1f} / {m['pss_mb']:.1f} / {m['uss_mb']:.1f} MB"

    sa, up = results["server_agent"], results["up"]
    out = [(f"idle {sa['idle_s']:.0f} s: server, rss / pss / uss", mb(sa["server"]), ""),
           (f"idle {sa['idle_s']:.0f} s: agent --cpus {sa['slots']}", mb(sa["agent"]), ""),
           ("idle: server + agent together", mb(sa["together"]), "<= 60 MB resident"),
           ("wulf up: the up process", mb(up["up"]), ""),
           ("wulf up: server / agent", f"{up['server']['rss_mb']:.1f} / {up['agent']['rss_mb']:.1f} MB rss", ""),
           ("wulf up: all three together", mb(up["together"]), "")]
    if "qr" in sa:
        q = sa["qr"]
        out.append((f"qr -c true, {q['runs']} runs: median / p90", f"{q['median_ms']:.1f} / {q['p90_ms']:.1f} ms",
                    "<= 25 ms median"))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(prog="bench.memory", description=__doc__)
    ap.add_argument("--idle", type=float, default=60.0, help="seconds the daemons stay idle (default 60)")
    ap.add_argument("--runs", type=int, default=50, help="qr -c true runs (default 50)")
    ap.add_argument("--json", action="store_true", help="print only the JSON")
    args = ap.parse_args()
    results = run(False, args.idle, args.runs)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print_table(rows(results), 28)
    return 0


if __name__ == "__main__":
    sys.exit(main())
