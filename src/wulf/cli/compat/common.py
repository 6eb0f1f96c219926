"""What the compatibility commands share: the jobs as the server lists them, in each system's words.

The commands (``sbatch``, ``squeue``, ``qsub``, ``qstat``...) are thin layers over the client that ``qr``
and ``jstat`` use: they ask the same API and print what the original prints, closely enough that tools
that parse it (workflow managers, portals, site scripts) work unchanged.
"""

from __future__ import annotations

import os
import shlex
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any

from wulf.errors import UsageError

#: wulf's states in Slurm's words (a failed job may be a TIMEOUT or an OUT_OF_MEMORY: see slurm_state)
SLURM_STATES = {"queued": "PENDING", "held": "PENDING", "running": "RUNNING", "done": "COMPLETED",
                "failed": "FAILED", "cancelled": "CANCELLED"}
SLURM_CODES = {"PENDING": "PD", "RUNNING": "R", "COMPLETED": "CD", "FAILED": "F", "CANCELLED": "CA",
               "TIMEOUT": "TO", "OUT_OF_MEMORY": "OOM", "NODE_FAIL": "NF"}
#: PBS's one-letter states: queued, held, running, finished
PBS_STATES = {"queued": "Q", "held": "H", "running": "R", "done": "F", "failed": "F", "cancelled": "F"}
#: Grid Engine's: queued waiting, hold, running; ended jobs are not listed by its qstat
SGE_STATES = {"queued": "qw", "held": "hqw", "running": "r"}

ACTIVE = frozenset({"queued", "held", "running"})


def slurm_state(job: dict[str, Any]) -> str:
    state = str(job["state"])
    if state == "failed":
        reason = str(job.get("reason") or "")
        if "time limit" in reason:
            return "TIMEOUT"
        if "memory limit" in reason:
            return "OUT_OF_MEMORY"
        if reason.startswith("node lost") or reason.startswith("lost"):
            return "NODE_FAIL"
    return SLURM_STATES.get(state, state.upper())


def slurm_states(text: str, error: str) -> set[str] | None:
    """Slurm's state names or codes (``PD,R,CD`` or ``PENDING,...``), comma-separated; None for ``all``.
    UsageError ``error`` (with the word) for one Slurm does not have."""
    names = {v: k for k, v in SLURM_CODES.items()}
    wanted: set[str] = set()
    for w in text.upper().split(","):
        if w == "ALL":
            return None
        name = names.get(w, w)
        if name not in SLURM_CODES:
            raise UsageError(f"{error}: {w}")
        wanted.add(name)
    return wanted


def jobs_of(status: dict[str, Any]) -> list[dict[str, Any]]:
    """The jobs a batch system's commands show: those queued with qr or started with jr (not the outside
    work wulf found running on its nodes)."""
    return [j for j in status["jobs"] if j.get("origin") != "external"]


def int_ids(values: Iterable[str], what: str = "job id") -> list[int]:
    """Job ids as the systems write them: ``12``, ``12.server`` (PBS), an array ``12[].server`` (PBS Pro),
    comma-separated lists."""
    out = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            head = part.split(".", 1)[0].removesuffix("[]")
            if not head.isdigit() or int(head) < 1:
                raise UsageError(f"{part!r} is not a {what}")
            out.append(int(head))
    return out


def hms(seconds: float | None) -> str:
    """``[D-]HH:MM:SS``, or ``M:SS`` under an hour, as squeue shows a time."""
    if seconds is None:
        return "UNLIMITED"
    s = max(0, int(seconds))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}-{h:02d}:{m:02d}:{s:02d}"
    if h:
        return f"{h}:{m:02d}:{s:02d}"
    return f"{m}:{s:02d}"


def hms_full(seconds: float | None) -> str:
    """``HH:MM:SS`` (hours may pass 24), as PBS shows walltime and cput, and sacct Elapsed."""
    s = max(0, int(seconds or 0))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def iso(t: float | None) -> str:
    """Slurm's local time stamp (``2026-12-07T10:00:00``), or ``Unknown``."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t)) if t else "Unknown"


def run_seconds(job: dict[str, Any], now: float) -> float:
    started = job.get("started")
    if not started:
        return 0.0
    return float((job.get("ended") or now) - started)


def host() -> str:
    return socket.gethostname().split(".")[0] or "localhost"


def me() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def with_directives(script: str, dialect: str, words: list[str]) -> str:
    """The script as its directives are to be read with the command line's ``words`` added as one more
    directive line: after the script's own (so they win, as the command line does in each system) or,
    in a script without any, after its ``#!`` line (so the script is read as this dialect's)."""
    from wulf.compat.request import PREFIXES, directive_lines

    prefix = PREFIXES[dialect]
    line = f"{prefix} {shlex.join(words)}\n" if words else f"{prefix}\n"
    lines = script.splitlines(keepends=True)
    found = directive_lines(script, prefix, indent=dialect == "pbs", whole=dialect == "sge")
    at = found[-1][0] if found else (1 if lines and lines[0].startswith("#!") else 0)
    if at and not lines[at - 1].endswith("\n"):
        lines[at - 1] += "\n"
    return "".join(lines[:at] + [line] + lines[at:])


def read_stdin_script(who: str) -> str:
    import sys

    if sys.stdin.isatty():
        raise UsageError(f"{who}: no script given (a file, or a script on standard input)")
    try:
        return sys.stdin.buffer.read().decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{who}: the script read from standard input is not UTF-8 text") from None


def wait_exit(job_id: int) -> int:
    """Wait until the job ends: its exit code (1 when it did not end with one)."""
    from wulf.client import Client

    client = Client()
    client.wait([job_id])
    j = client.job(job_id)
    code = j.get("exit_code")
    return int(code) if j.get("state") in ("done", "failed") and code is not None else 1


def known(client: Any, refs: Iterable[int | str], say: Callable[[int | str], None]) -> list[int | str]:
    """The job references (``12``, ``12[3]``) whose job exists; ``say`` is told each other one. The
    original commands act on the jobs they know and name the others (a batch that names an unknown id
    is refused whole by wulf's server, so those are found first)."""
    from wulf.errors import NotFound

    out = []
    for ref in refs:
        try:
            client.job(int(str(ref).partition("[")[0]))
        except NotFound:
            say(ref)
            continue
        out.append(ref)
    return out
