"""jacct: what ended jobs used (like Slurm's sacct), one line a job, or per user totals (--summary).

By default: the caller's jobs that ended since midnight today (as sacct); with job ids, those jobs
whenever they ended. Times (-S, -E) are read by wulf.cli.when.
"""

from __future__ import annotations

import sys

from wulf.cli.common import ArgParser, format_age, format_mb, format_table, own_ids, print_json, run
from wulf.cli.when import FORMS, local_now, parse_when
from wulf.client import Client
from wulf.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

STATES = ("done", "failed", "cancelled")
TIME_COLUMNS = ("submitted", "started", "ended")


def _parser() -> ArgParser:
    p = ArgParser(prog="jacct", description="Show what ended jobs used: times, wait, cpu and memory asked and used.")
    p.add_argument("ids", nargs="*", metavar="ID", help="only these jobs (whenever they ended)")
    p.add_argument("-u", "--user", default="", help="this user's jobs (default: your own)")
    p.add_argument("-a", "--allusers", action="store_true", help="every user's jobs")
    p.add_argument("-S", "--starttime", default="", metavar="START",
                   help=f"jobs that ended from then on (default: midnight today). Forms: {FORMS}")
    p.add_argument("-E", "--endtime", default="", metavar="END", help="jobs that ended before then (default: now)")
    p.add_argument("-s", "--state", default="", metavar="STATE",
                   help="only jobs that ended so: done, failed, cancelled (comma-separated)")
    p.add_argument("-q", "--queue", default="", help="only jobs of this queue (QUEUE or USER:QUEUE)")
    p.add_argument("--summary", action="store_true", help="per user totals: jobs, cpu hours, mean wait, efficiency")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print JSON: {jobs: [...]} or {users: [...]}")
    out.add_argument("--csv", action="store_true", help="print CSV with a header line (times in ISO 8601)")
    return p


def _states(text: str) -> list[str]:
    states = [s.strip().lower() for s in text.split(",") if s.strip()]
    for s in states:
        if s not in STATES:
            raise UsageError(f"--state: {s!r} is not how a job ends ({', '.join(STATES)})")
    return states


def iso(t: float | None) -> str:
    """A Unix time as local ISO 8601 to the second (as sacct shows it), or ''."""
    if t is None:
        return ""
    from datetime import datetime

    return datetime.fromtimestamp(t).strftime("%Y-%m-%dT%H:%M:%S")


def _dur(s: float | None) -> str:
    return "-" if s is None else format_age(s)


def _exit(j: dict[str, Any]) -> str:
    if j["signal"]:
        return f"sig{j['signal']}"
    return "-" if j["exit_code"] is None else str(j["exit_code"])


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def jobs_table(jobs: list[dict[str, Any]]) -> str:
    rows = [[str(j["id"]), j["user"], j["state"], _exit(j), j["node"] or "-", iso(j["submitted"]) or "-",
             iso(j["started"]) or "-", iso(j["ended"]) or "-", _dur(j["wait"]), _dur(j["run"]), _dur(j["cpu_time"]),
             f"{j['cpu_req']:g}/{'-' if j['cpu_used'] is None else format(j['cpu_used'], '.2f')}", _pct(j["cpu_eff"]),
             f"{format_mb(j['mem_req_mb'])}/{format_mb(j['peak_mem_mb'])}", str(j["attempts"]),
             j["name"] or j["command"].replace("\n", " ")] for j in jobs]
    return format_table(["ID", "USER", "STATE", "EXIT", "NODE", "SUBMIT", "START", "END", "WAIT", "RUN", "CPUTIME",
                         "CPU(REQ/USED)", "CPUEFF", "MEM(REQ/PEAK)", "TRIES", "NAME"], rows,
                        right=(0, 3, 8, 9, 10, 11, 12, 13, 14))


def summary_table(users: list[dict[str, Any]]) -> str:
    rows = [[u["user"], str(u["jobs"]), f"{u['cpu_hours']:.2f}", _dur(u["mean_wait"]), _pct(u["cpu_eff"])]
            for u in users]
    return format_table(["USER", "JOBS", "CPUHOURS", "MEANWAIT", "CPUEFF"], rows, right=(1, 2, 3, 4), flex=0)


def write_csv(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    import csv

    w = csv.writer(sys.stdout, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow(["" if r[c] is None else iso(r[c]) if c in TIME_COLUMNS else r[c] for c in columns])


def _window(args: Any) -> tuple[float, float]:
    now = local_now()
    if args.starttime:
        start = parse_when(args.starttime, now, "-S")
    else:  # as sacct: since midnight today; with job ids, whenever they ended
        start = 0.0 if args.ids else parse_when("today", now)
    end = parse_when(args.endtime, now, "-E") if args.endtime else 0.0
    if end and start >= end:
        raise UsageError(f"-S {args.starttime or 'today'} is not before -E {args.endtime}")
    if not end and start >= now.timestamp():
        raise UsageError(f"-S {args.starttime} is in the future: no job has ended then yet")
    return max(0.0, start), end


_TIME_FLAGS = {"-S": "--starttime", "--starttime": "--starttime", "-E": "--endtime", "--endtime": "--endtime"}


def _glue_times(argv: list[str]) -> list[str]:
    """``-S -7d`` as ``--starttime=-7d``: argparse would take ``-7d`` for an option of its own."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            return out + argv[i:]
        if a in _TIME_FLAGS and i + 1 < len(argv) and argv[i + 1].startswith("-"):
            out.append(f"{_TIME_FLAGS[a]}={argv[i + 1]}")
            i += 2
            continue
        out.append(a)
        i += 1
    return out


def _main(argv: list[str]) -> int:
    from wulf.model.accounting import CSV_COLUMNS

    args = _parser().parse_args(_glue_times(argv))
    if args.user and args.allusers:
        raise UsageError("-u and -a: give one (-a is every user)")
    ids = own_ids(args.ids, "jacct")
    if ids and args.summary:
        raise UsageError("--summary totals a time window, not job ids")
    start, end = _window(args)
    what = {"user": args.user, "all_users": args.allusers, "start": start, "end": end,
            "states": _states(args.state), "queue": args.queue}
    client = Client()
    if args.summary:
        users = client.accounting_summary(**what)
        if args.json:
            print_json({"users": users})
        elif args.csv:
            write_csv(users, ("user", "jobs", "cpu_hours", "mean_wait", "cpu_eff"))
        else:
            sys.stdout.write((summary_table(users) if users else "no jobs ended then") + "\n")
        return 0
    jobs = client.accounting(**what, ids=ids)
    if args.json:
        print_json({"jobs": jobs})
    elif args.csv:
        write_csv(jobs, CSV_COLUMNS)
    else:
        sys.stdout.write((jobs_table(jobs) if jobs else "no jobs ended then") + "\n")
    return 0


def main() -> None:
    run(_main, exit_fast=True)
