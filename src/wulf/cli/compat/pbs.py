"""PBS's commands over wulf (Torque and PBS Pro): ``qsub``, ``qstat``, ``qdel``, ``qhold`` and ``qrls``.

A job id is printed as PBS prints it, ``NUMBER.SERVER`` (the server being this host's short name), and
read back in either form. What the tools that drive PBS parse (psij-python's ``qstat -f -F json -x``,
Dask-jobqueue's ``qsub``/``qdel``, Open OnDemand's ``qstat -f -t``) is printed in PBS's layout, and a job
that is not there is told in PBS's words (``Unknown Job Id``, ``Job has finished``), which Open OnDemand
looks for.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from wulf.cli.compat.common import (
    ACTIVE,
    PBS_STATES,
    hms_full,
    host,
    int_ids,
    jobs_of,
    read_stdin_script,
    wait_exit,
    with_directives,
)
from wulf.client import Client
from wulf.compat import pbs as dialect
from wulf.errors import NotFound, UsageError

# ---------------------------------------------------------------------------------------------- qsub

#: qsub's own options that are not directives
_OWN = {"-z": False, "-I": False, "-f": False, "-x": False}


class QsubArgs:
    def __init__(self) -> None:
        self.words: list[str] = []  # the options that are directives, as words
        self.script: str | None = None
        self.command: list[str] = []  # a command after ``--``
        self.quiet = False  # -z
        self.args: list[str] = []  # Torque's -F "ARGS": the script's arguments


def parse_qsub(argv: list[str]) -> QsubArgs:
    q = QsubArgs()
    i = 0
    while i < len(argv):
        w = argv[i]
        if w == "--":
            if i + 1 >= len(argv):
                raise UsageError("qsub: a command must follow --")
            q.command = argv[i + 1:]
            return q
        if not w.startswith("-") or w == "-":
            if i + 1 < len(argv):
                raise UsageError(f"qsub: one script only; unexpected {argv[i + 1]!r} after {w!r} "
                                 "(its arguments go in -F \"ARGS\")")
            q.script = w
            return q
        if w == "-I":
            raise UsageError("qsub: interactive jobs (-I) are started with jr in wulf")
        if w in ("-z", "-F"):
            if w == "-F" and i + 1 >= len(argv):
                raise UsageError("qsub: option requires an argument -- 'F'")
            q.quiet = q.quiet or w == "-z"
            q.args += words_of(argv[i + 1]) if w == "-F" else []
            i += 2 if w == "-F" else 1
            continue
        opt = dialect.OPTIONS.get(w) or dialect.OPTIONS.get(w[:2])
        if opt is None:
            raise UsageError(f"qsub: invalid option -- '{w.lstrip('-')}'")
        takes = opt.arity == "value" and w in dialect.OPTIONS
        if takes and i + 1 >= len(argv):
            raise UsageError(f"qsub: option requires an argument -- '{w[1:]}'")
        q.words += argv[i:i + 2] if takes else [w]
        i += 2 if takes else 1
    return q


def words_of(text: str) -> list[str]:
    """-F's words, split as a shell would split them."""
    import shlex

    try:
        return shlex.split(text)
    except ValueError:
        raise UsageError(f"qsub: -F {text!r}: unbalanced quotes") from None


def pbs_id(job_id: int) -> str:
    return f"{job_id}.{host()}"


def qsub(argv: list[str]) -> int:
    from wulf.cli.qr import _read_script, submit
    from wulf.cli.scriptjob import from_directives

    q = parse_qsub(argv)
    if q.command:
        import shlex

        script, label = "#!/bin/sh\n" + shlex.join(q.command) + "\n", os.path.basename(q.command[0])[:15] or "STDIN"
    elif q.script is not None:
        script, label = _read_script(q.script), os.path.basename(q.script)
    else:
        script, label = read_stdin_script("qsub"), "STDIN"
    spec = from_directives(script, label, label, os.getcwd(), {}, False, label,
                           parse_as=with_directives(script, "pbs", q.words), who="qsub", args=q.args)
    array = bool(spec.get("array"))
    job = submit([spec])[0]
    if not q.quiet:  # an array's id as PBS Pro prints it: 12[].server
        print(f"{job}[].{host()}" if array else pbs_id(job), flush=True)
    if "block=true" in " ".join(q.words).replace(" ", ""):
        return wait_exit(job)
    return 0


