"""Jobs of a kind start with what the last jobs of that kind used.

A batch job holds what it asked for until it settles (see :mod:`wulf.policy.adapt`): for its first
minutes, what it asked for and does not use is room no other job may take. Yet most jobs come in kinds,
the same program or script run again and again by the same person, and what the last few of a kind
used is a better guess of what the next one will use than the request, which people give once, by
rule of thumb, and seldom revise (as studies of batch workloads found: Tsafrir, Etsion and Feitelson
predicted run times from each user's last jobs).

- **A job's kind**: its user, its name (``qr -N``, else its program or script, without the number a
  script of a file of several gets) and what it asks for (cpu and memory). Jobs without a name have
  no kind.
- **A job teaches its kind** when it ends done (exit 0), having run at least ``min_seconds``: its mean
  cpu (cpu time over run time) and its peak memory. A job that ends sooner has shown little of itself.
- **A new job of the kind starts with** the mean cpu of the last ``size`` jobs that taught it, and the
  largest of their peaks: cpu is shared by those who want it when a guess is short, memory is not.
  Never more than it asks for: history only ever lets a job start sooner, never makes it wait longer.
- After the start it adapts as any job does: given more when it uses more and its node has room,
  reniced when others have taken the room, its allocation set to its measured use once it settles.

Pure: a :class:`History` is filled by its owner (the server, the simulator) from the exits it sees.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict, deque

from wulf.model.tasks import Shape
from wulf.policy.adapt import MIN_CPU, MIN_MEM
from wulf.policy.snapshot import Waiting

#: the kinds remembered at most (the least recently taught are forgotten first)
MAX_KINDS = 10_000

_NUMBER = re.compile(r"\[\d+\]$")  # a script's number in a file of several: "run.sh[3]"

Kind = tuple[str, str, float, float]


def kind_of(user: str, name: str, cpu: float, mem_mb: float) -> Kind | None:
    """The kind of a job of ``user`` named ``name`` that asks for ``cpu`` and ``mem_mb``."""
    if not name:
        return None
    return (user, _NUMBER.sub("", name) if name.endswith("]") else name, cpu, mem_mb)


_ONE = Shape()


class Sized:
    """A waiting job as a pass reads it once its kind has taught what it needs (less than it asks for).

    (A plain class: a pass may make thousands, and a frozen dataclass is several times slower to make.)
    """

    __slots__ = ("constraint", "cpu", "id", "mem_mb", "name", "user")

    def __init__(self, job: Waiting, cpu: float, mem_mb: float) -> None:
        self.id = job.id
        self.user = job.user
        self.name = job.name
        self.constraint = job.constraint
        self.cpu = cpu
        self.mem_mb = mem_mb

    def __repr__(self) -> str:
        return f"Sized(id={self.id}, user={self.user!r}, cpu={self.cpu:g}, mem_mb={self.mem_mb:g})"


class History:
    """What the last jobs of each kind used."""

    def __init__(self, size: int, min_seconds: float) -> None:
        self.size = size
        self.min_seconds = min_seconds
        self._seen: OrderedDict[Kind, deque[tuple[float, float]]] = OrderedDict()
        self._expect: dict[Kind, tuple[float, float]] = {}

    def __len__(self) -> int:
        return len(self._expect)

    def teach(self, kind: Kind | None, done: bool, run_seconds: float, cpu_seconds: float | None,
              peak_mem_mb: float | None) -> bool:
        """An ended job of ``kind``: whether it taught its kind (see the module's rules)."""
        if kind is None or not done or run_seconds < self.min_seconds or run_seconds <= 0:
            return False
        if cpu_seconds is None or not peak_mem_mb or peak_mem_mb <= 0:
            return False  # not measured (an agent that could not tell)
        seen = self._seen.get(kind)
        if seen is None:
            seen = self._seen[kind] = deque(maxlen=self.size)
            if len(self._seen) > MAX_KINDS:
                old, _ = self._seen.popitem(last=False)
                self._expect.pop(old, None)
        else:
            self._seen.move_to_end(kind)
        seen.append((max(MIN_CPU, cpu_seconds / run_seconds), max(MIN_MEM, peak_mem_mb)))
        # (to the hundredth of a cpu and the MB above: what jstat shows, and a little to spare)
        self._expect[kind] = (math.ceil(100 * sum(c for c, _ in seen) / len(seen)) / 100,
                              float(math.ceil(max(m for _, m in seen))))
        return True

    def expect(self, kind: Kind | None) -> tuple[float, float] | None:
        """The cpu and memory the kind's last jobs used (None: nothing taught yet)."""
        return None if kind is None else self._expect.get(kind)

    def sized(self, job: Waiting) -> Waiting:
        """``job`` as a pass should read it: the job itself, or what its kind needs when that is less
        than it asks for. (A pass calls this for every job it looks at: kind_of, inlined.)"""
        name = job.name
        if not name:
            return job
        if name[-1] == "]":
            name = _NUMBER.sub("", name)
        cpu, mem = job.cpu, job.mem_mb
        got = self._expect.get((job.user, name, cpu, mem))
        if got is None:
            return job
        c, m = got
        if c >= cpu and m >= mem or not getattr(job, "shape", _ONE).single:  # (a job of several tasks as asked)
            return job
        return Sized(job, c if c < cpu else cpu, m if m < mem else mem)
