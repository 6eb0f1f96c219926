"""qset: a queue's priority, whether it runs, when it runs, and who hears when its jobs end.

    qset                            list your queues
    qset QUEUE --priority 10        serve this queue before your others (higher first)
    qset QUEUE --stop | --start     stop starting its jobs (running ones go on) / start again
    qset QUEUE --nights | --weekends | --always
    qset QUEUE --mail ADDR          mail ADDR when a job of the queue ends ("" for none)

QUEUE is one of your queues, or USER:QUEUE (administrators).
"""

from __future__ import annotations

import sys

from wulf.cli.common import ArgParser, format_table, print_json, run
from wulf.client import Client
from wulf.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _parser() -> ArgParser:
    p = ArgParser(prog="qset", description="Show or change queue settings.",
                  epilog="Examples: qset big --priority 5   qset overnight --nights   qset all")
    p.add_argument("queue", nargs="?", help="QUEUE or USER:QUEUE; without it (or with 'all'), list queues")
    p.add_argument("--priority", metavar="N", help="serve higher priorities first (a whole number)")
    run_state = p.add_mutually_exclusive_group()
    run_state.add_argument("--stop", action="store_true", help="start none of its jobs (running ones go on)")
    run_state.add_argument("--start", action="store_true", help="start its jobs again")
    window = p.add_mutually_exclusive_group()
    for kind, text in (("nights", "start its jobs only at night and at weekends"),
                       ("weekends", "start its jobs only at weekends"), ("always", "start its jobs any time")):
        window.add_argument(f"--{kind}", dest="window", action="store_const", const=kind, help=text)
    p.add_argument("--mail", metavar="ADDR", help="mail ADDR when a job of the queue ends ('' for none)")
    p.add_argument("-u", "--user", default="", help="list this user's queues (with no QUEUE)")
    p.add_argument("--json", action="store_true")
    return p


def _changes(args: Any) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if args.priority is not None:
        try:
            changes["priority"] = int(args.priority)
        except ValueError:
            raise UsageError(f"--priority: {args.priority!r} is not a whole number") from None
    if args.stop or args.start:
        changes["stopped"] = bool(args.stop)
    if args.window:
        changes["window"] = args.window
    if args.mail is not None:
        changes["mail"] = args.mail
    return changes


def queues_table(queues: list[dict[str, Any]]) -> str:
    rows = []
    for q in queues:
        state = "stopped" if q["stopped"] else ("open" if q["window_open"] else "closed")
        rows.append([f"{q['user']}:{q['name']}", str(q["priority"]), state, q["window"], str(q["queued"]),
                     str(q["running"]), q["mail"] or "-", q["reason"]])
    return format_table(["QUEUE", "PRIO", "STATE", "WINDOW", "QUEUED", "RUNNING", "MAIL", "WAITING BECAUSE"], rows,
                        right=(1, 4, 5))


def _main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    changes = _changes(args)
    client = Client()
    if args.queue in (None, "all") and not changes:
        queues = client.queues("" if args.queue == "all" else args.user or client.user)
        if args.json:
            print_json({"queues": queues})
        else:
            sys.stdout.write((queues_table(queues) if queues else "no queues") + "\n")
        return 0
    if args.queue is None:
        raise UsageError("which queue? give QUEUE (see `qset --help`)")
    if not changes:
        queues = [q for q in client.queues() if args.queue in (q["name"], f"{q['user']}:{q['name']}")
                  and (":" in args.queue or q["user"] == client.user)]
        if args.json:
            print_json({"queues": queues})
        else:
            sys.stdout.write((queues_table(queues) if queues else f"no queue {args.queue}") + "\n")
        return 0
    reply = client.set_queue(args.queue, **changes)
    if args.json:
        print_json(reply)
    else:
        sys.stdout.write(queues_table([reply]) + "\n")
    return 0


def main() -> None:
    run(_main, exit_fast=True)
