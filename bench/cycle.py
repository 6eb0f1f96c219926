"""The job cycle (issue 16): how long a slot stays empty between one job's exit and the next job's start,
and where that time goes.

A real `wulf server` and `wulf agent --cpus SLOTS` run with ``WULF_TRACE_CYCLE`` set (see
:mod:`wulf.cycletrace`): each notes when it passes each step of the cycle, on the machine's monotonic
clock, and this script pairs each exit with the job started in its room. Three runs:

* ``sleep 0.1`` x N at 2 and at 16 slots: jobs/s against the ideal (slots / 0.1 s), and the breakdown;
* ``true`` x N in one ``qr -s`` file at 2 and 16 slots: jobs/s and the daemons' cpu per job;
* ``qr -c true`` round trip and submit to finish of one job on an idle cluster.

With ``--hq PYTHON`` (a Python that has the ``hyperqueue`` package, in a venv of its own: it is no
dependency of wulf's), the same sleep and true runs on HyperQueue's local cluster, for comparison;
and always through ``xargs -P`` (a fork and exec a job), the floor.
Run alone with ``python -m bench.cycle [--jobs N]``, or as part of ``./dev bench``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import psutil

from bench import print_table

BIN = Path(sys.executable).parent

#: the cycle's steps in order: (name, the job it is noted for: "e" the job that ended, "s" the next)
STEPS = [("reap", "e"), ("journal", "e"), ("exit_sent", "e"), ("exit_recv", "e"), ("placed", "e"),
         ("committed", "s"), ("start_sent", "s"), ("start_recv", "s"), ("intent", "s"), ("checked", "s"), ("cgroup", "s"), ("spawned", "s")]


def read_trace(path: Path) -> tuple[dict[str, dict[int, int]], list[tuple[list[int], list[int]]], int]:
    """The first time (ns) of each step for each job, the links (exits, jobs placed in their room), and
    how many transactions the store committed."""
    steps: dict[str, dict[int, int]] = defaultdict(dict)
    links = []
    commits = 0
    for line in path.read_text().splitlines():
        t, step, ids = line.split(" ", 2) if line.count(" ") == 2 else (*line.split(" "), "")
        nums = [int(i) for i in ids.split(",") if i]
        if step == "store_commit":
            commits += 1
            continue
        if step == "link":
            cut = nums.index(-1)
            links.append((nums[:cut], nums[cut + 1:]))
            continue
        for i in nums:
            steps[step].setdefault(i, int(t))
            if step == "cgroup_new":  # the job's cgroup was made for it: the step is still "cgroup"
                steps["cgroup"].setdefault(i, int(t))
    return steps, links, commits


def _stats(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    if not values:
        return {"n": 0, "median_ms": 0.0, "p90_ms": 0.0, "mean_ms": 0.0}
    return {"n": len(values), "median_ms": statistics.median(values), "mean_ms": statistics.fmean(values),
            "p90_ms": values[min(len(values) - 1, int(len(values) * 0.9))]}


def breakdown(path: Path, job_seconds: float | None) -> dict[str, Any]:
    """Each step's time (from the step before it) over the cycles where an exit made room for the
    next job, the gap from the exit's reap to the next spawn, and the jobs' own time beyond their work."""
    steps, links, commits = read_trace(path)
    parts: dict[str, list[float]] = defaultdict(list)
    for exits, placed in links:
        for e, s in zip(exits, placed, strict=False):
            who = {"e": e, "s": s}
            times = [steps[name].get(who[j]) for name, j in STEPS]
            if any(t is None for t in times):
                continue
            for (name, _), a, b in zip(STEPS[1:], times, times[1:], strict=False):
                parts[name].append((b - a) / 1e6)  # type: ignore[operator]
            parts["gap: reap to next spawn"].append((times[-1] - times[0]) / 1e6)  # type: ignore[operator]
    if job_seconds is not None:
        for i, t in steps["spawned"].items():
            if i in steps["reap"]:
                parts["job: spawn to reap, beyond its work"].append((steps["reap"][i] - t) / 1e6 - job_seconds * 1000)
    out: dict[str, Any] = {name: _stats(v) for name, v in parts.items()}
    out["cgroups made, not reused"] = {"n": len(steps["cgroup_new"]), "of": len(steps["spawned"])}
    out["store commits (fsyncs)"] = {"n": commits, "of": len(steps["spawned"])}
    return out


def _cpu(pid: int) -> float:
    p = psutil.Process(pid)
    t = p.cpu_times()
    return float(t.user + t.system + t.children_user + t.children_system)


def _machine_busy() -> float:
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - t.iowait)


#: what the runs measure is the cycle: the slots are the agent's whole node, whatever else the machine
#: runs (on a shared machine, the load of others' processes would hold jobs back)
CONFIG = "[scheduler]\nuse_observed = false\n"


def run_wulf(slots: int, n: int, command: str, trace: bool = True) -> dict[str, Any]:
    """n jobs of ``command`` in one ``qr -s`` file; jobs/s, cpu per job and (traced) the breakdown."""
    from bench.__main__ import local

    with tempfile.TemporaryDirectory(prefix="wulf-cycle-") as d:
        path = Path(d) / "trace"
        if trace:
            os.environ["WULF_TRACE_CYCLE"] = str(path)
        try:
            with local(slots, config=CONFIG) as c:
                assert c.agent is not None
                cpu0 = _cpu(c.server.pid) + _cpu(c.agent.pid)
                busy0 = _machine_busy()
                t = time.perf_counter()
                c.batch(command, n)
                dt = time.perf_counter() - t
                cpu = _cpu(c.server.pid) + _cpu(c.agent.pid) - cpu0
                busy = _machine_busy() - busy0
        finally:
            os.environ.pop("WULF_TRACE_CYCLE", None)
        seconds = float(command.split()[1]) if command.startswith("sleep ") else None
        result: dict[str, Any] = {
            "system": "wulf", "slots": slots, "jobs": n, "command": command, "seconds": dt, "jobs_per_s": n / dt,
            "daemons_cpu_ms_per_job": cpu * 1000 / n, "machine_cpu_ms_per_job": busy * 1000 / n}
        if seconds is not None:
            result["ideal_jobs_per_s"] = slots / seconds
            result["of_ideal"] = result["jobs_per_s"] / result["ideal_jobs_per_s"]
        if trace:
            result["steps"] = breakdown(path, seconds)
        return result


HQ_SCRIPT = """
import sys, time, tempfile
from hyperqueue import Job, LocalCluster
from hyperqueue.cluster import WorkerConfig
slots, n, cmd = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].split()
with tempfile.TemporaryDirectory() as d, LocalCluster(d, WorkerConfig(cores=slots)) as cluster:
    client = cluster.client()
    job = Job()
    for _ in range(n):
        job.program(cmd, stdout=None, stderr=None)
    t = time.perf_counter()
    client.wait_for_jobs([client.submit(job)])
    print(time.perf_counter() - t)
