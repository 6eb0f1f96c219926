"""Slurm's commands over wulf: ``sbatch``, ``squeue`` and ``scancel`` (``sinfo``, ``scontrol``, ``srun``
and ``sacct`` are modules of their own).

Each takes the options the tools that drive Slurm use (psij-python, Snakemake's Slurm executor,
Dask-jobqueue, Open OnDemand) and prints what Slurm prints. Options of Slurm's that wulf has no use
for are accepted and ignored where that is harmless (``--clusters``, ``--account``), as sbatch's
directives are (see wulf.compat.slurm).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from typing import Any

from wulf.cli.common import ArgParser, print_json
from wulf.cli.compat.common import (
    ACTIVE,
    SLURM_CODES,
    hms,
    int_ids,
    iso,
    jobs_of,
    known,
    me,
    read_stdin_script,
    run_seconds,
    slurm_state,
    slurm_states,
    wait_exit,
    with_directives,
)
from wulf.client import Client
from wulf.compat import slurm as dialect
from wulf.errors import UsageError

# ---------------------------------------------------------------------------------------------- sbatch

#: sbatch's own options (not directives): name -> takes a value
_SBATCH_ONLY = {"wrap": True, "parsable": False, "wait": False, "W": False, "test-only": False,
                "help": False, "usage": False, "version": False, "V": False}


def _option(words: list[str], i: int) -> tuple[str, str | None, int]:
    """The option at ``words[i]``: (canonical name or sbatch's own name, its value, the next index).
    Raises UsageError for an option sbatch does not know."""
    w = words[i]
    if w.startswith("--"):
        key, eq, value = w[2:].partition("=")
        if key in _SBATCH_ONLY:
            if _SBATCH_ONLY[key] and not eq:
                if i + 1 >= len(words):
                    raise UsageError(f"sbatch: --{key} needs a value")
                return key, words[i + 1], i + 2
            return key, value if eq else None, i + 1
        opt = dialect.LONG.get(key)
        if opt is None:
            raise UsageError(f"sbatch: unrecognized option '--{key}' (see sbatch --help)")
        if opt.arity == "value" and not eq:
            if i + 1 >= len(words):
                raise UsageError(f"sbatch: --{key} needs a value")
            return opt.name, words[i + 1], i + 2
        return opt.name, value if eq else None, i + 1
    letter = w[1]
    if letter in ("W", "V"):
        return {"W": "wait", "V": "version"}[letter], None, i + 1
    opt = dialect.SHORT.get(letter)
    if opt is None:
        raise UsageError(f"sbatch: invalid option -- '{letter}' (see sbatch --help)")
    if opt.arity == "value" and len(w) == 2:
        if i + 1 >= len(words):
            raise UsageError(f"sbatch: -{letter} needs a value")
        return opt.name, words[i + 1], i + 2
    return opt.name, w[2:] or None, i + 1


class _SbatchArgs:
    def __init__(self) -> None:
        self.directives: list[str] = []  # the options that are directives, as words
        self.wrap: str | None = None
        self.parsable = False
        self.wait = False
        self.script: str | None = None
        self.script_args: list[str] = []


def parse_sbatch(argv: list[str]) -> _SbatchArgs:
    """sbatch's command line: options (as its directives, plus its own), then the script and its words."""
    a = _SbatchArgs()
    i = 0
    while i < len(argv):
        w = argv[i]
        if w == "--":
            i += 1
            break
        if not w.startswith("-") or w == "-":
            break
        name, value, j = _option(argv, i)
        if name in ("help", "usage"):
            raise SystemExit(_usage())
        if name == "version":
            print("slurm 23.11.0 (wulf)")
            raise SystemExit(0)
        if name == "wrap":
            a.wrap = value
        elif name == "parsable":
            a.parsable = True
        elif name == "wait":
            a.wait = True
        elif name == "test-only":
            raise UsageError("sbatch: --test-only is not supported by wulf")
        else:
            a.directives += argv[i:j]
        i = j
    rest = argv[i:]
    if rest:
        a.script, a.script_args = rest[0], rest[1:]
    return a


def _usage() -> int:
    print("Usage: sbatch [OPTIONS...] [script [args...]]  |  sbatch [OPTIONS...] --wrap=COMMAND\n"
          "Options are those of #SBATCH directives (see qr(1) and wulf's README, 'Job scripts'), plus\n"
          "--wrap, --parsable and -W/--wait.", file=sys.stderr)
    return 0


def _script_of(a: _SbatchArgs) -> tuple[str, str, str]:
    """(script, its label, its file name) from --wrap, a file or standard input."""
    from wulf.cli.qr import _read_script

    if a.wrap is not None:
        if a.script:
            raise UsageError("sbatch: give --wrap or a script, not both")
        return f"#!/bin/sh\n# This script was made by sbatch --wrap.\n{a.wrap}\n", "wrap", "wrap"
    if a.script:
        return _read_script(a.script), os.path.basename(a.script), os.path.basename(a.script)
    return read_stdin_script("sbatch"), "sbatch", "STDIN"


def sbatch(argv: list[str]) -> int:
    from wulf.cli.qr import submit
    from wulf.cli.scriptjob import from_directives

    a = parse_sbatch(argv)
    script, label, file_name = _script_of(a)
    if not script.startswith("#!"):
        raise UsageError("sbatch: This does not look like a batch script. The first line must start with #! "
                         "followed by the path to an interpreter (for instance: #!/bin/sh)")
    cwd = os.getcwd()
    spec = from_directives(script, label, file_name, cwd, {}, False, label,
                           parse_as=with_directives(script, "slurm", a.directives), who="sbatch",
                           args=a.script_args)
    ids = submit([spec])
    job = ids[0]
    print(job if a.parsable else f"Submitted batch job {job}", flush=True)
    if a.wait:
        return wait_exit(job)
    return 0


# ---------------------------------------------------------------------------------------------- squeue

#: squeue's ``%`` letters -> (header, value of a job)
_LETTERS: dict[str, tuple[str, Any]] = {
    "i": ("JOBID", lambda j, now: slurm_id(j)),
    "A": ("JOBID", lambda j, now: str(j["id"])),  # each task's own
    "F": ("ARRAY_JOB_ID", lambda j, now: str(j.get("array_id") or j["id"])),
    "K": ("ARRAY_TASK_ID", lambda j, now: _task_text(j)),
    "j": ("NAME", lambda j, now: j.get("name") or ""),
    "u": ("USER", lambda j, now: j["user"]),
    "t": ("ST", lambda j, now: SLURM_CODES.get(slurm_state(j), "?")),
    "T": ("STATE", lambda j, now: slurm_state(j)),
    "M": ("TIME", lambda j, now: hms(run_seconds(j, now))),
    "l": ("TIME_LIMIT", lambda j, now: hms(j.get("time_limit"))),
    "L": ("TIME_LEFT", lambda j, now: hms(max(0.0, j["time_limit"] - run_seconds(j, now)))
          if j.get("time_limit") else "UNLIMITED"),
    "D": ("NODES", lambda j, now: "1"),
    "C": ("CPUS", lambda j, now: f"{j.get('cpu_req') or j.get('cpu') or 1:g}"),
    "m": ("MIN_MEMORY", lambda j, now: f"{j.get('mem_req_mb') or j.get('mem_mb') or 0:.0f}M"),
    "P": ("PARTITION", lambda j, now: j.get("queue") or ""),
    "N": ("NODELIST", lambda j, now: j.get("node") or ""),
    "R": ("NODELIST(REASON)", lambda j, now: j.get("node") if j["state"] == "running" and j.get("node")
          else f"({reason_of(j)})"),
    "r": ("REASON", lambda j, now: reason_of(j)),
    "Z": ("WORK_DIR", lambda j, now: j.get("cwd") or ""),
    "o": ("COMMAND", lambda j, now: j.get("command") or ""),
    "V": ("SUBMIT_TIME", lambda j, now: iso(j.get("submitted"))),
    "S": ("START_TIME", lambda j, now: iso(j.get("started")) if j.get("started") else "N/A"),
    "e": ("END_TIME", lambda j, now: iso(j.get("ended")) if j.get("ended") else "N/A"),
    "Q": ("PRIORITY", lambda j, now: "0"),
    "q": ("QOS", lambda j, now: "normal"),
    "a": ("ACCOUNT", lambda j, now: "(null)"),
    "y": ("NICE", lambda j, now: str(j.get("nice") or 0)),
    "k": ("COMMENT", lambda j, now: "(null)"),
    "%": ("%", lambda j, now: "%"),
    # what Open OnDemand's Slurm adapter asks for besides (it reads few of them, but wants each there)
    "B": ("EXEC_HOST", lambda j, now: j.get("node") or "n/a"),
    "c": ("MIN_CPUS", lambda j, now: f"{j.get('cpu_req') or 1:g}"),
    "d": ("MIN_TMP_DISK", lambda j, now: "0"),
    "E": ("DEPENDENCY", lambda j, now: j.get("depend") or "(null)"),
    "f": ("FEATURES", lambda j, now: j.get("constraint") or "(null)"),
    "g": ("GROUP", lambda j, now: group_of(j)[0]),
    "G": ("GROUP", lambda j, now: group_of(j)[1]),
    "h": ("OVER_SUBSCRIBE", lambda j, now: "OK"),  # wulf's jobs share their node
    "H": ("SOCKETS", lambda j, now: "*"),
    "I": ("CORES", lambda j, now: "*"),
    "J": ("THREADS", lambda j, now: "*"),
    "n": ("REQ_NODES", lambda j, now: ""),
    "O": ("CONTIGUOUS", lambda j, now: "0"),
    "U": ("UID", lambda j, now: str(j["uid"]) if j.get("uid") is not None else ""),
    "v": ("RESERVATION", lambda j, now: "(null)"),
    "w": ("WCKEY", lambda j, now: "(null)"),
    "W": ("LICENSES", lambda j, now: "(null)"),
    "x": ("EXC_NODES", lambda j, now: ""),
    "X": ("CORE_SPEC", lambda j, now: "N/A"),
    "Y": ("SCHEDNODES", lambda j, now: "(null)"),
    "z": ("S:C:T", lambda j, now: "*:*:*"),
    # -O only (no letter)
    "tres-alloc": ("TRES_ALLOC", lambda j, now: tres_alloc(j)),
    "tres-per-node": ("TRES_PER_NODE", lambda j, now: "N/A"),
}
#: squeue -O names -> letters
_FIELDS = {
    "jobid": "A", "jobarrayid": "i", "arrayjobid": "F", "arraytaskid": "K", "name": "j", "username": "u",
    "userid": "U", "state": "T", "statecompact": "t", "timeused": "M", "timelimit": "l", "timeleft": "L",
    "numnodes": "D", "numcpus": "C", "minmemory": "m", "partition": "P", "nodelist": "N", "reasonlist": "R",
    "reason": "r", "workdir": "Z", "command": "o", "submittime": "V", "starttime": "S", "endtime": "e",
    "priority": "Q", "prioritylong": "Q", "qos": "q", "account": "a", "nice": "y", "comment": "k",
    "batchhost": "B", "mincpus": "c", "mintmpdisk": "d", "dependency": "E", "feature": "f", "groupname": "g",
    "groupid": "G", "oversubscribe": "h", "sockets": "H", "cores": "I", "threads": "J", "reqnodes": "n",
    "contiguous": "O", "reservation": "v", "wckey": "w", "licenses": "W", "excnodes": "x", "corespec": "X",
    "schednodes": "Y", "sct": "z", "tres-alloc": "tres-alloc", "tres-per-node": "tres-per-node",
}
DEFAULT_FORMAT = "%.18i %.9P %.8j %.8u %.2t %.10M %.6D %R"


def slurm_id(j: dict[str, Any]) -> str:
    """A job's id as Slurm writes it: ``12``; a task ``12_5``; an array's waiting tasks ``12_[6-1000%50]``."""
    if j.get("_pending_tasks"):
        return f"{j['array_id']}_[{j['_pending_tasks']}]"
    if j.get("array_id") is not None and j.get("array_index") is not None:
        return f"{j['array_id']}_{j['array_index']}"
    return str(j["id"])


def group_of(j: dict[str, Any]) -> tuple[str, str]:
    """(group name, gid) of a job's owner's primary group, as this host knows them."""
    import grp
    import pwd

    try:
        gid = pwd.getpwnam(j["user"]).pw_gid
    except KeyError:
        return "(unknown)", ""
    try:
        return grp.getgrgid(gid).gr_name, str(gid)
    except KeyError:
        return str(gid), str(gid)


def tres_alloc(j: dict[str, Any]) -> str:
    """Slurm's allocated trackable resources, ``cpu=2,mem=1024M,node=1,billing=2``: a job's once it has
    started, none while it waits."""
    if not j.get("started"):
        return ""
    cpus = int(max(1, round(j.get("cpu_req") or j.get("cpu") or 1)))
    return f"cpu={cpus},mem={int(j.get('mem_req_mb') or 0)}M,node=1,billing={cpus}"


def _task_text(j: dict[str, Any]) -> str:
    if j.get("_pending_tasks"):
        return f"[{j['_pending_tasks']}]"
    return str(j["array_index"]) if j.get("array_index") is not None else "N/A"


def collapse_pending(jobs: list[dict[str, Any]], arrays: dict[str, Any]) -> list[dict[str, Any]]:
    """The jobs as squeue lists them: an array's tasks that wait (in one state, held or not) as one line
    first, ``12_[3-1000%50]`` (squeue -r lists them one by one), its running and ended tasks one a line."""
    from wulf.model.array import ArraySpec

    waiting: dict[tuple[int, str], list[dict[str, Any]]] = {}
    others: list[dict[str, Any]] = []
    for j in jobs:
        if j.get("array_id") is not None and j["state"] in ("queued", "held"):
            waiting.setdefault((j["array_id"], j["state"]), []).append(j)
        else:
            others.append(j)
    out = []
    for (array_id, _), tasks in waiting.items():
        if len(tasks) == 1:
            out.append(tasks[0])
            continue
        throttle = int((arrays.get(str(array_id)) or {}).get("throttle") or 0)
        spec = ArraySpec(tuple(sorted(t["array_index"] for t in tasks)), throttle)
        out.append({**min(tasks, key=lambda t: t["array_index"]), "_pending_tasks": spec.text()})
    return out + others


#: an ended job's reason, as Slurm gives it by the state it ended in (COMPLETED and CANCELLED: None)
ENDED_REASONS = {"FAILED": "NonZeroExitCode", "TIMEOUT": "TimeLimit", "OUT_OF_MEMORY": "OutOfMemory",
                 "NODE_FAIL": "NodeDown"}


def reason_of(j: dict[str, Any]) -> str:
    """Slurm's reason word for a job (one word: tools split squeue's lines on blanks); a waiting job's is
    wulf's own sentence, joined by underscores, when it is none of Slurm's."""
    state, why = j["state"], str(j.get("reason") or "")
    if state == "held":
        return "JobHeldUser"
    if state == "running":
        return "None"
    if state != "queued":
        return ENDED_REASONS.get(slurm_state(j), "None")
    if not why:
        return "Priority"
    if why.startswith("waiting for job"):
        return "Dependency"
    if "no node" in why or "room" in why or "busy" in why:
        return "Resources"
    return "_".join(why.split())


_SPEC = re.compile(r"%(\.?)(-?)(\d*)([A-Za-z%])")


def parse_format(fmt: str, letters: dict[str, tuple[str, Any]] | None = None,
                 who: str = "squeue") -> list[tuple[str, str, bool, int]]:
    """``-o`` format: pieces of (literal text before, letter, right-justified, width); ``letters``: the
    command's fields (squeue's by default)."""
    letters = _LETTERS if letters is None else letters
    out = []
    at = 0
    for m in _SPEC.finditer(fmt):
        letter = m.group(4)
        if letter not in letters:
            raise UsageError(f"{who}: invalid field specification %{letter} in {fmt!r}")
        out.append((fmt[at:m.start()], letter, m.group(1) == ".", int(m.group(3) or 0)))
        at = m.end()
    if at < len(fmt):
        out.append((fmt[at:], "", False, 0))
    return out


_FIELD = re.compile(r"([^:]*)(?::(\.?)(\d*)(.*))?", re.S)


def parse_fields(text: str, fields: dict[str, str] | None = None,
                 who: str = "squeue") -> list[tuple[str, str, bool, int]]:
    """``-O`` field list: ``name[:[.][size][suffix]]`` separated by commas. Without ``:`` a field is 20
    wide and fields are parted by a space; ``:`` without a size prints the value unpadded; a suffix is
    printed after the value in place of the space (Open OnDemand asks ``Name:\\x1F,...`` and splits on it)."""
    out: list[tuple[str, str, bool, int]] = []
    for item in text.split(","):
        m = _FIELD.fullmatch(item)
        assert m is not None  # the pattern matches any text
        name = m.group(1).strip(" ")
        if not name:
            continue
        letter = (_FIELDS if fields is None else fields).get(name.lower())
        if letter is None:
            raise UsageError(f"{who}: invalid -O field {name!r}")
        colon = m.group(2) is not None
        width = int(m.group(3)) if m.group(3) else (0 if colon else 20)
        out.append(("", letter, m.group(2) == ".", width))
        out.append(((m.group(4) if colon else "") or " ", "", False, 0))
    if out and out[-1][0] == " ":
        out.pop()
    return out


def render(pieces: list[tuple[str, str, bool, int]], job: dict[str, Any] | None, now: float,
           letters: dict[str, tuple[str, Any]] | None = None) -> str:
    """One line: a job's, or the header (``job`` None). Values wider than their field are cut, as
    squeue cuts them."""
    parts = []
    for text, letter, right, width in pieces:
        parts.append(text)
        if not letter:
            continue
        field = (_LETTERS if letters is None else letters)[letter]
        value = field[0] if job is None else str(field[1](job, now))
        if width:
            value = value[:width]
            value = value.rjust(width) if right else value.ljust(width)
        parts.append(value)
    return "".join(parts).rstrip(" ") if job is None else "".join(parts)


def _squeue_parser() -> ArgParser:
    p = ArgParser(prog="squeue", description="Jobs in the queue, as Slurm's squeue shows them (wulf).",
                  add_help=False)
    p.add_argument("-u", "--user", help="only these users' jobs (comma-separated)")
    p.add_argument("--me", action="store_true", help="only your jobs")
    p.add_argument("-j", "--jobs", action="append", default=[], help="only these jobs (comma-separated)")
    p.add_argument("-t", "--states", help="only jobs in these states (PD,R,CD,... or 'all')")
    p.add_argument("-p", "--partition", help="only jobs of these queues")
    p.add_argument("-n", "--name", help="only jobs of these names")
    p.add_argument("-o", "--format", help="the output format (squeue's %% fields)")
    p.add_argument("-O", "--Format", dest="fields", help="the output fields (name[:[.]size],...)")
    p.add_argument("-h", "--noheader", action="store_true", help="no header line")
    p.add_argument("-a", "--all", action="store_true", help="(accepted; wulf shows every queue)")
    p.add_argument("-r", "--array", action="store_true", help="one line per array task (waiting ones too)")
    p.add_argument("-l", "--long", action="store_true", help="(accepted)")
    p.add_argument("--noconvert", action="store_true", help="(accepted)")
    p.add_argument("-M", "--clusters", help="(accepted; wulf is one cluster)")
    p.add_argument("--json", action="store_true", help="print JSON ({\"jobs\": [...]})")
    p.add_argument("--help", action="help", help="show this help and exit")
    return p


def _state_filter(text: str | None, ids_given: bool) -> set[str] | None:
    """The Slurm states to show; None: all. By default squeue shows jobs that wait or run, and the
    ended ones it is asked for by id."""
    if text is None:
        return None if ids_given else {"PENDING", "RUNNING"}
    return slurm_states(text, "squeue: invalid job state specified")


def squeue_jobs(args: argparse.Namespace, client: Client) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The jobs squeue's options choose, and the arrays they are tasks of (from the status)."""
    refs = slurm_refs(args.jobs, "squeue")
    ids = {job for job, tasks in refs if tasks is None}
    tasks = {(job, i) for job, some in refs if some is not None for i in some}
    users = set(args.user.split(",")) if args.user else ({me()} if args.me else set())
    states = _state_filter(args.states, bool(refs))
    status = client.status(all_jobs=bool(refs) or states is None or not states <= {"PENDING", "RUNNING"})
    out = []
    for j in jobs_of(status):
        if refs and j["id"] not in ids and j.get("array_id") not in ids \
                and (j.get("array_id"), j.get("array_index")) not in tasks:
            continue
        if users and j["user"] not in users:
            continue
        if states is not None and slurm_state(j) not in states:
            continue
        if args.partition and j.get("queue") not in args.partition.split(","):
            continue
        if args.name and j.get("name") not in args.name.split(","):
            continue
        out.append(j)
    return out, status.get("arrays") or {}


def squeue(argv: list[str]) -> int:
    args = _squeue_parser().parse_args(argv)
    pieces = parse_fields(args.fields) if args.fields else parse_format(
        args.format or os.environ.get("SQUEUE_FORMAT") or DEFAULT_FORMAT)
    jobs, arrays = squeue_jobs(args, Client())
    if not args.array and not args.json:
        jobs = collapse_pending(jobs, arrays)
    now = time.time()
    if args.json:
        print_json({"jobs": [_json(j, now) for j in jobs]})
        return 0
    lines = [] if args.noheader else [render(pieces, None, now)]
    lines += [render(pieces, j, now) for j in jobs]
    sys.stdout.write("".join(line + "\n" for line in lines))
    return 0


def _json(j: dict[str, Any], now: float) -> dict[str, Any]:
    """A job as ``squeue --json`` gives one (the fields tools read)."""
    return {
        "job_id": j["id"], "name": j.get("name") or "", "user_name": j["user"], "partition": j.get("queue"),
        "job_state": [slurm_state(j)], "state_reason": reason_of(j), "nodes": j.get("node") or "",
        "array_job_id": j.get("array_id") or 0, "array_task_id": j.get("array_index"),
        "cpus": j.get("cpu_req"), "memory_per_node": j.get("mem_req_mb"),
        "current_working_directory": j.get("cwd"), "command": j.get("command"),
        "submit_time": int(j.get("submitted") or 0), "start_time": int(j.get("started") or 0),
        "end_time": int(j.get("ended") or 0), "time_limit": int((j.get("time_limit") or 0) // 60) or None,
        "exit_code": j.get("exit_code"), "run_time": int(run_seconds(j, now)),
    }


# ---------------------------------------------------------------------------------------------- scancel

def _scancel_parser() -> ArgParser:
    p = ArgParser(prog="scancel", description="Cancel jobs or send them a signal, as Slurm's scancel does (wulf).")
    p.add_argument("ids", nargs="*", help="job ids (ID, ID_TASK)")
    p.add_argument("-u", "--user", help="all jobs of this user")
    p.add_argument("--me", action="store_true", help="all your jobs")
    p.add_argument("-n", "--name", "--jobname", dest="name", help="jobs of this name")
    p.add_argument("-t", "--state", help="only jobs in this state (PENDING, RUNNING)")
    p.add_argument("-p", "--partition", help="only jobs of this queue")
    p.add_argument("-s", "--signal", help="send this signal (a name or number) instead of cancelling")
    p.add_argument("-f", "--full", action="store_true", help="(accepted)")
    p.add_argument("-b", "--batch", action="store_true", help="(accepted)")
    p.add_argument("-Q", "--quiet", action="store_true", help="say nothing about jobs that had ended")
    p.add_argument("-M", "--clusters", help="(accepted; wulf is one cluster)")
    p.add_argument("-v", "--verbose", action="store_true", help="(accepted)")
    return p


def _signal_number(text: str) -> int:
    import signal

    t = text.upper().removeprefix("SIG")
    if t.isdigit() and 0 < int(t) < 65:
        return int(t)
    try:
        return int(signal.Signals["SIG" + t])
    except KeyError:
        raise UsageError(f"scancel: Invalid job signal: {text}") from None


def slurm_refs(values: list[str], who: str) -> list[tuple[int, tuple[int, ...] | None]]:
    """Job ids as Slurm's commands take them: ``12`` (a job, or all of array 12), ``12_3`` (task 3 of
    array 12, wulf's ``12[3]``), ``12_[1-3,7]`` (those tasks), comma-separated or one a word."""
    from wulf.model.array import parse_array

    out: list[tuple[int, tuple[int, ...] | None]] = []
    for v in values:
        for part in re.split(r",(?![^\[]*\])", v):  # (commas inside brackets are the tasks')
            head, _, task = part.strip().partition("_")
            [job] = int_ids([head])
            if not task:
                out.append((job, None))
            elif task.isdigit():
                out.append((job, (int(task),)))
            elif task.startswith("[") and task.endswith("]") and "%" not in task:
                try:
                    out.append((job, tuple(parse_array(task[1:-1]).indices)))
                except UsageError as e:
                    raise UsageError(f"{who}: {part}: {e.message}") from None
            else:
                raise UsageError(f"{who}: Invalid job id specified: {part}")
    return out


def task_ids(values: list[str]) -> list[int | str]:
    """scancel's ids in wulf's terms: ``12``, and ``12[3]`` for each task named."""
    out: list[int | str] = []
    for job, tasks in slurm_refs(values, "scancel"):
        out += [job] if tasks is None else [f"{job}[{i}]" for i in tasks]
    return out


def scancel(argv: list[str]) -> int:
    args = _scancel_parser().parse_args(argv)
    ids = task_ids(args.ids)
    signum = _signal_number(args.signal) if args.signal else None  # (a bad signal is refused before any job is looked at)
    client = Client()
    user = args.user or (me() if args.me else "")
    if not ids and not (user or args.name or args.state or args.partition):
        raise UsageError("scancel: No job identification provided")
    if user or args.name or args.state or args.partition:
        wanted = {"PENDING", "RUNNING"} if not args.state else {
            {v: k for k, v in SLURM_CODES.items()}.get(s, s) for s in args.state.upper().split(",")}
        chosen = [j for j in jobs_of(client.status()) if j["state"] in ACTIVE
                  and (not ids or j["id"] in ids) and (not user or j["user"] == user)
                  and (not args.name or j.get("name") == args.name)
                  and (not args.partition or j.get("queue") == args.partition)
                  and slurm_state(j) in wanted]
        ids = [j["id"] for j in chosen]
    missing: list[int | str] = []
    ids = known(client, ids, missing.append)
    for ref in missing:  # Slurm's words, which Open OnDemand looks for (it takes such a job as ended)
        print(f"scancel: error: Kill job error on job id {slurm_ref(ref)}: Invalid job id specified",
              file=sys.stderr)
    if not ids:
        return 1 if missing else 0
    if signum is not None:
        reply = client.signal(ids, signum)
    else:
        reply = client.cancel(ids)
    return _report_cancel(reply, args.quiet) or (1 if missing else 0)


def slurm_ref(ref: int | str) -> str:
    """A job reference in Slurm's words: ``12``, task ``12_3`` (wulf's ``12[3]``)."""
    return str(ref).replace("[", "_").rstrip("]")


def _report_cancel(reply: dict[str, Any], quiet: bool) -> int:
    """scancel's words for the jobs that had ended already (it cancels the rest, and exits 0)."""
    if not quiet:
        for job in reply.get("already_ended", []):
            print(f"scancel: error: Kill job error on job id {job}: Job/step already completing or completed",
                  file=sys.stderr)
    return 0
