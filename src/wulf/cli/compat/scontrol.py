"""Slurm's ``scontrol`` over wulf: ``show job``, ``show partition``, ``show hostnames``, ``show config``, ``hold``,
``release`` and ``update``.

``show job`` prints Slurm's ``Key=Value`` record (``-o``: one line a job), which portals and workflow
tools read; ``show config`` prints the keys tools look up (``MinJobAge``, ``ClusterName``,
``SlurmctldHost``...) with wulf's own values where it has them; ``update JobId=...`` is jmod's request
(:mod:`wulf.cli.compat.scupdate`). What wulf does not do (``requeue``, other entities, keys it cannot
change) is refused in one line, never pretended.
"""

from __future__ import annotations

import os
import re
import sys
import time
from typing import Any
from urllib.parse import urlsplit

from wulf.cli.compat.common import iso, jobs_of, run_seconds, slurm_state
from wulf.client import Client
from wulf.errors import NotFound, UsageError

VERSION = "23.11.0"  # the Slurm whose commands' output wulf's follow (sbatch --version says it too)
CLUSTER_NAME = "wulf"  # what jobs see as SLURM_CLUSTER_NAME (wulf.agent.launcher)

#: MinJobAge: wulf forgets no ended job by age; squeue lists it until [server] history newer ones have
#: ended (and sacct for [server] keep_days). Slurm's default (300 s) is the least a tool may count on.
MIN_JOB_AGE = 300


def dhms(seconds: float | None) -> str:
    """Slurm's ``[D-]HH:MM:SS`` (``UNLIMITED`` for none), as scontrol shows RunTime and TimeLimit."""
    if seconds is None:
        return "UNLIMITED"
    s = max(0, int(seconds))
    d, s = divmod(s, 86400)
    text = f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{d}-{text}" if d else text


def _exit_code(j: dict[str, Any]) -> str:
    return f"{j.get('exit_code') if j.get('exit_code') is not None else 0}:{j.get('signal') or 0}"


def _std_out(j: dict[str, Any]) -> str:
    from wulf.model.outpath import output_path

    return output_path(j.get("output") or "", j.get("cwd") or "/", j["id"], j.get("name") or "", j["user"],
                       j.get("node") or "", j.get("array_id"), j.get("array_index"))


def job_record(j: dict[str, Any], now: float) -> list[list[str]]:
    """A job as ``scontrol show job`` shows it: lines of ``Key=Value`` words."""
    from wulf.cli.compat.slurm import reason_of

    cpus = int(max(1, round(j.get("cpu_req") or 1)))
    head = [f"JobId={j['id']}"]
    if j.get("array_id") is not None:
        head += [f"ArrayJobId={j['array_id']}", f"ArrayTaskId={j.get('array_index')}"]
    ended = j["state"] not in ("queued", "held", "running")
    out = _std_out(j)
    return [
        [*head, f"JobName={j.get('name') or ''}"],
        [f"UserId={j['user']}({j.get('uid', '')})", "Account=(null)", "QOS=normal"],
        [f"JobState={slurm_state(j)}", f"Reason={reason_of(j)}", f"Dependency={j.get('depend') or '(null)'}"],
        [f"Requeue={1 if j.get('retries') or j.get('checkpoint') or j.get('requeue') else 0}", f"Restarts={j.get('restarts') or 0}", "BatchFlag=1",
         f"ExitCode={_exit_code(j) if ended else '0:0'}"],
        [f"RunTime={dhms(run_seconds(j, now))}", f"TimeLimit={dhms(j.get('time_limit'))}"],
        [f"SubmitTime={iso(j.get('submitted'))}", f"StartTime={iso(j.get('started'))}",
         f"EndTime={iso(j.get('ended'))}"],
        [f"Partition={j.get('queue') or 'default'}", f"Nice={j.get('nice') or 0}"],
        [f"NodeList={j.get('node') or '(null)'}", f"BatchHost={j.get('node') or '(null)'}"],
        ["NumNodes=1", f"NumCPUs={cpus}", "NumTasks=1", f"CPUs/Task={cpus}"],
        [f"MinMemoryNode={int(j.get('mem_req_mb') or 0)}M"],
        [f"Command={j.get('command') or ''}"],
        [f"WorkDir={j.get('cwd') or ''}"],
        [f"StdErr={out}"],
        ["StdIn=/dev/null"],
        [f"StdOut={out}"],
    ]