"""


def run_hq(python: str, slots: int, n: int, command: str) -> dict[str, Any]:
    """The same jobs on HyperQueue's local cluster (server and worker in one process, from its Python API)."""
    busy0 = _machine_busy()
    out = subprocess.run([python, "-c", HQ_SCRIPT, str(slots), str(n), command], check=True, capture_output=True,
                         text=True, timeout=900).stdout
    busy = _machine_busy() - busy0
    dt = float(out.split()[-1])
    result: dict[str, Any] = {"system": "hyperqueue", "slots": slots, "jobs": n, "command": command, "seconds": dt,
              "jobs_per_s": n / dt, "machine_cpu_ms_per_job": busy * 1000 / n}
    if command.startswith("sleep "):
        result["ideal_jobs_per_s"] = slots / float(command.split()[1])
        result["of_ideal"] = result["jobs_per_s"] / result["ideal_jobs_per_s"]
    return result


def run_xargs(slots: int, n: int, command: str) -> dict[str, Any]:
    """The same commands through ``xargs -P SLOTS`` (a fork and exec each, nothing else): the floor."""
    busy0 = _machine_busy()
    t = time.perf_counter()
    # one command a line of input (-I: the line, which it does not use, is the whole of its arguments)
    subprocess.run(["xargs", "-P", str(slots), "-I{}", "--", *command.split()], input="x\n" * n, text=True,
                   check=True, stdout=subprocess.DEVNULL)
    dt = time.perf_counter() - t
    busy = _machine_busy() - busy0
    result: dict[str, Any] = {"system": "xargs -P", "slots": slots, "jobs": n, "command": command, "seconds": dt,
                              "jobs_per_s": n / dt, "machine_cpu_ms_per_job": busy * 1000 / n}
    if command.startswith("sleep "):
        result["ideal_jobs_per_s"] = slots / float(command.split()[1])
        result["of_ideal"] = result["jobs_per_s"] / result["ideal_jobs_per_s"]
    return result


