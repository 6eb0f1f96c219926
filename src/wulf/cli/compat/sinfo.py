"""Slurm's ``sinfo`` over wulf: the nodes and their states, in Slurm's default layout, one line a node
(``-N``), or ``-o`` fields (``sinfo -o %P`` is how Snakemake's Slurm executor finds the default
partition).

wulf's queues are made as jobs name them, so every partition a job asks for exists; sinfo shows the one
a job goes to when it names none, ``default``, marked ``*`` as Slurm marks its default partition.
"""

from __future__ import annotations

import sys
from typing import Any

from wulf.cli.common import ArgParser, print_json
from wulf.cli.compat.slurm import parse_fields, parse_format, render
from wulf.client import Client

PARTITION = "default"


def node_state(n: dict[str, Any]) -> str:
    """sinfo's words: idle, mix (some cpus taken), alloc (none free), drain, down."""
    if n.get("drained"):
        return "drain"
    if n.get("state") != "up":
        return "down"
    if not n.get("jobs"):
        return "idle"
    return "alloc" if float(n.get("cpu_free") or 0.0) <= 0.0 else "mix"


_LONG = {"idle": "idle", "mix": "mixed", "alloc": "allocated", "drain": "drained", "down": "down"}


def _cpus(g: dict[str, Any]) -> str:
    """``A/I/O/T``: cpus allocated, idle, other (down or drained) and in all, of the group's nodes."""
    total = sum(float(n.get("cpus") or 0) for n in g["nodes"])
    other = sum(float(n.get("cpus") or 0) for n in g["nodes"] if node_state(n) in ("drain", "down"))
    idle = sum(max(0.0, float(n.get("cpu_free") or 0)) for n in g["nodes"] if node_state(n) not in ("drain", "down"))
    return f"{total - other - idle:.0f}/{idle:.0f}/{other:.0f}/{total:.0f}"


def _nodes(g: dict[str, Any]) -> str:
    """``A/I/O/T``: nodes with jobs (mixed ones too, as Slurm counts them), idle, other (down or drained),
    and in all."""
    states = [node_state(n) for n in g["nodes"]]
    other = sum(s in ("drain", "down") for s in states)
    idle = states.count("idle")
    return f"{len(states) - other - idle}/{idle}/{other}/{len(states)}"


#: sinfo -O names -> letters
_FIELDS = {"nodehost": "n", "nodelist": "N", "nodes": "D", "partition": "P", "partitionname": "R",
           "statecompact": "t", "statelong": "T", "cpus": "c", "cpusstate": "C", "memory": "m", "features": "f",
           "gres": "G", "gresused": "gresused", "time": "l", "available": "a"}


#: sinfo's ``%`` letters -> (header, value of a group of nodes: {"state", "nodes"})
_LETTERS: dict[str, tuple[str, Any]] = {
    "P": ("PARTITION", lambda g, now: PARTITION + "*"),
    "R": ("PARTITION", lambda g, now: PARTITION),
    "a": ("AVAIL", lambda g, now: "up"),
    "l": ("TIMELIMIT", lambda g, now: "infinite"),
    "D": ("NODES", lambda g, now: str(len(g["nodes"]))),
    "t": ("STATE", lambda g, now: g["state"]),
    "T": ("STATE", lambda g, now: _LONG[g["state"]]),
    "N": ("NODELIST", lambda g, now: ",".join(sorted(n["name"] for n in g["nodes"]))),
    "n": ("HOSTNAMES", lambda g, now: ",".join(sorted(n.get("hostname") or n["name"] for n in g["nodes"]))),
    "c": ("CPUS", lambda g, now: f"{float(g['nodes'][0].get('cpus') or 0):g}"),
    "C": ("CPUS(A/I/O/T)", lambda g, now: _cpus(g)),
    "m": ("MEMORY", lambda g, now: f"{float(g['nodes'][0].get('mem_total_mb') or 0):.0f}"),
    "f": ("AVAIL_FEATURES", lambda g, now: ",".join(g["nodes"][0].get("features") or []) or "(null)"),
    "G": ("GRES", lambda g, now: "(null)"),
    "F": ("NODES(A/I/O/T)", lambda g, now: _nodes(g)),
    "gresused": ("GRES_USED", lambda g, now: "(null)"),  # -O only: wulf has no generic resources yet
    "%": ("%", lambda g, now: "%"),
}
DEFAULT_FORMAT = "%9P %.5a %.10l %.6D %.6t %N"
NODE_FORMAT = "%N %.6D %9P %6t"


