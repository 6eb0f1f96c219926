"""jkill: send a signal to running jobs (all their processes)."""

from __future__ import annotations

import signal

from wulf.cli.common import IDS_HELP, ArgParser, parse_ids, print_json, run
from wulf.client import Client
from wulf.errors import UsageError


def parse_signal(text: str) -> int:
    if text.isdigit():
        n = int(text)
        if n in {s.value for s in signal.Signals}:
            return n
    else:
        name = text.upper()
        name = name if name.startswith("SIG") else "SIG" + name
        if name in signal.Signals.__members__:
            return int(signal.Signals[name])
    raise UsageError(f"-s: {text!r} is not a signal (examples: TERM, KILL, INT, 9)")


def build_parser() -> ArgParser:
    p = ArgParser(prog="jkill", description="Signal running jobs (default TERM).")
    p.add_argument("-s", "--signal", default="TERM", help="signal name or number (default TERM)")
    p.add_argument("ids", nargs="+", metavar="ID", help=IDS_HELP)
    p.add_argument("--json", action="store_true")
    return p


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    signum = parse_signal(args.signal)
    reply = Client().signal(parse_ids(args.ids), signum)
    if args.json:
        print_json(reply)
    else:
        name = signal.Signals(signum).name
        for i in reply["signalled"]:
            print(f"sent {name} to {i}")
        for i in reply["not_running"]:
            print(f"{i} is not running")
    return 0 if not reply["not_running"] else 1


def main() -> None:
    run(_main, exit_fast=True)
