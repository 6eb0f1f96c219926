"""jtail: a job's output as it is written, read on its node (no shared file system needed)."""

from __future__ import annotations

import sys

from wulf.cli.common import ArgParser, own_ids, run
from wulf.client import OUTPUT_CHUNK, Client
from wulf.errors import UsageError

POLL = 0.5  # seconds between looks at a followed job's output when nothing new was there
FIRST_LOOK = 64 * 1024  # bytes read from the end first for -n (more, up to a chunk, for long lines)


def build_parser() -> ArgParser:
    p = ArgParser(prog="jtail", description=(
        "Show the end of a job's output, read on its node through its agent as the job's owner (so it "
        "works without a shared file system); with -f, follow it as it is written until the job ends, "
        "then exit 0 (whatever the job's own exit code: qwait tells that). A job still waiting to "
        "start has no output yet; -f waits for it. Only the job's owner and administrators may read it."))
    p.add_argument("-f", "--follow", action="store_true", help="follow the output until the job ends")
    how = p.add_mutually_exclusive_group()
    how.add_argument("-n", "--lines", type=int, default=None, metavar="LINES",
                     help="show the last LINES lines (default 10; from the last MiB of output at most)")
    how.add_argument("-c", "--bytes", type=int, default=None, metavar="BYTES", help="show the last BYTES bytes")
    p.add_argument("id", metavar="ID", help="the job")
    return p


def _write(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def last_lines(data: bytes, n: int, whole: bool) -> bytes:
    """The last ``n`` lines of ``data`` (``whole``: it starts at the file's start, so its first line
    is whole; else the first, partial, line is never shown)."""
    lines = data.splitlines(keepends=True)
    if not whole and lines:
        lines = lines[1:]
    return b"".join(lines[-n:]) if n > 0 else b""


def _tail_lines(client: Client, job_id: int, n: int) -> tuple[int, str]:
    """Show the last ``n`` lines; (the offset after them, the job's state)."""
    want = FIRST_LOOK
    while True:
        reply = client.output(job_id, -want, want)
        data = reply["data"]
        whole = reply["offset"] == 0
        if whole or data.count(b"\n") > n or want >= OUTPUT_CHUNK:
            _write(last_lines(data, n, whole))
            return int(reply["next"]), str(reply["state"])
        want = min(OUTPUT_CHUNK, want * 4)


def _tail_bytes(client: Client, job_id: int, n: int) -> tuple[int, str]:
    """Show the last ``n`` bytes (in chunks); (the offset after them, the job's state)."""
    reply = client.output(job_id, -n if n else 0, min(n, OUTPUT_CHUNK))
    end = int(reply["size"])  # what was there at the first look
    offset = int(reply["next"]) if n else end
    _write(reply["data"])
    while reply["data"] and offset < end:
        reply = client.output(job_id, offset, min(OUTPUT_CHUNK, end - offset))
        _write(reply["data"])
        offset = int(reply["next"])
    return offset, str(reply["state"])


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    [job_id] = own_ids([args.id], "jtail")
    if (args.lines is not None and args.lines < 0) or (args.bytes is not None and args.bytes < 0):
        raise UsageError("-n and -c take a number of lines or bytes, 0 or more")
    client = Client()
    if args.bytes is not None:
        offset, state = _tail_bytes(client, job_id, args.bytes)
    else:
        offset, state = _tail_lines(client, job_id, 10 if args.lines is None else args.lines)
    if not args.follow:
        if state in ("queued", "held"):
            print(f"jtail: job {job_id} is {state}: it has no output yet", file=sys.stderr)
        return 0
    for data in client.follow_output(job_id, offset, POLL):
        _write(data)
    return 0


def main() -> None:
    run(_main)

