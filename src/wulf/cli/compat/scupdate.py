"""``scontrol update JobId=ID[_TASK] Key=Value...`` over jmod's request (:meth:`wulf.client.Client.modify`).

Slurm names a job's changes by its record's keys (what ``scontrol show job`` prints); each that wulf can
make maps to one of jmod's changes, with the value read as Slurm reads it (minutes for TimeLimit, MB for
memory). A key wulf cannot change refuses the whole request in one line, naming every such key, before
anything is asked of the server: a tool must never believe a change was made that was not. Keys are
matched without regard to case, as scontrol does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from wulf.errors import UsageError

#: the keys that name the jobs (Slurm's JobId=12,13_[1-3]); Name= picks jobs by name in Slurm: not here
_ID_KEYS = ("jobid",)


def _time(v: str) -> float:
    from wulf.compat.slurm import time_seconds

    if v.strip()[:1] in ("+", "-") and v.strip() != "-1":
        raise UsageError(f"TimeLimit={v}: wulf sets a time limit, it does not add to one (give the new limit)")
    seconds = time_seconds(v, "TimeLimit")
    if seconds is None:
        raise UsageError(f"TimeLimit={v}: wulf cannot lift a time limit; give one (minutes, HH:MM:SS, D-HH)")
    return seconds


def _cpus(v: str) -> float:
    from wulf.compat.request import count

    return float(count(v, "NumCPUs"))


def _mem(v: str) -> float:
    from wulf.compat.request import size_mb

    return size_mb(v, "m", "MinMemoryNode")


def _name(v: str) -> str:
    if not v.strip() or not v.isprintable():
        raise UsageError(f"JobName={v!r}: not a name (printable, not empty)")
    return v


def _nice(v: str) -> int:
    t = v.strip()
    if not (t.lstrip("-").isdigit() and t.isascii()) or not -20 <= int(t) <= 19:
        raise UsageError(f"Nice={v}: wulf's niceness is a whole number from -20 to 19")
    return int(t)


def _depend(v: str) -> str:
    if v.strip().lower() in ("", "none"):
        return ""  # Dependency= (empty) drops every dependency, as in Slurm
    from wulf.cli.qr import dependency_text

    return dependency_text(v.strip(), "Dependency")


def _throttle(v: str) -> int:
    from wulf.compat.request import count

    return count(v, "ArrayTaskThrottle", low=0)


#: Slurm's key (lower case) -> (jmod's change, how its value is read)
KEYS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "timelimit": ("time_limit", _time),
    "numcpus": ("cpu", _cpus), "mincpusnode": ("cpu", _cpus),
    "minmemorynode": ("mem_mb", _mem), "mem": ("mem_mb", _mem),
    "jobname": ("name", _name), "name": ("name", _name),
    "partition": ("queue", str.strip),
    "nice": ("nice", _nice),
    "dependency": ("depend", _depend),
    "arraytaskthrottle": ("throttle", _throttle),
}
#: what the refusal says wulf does change
CHANGEABLE = "TimeLimit, NumCPUs/MinCPUsNode, MinMemoryNode, JobName, Partition, Nice, Dependency, ArrayTaskThrottle"


def parse_update(words: list[str]) -> tuple[list[int | str], dict[str, Any]]:
    """The jobs (wulf's ids: ``12``, ``12[3]``) and jmod's changes that ``scontrol update WORDS`` asks for;
    UsageError (one line) for a malformed word, an unknown or unsupported key, or no job named."""
    from wulf.cli.compat.slurm import slurm_refs

    refs: list[str] = []
    pairs: list[tuple[str, str, str]] = []
    for w in words:
        key, eq, value = w.partition("=")
        if not eq or not key:
            raise UsageError(f"update: {w!r} is not Key=Value (scontrol update JobId=ID TimeLimit=30)")
        if key.lower() in _ID_KEYS:
            refs.append(value)
        else:
            pairs.append((key, key.lower(), value))
    refused = [key for key, low, _ in pairs if low not in KEYS]
    if refused:
        raise UsageError(f"update: wulf cannot change {', '.join(refused)} (it changes {CHANGEABLE})")
    if not refs:
        raise UsageError("update: which job? (scontrol update JobId=ID[_TASK] Key=Value...)")
    if not pairs:
        raise UsageError(f"update: nothing to change (give one of {CHANGEABLE})")
    ids: list[int | str] = []
    for job, tasks in slurm_refs(refs, "JobId"):
        ids += [job] if tasks is None else [f"{job}[{i}]" for i in tasks]
    changes: dict[str, Any] = {}
    for key, low, value in pairs:
        field, read = KEYS[low]
        if field in changes:
            raise UsageError(f"update: {key} repeats a change already given")
        changes[field] = read(value)
    return ids, changes


def update(words: list[str]) -> int:
    """Make the changes (all or nothing, as jmod does); quiet when done, as scontrol is."""
    from wulf.client import Client

    ids, changes = parse_update(words)
    Client().modify(ids, **changes)
    return 0
