"""qrls: release held jobs: they go back in line, in their old places."""

from __future__ import annotations

from wulf.cli.common import IDS_HELP, ArgParser, parse_ids, print_json, run
from wulf.client import Client


def build_parser() -> ArgParser:
    p = ArgParser(prog="qrls", description="Release held jobs (see qhold).")
    p.add_argument("ids", nargs="+", metavar="ID", help=IDS_HELP)
    p.add_argument("--json", action="store_true")
    return p


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    reply = Client().release(parse_ids(args.ids))
    if args.json:
        print_json(reply)
    else:
        for i in reply["released"]:
            print(f"released {i}")
        for i in reply["not_held"]:
            print(f"{i} is not held")
    return 0 if not reply["not_held"] else 1


def main() -> None:
    run(_main, exit_fast=True)
