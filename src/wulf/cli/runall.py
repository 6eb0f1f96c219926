"""wulf runall: a command as root on all or some nodes, through their agents (administrators only)."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from wulf.cli.common import ArgParser, print_json
from wulf.config import Config
from wulf.errors import UsageError

HELP = """Runs CMD with `sh -c` as root on the chosen nodes (all of them by default) through their agents: no
ssh is needed. Each node's output is shown with its name before every line (or, with --group, once
for the nodes whose output is the same), then a summary of the exit codes. The exit code is 0 only
if the command exited 0 on every node. Only administrators may use it; every use is in the server's
audit log, with the command and each node's exit."""


def runall_parser(sub: argparse._SubParsersAction[ArgParser]) -> None:
    p = sub.add_parser("runall", help="run a command as root on all or some nodes (administrators)",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", "--nodes", metavar="NODES", action="append", default=[],
                   help="only these nodes (comma-separated; repeat for more)")
    p.add_argument("--all", action="store_true", help="every node (the default)")
    p.add_argument("--features", metavar="F", default="", help="only nodes matching this constraint (gpu,bigmem)")
    p.add_argument("--parallel", type=int, default=32, metavar="K", help="at most K nodes at once (default 32)")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S",
                   help="kill the command on a node after S seconds (default 60)")
    p.add_argument("--group", action="store_true", help="show each distinct output once, with its nodes")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("words", nargs=argparse.REMAINDER, metavar="CMD", help="the command (one shell line)")


def cmd_runall(args: argparse.Namespace, config: Config) -> int:
    from wulf.client import Client

    words = args.words[1:] if args.words[:1] == ["--"] else args.words
    command = " ".join(words).strip()
    if not command:
        raise UsageError("runall: give the command to run, e.g. wulf runall -- uptime")
    if args.all and (args.nodes or args.features):
        raise UsageError("runall: --all chooses every node; leave out -n and --features, or --all")
    if not 1 <= args.parallel <= 10_000:
        raise UsageError(f"runall: --parallel must be from 1 to 10000, not {args.parallel}")
    if not 0 < args.timeout <= 86400 * 7:
        raise UsageError(f"runall: --timeout must be seconds > 0 (at most a week), not {args.timeout:g}")
    nodes = [n for item in args.nodes for n in item.split(",") if n]
    client = Client()
    count = len(nodes) or len(client.nodes())
    wait = math.ceil(max(count, 1) / args.parallel) * (args.timeout + 20) + 10
    reply = client.post("/api/v1/admin/runall", {"command": command, "nodes": nodes, "features": args.features,
                                                 "timeout": args.timeout, "parallel": args.parallel}, timeout=wait)
    results: list[dict[str, Any]] = reply["results"]
    if args.json:
        print_json(reply)
    else:
        sys.stdout.write(grouped(results) if args.group else prefixed(results))
        sys.stdout.flush()
        print(summary(results), file=sys.stderr)
    return 0 if all(r["exit_code"] == 0 and not r["error"] for r in results) else 1


def prefixed(results: list[dict[str, Any]]) -> str:
    width = max(len(r["node"]) for r in results)
    out = []
    for r in results:
        for line in r["output"].splitlines():
            out.append(f"{r['node']:<{width}}: {line}\n")
    return "".join(out)


def grouped(results: list[dict[str, Any]]) -> str:
    by_output: dict[str, list[str]] = {}
    for r in results:
        by_output.setdefault(r["output"], []).append(r["node"])
    out = []
    for text, names in by_output.items():
        out.append(f"----- {','.join(names)}\n{text}" + ("" if text.endswith("\n") or not text else "\n"))
    return "".join(out)


def summary(results: list[dict[str, Any]]) -> str:
    ok = [r["node"] for r in results if r["exit_code"] == 0 and not r["error"]]
    bad = [f"{r['node']} ({r['error'] or 'exit ' + str(r['exit_code'])})" for r in results
           if not (r["exit_code"] == 0 and not r["error"])]
    line = f"runall: {len(results)} node{'s' if len(results) != 1 else ''}: {len(ok)} exited 0"
    return line + (f"; failed: {', '.join(bad)}" if bad else "")
