"""PBS Pro's ``qselect`` and ``pbsnodes`` over wulf: the job ids a selection names, and the nodes.

Open OnDemand's PBS Pro adapter counts ``qselect -u OWNERS`` against ``qselect -T`` to choose how it lists
a user's jobs, and reads ``pbsnodes -aSj -F json`` (each node's ``state``, ``ncpus f/t``, ``ngpus f/t``) for
the cluster's load. They are PBS's only: Grid Engine's ``qselect`` lists queues, which wulf does not give.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from wulf.cli.compat.common import ACTIVE, PBS_STATES, host, jobs_of
from wulf.client import Client
from wulf.errors import UsageError

#: qselect's options that take a value, and those wulf takes as they are (-T, -J: jobs and subjobs alike)
_QSELECT_VALUE = ("-u", "-N", "-q", "-s")


def qselect(argv: list[str]) -> int:
    """``qselect [-u USERS] [-N NAME] [-q QUEUE] [-s STATES] [-x] [-T] [-J]``: the ids of the jobs chosen, one
    a line, as qsub printed them; finished jobs only with ``-x``."""
    from wulf.cli.compat.pbs import pbs_id

    chosen: dict[str, set[str]] = {}
    history = False
    i = 0
    while i < len(argv):
        w = argv[i]
        if w in _QSELECT_VALUE:
            if i + 1 >= len(argv):
                raise UsageError(f"qselect: option requires an argument -- '{w[1:]}'")
            chosen[w] = {x.split("@")[0] for x in argv[i + 1].split(",")} if w != "-s" else set(argv[i + 1])
            i += 2
            continue
        if w == "-x":
            history = True
        elif w not in ("-T", "-J"):  # jobs and subjobs (-T), arrays (-J): wulf lists each task as a job
            raise UsageError(f"qselect: invalid option -- '{w.lstrip('-')}'")
        i += 1
    out = []
    for j in jobs_of(Client().status(all_jobs=history)):
        if not history and j["state"] not in ACTIVE:
            continue
        if ("-u" in chosen and j["user"] not in chosen["-u"]) or ("-N" in chosen and j.get("name") not in chosen["-N"]) \
                or ("-q" in chosen and (j.get("queue") or "default") not in chosen["-q"]) \
                or ("-s" in chosen and PBS_STATES.get(j["state"], "F") not in chosen["-s"]):
            continue
        out.append(pbs_id(j["id"]))
    sys.stdout.write("".join(x + "\n" for x in out))
    return 0


def node_state(n: dict[str, Any]) -> str:
    """PBS's words: free, job-busy (no cpu left), offline (drained), down."""
    if n.get("drained"):
        return "offline"
    if n.get("state") != "up":
        return "down"
    return "job-busy" if n.get("jobs") and float(n.get("cpu_free") or 0) <= 0 else "free"


def _node(n: dict[str, Any]) -> dict[str, Any]:
    cpus = int(float(n.get("cpus") or 0))
    free = max(0, min(cpus, int(float(n.get("cpu_free") or 0))))
    mem, mem_free = int(float(n.get("mem_total_mb") or 0)), int(max(0.0, float(n.get("mem_free_mb") or 0)))
    return {"Mom": n.get("hostname") or n["name"], "state": node_state(n), "njobs": int(n.get("jobs") or 0),
            "ncpus f/t": f"{free}/{cpus}", "mem f/t": f"{mem_free}mb/{mem}mb", "ngpus f/t": "0/0",
            "resources_available": {"ncpus": cpus, "mem": f"{mem}mb", "ngpus": 0},
            "resources_assigned": {"ncpus": cpus - free, "mem": f"{mem - mem_free}mb", "ngpus": 0}}


def pbsnodes(argv: list[str]) -> int:
    """``pbsnodes [-a] [-S] [-j] [-F json] [NODE...]``: the nodes, as JSON (``-F json``) or one record a node
    (``name``, then ``key = value`` lines) otherwise; wulf has no GPUs to give yet, so ``ngpus`` is 0."""
    as_json = False
    names: list[str] = []
    i = 0
    while i < len(argv):
        w = argv[i]
        if w == "-F":
            if i + 1 >= len(argv) or argv[i + 1] not in ("json", "default"):
                raise UsageError("pbsnodes: -F takes json (or default)")
            as_json = argv[i + 1] == "json"
            i += 1
        elif w.startswith("-"):
            if set(w[1:]) - set("aSjLv"):
                raise UsageError(f"pbsnodes: invalid option -- '{w.lstrip('-')}'")
        else:
            names.append(w)
        i += 1
    nodes = {n["name"]: _node(n) for n in Client().nodes() if not names or n["name"] in names}
    missing = [x for x in names if x not in nodes]
    for x in missing:
        print(f"pbsnodes: Unknown node {x}", file=sys.stderr)
    if as_json:
        sys.stdout.write(json.dumps({"timestamp": int(time.time()), "pbs_version": "wulf", "pbs_server": host(),
                                     "nodes": nodes}, indent=4) + "\n")
    else:
        sys.stdout.write("".join(f"{name}\n" + "".join(_lines(node)) + "\n" for name, node in nodes.items()))
    return 1 if missing else 0


def _lines(node: dict[str, Any]) -> list[str]:
    out = []
    for k, v in node.items():
        if isinstance(v, dict):
            out += [f"     {k}.{k2} = {v2}\n" for k2, v2 in v.items()]
        elif "/" not in k:
            out.append(f"     {k} = {v}\n")
    return out
