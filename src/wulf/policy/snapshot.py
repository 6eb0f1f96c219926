"""The facts the policy decides from: immutable views of nodes, users, queues and jobs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from wulf.model.tasks import Shape

#: cpu that processes other than jobs may use before they take room: a node's background hum
#: (system daemons, the agent's neighbours) must not keep a job that asks for every cpu off an idle node.
BACKGROUND_CPU = 0.1



class RunningUse(NamedTuple):
    """One job on a node: what it was given and what it is measured to use (a tuple: a pass over a large
    cluster reads, and a server makes, very many of them)."""

    cpu_alloc: float
    mem_alloc: float
    cpu_used: float = 0.0
    mem_used: float = 0.0
    user: str = ""
    external: bool = False  # not started by wulf: it holds only what it uses


@dataclass(frozen=True, slots=True)
class NodeView:
    name: str
    cpus: float
    mem_mb: float
    schedulable: bool = True  # connected, not drained
    jobs: tuple[RunningUse, ...] = ()
    observed_cpu: float = 0.0  # everything the agent saw in use (jobs and other processes)
    observed_mem: float = 0.0
    mem_available: float | None = None  # what the machine says is available, if it is trustworthy
    attrs: Mapping[str, str] = field(default_factory=dict)  # arch, os, name, ... for qr --constraint
    features: frozenset[str] = frozenset()  # admin-set, e.g. bigmem
    metrics: Mapping[str, float] = field(default_factory=dict)  # the last sample, for the rank expression
    owner: str | None = None  # the only user whose jobs it runs (its agent is not root); None: anyone's


class Waiting(Protocol):
    """What the policy reads of a waiting job (QueuedJob below, or the server's own record)."""

    @property
    def id(self) -> int: ...
    @property
    def user(self) -> str: ...
    @property
    def cpu(self) -> float: ...
    @property
    def mem_mb(self) -> float: ...
    @property
    def constraint(self) -> str: ...
    @property
    def name(self) -> str: ...  # what it is called: with its user and request, its kind (policy.history)


@dataclass(frozen=True, slots=True)
class QueuedJob:
    """A waiting job as the policy reads it (the server's Job record has the same attributes)."""

    id: int
    user: str
    queue: str
    cpu: float
    mem_mb: float
    constraint: str = ""
    name: str = ""
    shape: Shape = Shape()  # a job of several tasks (cpu and mem_mb are each task's)


@dataclass(frozen=True, slots=True)
class QueueView:
    """One user's queue: its settings, and its waiting jobs in the order they are to be served.

    ``jobs`` is read lazily: a pass looks only at as many jobs as it places, plus one.
    """

    user: str
    name: str
    jobs: Iterable[Waiting]
    priority: int = 0  # higher is served first, within the user's share
    stopped: bool = False
    window: str = "always"  # "always", "nights" or "weekends"


@dataclass(frozen=True, slots=True)
class UserView:
    name: str
    running: int = 0  # running batch jobs: what fair share counts
    occupied_cpu: float = 0.0  # cpus held now by all of the user's work (batch, jr, external)
    limit: float | None = None  # most cpus the user may occupy at once
    share: float = 1.0  # fair-share weight


@dataclass(frozen=True, slots=True)
class Free:
    cpu: float
    mem: float


def node_use(node: NodeView, observe: bool = True, jobs: bool = True) -> tuple[float, float]:
    """cpu and memory taken on a node.

    Each job counts with the larger of its allocation and its measured use; what the agent saw in use
    beyond the jobs (processes wulf did not start, including the external jobs made of them) is added
    on top, less a little background hum (BACKGROUND_CPU). So a job that uses less than it was given still holds
    its share, and one that takes more than it was given, or someone working outside wulf, takes room
    away from new jobs. With ``observe`` false (the allocation-only policy, for comparison) only
    allocations count. With ``jobs`` false, wulf's jobs do not count: what is left is what the node's
    other work takes, whichever jobs end.
    """
    cpu = mem = 0.0
    if not observe:
        if not jobs:
            return cpu, mem
        for j in node.jobs:
            if not j.external:  # outside work holds no allocation
                cpu += j.cpu_alloc
                mem += j.mem_alloc
        return cpu, mem
    used_cpu = used_mem = 0.0
    for j in node.jobs:  # (conditional expressions, not max(): this runs for every node of every pass)
        if j.external:
            continue  # outside work: it is in what the agent observed, with the rest of the hum
        held, used = j.cpu_alloc, j.cpu_used
        cpu += held if held > used else used
        used_cpu += used
        held, used = j.mem_alloc, j.mem_used
        mem += held if held > used else used
        used_mem += used
    if not jobs:
        cpu = mem = 0.0
    outside = node.observed_cpu - used_cpu - BACKGROUND_CPU
    if outside > 0:
        cpu += outside
    outside = node.observed_mem - used_mem
    if outside > 0:
        mem += outside
    return cpu, mem


def node_free(node: NodeView, observe: bool = True, jobs: bool = True) -> Free:
    """A node's room (negative when it is over-committed); with ``jobs`` false, its room once the wulf
    jobs now on it have ended."""
    cpu, mem = node_use(node, observe, jobs)
    free_mem = node.mem_mb - mem
    if observe and node.mem_available is not None:
        free_mem = min(free_mem, node.mem_available)
    return Free(node.cpus - cpu, free_mem)
