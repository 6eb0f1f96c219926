"""jnice: renice a running job (all its processes)."""

from __future__ import annotations

from wulf.cli.common import IDS_HELP, ArgParser, parse_ids, print_json, run
from wulf.client import Client
from wulf.errors import UsageError


def build_parser() -> ArgParser:
    p = ArgParser(prog="jnice", description="Set the nice value of a running job (0..19; root: -20..19).")
    p.add_argument("id", metavar="ID", help=IDS_HELP)
    p.add_argument("nice", metavar="N")
    p.add_argument("--json", action="store_true")
    return p


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        nice = int(args.nice)
    except ValueError:
        raise UsageError(f"{args.nice!r} is not a nice value (a whole number from -20 to 19)") from None
    if not -20 <= nice <= 19:
        raise UsageError(f"{nice} is not a nice value (from -20 to 19)")
    reply = Client().renice(parse_ids([args.id]), nice)
    if args.json:
        print_json(reply)
    else:
        for i in reply["reniced"]:
            print(f"{i} now runs at nice {nice}")
        for i in reply["not_running"]:
            print(f"{i} is not running")
    return 0 if reply["reniced"] else 1


def main() -> None:
    run(_main, exit_fast=True)