# ---------------------------------------------------------------------------------------------- qstat

def _attributes(j: dict[str, Any], now: float) -> dict[str, Any]:
    """A job as ``qstat -f`` shows it (PBS Pro's attribute names)."""
    state = j.get("_pbs_state") or PBS_STATES.get(j["state"], "F")  # (an array's and its subjobs': pbsarrays)
    started = j.get("started")
    a: dict[str, Any] = {
        "Job_Name": j.get("name") or "STDIN",
        "Job_Owner": f"{j['user']}@{host()}",
        "job_state": state,
        "queue": j.get("queue") or "default",
        "server": host(),
        "ctime": time.ctime(j.get("submitted") or now),
        "qtime": time.ctime(j.get("submitted") or now),
        "Resource_List": {"ncpus": int(max(1, round(j.get("cpu_req") or 1))),
                          "mem": f"{int(j.get('mem_req_mb') or 0)}mb", "nodect": 1},
        "Output_Path": f"{host()}:{j.get('output') or ''}",
        "Variable_List": {"PBS_O_WORKDIR": j.get("cwd") or ""},
        "euser": j["user"],
        "substate": {"Q": 10, "H": 20, "R": 42, "B": 42, "F": 92, "X": 92}[state],
        **(j.get("_array") or {}),
    }
    if j.get("time_limit"):
        a["Resource_List"]["walltime"] = hms_full(j["time_limit"])
    if started:
        a["stime"] = time.ctime(started)
        ncpus = a["Resource_List"]["ncpus"]  # PBS Pro's host/slot*cpus (Open OnDemand counts the job's cpus there)
        a["exec_host"] = f"{j.get('node') or ''}/0" + (f"*{ncpus}" if ncpus > 1 else "")
        a["resources_used"] = {"walltime": hms_full((j.get("ended") or now) - started),
                               "cput": hms_full(j.get("cpu_time") or 0),
                               "mem": f"{int((j.get('peak_mem_mb') or j.get('mem_used_mb') or 0) * 1024)}kb",
                               "ncpus": a["Resource_List"]["ncpus"]}
    if j["state"] not in ACTIVE:
        a["Exit_status"] = _exit_status(j)
        if j.get("ended"):
            a["mtime"] = time.ctime(j["ended"])
    if j["state"] == "queued" and j.get("reason"):
        a["comment"] = j["reason"]
    return a


def _exit_status(j: dict[str, Any]) -> int:
    """PBS's exit status: the job's exit code; 256 + N when killed by signal N (PBS Pro); -1 when it
    never ran (cancelled before it started).

    A running job qdel stops is no exception in PBS Pro: its MoM sends SIGTERM, then SIGKILL after
    kill_delay (OpenPBS src/resmom/requests.c, terminate_job), and the exit status is 0x100 + the signal
    the job's shell died of (src/resmom/linux/mom_start.c, scan_for_terminated): 271 when SIGTERM ends
    it, 265 when it had to be killed. Only ``qdel -W force`` by a manager sets 265 outright
    (src/server/req_delete.c). wulf stops a job the same way, so its signal gives the same figure."""
    if j.get("signal"):
        return 256 + int(j["signal"])
    if j.get("exit_code") is not None:
        return int(j["exit_code"])
    return -1 if j["state"] == "cancelled" else 0


def _flat(prefix: str, value: Any) -> list[str]:
    if isinstance(value, dict):
        return [line for k, v in value.items() for line in _flat(f"{prefix}.{k}", v)]
    return [f"    {prefix} = {value}"]


