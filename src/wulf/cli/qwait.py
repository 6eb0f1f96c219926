"""qwait: wait until jobs have ended; exit 1 if any of them failed or was cancelled.

    qwait               all of your own queued and running jobs
    qwait 12 13         these jobs
    qwait night         every job now in your queue 'night' (alice:night for alice's)

When the server goes away (a restart), qwait says so once and keeps trying to reach it, for up to ten
minutes (RECONNECT_FOR) or until its --timeout, and then waits on.
"""

from __future__ import annotations

import sys
import time

from wulf.cli.common import ArgParser, parse_ids, print_json, run
from wulf.client import RECONNECT_FOR, Client, retrying
from wulf.errors import WulfError

TIMED_OUT = 124  # as timeout(1)


def _parser() -> ArgParser:
    p = ArgParser(prog="qwait", description="Wait for jobs to end.")
    p.add_argument("targets", nargs="*", metavar="ID|QUEUE", help="job ids (ID[i]: task i of array ID; an array's id: all its tasks) or queue names")
    p.add_argument("-t", "--timeout", type=float, default=None, help="give up after this many seconds (exit 124)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the jobs' final states as JSON")
    return p


def _bar(counts: dict[str, int], total: int, width: int = 30) -> str:
    ended = sum(counts.get(s, 0) for s in ("done", "failed", "cancelled"))
    filled = int(width * ended / total) if total else width
    extra = "".join(f", {counts[s]} {s}" for s in ("running", "queued", "held", "failed", "cancelled")
                    if counts.get(s))
    return f"\r[{'#' * filled}{'.' * (width - filled)}] {ended}/{total} ended{extra}\033[K"


class _Notice:
    """Says once that the server went away (and once that it is back)."""

    def __init__(self) -> None:
        self.lost = False

    def __call__(self, e: WulfError) -> None:
        if not self.lost:
            print(f"qwait: {e.message}; trying again", file=sys.stderr)
        self.lost = True

    def back(self) -> None:
        if self.lost:
            print("qwait: the server answers again; waiting on", file=sys.stderr)
        self.lost = False


def _main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    refs = [t for t in args.targets if t.isdigit() or (t.endswith("]") and t[:1].isdigit())]
    ids = parse_ids(refs)
    queues = [t for t in args.targets if t not in refs]
    client = Client()
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    show = not args.quiet and not args.json and sys.stderr.isatty()
    first = True
    notice = _Notice()
    while True:
        step = 1.0 if show else 30.0
        patience = RECONNECT_FOR
        if deadline is not None:
            step = max(0.0, min(step, deadline - time.monotonic()))
            patience = max(0.0, deadline - time.monotonic())
        reply = retrying(lambda: client.wait_once(ids, queues, step), patience, notice)  # noqa: B023 (called at once)
        notice.back()
        if first:  # from now on wait for exactly the jobs that were there when we started
            ids, queues, first = [j["id"] for j in reply["jobs"]], [], False
        if show:
            sys.stderr.write(_bar(reply["counts"], len(reply["jobs"])))
            sys.stderr.flush()
        if reply["done"] or not ids or (deadline is not None and time.monotonic() >= deadline):
            break
    if show:
        sys.stderr.write("\n")
    if args.json:
        print_json({"done": reply["done"], "jobs": reply["jobs"]})
    if not reply["done"]:
        if not args.json:
            print("qwait: timed out; jobs are still waiting or running", file=sys.stderr)
        return TIMED_OUT
    bad = [j for j in reply["jobs"] if j["state"] in ("failed", "cancelled")]
    if bad and not args.json:
        print(f"qwait: {len(bad)} of {len(reply['jobs'])} jobs did not succeed: "
              + ", ".join(f"{j['id']} {j['state']}" for j in bad[:10]) + (" ..." if len(bad) > 10 else ""),
              file=sys.stderr)
    return 1 if bad else 0


def main() -> None:
    run(_main, exit_fast=True)
