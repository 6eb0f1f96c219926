"""Open OnDemand drives wulf through its Slurm and PBS Pro adapters (OSC/ood_core,
lib/ood_core/job/adapters/slurm.rb and pbspro.rb): these tests run the command lines those adapters run,
with wulf's compatibility commands (`wulf compat DIR`) on a real local cluster, and read the output with the
adapters' parsing rules restated here in Python (our code; each rule names the adapter code it stands for).
The adapters are Ruby inside a web portal, so they are not run themselves.

What the adapters rely on:

Slurm (slurm.rb)
- submit: ``sbatch [-H] [--requeue|--no-requeue] [-D DIR] [--mail-user U] [--mail-type ALL|BEGIN|END|NONE]
  [-J NAME] [-i IN] [-o OUT] [-e ERR] [--reservation R] [-p PART] [--priority N] [--begin T] [-A ACCT]
  [-t HH:MM:SS] [-a ARRAY] [--qos Q] [--gpus-per-node N] [-n N] [-d after...:ID] --export NONE|A,B|ALL,A
  --parsable`` with the script on stdin and the exported variables in sbatch's environment; the id is
  stdout up to the first ``;``.
- jobs: ``squeue --all --states=all --noconvert -O F1:\\x1F,F2:\\x1F,...,  [-u USER] [-j ID]``: each field
  with the unit separator as its suffix and no width, so values come unpadded; everything up to the first
  ``\\x1F\\n`` (the header) is skipped, each further line is split on ``\\x1F``. ``status`` asks for
  JobID, JobArrayID, StateCompact and matches the id against the first two; ``info`` reads all fields
  (Name, UserName, Account ((null) is none), NumCPUs, Partition, TimeUsed and TimeLimit as
  ``[D-]H:M:S``, SubmitTime/StartTime by Time.parse, NodeList as a host list, else SchedNodes, else
  NumNodes blanks; tres-alloc's ``mem=``; StateCompact through its STATE_MAP). A job squeue does not list
  is completed; so is one whose squeue/scancel/scontrol stderr says ``Invalid job id specified``.
- ``scontrol hold ID``, ``scontrol release ID``, ``scancel ID`` (exit status 0 is success).
- history: ``sacct -P --delimiter \\x1F -n --units G --allocations -o User,Group,JobId,... [--state S]
  [-j IDS] [-S FROM] [-E TO]``.
- cluster: ``sinfo -aho %F/%C`` (one argument word!), ``sinfo -ahNO nodehost:100,gres:512,gresused:512,
  statelong``, ``sinfo -ho \\x1E%c\\x1F%n\\x1F%f``, ``scontrol show part -o`` (``Key=Value`` words).

PBS Pro (pbspro.rb)
- submit: ``qsub [-h] [-r y|n] [-M U] [-m be] [-N NAME] [-S SHELL] [-o OUT] [-e ERR] [-q QUEUE] [-p PRIO]
  [-a TIME] [-A ACCT] [-l walltime=HH:MM:SS] [-l ncpus=N] [-W depend=afterok:ID] [-v K=V,...] [-V]
  [-j oe] [-J ARRAY]`` with the script on stdin, run in the job's working directory; the id is stdout,
  stripped, and is passed back as it came (``12.server``).
- jobs: ``qstat -f -t [ID]``: ``\\n\\t`` continuations joined; ``Job Id: ID`` starts a job; ``key = value``
  lines (``Resource_List.walltime`` nests); Job_Owner ``user@host``, Job_Name, job_state (its STATE_MAP),
  queue, Account_Name, exec_host ``node/i*ncpus+...`` (the cpus counted from it), Resource_List.nodect and
  .ncpus when not running, resources_used.walltime/.cput and Resource_List.walltime as ``H:M:S``,
  ctime/stime by Time.parse. ``Unknown Job Id`` or ``Job has finished`` in stderr means completed.
- ``qhold ID``, ``qrls ID``, ``qdel ID``.
- info_where_owner: ``qselect -u OWNER,...`` and ``qselect -T``: job ids one a line (it compares their counts,
  then asks ``qstat -f -t ID`` for each of the owner's).
- cluster_info: ``pbsnodes -aSj -F json``: ``nodes`` by name, each ``state`` (down/offline/... are left out),
  ``ncpus f/t`` and ``ngpus f/t`` as ``FREE/TOTAL``.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wulfproc import Cluster, running_cluster, wait_until

US, RS = "\x1f", "\x1e"  # slurm.rb: UNIT_SEPARATOR, RECORD_SEPARATOR
ME = getpass.getuser()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(tmp_path, config="[scheduler]\nuse_observed = false\n") as c:
        c.agent("n1", cpus=2)
        yield c


@pytest.fixture
def compat(cluster: Cluster, tmp_path: Path) -> Path:
    bin_dir = tmp_path / "compat-bin"
    cluster.run("wulf", "compat", str(bin_dir))
    return bin_dir


class Ood:
    """Calls a command as the adapters' ``call`` does: by name in the configured bin directory, the given
    environment added, the script on stdin, in a working directory (pbspro.rb's chdir)."""

    def __init__(self, cluster: Cluster, bin_dir: Path, flavour: str) -> None:
        self.cluster, self.bin, self.flavour = cluster, bin_dir, flavour

    def call(self, cmd: str, *args: str, env: dict[str, str] | None = None, stdin: str = "",
             chdir: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bin / cmd), *args], input=stdin, capture_output=True, text=True,
                              cwd=chdir or self.cluster.work, timeout=60,
                              env={**self.cluster.env, "WULF_COMPAT_FLAVOUR": self.flavour, **(env or {})})

    def ok(self, cmd: str, *args: str, **kw: Any) -> str:
        """The adapters raise their Error with stderr unless the command exits 0."""
        p = self.call(cmd, *args, **kw)
        assert p.returncode == 0, (cmd, args, p.returncode, p.stderr)
        return p.stdout