def full(jobs: list[dict[str, Any]], now: float, as_json: bool) -> str:
    if as_json:
        return json.dumps({"timestamp": int(now), "pbs_version": "wulf", "pbs_server": host(),
                           "Jobs": {_label(j): _attributes(j, now) for j in jobs}}, indent=4) + "\n"
    out = []
    for j in jobs:
        out.append(f"Job Id: {_label(j)}")
        for k, v in _attributes(j, now).items():
            out += _flat(k, v)
        out.append("")
    return "".join(line + "\n" for line in out)


def _label(j: dict[str, Any]) -> str:
    return str(j.get("_pbs_id") or pbs_id(j["id"]))


def table(jobs: list[dict[str, Any]], now: float) -> str:
    lines = ["Job id            Name             User              Time Use S Queue",
             "----------------  ---------------- ----------------  -------- - -----"]
    for j in jobs:
        used = hms_full(j.get("cpu_time") or 0) if j.get("started") else "0"
        lines.append(f"{pbs_id(j['id'])[:16]:<16}  {(j.get('name') or 'STDIN')[:16]:<16} {j['user'][:16]:<16}  "
                     f"{used:>8} {PBS_STATES.get(j['state'], 'F')} {j.get('queue') or 'default'}")
    return "".join(line + "\n" for line in lines)


def _qstat_args(argv: list[str]) -> tuple[bool, bool, bool, bool, str, list[int]]:
    """(-f, -x, -F json, -t or -J (an array's subjobs too), -u USER, ids)."""
    f = x = as_json = subjobs = False
    user = ""
    ids: list[str] = []
    i = 0
    while i < len(argv):
        w = argv[i]
        if w in ("-f", "-x", "-fx", "-xf"):
            f, x = f or "f" in w, x or "x" in w
        elif w in ("-F", "-u") and i + 1 < len(argv):
            if w == "-F":
                if argv[i + 1] not in ("json", "dsv"):
                    raise UsageError(f"qstat: -F {argv[i + 1]}: only json is supported")
                as_json = argv[i + 1] == "json"
            else:
                user = argv[i + 1]
            i += 1
        elif w in ("-t", "-J"):
            subjobs = True
        elif w in ("-a", "-n", "-1", "-w", "-s", "-r", "-i", "-e"):
            pass  # layouts wulf prints as the default one
        elif w.startswith("-"):
            raise UsageError(f"qstat: invalid option -- '{w.lstrip('-')}'")
        else:
            ids.append(w)
        i += 1
    return f, x, as_json, subjobs, user, int_ids(ids)


def qstat(argv: list[str]) -> int:
    from wulf.cli.compat.pbsarrays import records

    f, x, as_json, subjobs, user, ids = _qstat_args(argv)
    client = Client()
    now = time.time()
    status = client.status(all_jobs=x or bool(ids))
    jobs = [j for j in jobs_of(status) if not user or j["user"] == user]
    code = 0
    if ids:
        known = {j["id"]: j for j in jobs}
        chosen = []
        for i in ids:
            tasks = [j for j in jobs if j.get("array_id") == i and j.get("array_index") is not None]
            j = known.get(i) or _one(client, i)
            if j is None:
                print(f"qstat: Unknown Job Id {pbs_id(i)}", file=sys.stderr)
                code = 153
            elif not x and all(t["state"] not in ACTIVE for t in tasks or [j]):
                print(f"qstat: {pbs_id(i)} Job has finished, use -x or -H to obtain historical job information",
                      file=sys.stderr)
                code = 35
            else:
                chosen += tasks or [j]
        jobs = chosen
    elif not x:
        jobs = [j for j in jobs if j["state"] in ACTIVE]
    if f:
        sys.stdout.write(full(records(jobs, subjobs, status.get("arrays") or {}), now, as_json))
    elif jobs:
        sys.stdout.write(table(jobs, now))
    return code


def _one(client: Client, job_id: int) -> dict[str, Any] | None:
    try:
        return client.job(job_id)
    except NotFound:
        return None


# ---------------------------------------------------------------------------------------------- qdel

