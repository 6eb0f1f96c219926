"""The facts the policy decides from: immutable views of nodes and jobs."""

from __future__ import annotations

from dataclasses import dataclass

#: cpu that processes other than jobs may use before they take room: a node's background hum
#: (system daemons, the agent's neighbours) must not keep a job that asks for every cpu off an idle node.
BACKGROUND_CPU = 0.1


@dataclass(frozen=True)
class RunningUse:
    """One job on a node: what it was given and what it is measured to use."""

    cpu_alloc: float
    mem_alloc: float
    cpu_used: float = 0.0
    mem_used: float = 0.0


@dataclass(frozen=True)
class NodeView:
    name: str
    cpus: float
    mem_mb: float
    schedulable: bool = True  # connected, not drained
    jobs: tuple[RunningUse, ...] = ()
    observed_cpu: float = 0.0  # everything the agent saw in use (jobs and other processes)
    observed_mem: float = 0.0
    mem_available: float | None = None  # what the machine says is available, if it is trustworthy


@dataclass(frozen=True)
class QueuedJob:
    id: int
    user: str
    queue: str
    cpu: float
    mem_mb: float


@dataclass(frozen=True)
class Free:
    cpu: float
    mem: float


def node_use(node: NodeView) -> tuple[float, float]:
    """cpu and memory taken on a node.

    Each job counts with the larger of its allocation and its measured use; what the agent saw in use
    beyond the jobs (processes wulf did not start, too small to be jobs) is added on top, less a
    little background hum (BACKGROUND_CPU). So a job that
    uses less than it was given still holds its share, and one that takes more than it was given, or
    someone working outside wulf, takes room away from new jobs.
    """
    cpu = mem = 0.0
    used_cpu = used_mem = 0.0
    for j in node.jobs:
        cpu += max(j.cpu_alloc, j.cpu_used)
        mem += max(j.mem_alloc, j.mem_used)
        used_cpu += j.cpu_used
        used_mem += j.mem_used
    cpu += max(0.0, node.observed_cpu - used_cpu - BACKGROUND_CPU)
    mem += max(0.0, node.observed_mem - used_mem)
    return cpu, mem


def node_free(node: NodeView) -> Free:
    cpu, mem = node_use(node)
    free_mem = node.mem_mb - mem
    if node.mem_available is not None:
        free_mem = min(free_mem, node.mem_available)
    return Free(node.cpus - cpu, free_mem)
