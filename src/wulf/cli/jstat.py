"""jstat: the cluster at a glance: nodes, and jobs running, waiting and (with -a) ended."""

from __future__ import annotations

import sys
import time

from wulf.cli.common import ArgParser, format_age, format_mb, format_table, print_json, run
from wulf.client import Client

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _parser() -> ArgParser:
    p = ArgParser(prog="jstat", description="Show nodes and jobs.")
    p.add_argument("-u", "--user", default="", help="only this user's jobs")
    p.add_argument("-q", "--queue", default="", help="only jobs of this queue (QUEUE or USER:QUEUE)")
    p.add_argument("-a", "--all", action="store_true", help="also jobs that have ended (recent ones)")
    p.add_argument("--nodes", action="store_true", help="only the nodes")
    p.add_argument("--jobs", action="store_true", help="only the jobs")
    p.add_argument("--queues", action="store_true", help="the queues: settings, counts, why they wait")
    p.add_argument("--expand", action="store_true",
                   help="every task of an array on a line of its own (without it, an array's waiting tasks are one "
                        "line, ID[SPEC], with its counts)")
    p.add_argument("--external", action="store_true",
                   help="outside work (processes wulf did not start) as a job per process cluster; without it, "
                        "it is summed per node and user")
    p.add_argument("--json", action="store_true",
                   help="print JSON: {nodes: [...], jobs: [...], arrays: {ID: spec and counts}, outside: [{node, "
                        "user, clusters, cpu, mem_mb}]}; an array's tasks are jobs with array_id and array_index; "
                        "with --external, outside work is in jobs (origin external) and there is no outside")
    return p


def outside_table(outside: list[dict[str, Any]]) -> str:
    """Outside work, a line per node and user (jstat --external lists each process cluster)."""
    rows = [[o["node"], o["user"], str(o["clusters"]), f"{o['cpu']:.2f}", format_mb(o["mem_mb"])] for o in outside]
    return "outside work (not started by wulf; --external lists each):\n" + format_table(
        ["NODE", "USER", "CLUSTERS", "CPU", "MEM"], rows, right=(2, 3, 4))


def _num(x: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if x is None else fmt.format(x)


def nodes_table(nodes: list[dict[str, Any]]) -> str:
    rows = [[n["name"], n["state"] + (" (owner)" if n.get("owner_back") else ""), f"{n['cpus']:g}", _num(n["load"]), _num(n["cpu_free"], "{:.1f}"),
             format_mb(n["mem_free_mb"]), format_mb(n["mem_total_mb"]), str(n["jobs"]),
             f"{n['arch']} {n['kernel']}".strip()] for n in nodes]
    return format_table(["NODE", "STATE", "CPUS", "LOAD", "FREE", "MEMFREE", "MEM", "JOBS", "SYSTEM"], rows,
                        right=(2, 3, 4, 5, 6, 7))


def _job_label(j: dict[str, Any]) -> str:
    """A job's id as users name it: ``12``, or ``12[5]`` for task 5 of array 12."""
    if j.get("array_id") is not None:
        return f"{j['array_id']}[{j['array_index']}]"
    return str(j["id"])


def group_arrays(jobs: list[dict[str, Any]], arrays: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The listing with each array's waiting tasks as one line (at the place of its first): its id and
    spec (``12[1-1000%50]``) and its counts of tasks queued, running, done and failed; running and ended
    tasks keep a line each."""
    out: list[dict[str, Any]] = []
    seen: set[int] = set()
    for j in jobs:
        aid = j.get("array_id")
        if aid is None or j["state"] not in ("queued", "held"):
            out.append(j)
            continue
        if aid in seen:
            continue
        seen.add(aid)
        a = arrays.get(str(aid))
        if a is None:
            out.append(j)
            continue
        counts = (f"queued {a['queued']}" + (f", held {a['held']}" if a["held"] else "")
                  + f", running {a['running']}, done {a['done']}, failed {a['failed']}"
                  + (f", cancelled {a['cancelled']}" if a["cancelled"] else ""))
        out.append({**j, "_label": f"{aid}[{a['spec']}]", "reason": counts})
    return out


def jobs_table(jobs: list[dict[str, Any]]) -> str:
    """One line a job; why it waits (or was reniced, or ended so) comes before its command, so that a
    long command is what the terminal's width cuts."""
    rows = []
    for j in jobs:
        state = j["state"]
        if state in ("done", "failed") and j["exit_code"] not in (None, 0):
            state += f"({j['exit_code']})"
        if j.get("restarts"):  # queued again after it failed: which attempt this is (or was, or comes)
            state += f" try {j['restarts'] + 1}"
        if j.get("checkpoints"):  # of those restarts, the ones after it checkpointed (qr --checkpoint)
            state += f" ({j['checkpoints']} ckpt)"
        if j.get("vacated"):  # ... the ones after its workstation's owner came back (qr --requeue)
            state += f" ({j['vacated']} vacated)"
        note = j["reason"]
        what = j["command"].replace("\n", " ")
        queue = j["queue"] if j["origin"] == "batch" else "-"
        tasks = j.get("ntasks") or 1  # a job of several tasks: its nodes, and cpu and memory in all
        rows.append([j.get("_label") or _job_label(j), j["user"], queue, j["origin"], state,
                     j.get("nodes") or j["node"] or "-", f"{j['cpu'] * tasks:g}", format_mb(j["mem_mb"] * tasks),
                     format_age(j["age"]), f"[{note}] {what}" if note else what])
    return format_table(["ID", "USER", "QUEUE", "ORIGIN", "STATE", "NODE", "CPU", "MEM", "AGE", "COMMAND"], rows,
                        right=(0, 6, 7, 8))


def _main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.queues:
        from wulf.cli.qset import queues_table

        queues = Client().queues(args.user)
        if args.json:
            print_json({"queues": queues})
        else:
            sys.stdout.write((queues_table(queues) if queues else "no queues") + "\n")
        return 0
    if args.nodes:  # no jobs asked for: none are fetched
        nodes = Client().nodes()
        if args.json:
            print_json({"nodes": nodes})
        else:
            sys.stdout.write((nodes_table(nodes) if nodes else "no nodes have joined yet") + "\n")
        return 0
    status = Client().status(args.user, args.queue, args.all, brief=not args.json, external=args.external)
    if args.json:
        print_json({k: status[k] for k in ("leader", "nodes", "jobs", "arrays", "outside")
                    if k in status and not (args.jobs and k == "nodes")})
        return 0
    parts = []
    if status.get("leader") and not args.jobs:  # one server leads, others stand by (a PostgreSQL store)
        lead = status["leader"]
        parts.append(f"server {lead['host']} (pid {lead['pid']}) leads since "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(lead['since']))}")
    if not args.jobs:
        parts.append(nodes_table(status["nodes"]) if status["nodes"] else "no nodes have joined yet")
    if not args.nodes:
        jobs = status["jobs"] if args.expand else group_arrays(status["jobs"], status.get("arrays") or {})
        parts.append(jobs_table(jobs) if jobs else "no jobs")
        if status.get("outside"):
            parts.append(outside_table(status["outside"]))
    sys.stdout.write("\n\n".join(parts) + "\n")
    return 0


def main() -> None:
    run(_main, exit_fast=True)
