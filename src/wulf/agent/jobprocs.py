"""A job's processes measured one by one, for jobs without a cgroup (an agent that is not root).

* cpu time: each live process's own time plus the time of the children it has waited for (``cutime``
  and ``cstime`` of ``/proc/<pid>/stat``), so a job's ended processes still count;
* memory: the proportional set size (PSS, ``/proc/<pid>/smaps_rollup``), which splits each shared page
  among the processes that share it: a program that forks many copy-on-write children counts once,
  not once per child. PSS is costly to read (the kernel walks the page tables), so it is read only for
  a job's processes, and by the enforcer only when their resident sizes add up to more than the limit.

The processes of a job are found from its top process down through ``/proc/<pid>/task/<tid>/children``.
Parsing is pure and tested with sample text; the rest reads ``/proc``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Final, NamedTuple

_O_READ: Final = os.O_RDONLY | os.O_CLOEXEC
_HZ: Final = os.sysconf("SC_CLK_TCK")
_PAGE_MB: Final = os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


class StatUse(NamedTuple):
    cpu_ticks: int  # utime + stime + cutime + cstime
    rss_pages: int


def parse_stat_use(raw: bytes) -> StatUse:
    """cpu time (its own and its waited-for children's) and resident size from a ``stat`` line.

    Fields are counted after the last ``)``, since the command name in parentheses may hold anything.
    """
    rest = raw[raw.rindex(b")") + 1 :].split()
    if len(rest) < 22:
        raise ValueError(f"short /proc stat line: {raw[:80]!r}")
    utime, stime, cutime, cstime = (int(x) for x in rest[11:15])
    return StatUse(utime + stime + cutime + cstime, int(rest[21]))


def parse_children(text: str) -> list[int]:
    """``/proc/<pid>/task/<tid>/children``: pids separated by spaces."""
    return [int(x) for x in text.split() if x.isdigit()]


def parse_pss_kb(text: str) -> int | None:
    """The ``Pss:`` line of ``smaps_rollup`` (or the sum over ``smaps``), in KB."""
    total = None
    for line in text.splitlines():
        if line.startswith("Pss:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                total = (total or 0) + int(parts[1])
    return total


def _read(path: str) -> bytes | None:
    try:
        fd = os.open(path, _O_READ)
    except OSError:
        return None
    chunks = []
    try:
        while chunk := os.read(fd, 65536):  # a long file of /proc comes in several reads
            chunks.append(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    return b"".join(chunks)


def tree(root: int, proc: str = "/proc") -> list[int]:
    """``root`` and its descendants now (those reparented away are lost); [] when ``root`` is gone."""
    found: list[int] = []
    seen = {root}
    todo = [root]
    while todo:
        pid = todo.pop()
        try:
            tids = os.listdir(f"{proc}/{pid}/task")
        except OSError:
            continue
        found.append(pid)
        for tid in tids:
            raw = _read(f"{proc}/{pid}/task/{tid}/children")
            for child in parse_children(raw.decode("ascii", "replace")) if raw else []:
                if child not in seen:
                    seen.add(child)
                    todo.append(child)
    return found


class TreeUse(NamedTuple):
    cpu_seconds: float
    rss_mb: float


def use(pids: Iterable[int], proc: str = "/proc") -> TreeUse:
    """Summed cpu time (see the module notes) and resident memory of some processes."""
    ticks = pages = 0
    for pid in pids:
        raw = _read(f"{proc}/{pid}/stat")
        if raw is None:
            continue
        try:
            u = parse_stat_use(raw)
        except ValueError:
            continue
        ticks += u.cpu_ticks
        pages += u.rss_pages
    return TreeUse(ticks / _HZ, pages * _PAGE_MB)


def pss_mb(pids: Iterable[int], proc: str = "/proc") -> float | None:
    """Summed PSS of some processes in MB; None when none could be read (not allowed, or all gone)."""
    total_kb = None
    for pid in pids:
        raw = _read(f"{proc}/{pid}/smaps_rollup")
        kb = parse_pss_kb(raw.decode("ascii", "replace")) if raw else None
        if kb is not None:
            total_kb = (total_kb or 0) + kb
    return None if total_kb is None else total_kb / 1024
