"""jeff: one job's efficiency in plain words (like Slurm's seff)."""

from __future__ import annotations

import sys

from wulf.cli.common import ArgParser, format_age, format_mb, own_ids, print_json, run
from wulf.cli.jacct import iso
from wulf.client import Client
from wulf.errors import NotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _parser() -> ArgParser:
    p = ArgParser(prog="jeff", description="Say how well one job used what it asked for: cpu, memory, time.")
    p.add_argument("id", metavar="ID")
    p.add_argument("--json", action="store_true", help="print the job's accounting line as JSON")
    return p


def _how_ended(j: dict[str, Any]) -> str:
    if j["signal"]:
        how = f"killed by signal {j['signal']}"
    elif j["exit_code"] is not None:
        how = f"exit code {j['exit_code']}"
    else:
        how = "no exit code"
    return f"State: {j['state']} ({how}{'; ' + j['reason'] if j['reason'] else ''})"


def _cpu(j: dict[str, Any]) -> str:
    asked = f"{j['cpu_alloc']:g} cpu{'s' if j['cpu_alloc'] != 1 else ''} allocated ({j['cpu_req']:g} asked)"
    if j["cpu_eff"] is None:
        return f"CPU: {asked}; its cpu time is not known"
    return (f"CPU: {asked}; {format_age(j['cpu_time'])} of cpu time in {format_age(j['run'])} of run time: "
            f"{100 * j['cpu_eff']:.1f}% efficiency ({j['cpu_used']:.2f} cpus used on average)")


def _mem(j: dict[str, Any]) -> str:
    if j["peak_mem_mb"] is None:
        return f"Memory: {format_mb(j['mem_req_mb'])} asked; its peak is not known"
    return (f"Memory: peak {format_mb(j['peak_mem_mb'])} of {format_mb(j['mem_req_mb'])} asked "
            f"({100 * j['mem_eff']:.1f}%)")


def describe(j: dict[str, Any]) -> str:
    """The job in a few lines of words."""
    head = f"Job {j['id']}{' (' + j['name'] + ')' if j['name'] else ''} of {j['user']}, queue {j['queue']}" \
           f"{', on node ' + j['node'] if j['node'] else ''}"
    if j["ended"] is None:
        where = f"started {iso(j['started'])}" if j["started"] else f"submitted {iso(j['submitted'])}"
        return f"{head}\nState: {j['state']} ({where}): what it used is known once it ends\n"
    if j["started"] is None:
        waited = f"Never started: submitted {iso(j['submitted'])}, ended {iso(j['ended'])}"
    else:
        waited = (f"Submitted {iso(j['submitted'])}, waited {format_age(j['wait'])}, ran {format_age(j['run'])} "
                  f"(ended {iso(j['ended'])})")
    return "\n".join([head, _how_ended(j), waited, _cpu(j), _mem(j), f"Attempts: {j['attempts']}"]) + "\n"


def _main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    [jid] = own_ids([args.id], "jeff")
    found = Client().accounting(ids=[jid])
    if not found:
        raise NotFound(f"no job {jid} (jobs that ended more than [server] keep_days ago are forgotten)")
    if args.json:
        print_json(found[0])
    else:
        sys.stdout.write(describe(found[0]))
    return 0


def main() -> None:
    run(_main, exit_fast=True)
