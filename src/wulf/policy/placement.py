"""Where a job goes, and in which order users' queues are served."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from wulf.policy.snapshot import Free, NodeView, node_free

# Rounding slack so that 0.1 + 0.2 cpus fit in 0.3.
EPS = 1e-9


def rank(free: Free) -> tuple[float, float]:
    """Larger is better: most free cpu, then most free memory."""
    return (free.cpu, free.mem)


def choose_node(free: Mapping[str, Free], cpu: float, mem: float) -> str | None:
    """The best node with room for ``cpu``; memory decides among them.

    A node must have the cpu free. Among those, the best-ranked one whose free memory covers ``mem``;
    if none has that much memory, the one with the most free memory (as the seed did: the job still
    runs, where it hurts least). None when no node has the cpu free.
    """
    best: str | None = None
    best_rank: tuple[float, float] | None = None
    most_mem: str | None = None
    most_mem_free = float("-inf")
    for name, f in free.items():
        if f.cpu + EPS < cpu:
            continue
        if f.mem + EPS >= mem:
            r = rank(f)
            if best_rank is None or r > best_rank:
                best, best_rank = name, r
        if f.mem > most_mem_free:
            most_mem, most_mem_free = name, f.mem
    return best if best is not None else most_mem


def best_node(free: Mapping[str, Free]) -> str | None:
    """The node an interactive job goes to now, room or not: the best-ranked one."""
    return max(free, key=lambda n: rank(free[n]), default=None)


def free_capacity(nodes: Iterable[NodeView]) -> dict[str, Free]:
    return {n.name: node_free(n) for n in nodes if n.schedulable}


class Waiting(Protocol):
    """What the policy reads of a waiting job (wulf.policy.snapshot.QueuedJob, or the server's record)."""

    @property
    def id(self) -> int: ...
    @property
    def cpu(self) -> float: ...
    @property
    def mem_mb(self) -> float: ...


@dataclass(frozen=True)
class Placement:
    job_id: int
    node: str


def schedule(
    queued: Mapping[str, Iterable[Waiting]],
    running: Mapping[str, int],
    free: dict[str, Free],
    shares: Mapping[str, float] | None = None,
) -> list[Placement]:
    """One scheduling pass.

    ``queued`` maps each user to their waiting jobs in the order they are to be served (read lazily:
    only as many as are placed, plus one, are looked at); ``running`` counts each user's running jobs.
    Users are served in turn, always the one with the fewest running jobs for their share, so that
    competing users end up with equal numbers of running jobs and nobody starves another by queueing
    more. A user whose next job does not fit anywhere waits for this pass (their later jobs do not
    overtake it). ``free`` is updated in place.
    """
    shares = shares or {}
    heap: list[tuple[float, str]] = []
    counts: dict[str, int] = {}
    queues: dict[str, Iterator[Waiting]] = {}
    for user, jobs in queued.items():
        queues[user] = iter(jobs)
        counts[user] = running.get(user, 0)
        heap.append((counts[user] / shares.get(user, 1.0), user))
    heapq.heapify(heap)
    out: list[Placement] = []
    while heap and free:
        _, user = heapq.heappop(heap)
        job = next(queues[user], None)
        if job is None:
            continue
        node = choose_node(free, job.cpu, job.mem_mb)
        if node is None:
            continue  # this user's next job must wait for room
        f = free[node]
        free[node] = Free(f.cpu - job.cpu, f.mem - job.mem_mb)
        out.append(Placement(job.id, node))
        counts[user] += 1
        heapq.heappush(heap, (counts[user] / shares.get(user, 1.0), user))
    return out