def ruby_split(text: str, sep: str) -> list[str]:
    """Ruby's String#split(sep): trailing empty fields are dropped."""
    parts = text.split(sep)
    while parts and parts[-1] == "":
        parts.pop()
    return parts


# ---------------------------------------------------------------------------------------------- Slurm

#: slurm.rb all_squeue_fields, in its order (the -O names it asks for)
SQUEUE_FIELDS = {
    "account": "Account", "job_id": "JobID", "exec_host": "BatchHost", "min_cpus": "MinCpus",
    "cpus": "NumCPUs", "min_tmp_disk": "MinTmpDisk", "nodes": "NumNodes", "end_time": "EndTime",
    "dependency": "Dependency", "features": "Feature", "array_job_id": "ArrayJobID", "group_name": "GroupName",
    "group_id": "GroupID", "over_subscribe": "OverSubscribe", "sockets_per_node": "Sockets",
    "array_job_task_id": "JobArrayID", "cores_per_socket": "Cores", "job_name": "Name",
    "threads_per_core": "Threads", "comment": "Comment", "array_task_id": "ArrayTaskID",
    "time_limit": "TimeLimit", "time_left": "TimeLeft", "min_memory": "MinMemory", "time_used": "TimeUsed",
    "req_node": "ReqNodes", "node_list": "NodeList", "command": "Command", "contiguous": "Contiguous",
    "qos": "QOS", "partition": "Partition", "priority": "PriorityLong", "reason": "Reason",
    "start_time": "StartTime", "state_compact": "StateCompact", "state": "State", "user": "UserName",
    "user_id": "UserID", "reservation": "Reservation", "submit_time": "SubmitTime", "wckey": "WCKey",
    "licenses": "Licenses", "excluded_nodes": "ExcNodes", "core_specialization": "CoreSpec", "nice": "Nice",
    "scheduled_nodes": "SchedNodes", "sockets_cores_threads": "SCT", "work_dir": "WorkDir",
    "tres_alloc": "tres-alloc", "gres": "tres-per-node",
}
#: slurm.rb STATE_MAP (codes and words), to OOD's states
SLURM_STATE_MAP = {
    "BF": "completed", "CA": "completed", "CD": "completed", "CF": "queued", "CG": "running", "F": "completed",
    "NF": "completed", "PD": "queued", "PR": "suspended", "RV": "completed", "R": "running", "SE": "completed",
    "ST": "running", "S": "suspended", "TO": "completed", "OOM": "completed", "BOOT_FAIL": "completed",
    "CANCELLED": "completed", "COMPLETED": "completed", "DEADLINE": "completed", "FAILED": "completed",
    "NODE_FAIL": "completed", "OUT_OF_MEMORY": "completed", "PENDING": "queued", "PREEMPTED": "completed",
    "RUNNING": "running", "REQUEUED": "queued", "REVOKED": "completed", "SUSPENDED": "suspended",
    "TIMEOUT": "completed",
}
#: slurm.rb sacct_info_fields
SACCT_FIELDS = {
    "user": "User", "group_name": "Group", "job_id": "JobId", "job_name": "JobName", "elapsed": "Elapsed",
    "req_mem": "ReqMem", "alloc_cpus": "AllocCPUS", "req_cpus": "ReqCPUS", "time_limit": "Timelimit",
    "state": "State", "total_cpu": "TotalCPU", "max_rss": "MaxRSS", "partition": "Partition",
    "submit_time": "Submit", "start_time": "Start", "end": "End", "gres": "ReqTRES",
}


