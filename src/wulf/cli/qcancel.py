"""qcancel: cancel jobs, waiting or running (running ones get TERM, then KILL)."""

from __future__ import annotations

from wulf.cli.common import IDS_HELP, ArgParser, parse_ids, print_json, run
from wulf.client import Client


def build_parser() -> ArgParser:
    p = ArgParser(prog="qcancel", description="Cancel queued or running jobs.")
    p.add_argument("ids", nargs="+", metavar="ID", help=IDS_HELP)
    p.add_argument("--json", action="store_true")
    return p


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    reply = Client().cancel(parse_ids(args.ids))
    if args.json:
        print_json(reply)
    else:
        for i in reply["cancelled"]:
            print(f"cancelled {i}")
        for i in reply["already_ended"]:
            print(f"{i} had already ended")
    return 0


def main() -> None:
    run(_main, exit_fast=True)
