"""Grid Engine's commands over wulf: ``qsub`` (with ``-b y``, ``-terse``, ``-sync y``), ``qstat`` and ``qdel``.

Chosen over PBS's commands of the same names by ``[compat] flavour = "sge"`` (or
``$WULF_COMPAT_FLAVOUR``). They print what Grid Engine prints: ``Your job 12 ("name") has been
submitted``, qstat's table (``qw``, ``hqw``, ``r``) and ``-j ID``'s details.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from typing import Any

from wulf.cli.compat.common import (
    SGE_STATES,
    int_ids,
    jobs_of,
    me,
    read_stdin_script,
    wait_exit,
    with_directives,
)
from wulf.cli.compat.pbs import cancel_each
from wulf.client import Client
from wulf.compat import sge as dialect
from wulf.errors import UsageError


class _Qsub:
    def __init__(self) -> None:
        self.words: list[str] = []
        self.binary = False
        self.terse = False
        self.sync = False
        self.rest: list[str] = []


def parse_qsub(argv: list[str]) -> _Qsub:
    q = _Qsub()
    i = 0
    while i < len(argv):
        w = argv[i]
        if not w.startswith("-"):
            q.rest = argv[i:]
            return q
        opt = dialect.OPTIONS.get(w)
        if opt is None:
            raise UsageError(f"qsub: ERROR! invalid option argument \"{w}\"")
        n = {"none": 0, "pair": 2}.get(opt.arity, 1)
        if i + n >= len(argv) + (1 if n == 0 else 0) and n:
            raise UsageError(f"qsub: ERROR! {w} option must have argument")
        value = argv[i + 1:i + 1 + n]
        if w == "-b":
            q.binary = value[0].lower() in ("y", "yes")
        elif w == "-terse":
            q.terse = True
        elif w == "-sync":
            q.sync = value[0].lower() in ("y", "yes")
        else:
            q.words += [w, *value]
        i += 1 + n
    return q


def qsub(argv: list[str]) -> int:
    from wulf.cli.qr import _read_script, submit
    from wulf.cli.scriptjob import from_directives

    q = parse_qsub(argv)
    if q.binary:
        if not q.rest:
            raise UsageError("qsub: ERROR! -b y needs a command")
        script, label = "#!/bin/sh\n" + shlex.join(q.rest) + "\n", os.path.basename(q.rest[0])
    elif q.rest:
        script, label = _read_script(q.rest[0]), os.path.basename(q.rest[0])
    else:
        script, label = read_stdin_script("qsub"), "STDIN"
    spec = from_directives(script, label, label, os.getcwd(), {}, False, label,
                           parse_as=with_directives(script, "sge", q.words), who="qsub",
                           args=q.rest[1:] if q.rest and not q.binary else [])
    job = submit([spec])[0]
    print(job if q.terse else f'Your job {job} ("{spec.get("name") or label}") has been submitted', flush=True)
    return wait_exit(job) if q.sync else 0


def _when(j: dict[str, Any]) -> str:
    t = j.get("started") if j["state"] == "running" else j.get("submitted")
    return time.strftime("%m/%d/%Y %H:%M:%S", time.localtime(t or 0))


def table(jobs: list[dict[str, Any]]) -> str:
    lines = ["job-ID  prior   name       user         state submit/start at     queue                          slots ja-task-ID ",
             "-" * 113]
    for j in jobs:
        queue = f"{j.get('queue') or 'default'}@{j['node']}" if j["state"] == "running" and j.get("node") else ""
        slots = int(max(1, round(j.get("cpu_req") or 1)))
        lines.append(f"{j['id']:>7} 0.50000 {(j.get('name') or '')[:10]:<10} {j['user'][:12]:<12} "
                     f"{SGE_STATES.get(j['state'], 'r'):<5} {_when(j)} {queue[:30]:<30} {slots:>5}")
    return "".join(line + "\n" for line in lines)


def details(j: dict[str, Any]) -> str:
    rows = [("job_number", j["id"]), ("submission_time", time.ctime(j.get("submitted") or 0)),
            ("owner", j["user"]), ("sge_o_workdir", j.get("cwd") or ""), ("cwd", j.get("cwd") or ""),
            ("job_name", j.get("name") or ""), ("hard_queue_list", j.get("queue") or "default"),
            ("stdout_path_list", f"NONE:NONE:{j.get('output') or ''}"),
            ("hard resource_list", f"h_vmem={int(j.get('mem_req_mb') or 0)}M"),
            ("script_file", j.get("command") or "")]
    if j.get("reason") and j["state"] == "queued":
        rows.append(("scheduling info", j["reason"]))
    return "".join(f"{k + ':':<28}{v}\n" for k, v in rows)


def qstat(argv: list[str]) -> int:
    user, detail = me(), None
    i = 0
    while i < len(argv):
        w = argv[i]
        if w in ("-u", "-j") and i + 1 < len(argv):
            if w == "-u":
                user = argv[i + 1]
            else:
                detail = int_ids([argv[i + 1]])
            i += 2
        elif w in ("-r", "-ext", "-pri", "-urg", "-g", "-s"):
            i += 2 if w in ("-g", "-s") else 1
        else:
            raise UsageError(f"qstat: ERROR! invalid option argument \"{w}\"")
    client = Client()
    if detail is not None:
        jobs = [j for j in jobs_of(client.status()) if j["id"] in detail]
        if not jobs:
            print("Following jobs do not exist: " + ", ".join(map(str, detail)), file=sys.stderr)
            return 1
        sys.stdout.write("=" * 62 + "\n" + "".join(details(j) for j in jobs))
        return 0
    jobs = [j for j in jobs_of(client.status()) if j["state"] in SGE_STATES and (user == "*" or j["user"] == user)]
    if jobs:
        sys.stdout.write(table(jobs))
    return 0


def qdel(argv: list[str]) -> int:
    ids = [w for w in argv if not w.startswith("-")]
    if not ids:
        raise UsageError("usage: qdel job_task_list")
    who = me()
    return cancel_each(int_ids(ids), lambda i: f'denied: job "{i}" does not exist',
                       lambda i: f'denied: job "{i}" has already finished', lambda i: f"{who} has deleted job {i}", 1)