def slurm_state(code: str) -> str:
    """slurm.rb get_state: the first word through STATE_MAP, else undetermined."""
    words = code.split()
    return SLURM_STATE_MAP.get(words[0], "undetermined") if words else "undetermined"


def duration(text: str | None) -> int:
    """slurm.rb duration_in_seconds: ``[D-]H:M:S`` (any count of colon parts), nil 0."""
    if text is None:
        return 0
    days, _, clock = text.rpartition("-")
    total = 0
    for v in clock.split(":"):
        total = total * 60 + int(re.match(r"-?\d*", v).group() or 0)  # type: ignore[union-attr]
    return int(days or 0) * 86400 + total


def parse_time(text: str | None) -> dt.datetime | None:
    """Time.parse of the date formats Slurm prints (ISO ``YYYY-MM-DDTHH:MM:SS``); nil when it fails."""
    try:
        return dt.datetime.fromisoformat(str(text))
    except ValueError:
        return None


def host_list(text: str | None) -> list[str]:
    """slurm.rb parse_nodes: ``em[014,055-056]``, ``c427-032,c429-002`` into names."""
    out: list[str] = []
    for prefix, rng in re.findall(r"([^,\[]+)(?:\[([^\]]+)\])?", text or ""):
        if not rng:
            out.append(prefix)
            continue
        for x in rng.split(","):
            m = re.fullmatch(r"(\d+)-(\d+)", x)
            out += [prefix + str(n).zfill(len(m.group(1))) for n in range(int(m.group(1)), int(m.group(2)) + 1)] \
                if m else [prefix + x]
    return out


def squeue_args(fields: dict[str, str], job: str = "", owner: str = "") -> list[str]:
    """slurm.rb squeue_args: the -O list is each name with ``:\\x1F`` after it, joined by commas, with a
    trailing comma (``options.push(nil).join(":#{UNIT_SEPARATOR},")``)."""
    args = ["--all", "--states=all", "--noconvert", "-O", "".join(f"{v}:{US}," for v in fields.values())]
    args += ["-u", owner] if owner else []
    args += ["-j", job] if job else []
    return args


def squeue_rows(out: str, fields: dict[str, str]) -> list[dict[str, str]]:
    """slurm.rb get_jobs: skip to past the first ``\\x1F\\n`` (the header, after any ``CLUSTER:`` line),
    then one job a line, split on the unit separator."""
    at = out.find(US + "\n")
    assert at >= 0, f"no header ending in \\x1F\\n: {out!r}"
    rows = []
    for line in out[at + 2:].splitlines():
        values = ruby_split(line, US)
        if values:
            rows.append(dict(zip(fields, values, strict=False)))
    return rows


def slurm_info(ood: Ood, job: str) -> dict[str, Any]:
    """slurm.rb info(id): all fields for ``-j ID``; the row whose JobID or JobArrayID is the id (a job
    squeue does not show, or an 'Invalid job id' error, is completed), read as parse_job_info reads it."""
    p = ood.call("squeue", *squeue_args(SQUEUE_FIELDS, job=job))
    if p.returncode != 0:
        assert "Invalid job id specified" in p.stderr, p.stderr
        return {"id": job, "status": "completed"}
    rows = squeue_rows(p.stdout, SQUEUE_FIELDS)
    assert len(rows) <= 1, rows
    if not rows:
        return {"id": job, "status": "completed"}
    return parsed_slurm_row(rows[0])


def parsed_slurm_row(v: dict[str, str]) -> dict[str, Any]:
    nodes = host_list(v.get("node_list"))
    if not nodes:
        sched = v.get("scheduled_nodes")
        nodes = host_list(sched) if sched and sched != "(null)" else [""] * int(v.get("nodes") or 0)
    mem = re.search(r"(?:^|,)mem=(\w+)(?:,|$)", v.get("tres_alloc", ""))
    factors = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    return {
        "id": v["job_id"], "status": slurm_state(v["state_compact"]), "nodes": nodes, "name": v["job_name"],
        "owner": v["user"], "account": None if v["account"] == "(null)" else v["account"], "procs": v["cpus"],
        "queue": v["partition"], "wallclock": duration(v["time_used"]), "limit": duration(v["time_limit"]),
        "submitted": parse_time(v["submit_time"]), "dispatched": parse_time(v["start_time"]),
        "memory": factors.get(mem.group(1)[-1], 0) * int(re.match(r"\d*", mem.group(1)).group() or 0)  # type: ignore[union-attr]
        if mem else None,
        "native": v,
    }


