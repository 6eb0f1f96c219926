"""qhold: keep queued jobs from starting until `qrls` releases them."""

from __future__ import annotations

from wulf.cli.common import IDS_HELP, ArgParser, parse_ids, print_json, run
from wulf.client import Client


def build_parser() -> ArgParser:
    p = ArgParser(prog="qhold", description="Hold queued jobs: they keep their place but do not start.")
    p.add_argument("ids", nargs="+", metavar="ID", help=IDS_HELP)
    p.add_argument("--json", action="store_true")
    return p


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    reply = Client().hold(parse_ids(args.ids))
    if args.json:
        print_json(reply)
    else:
        for i in reply["held"]:
            print(f"held {i}")
        for i in reply["not_queued"]:
            print(f"{i} is not waiting in a queue, so it cannot be held")
    return 0 if not reply["not_queued"] else 1


def main() -> None:
    run(_main, exit_fast=True)