def run(quick: bool, jobs: int | None = None, hq: str = "") -> dict[str, Any]:
    from bench.__main__ import latency, local, qr_round_trip

    n = jobs or (200 if quick else 1000)
    out: dict[str, Any] = {"runs": []}
    for slots in (2, 16):
        for command in ("sleep 0.1", "true"):
            out["runs"].append(run_wulf(slots, n, command))
            if hq:
                out["runs"].append(run_hq(hq, slots, n, command))
            out["runs"].append(run_xargs(slots, n, command))
    with local(16, config=CONFIG) as c:
        out["qr_round_trip"] = qr_round_trip(c, 10 if quick else 30)
    out["latency"] = latency(10 if quick else 30, CONFIG)
    return out


def rows(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    out = []
    for r in results["runs"]:
        what = f"{r['system']}: {r['jobs']} x {r['command']}, {r['slots']} slots"
        if "of_ideal" in r:
            out.append((what, f"{r['jobs_per_s']:,.1f} jobs/s ({r['of_ideal']:.0%})", ">= 95 % of ideal"))
        else:
            out.append((what, f"{r['jobs_per_s']:,.0f} jobs/s", ">= 1.0 x HyperQueue"))
        cpu = f"{r['machine_cpu_ms_per_job']:.1f} ms machine"
        if "daemons_cpu_ms_per_job" in r:
            cpu = f"{r['daemons_cpu_ms_per_job']:.1f} ms daemons+jobs, " + cpu
        out.append(("  cpu per job", cpu, "<= 2 ms"))
        for step, s in r.get("steps", {}).items():
            if "of" in s:
                out.append((f"  {step}", f"{s['n']} of {s['of']}", ""))
                continue
            out.append((f"  {step}", f"{s['median_ms']:.2f} / {s['p90_ms']:.2f} / {s['mean_ms']:.2f} ms",
                        "median / p90 / mean"))
    out.append(("qr -c true round trip, median", f"{results['qr_round_trip']['median_ms']:.1f} ms", "<= 25 ms"))
    out.append(("submit to finish, idle, median", f"{results['latency']['submit_to_finish_median_ms']:.1f} ms",
                "<= 10 ms"))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(prog="bench.cycle", description=__doc__)
    ap.add_argument("--jobs", type=int, default=1000, help="jobs in each run (default 1000)")
    ap.add_argument("--hq", default="", metavar="PYTHON", help="a Python with the hyperqueue package: run it too")
    ap.add_argument("--only", default="", help="one run only, as SLOTS:COMMAND (e.g. '2:sleep 0.1')")
    ap.add_argument("--json", action="store_true", help="print only the JSON")
    ap.add_argument("--store", default="", metavar="URL", help="the server's [store] url (a PostgreSQL store)")
    args = ap.parse_args()
    if args.store:
        global CONFIG
        CONFIG += f'[store]\nurl = "{args.store}"\n'
    if args.only:
        slots, command = args.only.split(":", 1)
        results: dict[str, Any] = {"runs": [run_wulf(int(slots), args.jobs, command)]}
        if args.hq:
            results["runs"].append(run_hq(args.hq, int(slots), args.jobs, command))
        results["runs"].append(run_xargs(int(slots), args.jobs, command))
        results["qr_round_trip"] = {"median_ms": float("nan")}
        results["latency"] = {"submit_to_finish_median_ms": float("nan")}
    else:
        results = run(False, args.jobs, args.hq)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    table = rows(results)
    print_table(table, 34)
    return 0


if __name__ == "__main__":
    sys.exit(main())
