"""Group a node's processes into wulf jobs, ignored daemons and process clusters; rate their cpu use.

Every process on a node is watched: work started outside wulf is load just like a job, so the agent
reports it as *process clusters* — one user's processes linked by parent and child, such as a login
shell and the Matlab it runs. Everything here is pure (no I/O): the monitor feeds it a scan.

Ownership of a process is found by walking up its ancestors:

* the first ancestor-or-self that is a job root (a process the agent started) makes it that job's,
  whatever its uid or session;
* if an ignored root (wulf's own daemons) comes first, it is ignored: wulf is not load. A job root
  below an ignored daemon still wins, because the walk stops at the first match;
* otherwise it belongs to a cluster. A process starts a new cluster (is its *top*) when its parent is
  missing or is pid 0 or 1, when its parent belongs to another uid, or when it leads its own session
  (daemons and setsid'd programs stand alone); else it joins its parent's cluster.

Pid 1 adopts every orphan, so being ignored passes from pid 1 only to the children in its own
session, not to adopted orphans: that matters inside a PID namespace, where the agent itself may be
pid 1 (as in the ``unshare --pid`` test hosts).
The walk is iterative and memoised, so 5,000 processes cost a few milliseconds, deep trees cannot
overflow the stack, and a cycle (impossible in a consistent scan, but a scan is not a snapshot) ends
the walk rather than hanging it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Final, Literal, NamedTuple

from wulf.agent.procfs import ProcInfo

INIT_PID: Final = 1
TOP_PARENTS: Final = frozenset({0, INIT_PID})
"""A parent here makes its child a cluster top. kthreadd (pid 2) is left out of scans as a kernel
thread, so its rare user-space children count as having no parent; inside a PID namespace pid 2 is an
ordinary process and must not split anything."""

MIN_AGE: Final = 0.1
"""Seconds: a process younger than this is rated as if it were this old. Tick counts are coarse, and
one tick over a few milliseconds of life would read as a burst of many cpus."""

Kind = Literal["job", "ignored", "cluster"]


class Owner(NamedTuple):
    """Whose a process is: a job (ident = job id), a cluster (ident = top pid), or nobody's (ignored)."""

    kind: Kind
    ident: int


IGNORED: Final = Owner("ignored", 0)
_PENDING: Final = Owner("cluster", -1)  # on the walk being resolved: meeting it again is a cycle


@dataclass(frozen=True, slots=True)
class Use:
    """Summed use of a set of processes; cpu in cpus (1.0 is one core busy)."""

    cpu: float = 0.0
    rss_kb: int = 0
    nprocs: int = 0


@dataclass(frozen=True, slots=True)
class ProcCluster:
    """A process cluster wulf did not start, named by its top process."""

    pid: int
    uid: int
    comm: str
    starttime_ticks: int
    use: Use

    @property
    def key(self) -> str:
        """``"<pid>:<start time>"`` of the top: stable while the cluster lives, never reused."""
        return f"{self.pid}:{self.starttime_ticks}"


@dataclass(frozen=True, slots=True)
class Grouping:
    """A whole scan, divided up.

    ``clusters`` holds the clusters big enough to report; the others are summed into ``noise``.
    ``total`` covers every process that is not ignored: jobs + clusters + noise. ``job_pids`` lists
    each job's processes.
    """

    jobs: dict[int, Use]
    clusters: list[ProcCluster]
    noise: Use
    ignored: Use
    total: Use
    job_pids: dict[int, list[int]] = field(default_factory=dict)


def starts_cluster(proc: ProcInfo, parent: ProcInfo | None) -> bool:
    """Whether ``proc`` is the top of its own cluster rather than part of its parent's."""
    if parent is None or parent.pid in TOP_PARENTS:
        return True
    return parent.uid != proc.uid or proc.pid == proc.sid


def _same_session(proc: ProcInfo, procs: Mapping[int, ProcInfo]) -> bool:
    """Whether ``proc`` is in its parent's session: a true child, not an orphan adopted by pid 1."""
    parent = procs.get(proc.ppid)
    return parent is not None and parent.sid == proc.sid


def _resolve(
    proc: ProcInfo,
    above: Owner | None,
    procs: Mapping[int, ProcInfo],
    job_owners: Mapping[int, Owner],
    ignore_roots: AbstractSet[int],
) -> Owner:
    """The owner of one process, from its own pid and its parent's owner (None: no usable parent)."""
    own = job_owners.get(proc.pid)
    if own is not None:
        return own
    if proc.pid in ignore_roots:
        return IGNORED
    if above is None:
        return Owner("cluster", proc.pid)
    kind = above.kind
    if kind == "job":
        return above
    if kind == "ignored":
        return IGNORED if proc.ppid != INIT_PID or _same_session(proc, procs) else Owner("cluster", proc.pid)
    if starts_cluster(proc, procs.get(proc.ppid)):
        return Owner("cluster", proc.pid)
    return above


def _walk_up(
    pid: int,
    procs: Mapping[int, ProcInfo],
    owners: dict[int, Owner],
    job_owners: Mapping[int, Owner],
    ignore_roots: AbstractSet[int],
) -> tuple[list[int], Owner | None]:
    """The unresolved chain from ``pid`` upwards (marked pending in ``owners``) and the owner above
    its top (None: no usable parent). The chain stops at a root, which decides for itself, at a
    resolved ancestor, at a missing parent, or where it would close a cycle."""
    chain: list[int] = []
    cur = pid
    while True:
        chain.append(cur)
        owners[cur] = _PENDING
        if cur in job_owners or cur in ignore_roots:
            return chain, None
        ppid = procs[cur].ppid
        above = owners.get(ppid)
        if above is _PENDING:
            return chain, None  # a cycle: the top of this chain has no usable parent
        if above is not None or ppid not in procs:
            return chain, above
        cur = ppid


