"""jmod: change jobs that wait (and, of running ones, their niceness, time limit and name), like Slurm's
``scontrol update``."""

from __future__ import annotations

import sys

from wulf.cli.common import IDS_HELP, ArgParser, parse_cpu, parse_ids, parse_mem, print_json, run
from wulf.client import Client
from wulf.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: what --after (and the others) take to drop every dependency
NONE_WORDS = ("none", "")


def build_parser() -> ArgParser:
    p = ArgParser(prog="jmod", description="Change jobs that wait (queued or held), or whole arrays: what they "
                  "ask for, their queue, name, niceness, time limit, throttle or dependencies. A running job "
                  "takes --nice (higher; administrators: any), --time (lower; administrators: any) and --name. "
                  "All or nothing: if one job cannot take a change, none changes.")
    p.add_argument("ids", nargs="+", metavar="ID", help=IDS_HELP)
    p.add_argument("--cpu", metavar="N", help="cpus it needs")
    p.add_argument("--mem", metavar="MB", help="memory it needs (512, 512M, 2G)")
    p.add_argument("--time", metavar="HH:MM:SS", help="its wall-time limit (a running job's: only lower)")
    p.add_argument("-q", "--queue", help="move it to this queue of yours (it keeps its place by when it was queued)")
    p.add_argument("-N", "--name", help="its new name")
    p.add_argument("--nice", metavar="N", help="its niceness (0-19; at least the site's [scheduler] job_nice; "
                   "only administrators go lower, or lower a running job's)")
    p.add_argument("--throttle", metavar="N", help="run at most N tasks of the array at once (0: no limit)")
    p.add_argument("--after", action="append", metavar="ID[,ID...]",
                   help="start only after these jobs ended done; 'none' drops every dependency")
    p.add_argument("--after-any", action="append", metavar="ID[,ID...]", help="start only after these jobs ended")
    p.add_argument("--after-notok", action="append", metavar="ID[,ID...]",
                   help="start only after these jobs failed or were cancelled")
    p.add_argument("-d", "--dependency", metavar="LIST",
                   help="Slurm's form: afterok:ID[:ID...],afterany:ID...,afternotok:ID...; 'none' drops them. "
                        "A new dependency replaces the old one")
    p.add_argument("--json", action="store_true", help="print the server's answer as JSON")
    return p


def _number(flag: str, text: str, low: int, high: int) -> int:
    if not (text.strip().lstrip("-").isdigit() and text.isascii()) or not low <= int(text) <= high:
        raise UsageError(f"{flag}: {text!r} is not a whole number from {low} to {high}")
    return int(text)


def _dependency(args: Any) -> str | None:
    """What the dependency options say (None: nothing; "": drop every dependency)."""
    given = [args.dependency] if args.dependency is not None else []
    for flag in ("after", "after_any", "after_notok"):
        given += getattr(args, flag) or []
    if not given:
        return None
    if any(g.strip().lower() in NONE_WORDS for g in given):
        if len(given) > 1:
            raise UsageError("'none' drops every dependency: give it alone")
        return ""
    from wulf.cli.qr import _dependency as from_qr

    return from_qr(args)


def changes(args: Any) -> dict[str, Any]:
    """The changes the command line asks for (UsageError for a malformed one), as the server takes them."""
    out: dict[str, Any] = {}
    if args.cpu is not None:
        out["cpu"] = parse_cpu(args.cpu)
    if args.mem is not None:
        out["mem_mb"] = parse_mem(args.mem)
    if args.time is not None:
        from wulf.cli.qr import _duration

        out["time_limit"] = _duration("time", args.time)
    if args.queue is not None:
        out["queue"] = args.queue  # (the server checks the name)
    if args.name is not None:
        if not args.name.strip() or not args.name.isprintable():
            raise UsageError(f"--name: {args.name!r} is not a name (printable, not empty)")
        out["name"] = args.name
    if args.nice is not None:
        out["nice"] = _number("--nice", args.nice, -20, 19)
    if args.throttle is not None:
        out["throttle"] = _number("--throttle", args.throttle, 0, 100_000)
    dep = _dependency(args)
    if dep is not None:
        out["depend"] = dep
    if not out:
        raise UsageError("nothing to change: give --cpu, --mem, --time, --queue, --name, --nice, --throttle "
                         "or --after (see jmod --help)")
    return out


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    asked = changes(args)
    reply = Client().modify(parse_ids(args.ids), **asked)
    if args.json:
        print_json(reply)
        return 0
    changed = reply["changed"]
    out = [f"changed {i}\n" for i in changed[:10]]
    if len(changed) > 10:
        out.append(f"... and {len(changed) - 10} more\n")
    out += [f"array {i}: at most {asked['throttle'] or 'any number of'} tasks at once\n" for i in reply["arrays"]]
    kept = reply["not_waiting"]
    out += [f"{i} does not wait (it runs or has ended): it keeps what it asked for\n" for i in kept[:10]]
    if len(kept) > 10:
        out.append(f"... and {len(kept) - 10} more tasks that do not wait\n")
    sys.stdout.write("".join(out))
    return 0


def main() -> None:
    run(_main, exit_fast=True)