def slurm_status(ood: Ood, job: str) -> str:
    """slurm.rb status(id): JobID, JobArrayID and StateCompact only (Hash#slice keeps the asked order)."""
    fields = {k: SQUEUE_FIELDS[k] for k in ("job_id", "array_job_task_id", "state_compact")}
    p = ood.call("squeue", *squeue_args(fields, job=job))
    if p.returncode != 0:
        assert "Invalid job id specified" in p.stderr, p.stderr
        return "completed"
    for row in squeue_rows(p.stdout, fields):
        if job in (row.get("job_id"), row.get("array_job_task_id")):
            return slurm_state(row["state_compact"])
    return "completed"


def slurm_submit(ood: Ood, script: str, args: list[str], env: dict[str, str] | None = None) -> str:
    """slurm.rb submit_string: ``--parsable`` last, the script on stdin, the id before any ``;``."""
    return ood.ok("sbatch", *args, "--parsable", stdin=script, env=env).strip().split(";")[0]


def wait_status(what: str, get: Any, want: str) -> None:
    wait_until(what, lambda: get() == want, timeout=60, every=0.3)


@pytest.mark.timeout(300)
def test_ood_slurm_adapter_submits_follows_holds_and_cancels(cluster: Cluster, compat: Path) -> None:
    ood = Ood(cluster, compat, "pbs")
    work = cluster.work / "ood"
    work.mkdir()
    # a running job: as OOD's submit builds it for a job with a name, queue, account, wall time, workdir
    # and environment (--export lists the names; the values are in sbatch's environment)
    run = slurm_submit(ood, "#!/bin/bash\necho \"$OOD_VAR\" > env.txt\nsleep 120\n",
                       ["--no-requeue", "-D", str(work), "--mail-type", "NONE", "-J", "ood_run",
                        "-o", str(work / "run.out"), "-p", "batch", "-A", "proj1", "-t", "01:00:00", "-n", "2",
                        "--export", "OOD_VAR"], env={"OOD_VAR": "from-ood"})
    assert run.isdigit()
    wait_status("the job runs", lambda: slurm_status(ood, run), "running")
    wait_until("its output", lambda: (work / "env.txt").exists() and (work / "env.txt").read_text() != "")
    assert (work / "env.txt").read_text() == "from-ood\n"
    info = slurm_info(ood, run)
    assert (info["id"], info["status"], info["nodes"], info["name"], info["owner"], info["queue"], info["procs"],
            info["limit"]) == (run, "running", ["n1"], "ood_run", ME, "batch", "2", 3600), info
    assert info["submitted"] is not None and info["dispatched"] is not None and info["wallclock"] >= 0, info
    assert info["native"]["work_dir"] == str(work) and info["native"]["state"] == "RUNNING", info
    assert info["native"]["user_id"] == str(os.getuid()), info
    # total_memory from tres-alloc's mem= (the job's memory request)
    assert info["memory"] == int(cluster.job(int(run))["mem_req_mb"]) << 20, info

    # a job submitted held (-H), and one waiting for the first (-d afterok:ID) that OOD holds and releases
    held = slurm_submit(ood, "#!/bin/sh\ntrue\n", ["-H", "-J", "ood_held", "-D", str(work), "--export", "NONE"])
    after = slurm_submit(ood, "#!/bin/sh\ntrue\n", ["-J", "ood_after", "-D", str(work), "-d", f"afterok:{run}",
                                                     "--export", "NONE"])
    assert slurm_status(ood, held) == "queued" and cluster.job(int(held))["state"] == "held"
    held_info = slurm_info(ood, held)
    assert (held_info["status"], held_info["nodes"], held_info["dispatched"]) == ("queued", [""], None), held_info
    ood.ok("scontrol", "hold", after)
    assert cluster.job(int(after))["state"] == "held"
    ood.ok("scontrol", "release", after)
    assert cluster.job(int(after))["state"] == "queued" and slurm_status(ood, after) == "queued"

    # every job at once, as info_all / info_where_owner ask
    rows = squeue_rows(ood.ok("squeue", *squeue_args(SQUEUE_FIELDS, owner=ME)), SQUEUE_FIELDS)
    assert {r["job_id"]: slurm_state(r["state_compact"]) for r in rows if r["job_id"] in (run, held, after)} == \
        {run: "running", held: "queued", after: "queued"}, rows
    assert all(len(r) == len(SQUEUE_FIELDS) for r in rows), rows

    # delete: the running job is cancelled, and OOD sees it completed (CA, or no longer listed)
    ood.ok("scancel", run)
    wait_status("the job is cancelled", lambda: slurm_status(ood, run), "completed")
    assert cluster.job(int(run))["state"] == "cancelled"
    ood.ok("scancel", held)
    # an id wulf never gave: OOD takes 'Invalid job id specified' from squeue/scancel as completed
    assert slurm_status(ood, "999999") == "completed"
    gone = ood.call("scancel", "999999")
    assert gone.returncode != 0 and "Invalid job id specified" in gone.stderr, gone.stderr
    nohold = ood.call("scontrol", "hold", "999999")
    assert nohold.returncode != 0 and "Invalid job id specified" in nohold.stderr, nohold.stderr

    # the options OOD passes that have no meaning in wulf, or none yet, are taken (a warning on stderr each)
    p = ood.call("sbatch", "--requeue", "--mail-user", "nobody@example.invalid", "--mail-type", "NONE",
                 "-i", "/dev/null", "--reservation", "r1", "--priority", "10", "--begin", "2026-01-01T00:00:00",
                 "--qos", "normal", "--gpus-per-node", "0", "-a", "1-2", "-e", str(work / "err"),
                 "--export", "ALL,OOD_VAR", "-D", str(work), "--parsable", stdin="#!/bin/sh\ntrue\n",
                 env={"OOD_VAR": "x"})
    assert p.returncode == 0 and p.stdout.strip().isdigit(), p.stderr
    assert all(": warning: " in line for line in p.stderr.splitlines()), p.stderr

    # history: sacct as info_historic asks
    done = slurm_submit(ood, "#!/bin/sh\necho done\n", ["-J", "ood_done", "-D", str(work), "--export", "NONE",
                                                        "-t", "00:10:00"])
    wait_status("the short job ends", lambda: slurm_status(ood, done), "completed")
    cluster.run("qwait", done, "after", check=False)
    out = ood.ok("sacct", "-P", "--delimiter", US, "-n", "--units", "G", "--allocations",
                 "-o", ",".join(SACCT_FIELDS.values()), "-j", f"{run},{done}")
    hist = {}
    for line in out.splitlines():
        values = [v or None for v in ruby_split(line.strip(), US)]
        if values:
            row = dict(zip(SACCT_FIELDS, values, strict=False))
            hist[row["job_id"]] = row
    assert set(hist) == {run, done}, out
    assert (hist[done]["state"], hist[done]["job_name"], hist[done]["user"], hist[done]["alloc_cpus"],
            duration(hist[done]["time_limit"])) == ("COMPLETED", "ood_done", ME, "1", 600), hist
    assert hist[run]["state"].split()[0] == "CANCELLED" and hist[run]["partition"] == "batch", hist
    assert parse_time(hist[done]["submit_time"]) is not None and parse_time(hist[done]["start_time"]) is not None
    assert hist[done]["group_name"], hist  # Group: the owner's group name
    states = ood.ok("sacct", "-P", "--delimiter", US, "-n", "--units", "G", "--allocations", "-o", "JobId,State",
                    "--state", "CA", "-j", f"{run},{done}")
    assert [ruby_split(x, US)[0] for x in states.splitlines()] == [run], states