def partition_record(nodes: list[dict[str, Any]]) -> list[list[str]]:
    """wulf's one partition (sinfo's ``default``) as ``scontrol show partition`` shows one, in Slurm's
    ``Key=Value`` words (Open OnDemand reads PartitionName, AllowAccounts, DenyAccounts, AllowQos, DenyQos
    and TRES)."""
    from wulf.cli.compat.sinfo import PARTITION

    up = [n for n in nodes if n.get("state") == "up"]
    cpus = int(sum(float(n.get("cpus") or 0) for n in nodes))
    mem = int(sum(float(n.get("mem_total_mb") or 0) for n in nodes))
    names = ",".join(sorted(n["name"] for n in nodes)) or "(null)"
    return [
        [f"PartitionName={PARTITION}"],
        ["AllowGroups=ALL", "AllowAccounts=ALL", "AllowQos=ALL"],
        ["AllocNodes=ALL", "Default=YES", "QoS=N/A"],
        ["DefaultTime=NONE", "DisableRootJobs=NO", "ExclusiveUser=NO", "GraceTime=0", "Hidden=NO"],
        ["MaxNodes=1", "MaxTime=UNLIMITED", "MinNodes=0", "LLN=NO", "MaxCPUsPerNode=UNLIMITED"],
        [f"Nodes={names}"],
        ["PriorityJobFactor=1", "PriorityTier=1", "RootOnly=NO", "ReqResv=NO", "OverSubscribe=NO"],
        ["OverTimeLimit=NONE", "PreemptMode=OFF"],
        [f"State={'UP' if up else 'DOWN'}", f"TotalCPUs={cpus}", f"TotalNodes={len(nodes)}",
         "SelectTypeParameters=NONE"],
        ["JobDefaults=(null)"],
        ["DefMemPerNode=UNLIMITED", "MaxMemPerNode=UNLIMITED"],
        [f"TRES=cpu={cpus},mem={mem}M,node={len(nodes)}" if nodes else "TRES=(null)"],
    ]


def _render(records: list[list[list[str]]], one_line: bool) -> str:
    if one_line:
        return "".join(" ".join(w for line in rec for w in line) + "\n" for rec in records)
    return "".join(line + "\n" for rec in records
                   for line in [" ".join(rec[0]), *("   " + " ".join(x) for x in rec[1:]), ""])


def _jobs(client: Client, ref: str | None) -> list[dict[str, Any]]:
    """The jobs ``show job [ID]`` names: all that are listed, a job, an array's tasks, or one task."""
    from wulf.cli.compat.slurm import slurm_refs

    if ref is None:
        return jobs_of(client.status(all_jobs=True))
    [(job_id, tasks)] = slurm_refs([ref], "show job")
    try:
        first = client.job(job_id)
    except NotFound:
        return []
    if first.get("array_id") != job_id:
        return [first] if tasks is None else []
    listed = [j for j in jobs_of(client.status(all_jobs=True)) if j.get("array_id") == job_id]
    return [j for j in listed if tasks is None or j.get("array_index") in tasks]


