"""Job arrays: what ``qr --array SPEC`` asks for, and how a task is named (``ID[i]``).

Pure parsing, shared by the CLIs, the server and the compatibility layer (Slurm ``--array``, PBS
``-J``, Grid Engine ``-t``). An array of n tasks is n jobs whose ids are one block: the array's id is
its first task's, and the task at position k (in the order of its indices) is ``array id + k``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from wulf.errors import UsageError

#: most tasks in one array (each is a job the server keeps in memory while it waits)
MAX_TASKS = 100_000
#: the largest task index (Slurm's MaxArraySize is far smaller; a bound keeps ranges finite)
MAX_INDEX = 10**9

_PART = re.compile(r"^(\d+)(?:-(\d+)(?::(\d+))?)?$", re.ASCII)
_REF = re.compile(r"^(\d+)(?:\[(\d+)\])?$", re.ASCII)


@dataclass(frozen=True, slots=True)
class ArraySpec:
    """The indices of an array's tasks (ascending, each once) and its throttle (0: none)."""

    indices: tuple[int, ...] | range
    throttle: int = 0

    @property
    def count(self) -> int:
        return len(self.indices)

    @property
    def first(self) -> int:
        return self.indices[0]

    @property
    def last(self) -> int:
        return self.indices[-1]

    def position(self, index: int) -> int | None:
        """The position of task ``index`` (its id is the array's id plus this), None if not in the array."""
        if isinstance(self.indices, range):
            return self.indices.index(index) if index in self.indices else None
        lo, hi = 0, len(self.indices)
        while lo < hi:  # the indices are sorted
            mid = (lo + hi) // 2
            if self.indices[mid] < index:
                lo = mid + 1
            else:
                hi = mid
        return lo if lo < len(self.indices) and self.indices[lo] == index else None

    def text(self) -> str:
        """The spec in its shortest usual form (``1-1000%50``, ``1,4,7-9``)."""
        body = _compact(self.indices)
        return f"{body}%{self.throttle}" if self.throttle else body


def _compact(indices: tuple[int, ...] | range) -> str:
    if isinstance(indices, range) and len(indices) > 1:
        step = f":{indices.step}" if indices.step != 1 else ""
        return f"{indices[0]}-{indices[-1]}{step}"
    parts: list[str] = []
    i = 0
    n = len(indices)
    while i < n:
        j = i
        while j + 1 < n and indices[j + 1] == indices[j] + 1:
            j += 1
        parts.append(str(indices[i]) if j == i else f"{indices[i]}-{indices[j]}")
        i = j + 1
    return ",".join(parts)


def _bad(spec: str, why: str) -> UsageError:
    return UsageError(f"--array {spec!r}: {why} (write e.g. 1-100, 0-30:3, 1,4,7-9, or 1-1000%50 to run at "
                      f"most 50 at once)")


def _part(spec: str, part: str) -> range:
    m = _PART.match(part)
    if m is None:
        raise _bad(spec, f"{part!r} is not an index or a range" if part else "an empty part")
    first = int(m.group(1))
    last = int(m.group(2)) if m.group(2) is not None else first
    step = int(m.group(3)) if m.group(3) is not None else 1
    if last < first:
        raise _bad(spec, f"the range {part} ends before it starts")
    if step < 1:
        raise _bad(spec, "a step is at least 1")
    if last > MAX_INDEX:
        raise _bad(spec, f"a task index is at most {MAX_INDEX}")
    return range(first, last + 1, step)


def parse_array(spec: str) -> ArraySpec:
    """``1-100``, ``0-30:3``, ``1,4,7-9``, each with an optional ``%N`` throttle; UsageError otherwise."""
    text = spec.strip()
    body, pct, limit = text.partition("%")
    throttle = 0
    if pct:
        if not limit.isdigit() or not limit.isascii():
            raise _bad(spec, f"the throttle after '%' must be a whole number, not {limit!r}")
        throttle = int(limit)
        if throttle < 1:
            raise _bad(spec, "a throttle of %0 would never run a task: give at least %1")
    parts = [_part(spec, p.strip()) for p in body.split(",")]
    total = sum(len(r) for r in parts)
    if total > MAX_TASKS * 2:
        raise _bad(spec, f"an array has at most {MAX_TASKS} tasks")
    indices: tuple[int, ...] | range
    if len(parts) == 1:
        indices = parts[0]
    else:
        indices = tuple(sorted({i for r in parts for i in r}))
    if len(indices) > MAX_TASKS:
        raise _bad(spec, f"it has {len(indices)} tasks; an array has at most {MAX_TASKS}")
    return ArraySpec(indices, throttle)


def parse_job_ref(text: str) -> tuple[int, int | None]:
    """A job as a user names it: ``12`` (a job, or a whole array) or ``12[5]`` (task 5 of array 12);
    UsageError otherwise."""
    m = _REF.match(text.strip())
    if m is None or not text.strip().isascii():
        raise UsageError(f"{text!r} is not a job id (job ids are whole numbers, as jstat shows them; "
                         f"task 5 of array 12 is 12[5])")
    job_id = int(m.group(1))
    if not 1 <= job_id <= 2**63 - 1:
        raise UsageError(f"{text!r} is not a job id (job ids start at 1)")
    return job_id, int(m.group(2)) if m.group(2) is not None else None