@pytest.mark.timeout(200)
def test_ood_slurm_adapter_reads_the_cluster(cluster: Cluster, compat: Path) -> None:
    ood = Ood(cluster, compat, "pbs")
    cluster.agent("n2", cpus=4)
    cluster.wait_node("n2")
    job = slurm_submit(ood, "#!/bin/sh\nsleep 60\n", ["-n", "1", "--export", "NONE"])
    wait_status("the job runs", lambda: slurm_status(ood, job), "running")
    # get_cluster_info: `sinfo -aho %F/%C` is one word; nodes and cpus allocated/idle/other/total
    counts = [int(x) for x in ood.ok("sinfo", "-aho %F/%C").strip().split("/")]
    # (what the machine runs besides shows on the agents' nodes too, so only the sums are sure)
    assert len(counts) == 8 and counts[3] == 2 and sum(counts[:3]) == 2 and counts[0] >= 1, counts
    assert counts[7] == 6 and sum(counts[4:7]) == 6 and counts[4] >= 1, counts
    lines = [x.split() for x in dict.fromkeys(ood.ok("sinfo", "-ahNO",
                                                      "nodehost:100,gres:512,gresused:512,statelong").splitlines())]
    # (nodehost is the node's host name: here both agents' is this machine's, and OOD drops repeated lines)
    hosts = {socket.gethostname(), socket.gethostname().split(".")[0]}
    assert lines and all(len(x) == 4 and x[0] in hosts and x[3] in ("idle", "mixed", "allocated") for x in lines), \
        lines
    # nodes: records that start with \x1E, fields split by \x1F; the first of %n's names
    out = ood.ok("sinfo", "-ho", f"{RS}%c{US}%n{US}%f")
    nodes = [dict(zip(("procs", "name", "features"), r.strip().split(US), strict=False))
             for r in out.split(RS) if r.strip()]
    assert nodes and {n["name"].split(",")[0] for n in nodes} <= hosts and {n["procs"] for n in nodes} == {"2", "4"}, \
        nodes
    # queues: `scontrol show part -o`, Key=Value words, one partition a line
    parts = []
    for line in ood.ok("scontrol", "show", "part", "-o").splitlines():
        pairs = {}
        for token in line.split():
            m = re.fullmatch(r"(\w+)=(.+)", token)
            assert m, (token, line)
            pairs[m.group(1)] = m.group(2)
        parts.append(pairs)
    assert [p["PartitionName"] for p in parts] == ["default"], parts


