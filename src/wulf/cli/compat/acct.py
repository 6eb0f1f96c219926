"""Accounting in Slurm's and Grid Engine's words: ``sacct`` and ``qacct``, over wulf's accounting (jacct).

``sacct`` lists jobs that ended in a window (by default since midnight, as Slurm's), and those that wait
or run (Slurm's accounting knows them too): Snakemake's Slurm executor asks it
``sacct -X --parsable2 --noheader --format=JobIdRaw,State --name NAME --starttime ...`` and reads the
states; a person reads its table. ``qacct -j`` prints Grid Engine's record of ended jobs.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from typing import Any

from wulf.cli.common import ArgParser, print_json
from wulf.cli.compat.common import ACTIVE, hms_full, iso, jobs_of, me, slurm_state, slurm_states
from wulf.cli.compat.slurm import group_of, reason_of
from wulf.client import Client
from wulf.errors import UsageError

#: sacct's fields: name -> (default width, value of a job)
_FIELDS: dict[str, tuple[int, Any]] = {
    "jobid": (12, lambda j: str(j["id"])),
    "jobidraw": (12, lambda j: str(j["id"])),
    "jobname": (10, lambda j: j.get("name") or ""),
    "partition": (10, lambda j: j.get("queue") or ""),
    "account": (10, lambda j: ""),
    "alloccpus": (10, lambda j: f"{_cpus(j):d}"),
    "reqcpus": (8, lambda j: f"{int(max(1, round(j.get('cpu_req') or 1)))}"),
    "ncpus": (10, lambda j: f"{_cpus(j):d}"),
    "state": (10, lambda j: slurm_state(j)),
    "exitcode": (8, lambda j: f"{j.get('exit_code') or 0}:{j.get('signal') or 0}"),
    "user": (9, lambda j: j["user"]),
    "submit": (19, lambda j: iso(j.get("submitted"))),
    "start": (19, lambda j: iso(j.get("started"))),
    "end": (19, lambda j: iso(j.get("ended"))),
    "elapsed": (10, lambda j: _elapsed(_run(j))),
    "elapsedraw": (10, lambda j: str(int(_run(j)))),
    "totalcpu": (10, lambda j: _elapsed(j.get("cpu_time") or 0.0)),
    "cputime": (10, lambda j: _elapsed(_run(j) * _cpus(j))),
    "cputimeraw": (10, lambda j: str(int(_run(j) * _cpus(j)))),
    "maxrss": (10, lambda j: _size((j.get("peak_mem_mb") or 0) * 1024, "K", j) if j.get("peak_mem_mb") else ""),
    "reqmem": (10, lambda j: _size(j.get("mem_req_mb") or 0, "M", j)),
    "group": (9, lambda j: group_of(j)[0]),
    "reqtres": (20, lambda j: _tres(j, j.get("cpu_req"))),
    "alloctres": (20, lambda j: _tres(j, j.get("cpu_alloc")) if j.get("started") else ""),
    "nodelist": (15, lambda j: j.get("node") or "None assigned"),
    "nnodes": (8, lambda j: "1"),
    "timelimit": (10, lambda j: _elapsed(j["time_limit"]) if j.get("time_limit") else "UNLIMITED"),
    "workdir": (20, lambda j: j.get("cwd") or ""),
    "reason": (20, lambda j: reason_of(j)),  # Slurm's word (wulf's sentence is jstat's and jacct's)
    "restarts": (8, lambda j: str(max(0, int(j.get("attempts") or 1) - 1))),
}
DEFAULT_FORMAT = "JobID,JobName,Partition,Account,AllocCPUS,State,ExitCode"


#: sacct --units: the unit letters, by their size in KiB
_UNITS = {"K": 1, "M": 1 << 10, "G": 1 << 20, "T": 1 << 30, "P": 1 << 40}


def _size(amount: float, unit: str, j: dict[str, Any]) -> str:
    """A size given in ``unit`` (K or M) as sacct prints it: in that unit, or in the one ``--units`` asks
    for (``4G``, ``0.50G``)."""
    wanted = j.get("_units") or unit
    value = amount * _UNITS[unit] / _UNITS[wanted]
    return f"{value:.0f}{wanted}" if value == int(value) else f"{value:.2f}{wanted}"


def _tres(j: dict[str, Any], cpus: float | None) -> str:
    """Trackable resources as sacct gives them: ``billing=2,cpu=2,mem=100M,node=1``."""
    n = int(max(1, round(cpus or 1)))
    return f"billing={n},cpu={n},mem={_size(j.get('mem_req_mb') or 0, 'M', j)},node=1"


def _cpus(j: dict[str, Any]) -> int:
    return int(max(1, round(j.get("cpu_alloc") or j.get("cpu") or j.get("cpu_req") or 1)))


def _run(j: dict[str, Any]) -> float:
    if j.get("run") is not None:
        return float(j["run"])
    if not j.get("started"):
        return 0.0
    return float((j.get("ended") or time.time()) - j["started"])


def _elapsed(seconds: float) -> str:
    """Slurm's ``[D-]HH:MM:SS``."""
    s = int(max(0.0, seconds))
    d, rest = divmod(s, 86400)
    return (f"{d}-" if d else "") + hms_full(rest)