def qdel(argv: list[str]) -> int:
    ids: list[str] = []
    for w in argv:
        if w in ("-W", "force", "-x", "-Wforce"):
            continue  # force: wulf's cancel stops a running job anyway (TERM, then KILL)
        if w.startswith("-"):
            raise UsageError(f"qdel: invalid option -- '{w.lstrip('-')}'")
        ids.append(w)
    if not ids:
        raise UsageError("usage: qdel [-W force] job_identifier...")
    return cancel_each(int_ids(ids), lambda i: f"qdel: Unknown Job Id {pbs_id(i)}",
                       lambda i: f"qdel: Job has finished {pbs_id(i)}", None, 153)


def cancel_each(ids: list[int], unknown: Any, ended: Any, done: Any, bad_code: int) -> int:
    """Cancel jobs one request for all; the ids that do not exist are told one by one (a batch that
    names one unknown id is refused whole by the server, so those are found first)."""
    client = Client()
    code = 0
    present = []
    for i in ids:
        if _one(client, i) is None:
            print(unknown(i), file=sys.stderr)
            code = bad_code
        else:
            present.append(i)
    if present:
        reply = client.cancel(present)
        for i in reply.get("already_ended", []):
            print(ended(i), file=sys.stderr)
            code = code or bad_code
        if done is not None:
            for i in reply.get("cancelled", []):
                print(done(i))
    return code


# ---------------------------------------------------------------------------------------------- qhold, qrls

def _hold_refs(argv: list[str], who: str) -> list[int | str]:
    """qhold's and qrls's words: ``-h u`` (a user hold: the only kind wulf has) and job ids, ``12``,
    ``12.server``, a task ``12[3].server``, a whole array ``12[].server``."""
    import re

    refs: list[int | str] = []
    i = 0
    while i < len(argv):
        w = argv[i]
        if w.startswith("-h"):
            kind = w[2:] or (argv[i + 1] if i + 1 < len(argv) else "")
            if kind != "u":
                raise UsageError(f"{who}: -h {kind or '?'}: wulf has user holds only (-h u)")
            i += 1 if w[2:] else 2
            continue
        if w.startswith("-"):
            raise UsageError(f"{who}: invalid option -- '{w.lstrip('-')}'")
        m = re.fullmatch(r"(\d+)(?:\[(\d*)\])?(?:\..*)?", w)
        if m is None or int(m.group(1)) < 1:
            raise UsageError(f"{who}: illegally formed job identifier: {w}")
        refs.append(f"{m.group(1)}[{m.group(2)}]" if m.group(2) else int(m.group(1)))
        i += 1
    if not refs:
        raise UsageError(f"usage: {who} [-h hold_list] job_identifier...")
    return refs


def _pbs_ref(ref: int | str) -> str:
    job, _, task = str(ref).partition("[")
    return f"{job}[{task}.{host()}" if task else pbs_id(int(job))


def _hold_or_release(argv: list[str], who: str) -> int:
    from wulf.cli.compat.common import known

    client = Client()
    code = 0

    def unknown(ref: int | str) -> None:
        nonlocal code
        print(f"{who}: Unknown Job Id {_pbs_ref(ref)}", file=sys.stderr)
        code = 153

    refs = known(client, _hold_refs(argv, who), unknown)
    if not refs:
        return code
    reply = client.hold(refs) if who == "qhold" else client.release(refs)
    for ref in reply["not_queued" if who == "qhold" else "not_held"]:
        ended = _one(client, int(str(ref).partition("[")[0]))
        if ended is not None and ended["state"] not in ACTIVE:
            print(f"{who}: Job has finished {_pbs_ref(ref)}", file=sys.stderr)
        else:  # qhold of a running job (PBS would checkpoint it; wulf cannot), qrls of one not held
            print(f"{who}: Request invalid for state of job {_pbs_ref(ref)}", file=sys.stderr)
        code = code or 168
    return code


def qhold(argv: list[str]) -> int:
    """PBS's ``qhold [-h u] ID...``: hold queued jobs (wulf's qhold, in PBS's words)."""
    return _hold_or_release(argv, "qhold")


def qrls(argv: list[str]) -> int:
    """PBS's ``qrls [-h u] ID...``: release held jobs."""
    return _hold_or_release(argv, "qrls")