# ---------------------------------------------------------------------------------------------- PBS Pro

#: pbspro.rb STATE_MAP
PBS_STATE_MAP = {"Q": "queued", "W": "queued_held", "H": "queued_held", "T": "queued_held", "M": "completed",
                 "R": "running", "S": "suspended", "U": "suspended", "E": "running", "F": "completed",
                 "X": "completed", "B": "running"}


def qstat_jobs(out: str) -> list[dict[str, Any]]:
    """pbspro.rb get_jobs: continuation lines (``\\n\\t``) joined, lines stripped, ``Job Id: X`` starts a
    job, ``key = value`` (``a.b`` nests) fills it."""
    jobs: list[dict[str, Any]] = []
    for line in (x.strip() for x in out.replace("\n\t", "").split("\n")):
        m = re.fullmatch(r"Job Id: (.+)", line)
        if m:
            jobs.append({"job_id": m.group(1)})
            continue
        m = re.fullmatch(r"(\S+) = (.+)", line)
        if m:
            k1, _, k2 = m.group(1).partition(".")
            if k2:
                jobs[-1].setdefault(k1, {})[k2] = m.group(2)
            else:
                jobs[-1][k1] = m.group(2)
    return jobs


def pbs_duration(text: str | None) -> int | None:
    if text is None:
        return None
    total = 0
    for v in text.split(":"):
        total = total * 60 + int(v)
    return total


def pbs_info(ood: Ood, job: str) -> dict[str, Any]:
    """pbspro.rb info(id): ``qstat -f -t ID``; 'Unknown Job Id' or 'Job has finished' is completed."""
    p = ood.call("qstat", "-f", "-t", job)
    if p.returncode != 0:
        assert re.search("Unknown Job Id|Job has finished", p.stderr), p.stderr
        return {"id": job, "status": "completed"}
    jobs = qstat_jobs(p.stdout)
    if not jobs:
        return {"id": job, "status": "completed"}
    assert len(jobs) == 1, jobs
    v = jobs[0]
    owner = re.fullmatch(r"([\w\-.]+)@(.+)", v.get("Job_Owner", ""))
    nodes = []
    for n in (v.get("exec_host") or "").split("+") if v.get("exec_host") else []:
        name, _, procs_list = n.partition("/")
        nodes.append((name, int((procs_list.split("*") + ["1"])[1])))
    procs = sum(p for _, p in nodes)
    if not nodes:
        nodes = [("", 0)] * int(v.get("Resource_List", {}).get("nodect") or 0)
        procs = int(v.get("Resource_List", {}).get("ncpus") or 0)
    ctime = time.strptime(v["ctime"], "%a %b %d %H:%M:%S %Y") if "ctime" in v else None
    stime = time.strptime(v["stime"], "%a %b %d %H:%M:%S %Y") if "stime" in v else None
    return {
        "id": v["job_id"], "status": PBS_STATE_MAP.get(v["job_state"], "undetermined"), "nodes": nodes,
        "procs": procs, "submit_host": owner.group(2) if owner else None, "owner": owner.group(1) if owner else None,
        "name": v.get("Job_Name"), "account": v.get("Account_Name"), "queue": v.get("queue"),
        "wallclock": pbs_duration(v.get("resources_used", {}).get("walltime")),
        "limit": pbs_duration(v.get("Resource_List", {}).get("walltime")),
        "cpu_time": pbs_duration(v.get("resources_used", {}).get("cput")), "ctime": ctime, "stime": stime,
        "native": v,
    }