def _show(words: list[str], one_line: bool) -> int:
    if not words:
        raise UsageError("show what? (job [ID], hostnames [LIST], config)")
    what = words[0].lower()
    if what in ("job", "jobs", "jobid") and len(words) <= 2:
        client = Client()
        jobs = _jobs(client, words[1] if len(words) == 2 else None)
        if not jobs and len(words) == 2:
            print("slurm_load_jobs error: Invalid job id specified", file=sys.stderr)
            return 1
        if not jobs:
            print("No jobs in the system")
            return 0
        now = time.time()
        sys.stdout.write(_render([job_record(j, now) for j in jobs], one_line))
        return 0
    if what == "hostnames" and len(words) <= 2:
        listed = words[1] if len(words) == 2 else os.environ.get("SLURM_JOB_NODELIST", "")
        if not listed:
            raise UsageError("show hostnames: give a host list (outside a job, SLURM_JOB_NODELIST is not set)")
        sys.stdout.write("".join(n + "\n" for n in hostnames(listed)))
        return 0
    if what in ("partition", "partitions", "part") and len(words) <= 2:
        from wulf.cli.compat.sinfo import PARTITION

        if len(words) == 2 and words[1] != PARTITION:
            print(f"Partition {words[1]} not found", file=sys.stderr)
            return 1
        sys.stdout.write(_render([partition_record(Client().nodes())], one_line))
        return 0
    if what in ("config", "conf") and len(words) == 1:
        sys.stdout.write(config_text())
        return 0
    raise UsageError(f"show {' '.join(words)}: wulf shows 'job [ID]', 'partition', 'hostnames [LIST]' and 'config'")


#: at most this many names from one host list (what a hostile list could make scontrol print)
MAX_HOSTS = 100_000
_GROUP = re.compile(r"([^\[\],]*)\[([^\]]*)\]")


def _ranges(body: str, text: str) -> list[str]:
    """``01-03,7`` as ``["01", "02", "03", "7"]`` (a range keeps its first number's zero padding)."""
    out: list[str] = []
    for part in body.split(","):
        low, dash, high = part.partition("-")
        if not low.isdigit() or (dash and not high.isdigit()) or (dash and int(high) < int(low)):
            raise UsageError(f"show hostnames: {text!r} is not a host list (name[1-4,7],other)")
        stop = int(high) if dash else int(low)
        if stop - int(low) + len(out) >= MAX_HOSTS:
            raise UsageError(f"show hostnames: the host list {text!r} names more than {MAX_HOSTS} hosts")
        out += [str(i).zfill(len(low)) for i in range(int(low), stop + 1)]
    return out


def _one(item: str, text: str) -> list[str]:
    m = _GROUP.match(item)
    if m is None:
        if "[" in item or "]" in item or not item:
            raise UsageError(f"show hostnames: {text!r} is not a host list (name[1-4,7],other)")
        return [item]
    rests = _one(item[m.end():], text) if item[m.end():] else [""]
    names = [m.group(1) + n + rest for n in _ranges(m.group(2), text) for rest in rests]
    if len(names) > MAX_HOSTS:
        raise UsageError(f"show hostnames: the host list {text!r} names more than {MAX_HOSTS} hosts")
    return names


def hostnames(text: str) -> list[str]:
    """Slurm's host list (``n[1-3,7],gpu[08-10]``) one name at a time, as ``scontrol show hostnames``
    prints it (psij-python's job scripts make their node file so)."""
    items = re.split(r",(?![^\[]*\])", text.strip())  # (commas inside brackets are the ranges')
    names = [n for item in items for n in _one(item.strip(), text)]
    if len(names) > MAX_HOSTS:
        raise UsageError(f"show hostnames: the host list {text!r} names more than {MAX_HOSTS} hosts")
    return names


