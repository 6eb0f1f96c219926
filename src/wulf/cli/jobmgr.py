"""jobmgr: administration of the cluster."""

from __future__ import annotations

from wulf.cli.common import ArgParser, print_json, run
from wulf.client import Client, quote


def build_parser() -> ArgParser:
    p = ArgParser(prog="jobmgr", description="Administer the cluster.")
    p.add_argument("--json", action="store_true")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    sub.add_parser("reload", help="re-read the configuration file")
    for name, text in (("drain", "take no new jobs on NODE (running ones go on)"),
                       ("resume", "let NODE take jobs again"),
                       ("quitnode", "stop the agent on NODE (its jobs go on)")):
        sub.add_parser(name, help=text).add_argument("node", metavar="NODE")
    sub.add_parser("quitjobd", help="stop every agent, then the server")
    return p


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    c = Client()
    if args.action == "reload":
        reply = c.post("/api/v1/admin/reload")
        msg = f"configuration reloaded from {reply['reloaded']}"
    elif args.action == "quitjobd":
        reply = c.post("/api/v1/admin/shutdown")
        msg = "the server and its agents are stopping"
    else:
        verb = {"drain": "drain", "resume": "resume", "quitnode": "quit"}[args.action]
        reply = c.post(f"/api/v1/admin/nodes/{quote(args.node, safe='')}/{verb}")
        msg = {"drain": f"{args.node} takes no new jobs", "resume": f"{args.node} takes jobs again",
               "quit": f"the agent on {args.node} is stopping"}[verb]
    if args.json:
        print_json(reply)
    else:
        print(msg)
    return 0


def main() -> None:
    run(_main, exit_fast=True)