def assign(
    procs: Mapping[int, ProcInfo], job_roots: Mapping[int, int], ignore_roots: AbstractSet[int]
) -> dict[int, Owner]:
    """The owner of every process in ``procs`` (keyed by pid).

    Each process is resolved once: the walk from a process goes up only until it meets a resolved
    ancestor, a root (which decides for itself), a missing parent or a cycle, and the chain it
    gathered is then resolved top-down.
    """
    job_owners = {pid: Owner("job", job) for pid, job in job_roots.items()}
    owners: dict[int, Owner] = {}
    for pid, proc in procs.items():
        if pid in owners:
            continue
        above = owners.get(proc.ppid)
        if above is not None:  # the usual case, pids mostly grow down the tree: the parent is done
            owners[pid] = _resolve(proc, above, procs, job_owners, ignore_roots)
            continue
        chain, top_above = _walk_up(pid, procs, owners, job_owners, ignore_roots)
        for link in reversed(chain):
            top_above = _resolve(procs[link], top_above, procs, job_owners, ignore_roots)
            owners[link] = top_above
    return owners


def group(
    procs: Sequence[ProcInfo],
    job_roots: Mapping[int, int],
    ignore_roots: AbstractSet[int],
    cpu: Mapping[int, float],
    min_cpu: float = 0.0,
    min_rss_kb: int = 0,
) -> Grouping:
    """Divide a scan into jobs, clusters and ignored processes, summing cpu (cpus by pid) and memory.

    A cluster is reported when its cpu reaches ``min_cpu`` or its memory ``min_rss_kb``; smaller ones
    are noise (a node has hundreds of idle daemons), counted in ``noise`` and ``total`` only.
    """
    by_pid = {p.pid: p for p in procs}
    sums: dict[Owner, list[float]] = {}  # owner -> [cpu, rss_kb, nprocs]
    owners = assign(by_pid, job_roots, ignore_roots)
    job_pids: dict[int, list[int]] = {}
    for pid, proc in by_pid.items():
        owner = owners[pid]
        if owner.kind == "job":
            job_pids.setdefault(owner.ident, []).append(pid)
        acc = sums.get(owner)
        if acc is None:
            acc = sums[owner] = [0.0, 0, 0]
        acc[0] += cpu.get(pid, 0.0)
        acc[1] += proc.rss_kb
        acc[2] += 1
    ignored = sums.pop(IGNORED, [0.0, 0, 0])
    jobs: dict[int, Use] = {}
    clusters: list[ProcCluster] = []
    noise: list[float] = [0.0, 0, 0]
    for owner, acc in sums.items():
        if owner.kind == "job":
            jobs[owner.ident] = _use(acc)
        elif acc[0] >= min_cpu or acc[1] >= min_rss_kb:
            top = by_pid[owner.ident]
            clusters.append(ProcCluster(top.pid, top.uid, top.comm, top.starttime_ticks, _use(acc)))
        else:
            for i, value in enumerate(acc):
                noise[i] += value
    total = [sum(acc[i] for acc in sums.values()) for i in range(3)]
    return Grouping(jobs, clusters, _use(noise), _use(ignored), _use(total), job_pids)


def _use(acc: Sequence[float]) -> Use:
    return Use(acc[0], int(acc[1]), int(acc[2]))


def cpu_rates(
    procs: Iterable[ProcInfo],
    previous: Mapping[tuple[int, int], int],
    elapsed: float,
    uptime: float,
    clock_ticks: int,
) -> dict[int, float]:
    """Each process's cpu use (in cpus) by pid over the last ``elapsed`` seconds.

    ``previous`` maps (pid, start time) to the cpu ticks seen at the previous sample, so a reused pid
    is a new process, not a negative rate. A process not in it is rated over its own life, from its
    start (ticks since boot) to ``uptime`` (seconds since boot, now); with an empty ``previous`` that
    gives every process its lifetime average.
    """
    hz = float(clock_ticks)
    rates: dict[int, float] = {}
    for p in procs:
        before = previous.get((p.pid, p.starttime_ticks))
        if before is None:
            seconds, ticks = uptime - p.starttime_ticks / hz, p.cpu_ticks
        else:
            seconds, ticks = elapsed, p.cpu_ticks - before
        rates[p.pid] = 0.0 if ticks <= 0 else ticks / hz / (seconds if seconds > MIN_AGE else MIN_AGE)
    return rates


class CpuTracker:
    """Remembers each process's cpu ticks between samples so that the next sample can rate them.

    No I/O: the caller passes the scan and the time since boot (which is what start times count from).
    """

    def __init__(self, clock_ticks: int) -> None:
        self._clock_ticks = clock_ticks
        self._previous: dict[tuple[int, int], int] = {}
        self._uptime: float | None = None

    def update(self, procs: Sequence[ProcInfo], uptime: float) -> dict[int, float]:
        """Rates (cpus by pid) since the previous update; remembers this scan for the next one."""
        elapsed = 0.0 if self._uptime is None else uptime - self._uptime
        rates = cpu_rates(procs, self._previous, elapsed, uptime, self._clock_ticks)
        self._previous = {(p.pid, p.starttime_ticks): p.cpu_ticks for p in procs}
        self._uptime = uptime
        return rates
