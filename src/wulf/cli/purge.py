"""wulf purge-scratch: remove what jobs left in this node's scratch directory and no longer use."""

from __future__ import annotations

import argparse
import os
import sys
import time

from wulf.cli.common import ArgParser, print_json
from wulf.config import Config
from wulf.errors import UsageError, WulfError

PURGE_HELP = """\
Removes what jobs left in this node's scratch directory ([agent] scratch, default /tmp) that nobody
read or wrote for --hours (default 72). Kept always: whatever root owns, sockets and pipes, files some
process has open, the files of a running job (named wulf-<id>..., as the agent stages a job's script)
and everything of a user who has a job running on this machine. Symbolic links are removed, never
followed; nothing outside the scratch directory is touched, nor another file system mounted in it.
The agent runs this itself every so often when [agent] purge_scratch_hours is set.

examples:
  wulf purge-scratch --dry-run           # what would go, and the space it would free
  wulf purge-scratch --hours 24          # as root, on a node: what is unused for a day
  wulf purge-scratch --scratch /scratch --json
"""


def purge_parser(sub: argparse._SubParsersAction[ArgParser]) -> None:
    p = sub.add_parser("purge-scratch", help="remove old leftovers of jobs from this node's scratch directory",
                       description=PURGE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hours", type=float, default=72.0, help="unused for this long (default 72)")
    p.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    p.add_argument("--scratch", metavar="DIR", help="the scratch directory (default [agent] scratch)")
    p.add_argument("--json", action="store_true", help="print what was removed as JSON")


def cmd_purge(args: argparse.Namespace, config: Config) -> int:
    from wulf.agent import purge

    if not args.hours > 0 or args.hours == float("inf"):
        raise UsageError(f"--hours must be a number of hours > 0, not {args.hours:g}")
    scratch = os.path.abspath(args.scratch or config.agent.scratch)
    if not os.path.isdir(scratch):
        raise UsageError(f"the scratch directory {scratch} does not exist")
    try:
        report = purge.purge(scratch, args.hours * 3600, purge.in_use(scratch), time.time(), args.dry_run)
    except OSError as e:
        raise WulfError(f"cannot clean {scratch}: {e.strerror}") from None
    verb = "would remove" if args.dry_run else "removed"
    if args.json:
        print_json({"scratch": scratch, "dry_run": args.dry_run, "freed": report.freed, "kept": report.kept,
                    "removed": [{"path": p, "size": s} for p, s in report.removed], "errors": report.errors})
    else:
        for path, size in report.removed:
            print(f"{verb} {os.path.join(scratch, path)} ({purge.human(size)})")
        print(f"{scratch}: {verb} {len(report.removed)} files and directories, {purge.human(report.freed)} "
              f"{'to free' if args.dry_run else 'freed'}; {report.kept} kept")
    for err in report.errors:
        print(f"wulf purge-scratch: cannot remove {os.path.join(scratch, err)}", file=sys.stderr)
    return 1 if report.errors else 0