def parse_format(text: str) -> list[tuple[str, int]]:
    """``--format`` fields: ``name[%width]`` separated by commas (case does not matter)."""
    out = []
    for item in text.split(","):
        name, _, width = item.strip().partition("%")
        if not name:
            continue
        key = name.lower()
        if key not in _FIELDS:
            raise UsageError(f"sacct: Invalid field requested: \"{name}\"")
        if width and not width.isdigit():
            raise UsageError(f"sacct: invalid width in {item!r}")
        out.append((key, int(width) if width else _FIELDS[key][0]))
    if not out:
        raise UsageError("sacct: --format names no field")
    return out


def _parser() -> ArgParser:
    p = ArgParser(prog="sacct", description="Accounting of jobs, as Slurm's sacct shows it (wulf).", add_help=False)
    p.add_argument("-j", "--jobs", action="append", default=[], help="only these jobs (comma-separated)")
    p.add_argument("-u", "--user", "--uid", dest="user", help="this user's jobs (comma-separated)")
    p.add_argument("-a", "--allusers", action="store_true", help="every user's jobs")
    p.add_argument("-S", "--starttime", help="jobs that ended (or run or wait) since then (default: midnight)")
    p.add_argument("-E", "--endtime", help="... until then (default: now)")
    p.add_argument("-s", "--state", help="only jobs in these states (CD,F,CA,TO,OOM,R,PD or names)")
    p.add_argument("-r", "--partition", help="only jobs of these queues")
    p.add_argument("--name", help="only jobs of these names (comma-separated)")
    p.add_argument("-o", "--format", help=f"the fields (default {DEFAULT_FORMAT})")
    p.add_argument("-b", "--brief", action="store_true", help="JobID, State and ExitCode only")
    p.add_argument("-n", "--noheader", action="store_true", help="no header lines")
    p.add_argument("-P", "--parsable2", action="store_true", help="fields separated by '|', none cut")
    p.add_argument("-p", "--parsable", action="store_true", help="as -P, with a '|' at the end of each line")
    p.add_argument("--delimiter", default="|", help="the separator of -p and -P")
    p.add_argument("--units", type=str.upper, choices=sorted(_UNITS, key=_UNITS.__getitem__),
                   help="sizes in this unit (K, M, G, T, P)")
    p.add_argument("--json", action="store_true", help="print JSON ({\"jobs\": [...]})")
    for flag in ("-X", "--allocations", "-D", "--duplicates", "--noconvert", "-T", "--truncate", "-L",
                 "--allclusters", "-l", "--long"):
        p.add_argument(flag, action="store_true", help=argparse.SUPPRESS)
    p.add_argument("-M", "--clusters", help=argparse.SUPPRESS)
    p.add_argument("--help", action="help", help="show this help and exit")
    return p


def _window(args: argparse.Namespace) -> tuple[float, float]:
    from wulf.cli.when import local_now, parse_when

    now = local_now()
    if args.starttime:
        start = parse_when(args.starttime, now, "-S")
    else:
        start = now.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    end = parse_when(args.endtime, now, "-E") if args.endtime else 0.0
    return start, end


def _state_names(text: str | None) -> set[str] | None:
    return slurm_states(text, "sacct: Invalid state") if text else None


def select(args: argparse.Namespace, client: Client) -> list[dict[str, Any]]:
    from wulf.cli.compat.common import int_ids

    ids = int_ids(args.jobs)
    users = set(args.user.split(",")) if args.user else set()
    if ids:
        jobs = client.accounting(all_users=True, ids=ids)
    else:
        start, end = _window(args)
        one = next(iter(users)) if len(users) == 1 else ""
        jobs = client.accounting(user=one, all_users=args.allusers or len(users) > 1, start=start, end=end)
        seen = {j["id"] for j in jobs}
        jobs += [j for j in jobs_of(client.status()) if j["state"] in ACTIVE and j["id"] not in seen
                 and (args.allusers or users or j["user"] == me())]
    states = _state_names(args.state)
    names = set(args.name.split(",")) if args.name else set()
    queues = set(args.partition.split(",")) if args.partition else set()
    return [j for j in jobs if (not users or j["user"] in users) and (states is None or slurm_state(j) in states)
            and (not names or (j.get("name") or "") in names) and (not queues or j.get("queue") in queues)]