@pytest.mark.timeout(300)
def test_ood_pbspro_adapter_submits_follows_holds_and_deletes(cluster: Cluster, compat: Path) -> None:
    ood = Ood(cluster, compat, "pbs")
    work = cluster.work / "ood-pbs"
    work.mkdir()

    def submit(script: str, *args: str) -> str:
        # pbspro.rb submit_string: the script on stdin, in the job's working directory, stdout stripped
        return ood.ok("qsub", *args, stdin=script, chdir=work).strip()

    # (a PBS job starts in its owner's home; OOD's job templates cd to where they want to be)
    run = submit("#!/bin/bash\ncd \"$PBS_O_WORKDIR\"\necho \"$OOD_VAR $PBS_O_WORKDIR\" > env.txt\nsleep 120\n",
                 "-r", "n", "-N", "ood_run", "-S", "/bin/bash", "-q", "batch", "-A", "proj1",
                 "-l", "walltime=01:00:00", "-l", "ncpus=2", "-v", "OOD_VAR=from-ood", "-j", "oe")
    assert re.fullmatch(rf"\d+\.{re.escape(socket.gethostname().split('.')[0])}", run), run
    wait_status("the job runs", lambda: pbs_info(ood, run)["status"], "running")
    wait_until("its output", lambda: (work / "env.txt").exists() and (work / "env.txt").read_text() != "")
    assert (work / "env.txt").read_text() == f"from-ood {work}\n"
    info = pbs_info(ood, run)
    assert (info["id"], info["status"], info["nodes"], info["procs"], info["owner"], info["name"], info["queue"],
            info["limit"], info["account"]) == \
        (run, "running", [("n1", 2)], 2, ME, "ood_run", "batch", 3600, None), info  # (wulf keeps no accounts)
    assert info["ctime"] is not None and info["stime"] is not None and info["wallclock"] is not None, info

    # held at submission (-h), and a job after the first (-W depend=afterok:ID, the id as qsub printed it)
    held = submit("#!/bin/sh\ntrue\n", "-h", "-N", "ood_held", "-j", "oe")
    after = submit("#!/bin/sh\ntrue\n", "-N", "ood_after", "-W", f"depend=afterok:{run}", "-j", "oe")
    held_info = pbs_info(ood, held)
    assert (held_info["status"], held_info["nodes"], held_info["procs"]) == ("queued_held", [("", 0)], 1), held_info
    assert pbs_info(ood, after)["status"] == "queued"
    ood.ok("qhold", after)
    assert pbs_info(ood, after)["status"] == "queued_held"
    ood.ok("qrls", after)
    assert pbs_info(ood, after)["status"] == "queued"

    # every job (info_all): qstat -f -t
    every = {j["job_id"]: PBS_STATE_MAP[j["job_state"]] for j in qstat_jobs(ood.ok("qstat", "-f", "-t"))}
    assert {k: every.get(k) for k in (run, held, after)} == \
        {run: "running", held: "queued_held", after: "queued"}, every

    # info_where_owner: `qselect -u OWNERS` and `qselect -T` (all jobs), one id a line, as qsub printed them
    mine = ood.ok("qselect", "-u", f"{ME},nobody").split("\n")
    every_id = [x.strip() for x in ood.ok("qselect", "-T").split("\n") if x.strip()]
    assert {x.strip() for x in mine if x.strip()} == {run, held, after} == set(every_id), (mine, every_id)

    # cluster_info: `pbsnodes -aSj -F json`, the nodes' state and "ncpus f/t", "ngpus f/t"
    nodes = json.loads(ood.ok("pbsnodes", "-aSj", "-F", "json"))["nodes"]
    assert set(nodes) == {"n1"} and nodes["n1"]["state"].split(",")[0] in ("free", "job-busy"), nodes
    free, total = (int(x) for x in re.fullmatch(r"(\d+)\s*/\s*(\d+)", nodes["n1"]["ncpus f/t"]).groups())  # type: ignore[union-attr]
    assert (free, total) == (0, 2), nodes  # the running job holds both cpus
    assert re.fullmatch(r"\d+\s*/\s*\d+", nodes["n1"]["ngpus f/t"]), nodes

    # an array (-J): qsub prints ``N[].server``; `qstat -f -t N[].server` gives the array's own record (its
    # id has ``[]``: process_job_array takes it as the parent) and one a subjob, ``N[i].server``
    array = submit("#!/bin/sh\ntrue\n", "-N", "ood_array", "-J", "1-3", "-j", "oe")
    assert re.fullmatch(r"\d+\[\]\.\S+", array), array
    records = qstat_jobs(ood.ok("qstat", "-f", "-t", array))
    base = array.split("[")[0]
    assert [r["job_id"] for r in records] == [array] + [f"{base}[{i}].{array.split('.', 1)[1]}" for i in (1, 2, 3)], \
        records
    assert [PBS_STATE_MAP[r["job_state"]] for r in records] == ["queued"] * 4, records  # (n1's cpus are taken)
    assert all(r["Job_Name"] == "ood_array" and r["Job_Owner"].startswith(ME + "@") for r in records), records
    ood.ok("qdel", array)
    wait_until("the array is deleted", lambda: ood.call("qstat", "-f", "-t", array).returncode != 0)
    assert "Job has finished" in ood.call("qstat", "-f", "-t", array).stderr

    # delete: OOD then sees the job completed (qstat says it has finished, or shows it F)
    ood.ok("qdel", run)
    wait_status("the job is deleted", lambda: pbs_info(ood, run)["status"], "completed")
    assert cluster.job(int(run.split(".")[0]))["state"] == "cancelled"
    ood.ok("qdel", held)
    # an id wulf never gave: 'Unknown Job Id' on stderr is what OOD looks for
    for cmd in ("qdel", "qhold", "qrls", "qstat"):
        p = ood.call(cmd, *(["-f", "-t"] if cmd == "qstat" else []), "999999")
        assert p.returncode != 0 and "Unknown Job Id" in p.stderr, (cmd, p.stderr)

    # the options OOD passes that have no meaning in wulf, or none yet, are taken (a warning on stderr each)
    p = ood.call("qsub", "-r", "y", "-M", "nobody@example.invalid", "-p", "10", "-a", "202601010000.00", "-V",
                 "-e", str(work / "err"), "-o", str(work / "out"), "-A", "proj1", stdin="#!/bin/sh\ntrue\n", chdir=work)
    assert p.returncode == 0 and p.stdout.strip().split(".")[0].isdigit(), p.stderr
    assert all(": warning: " in line for line in p.stderr.splitlines()), p.stderr