def config_text() -> str:
    """``scontrol show config``: Slurm's keys with wulf's values (its config, this machine's client's)."""
    from wulf.config import load_config
    from wulf.model.array import MAX_INDEX

    config = load_config()
    host, port = _controller(config.client.server, config.server.listen)
    status_time = time.strftime("%Y-%m-%dT%H:%M:%S")
    rows = [
        ("AccountingStorageType", "accounting_storage/wulf"),
        ("ClusterName", CLUSTER_NAME),
        ("DefMemPerNode", f"{config.scheduler.default_mem_mb:g}"),
        ("KillWait", f"{config.agent.kill_grace:g} sec"),
        ("MailDomain", config.mail.domain or "(null)"),
        ("MaxArraySize", str(MAX_INDEX + 1)),
        ("MinJobAge", f"{MIN_JOB_AGE} sec"),
        ("SchedulerType", "sched/wulf"),
        ("SlurmctldHost[0]", host),
        ("SlurmctldPort", port),
        ("SLURM_VERSION", VERSION),
        ("TmpFS", config.agent.scratch),
    ]
    return f"Configuration data as of {status_time}\n" + "".join(f"{k:<24}= {v}\n" for k, v in rows)


def _controller(server_url: str, listen: str) -> tuple[str, str]:
    """The server's host and port, as this machine's commands reach it."""
    from wulf.cli.compat.common import host

    if server_url:
        parts = urlsplit(server_url if "//" in server_url else "//" + server_url)
        if parts.hostname:
            return parts.hostname, str(parts.port or "")
    return host(), listen.rpartition(":")[2]


def _hold(action: str, words: list[str]) -> int:
    if not words:
        raise UsageError(f"{action}: which jobs? (scontrol {action} ID[,ID...])")
    from wulf.cli.compat.common import known
    from wulf.cli.compat.slurm import slurm_ref, task_ids

    client = Client()
    unknown: list[int | str] = []
    ids = known(client, task_ids(words), unknown.append)
    for ref in unknown:  # Slurm's words, which Open OnDemand looks for (it takes such a job as ended)
        print(f"scontrol: error: Invalid job id specified for job {slurm_ref(ref)}", file=sys.stderr)
    if not ids:
        return 1
    if action == "hold":
        missed = client.hold(ids)["not_queued"]
        why = "Job is no longer pending execution"
    else:
        missed = client.release(ids)["not_held"]
        why = "Job is not held"
    for job in missed:
        print(f"scontrol: error: {why} for job {job}", file=sys.stderr)
    return 1 if missed or unknown else 0


_REFUSED = {
    "requeue": "wulf does not requeue a job by hand: scancel it and submit it again (sbatch --requeue "
               "and --retries queue a failed job again)",
    "requeuehold": "wulf does not requeue a job by hand: scancel it and submit it again",
}


def _without_clusters(argv: list[str]) -> list[str]:
    """The words without ``-M NAME``/``--clusters=NAME``, wherever they are (Open OnDemand puts them last):
    wulf is one cluster, so the name is taken as its own (squeue, scancel, sinfo and sacct take -M alike)."""
    out: list[str] = []
    skip = False
    for w in argv:
        if skip:
            skip = False
        elif w in ("-M", "--clusters", "--cluster"):
            skip = True
        elif not (w.startswith("-M") or w.startswith("--clusters=") or w.startswith("--cluster=")):
            out.append(w)
    return out


def scontrol(argv: list[str]) -> int:
    one_line = False
    words: list[str] = []
    argv = _without_clusters(argv)
    for w in argv:
        if w in ("-o", "--oneliner"):
            one_line = True
        elif w in ("-d", "--details", "-a", "--all", "-Q", "--quiet", "-v", "--verbose"):
            continue  # accepted: the record shows what wulf has either way
        elif w.startswith("-") and not words:
            raise UsageError(f"unrecognized option '{w}'")
        else:
            words.append(w)
    if not words:
        raise UsageError("give a command: show job [ID], show config, hold ID, release ID, "
                         "update JobId=ID Key=Value")
    command, rest = words[0].lower(), words[1:]
    if command == "show":
        return _show(rest, one_line)
    if command in ("hold", "uhold", "release"):
        return _hold("release" if command == "release" else "hold", rest)
    if command == "update":
        from wulf.cli.compat.scupdate import update

        return update(rest)
    if command in _REFUSED:
        raise UsageError(f"{command}: {_REFUSED[command]}")
    raise UsageError(f"invalid command {command!r} (wulf's scontrol: show, hold, release, update)")