def _parser() -> ArgParser:
    p = ArgParser(prog="sinfo", description="The cluster's nodes, as Slurm's sinfo shows them (wulf).",
                  add_help=False)
    p.add_argument("-N", "--Node", action="store_true", help="one line per node")
    p.add_argument("-h", "--noheader", action="store_true", help="no header line")
    p.add_argument("-o", "--format", help="the output format (sinfo's %% fields: %%P %%a %%l %%D %%t %%T %%N %%c %%m ...)")
    p.add_argument("-O", "--Format", dest="fields", help="the output fields (name[:[.]size],...: nodehost, "
                   "statelong, cpus, cpusstate, memory, features, gres, gresused ...)")
    p.add_argument("-p", "--partition", help="only these partitions (wulf has one: default)")
    p.add_argument("-l", "--long", action="store_true", help="(accepted)")
    p.add_argument("-a", "--all", action="store_true", help="(accepted)")
    p.add_argument("-s", "--summarize", action="store_true", help="(accepted)")
    p.add_argument("-M", "--clusters", help="(accepted; wulf is one cluster)")
    p.add_argument("--json", action="store_true", help="print JSON ({\"nodes\": [...]})")
    p.add_argument("--help", action="help", help="show this help and exit")
    return p


#: the fields that sum up a group of nodes (the others' values part the groups)
_SUMS = frozenset({"F", "C", "D", "N", "n"})


def _groups(nodes: list[dict[str, Any]], per_node: bool, letters: list[str]) -> list[dict[str, Any]]:
    """The lines: one a node (-N), else one for each set of nodes that show the same values in the fields
    asked for (as Slurm groups them; ``%F/%C`` alone sums up all nodes on one line)."""
    ordered = sorted(nodes, key=lambda n: n["name"])
    if per_node:
        return [{"state": node_state(n), "nodes": [n]} for n in ordered]
    by_key: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for n in ordered:
        one = {"state": node_state(n), "nodes": [n]}
        key = tuple(str(_LETTERS[x][1](one, 0.0)) for x in letters if x not in _SUMS)
        by_key.setdefault(key, []).append(n)
    groups = [{"state": node_state(ns[0]), "nodes": ns} for ns in by_key.values()]
    return sorted(groups, key=lambda g: g["state"])


def sinfo(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.fields:
        pieces = parse_fields(args.fields, _FIELDS, "sinfo")
    else:
        pieces = parse_format(args.format or (NODE_FORMAT if args.Node else DEFAULT_FORMAT), _LETTERS, "sinfo")
    nodes = Client().nodes()
    if args.partition and PARTITION not in args.partition.split(","):
        nodes = []
    if args.json:
        print_json({"nodes": [{"name": n["name"], "state": [node_state(n).upper()], "cpus": n.get("cpus"),
                               "real_memory": n.get("mem_total_mb"), "partitions": [PARTITION]} for n in nodes]})
        return 0
    lines = [] if args.noheader else [render(pieces, None, 0.0, _LETTERS)]
    lines += [render(pieces, g, 0.0, _LETTERS).rstrip() for g in _groups(nodes, args.Node, [x[1] for x in pieces if x[1]])]
    sys.stdout.write("".join(line + "\n" for line in lines))
    return 0