def sacct(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    fields = parse_format("JobID,State,ExitCode" if args.brief else args.format or DEFAULT_FORMAT)
    client = Client()
    jobs = sorted(({**j, "_units": args.units} for j in select(args, client)), key=lambda j: j["id"])
    if any(k == "timelimit" for k, _ in fields):
        _add_limits(jobs, client)
    if args.json:
        print_json({"jobs": [{**j, "job_state": [slurm_state(j)]} for j in jobs]})
        return 0
    lines = []
    if args.parsable or args.parsable2:
        end = args.delimiter if args.parsable else ""
        if not args.noheader:
            lines.append(args.delimiter.join(_header(k) for k, _ in fields) + end)
        lines += [args.delimiter.join(str(_FIELDS[k][1](j)) for k, _ in fields) + end for j in jobs]
    else:
        if not args.noheader:
            lines.append(" ".join(_header(k)[:w].rjust(w) for k, w in fields))
            lines.append(" ".join("-" * w for _, w in fields))
        for j in jobs:
            lines.append(" ".join(_cut(str(_FIELDS[k][1](j)), w) for k, w in fields))
    sys.stdout.write("".join(line + "\n" for line in lines))
    return 0


def _add_limits(jobs: list[dict[str, Any]], client: Client) -> None:
    """Accounting's records do not keep a job's time limit: it is taken from the jobs the server still
    lists (all but those purged from its history; theirs show UNLIMITED)."""
    wanted = {j["id"] for j in jobs if "time_limit" not in j}
    if not wanted:
        return
    limits = {j["id"]: j.get("time_limit") for j in jobs_of(client.status(all_jobs=True)) if j["id"] in wanted}
    for j in jobs:
        if j["id"] in limits:
            j["time_limit"] = limits[j["id"]]


_HEADERS = {"jobid": "JobID", "jobidraw": "JobIDRaw", "jobname": "JobName", "alloccpus": "AllocCPUS",
            "reqcpus": "ReqCPUS", "ncpus": "NCPUS", "exitcode": "ExitCode", "totalcpu": "TotalCPU",
            "cputime": "CPUTime", "cputimeraw": "CPUTimeRAW", "maxrss": "MaxRSS", "reqmem": "ReqMem",
            "nodelist": "NodeList", "nnodes": "NNodes", "timelimit": "Timelimit", "workdir": "WorkDir",
            "elapsedraw": "ElapsedRaw", "reqtres": "ReqTRES", "alloctres": "AllocTRES"}


def _header(key: str) -> str:
    return _HEADERS.get(key, key.capitalize())


def _cut(value: str, width: int) -> str:
    """As sacct cuts a value too wide for its column: its start and a '+'."""
    return value.rjust(width) if len(value) <= width else value[:width - 1] + "+"


# ---------------------------------------------------------------------------------------------- qacct

def qacct(argv: list[str]) -> int:
    """Grid Engine's ``qacct -j [ID|NAME]`` (``-o OWNER``, ``-d DAYS``): one record per ended job."""
    job: str | None = None
    owner, days = "", 0.0
    i = 0
    while i < len(argv):
        w = argv[i]
        if w == "-j":
            job = argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("-") else ""
            i += 2 if job else 1
        elif w in ("-o", "-d") and i + 1 < len(argv):
            if w == "-o":
                owner = argv[i + 1]
            else:
                try:
                    days = float(argv[i + 1])
                except ValueError:
                    raise UsageError(f"qacct: -d takes a number of days, not {argv[i + 1]!r}") from None
            i += 2
        else:
            raise UsageError(f"qacct: ERROR! invalid option argument \"{w}\"")
    client = Client()
    if job and re.fullmatch(r"\d+", job):
        jobs = client.accounting(all_users=True, ids=[int(job)])
    else:
        start = time.time() - days * 86400 if days else 0.0
        jobs = client.accounting(user=owner, all_users=not owner, start=start)
        if job:
            jobs = [j for j in jobs if j.get("name") == job]
    jobs = [j for j in jobs if j["state"] not in ACTIVE]
    if not jobs:
        print(f"error: job id {job} not found" if job else "error: no jobs found", file=sys.stderr)
        return 1
    sys.stdout.write("".join(_record(j) for j in jobs))
    return 0


def _record(j: dict[str, Any]) -> str:
    rows = [("qname", j.get("queue") or "default"), ("hostname", j.get("node") or ""), ("owner", j["user"]),
            ("jobname", j.get("name") or ""), ("jobnumber", j["id"]),
            ("qsub_time", time.ctime(j["submitted"]) if j.get("submitted") else "-/-"),
            ("start_time", time.ctime(j["started"]) if j.get("started") else "-/-"),
            ("end_time", time.ctime(j["ended"]) if j.get("ended") else "-/-"),
            ("failed", 0 if j.get("started") else 1),
            ("exit_status", 128 + int(j["signal"]) if j.get("signal") else j.get("exit_code") or 0),
            ("ru_wallclock", int(_run(j))), ("cpu", f"{float(j.get('cpu_time') or 0):.3f}"),
            ("maxvmem", f"{float(j.get('peak_mem_mb') or 0):.3f}M"), ("slots", _cpus(j))]
    return "=" * 62 + "\n" + "".join(f"{k:<13}{v}\n" for k, v in rows)