@pytest.mark.timeout(200)
def test_ood_slurm_adapter_with_a_cluster_named(cluster: Cluster, compat: Path) -> None:
    """With ``cluster:`` in its configuration, slurm.rb's ``call`` puts ``-M CLUSTER`` after every command's
    other words (sacctmgr's aside); and an array's tasks answer to its id."""
    ood = Ood(cluster, compat, "pbs")
    m = ["-M", "wulf"]
    job = ood.ok("sbatch", "-H", "-a", "1-3", "-J", "ood_m", "--export", "NONE", "--parsable", *m,
                 stdin="#!/bin/sh\ntrue\n").strip().split(";")[0]
    out = ood.ok("squeue", *squeue_args(SQUEUE_FIELDS, job=job), *m)
    rows = squeue_rows(out, SQUEUE_FIELDS)
    # handle_job_array: the row whose JobID or JobArrayID is the id given is the array's
    assert [r for r in rows if job in (r["job_id"], r["array_job_task_id"])], rows
    assert {slurm_state(r["state_compact"]) for r in rows} == {"queued"}, rows
    ood.ok("scontrol", "release", job, *m)
    ood.ok("scontrol", "hold", job, *m)
    ood.ok("scancel", job, *m)
    wait_until("the array is cancelled", lambda: all(
        slurm_state(r["state_compact"]) == "completed"
        for r in squeue_rows(ood.ok("squeue", *squeue_args(SQUEUE_FIELDS, job=job), *m), SQUEUE_FIELDS)))
    assert ood.ok("sacct", "-P", "--delimiter", US, "-n", "--allocations", "-o", "JobId,State", "-j", job, *m)
    assert ood.ok("sinfo", "-aho %F/%C", *m).strip()
    assert "PartitionName=default" in ood.ok("scontrol", "show", "part", "-o", *m)
