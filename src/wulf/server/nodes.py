"""The server's view of the nodes and of the agent connected for each."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from operator import itemgetter
from typing import Any

from wulf.model.deltas import Outside
from wulf.model.job import Job, Origin
from wulf.model.tasks import slots_on
from wulf.policy.rank import METRICS
from wulf.policy.snapshot import NodeView, RunningUse, node_free
from wulf.protocol import NodeInfo, NodeSample
from wulf.server.users import user_name

#: the sample's fields a rank expression may read (the others it reads are the node's room, see
#: wulf.policy.placement.node_metrics)
_METRICS = tuple(m for m in METRICS if m in NodeSample.model_fields)

#: what the policy sees of a sample (see Node.view), read from its __dict__ at once
_seen = itemgetter("used_cpu", "used_mem_mb", *_METRICS)
_rank_figures = itemgetter(*_METRICS)  # (several: it gives a tuple)

_EXTERNAL = Origin.EXTERNAL


class NodeState(StrEnum):
    UP = "up"  # connected, takes jobs
    DRAIN = "drain"  # connected, runs what it has, takes no new jobs
    DOWN = "down"  # no agent connected


@dataclass(eq=False)
class AgentLink:
    """The open connection to one agent."""

    send: Callable[[str], Awaitable[None]]
    host: str  # the address the agent connected from (where jr reaches it)
    close: Callable[[], Awaitable[None]]
    uid: int = 0  # the user the agent runs as (a non-root agent runs only that user's jobs)


@dataclass(eq=False)
class Node:
    name: str
    info: NodeInfo | None = None
    sample: NodeSample | None = None
    drained: bool = False
    owner_back: bool = False  # a workstation whose owner is back takes no new batch jobs (see server.owners)
    up: bool = False  # an agent is connected (the state machine's view; the shell keeps ``link``)
    host: str = ""  # where that agent connected from (where jr reaches it)
    agent_uid: int = 0  # the user it runs as (a non-root agent runs only that user's jobs)
    link: AgentLink | None = None  # the shell's connection to it (never used by the state machine)
    last_seen: float = 0.0
    jobs: dict[int, Job] = field(default_factory=dict)  # running here (batch, interactive, external)
    external: dict[str, int] = field(default_factory=dict)  # cluster key -> job id
    #: jobs of several tasks whose first node is another: the slots they hold here (issue 13 §1)
    shares: dict[int, Job] = field(default_factory=dict)
    share_use: dict[int, tuple[float, float]] = field(default_factory=dict)  # what its tasks here use (cpu, MB)
    missing: dict[str, int] = field(default_factory=dict)  # cluster key -> reports it was absent from
    outside: Outside = field(default_factory=Outside)  # which clusters it has now (reports as deltas)
    _read: tuple[NodeSample, dict[str, float]] | None = field(default=None, repr=False)  # see _metrics
    _attrs_of: tuple[NodeInfo | None, dict[str, str]] | None = field(default=None, repr=False)  # see attrs

    @property
    def state(self) -> NodeState:
        if not self.up:
            return NodeState.DOWN
        return NodeState.DRAIN if self.drained else NodeState.UP

    @property
    def cpus(self) -> float:
        return self.info.cpus if self.info else 0.0

    @property
    def mem_mb(self) -> float:
        return self.info.mem_mb if self.info else 0.0

    @property
    def address(self) -> str:
        """Where clients reach this node's agent (jr): what it says, else where it connected from."""
        said = self.info.session_host if self.info else ""
        return said or (self.host if self.up else "")

    def attrs(self) -> dict[str, str]:
        """What ``qr --constraint`` may ask of this node (kept with the hello it was read from: a view of
        the node is made each time it changes). Not to be changed by the caller."""
        i = self.info
        kept = self._attrs_of
        if kept is not None and kept[0] is i:
            return kept[1]
        attrs = {"name": self.name, "hostname": i.hostname if i else "", "arch": i.arch if i else "",
                "os": i.os if i else "", "kernel": i.kernel if i else "", "cpus": f"{self.cpus:g}",
                "mem_mb": f"{self.mem_mb:g}"}
        self._attrs_of = (i, attrs)
        return attrs

    def view(self, features: frozenset[str] = frozenset()) -> NodeView:
        s = self.sample
        uses = []
        for j in self.jobs.values():  # (what the policy saw of each is made again only when it changed)
            if j.alloc:  # a job of several tasks: its slots here (cpu and mem_mb are each task's)
                k = slots_on(j.alloc, self.name)
                uses.append(RunningUse(j.cpu * k, j.mem_mb * k, j.cpu_used, j.mem_used, j.user))
                continue
            u = j.seen
            if u is None or u[0] != j.cpu or u[1] != j.mem_mb or u[2] != j.cpu_used or u[3] != j.mem_used:
                u = j.seen = RunningUse(j.cpu, j.mem_mb, j.cpu_used, j.mem_used, j.user, j.origin is _EXTERNAL)
            uses.append(u)
        for j in self.shares.values():  # slots held here for a job that runs its script elsewhere
            k = slots_on(j.alloc, self.name)
            cpu, mem = self.share_use.get(j.id, (0.0, 0.0))  # (its tasks' use is its own, not outside work)
            uses.append(RunningUse(j.cpu * k, j.mem_mb * k, cpu, mem, j.user))
        info = self.info
        # (positional, in NodeView's order: a view is made for each node that changed, on every pass)
        return NodeView(
            self.name, info.cpus if info else 0.0, info.mem_mb if info else 0.0,
            self.up and not self.drained and not self.owner_back,  # schedulable
            tuple(uses), s.used_cpu if s else 0.0, s.used_mem_mb if s else 0.0, None,
            self.attrs(), features, self._metrics(),
            user_name(self.agent_uid) if self.up and self.agent_uid != 0 else None)  # owner

    def take_sample(self, sample: NodeSample) -> bool:
        """The node's new sample; whether the policy sees the node differently for it (what is in use,
        and the figures a rank expression may read)."""
        old, self.sample = self.sample, sample
        if old is None:
            return True
        return bool(_seen(old.__dict__) != _seen(sample.__dict__))

    def _metrics(self) -> dict[str, float]:
        """The sample's figures a rank expression may read (kept with the sample they were read from)."""
        s = self.sample
        if s is None:
            return {}
        kept = self._read
        if kept is not None and kept[0] is s:
            return kept[1]
        metrics = dict(zip(_METRICS, map(float, _rank_figures(s.__dict__)), strict=True))
        self._read = (s, metrics)
        return metrics

    def public(self, features: frozenset[str] = frozenset(), view: NodeView | None = None) -> dict[str, Any]:
        """The node as the API shows it; ``view``: what the policy sees of it, if the caller keeps it
        (see ServerState.view), else it is made anew."""
        s, i = self.sample, self.info
        free = node_free(view or self.view())
        return {
            "name": self.name,
            "state": str(self.state),
            "hostname": i.hostname if i else "",
            "cpus": self.cpus,
            "load": round(s.load1, 2) if s else None,
            "load5": round(s.load5, 2) if s else None,
            "load15": round(s.load15, 2) if s else None,
            "cpu_used": round(s.used_cpu, 3) if s else None,
            "cpu_free": round(free.cpu, 3),
            "mem_total_mb": round(self.mem_mb, 1),
            "mem_free_mb": round(free.mem, 1),
            "mem_available_mb": round(s.mem_available_mb, 1) if s else None,
            "swap_free_mb": round(s.swap_free_mb, 1) if s else None,
            "scratch_free_mb": round(s.scratch_free_mb, 1) if s else None,
            "cpu_user": round(s.cpu_user, 3) if s else None,
            "cpu_system": round(s.cpu_system, 3) if s else None,
            "cpu_idle": round(s.cpu_idle, 3) if s else None,
            "io_read_mbps": round(s.io_read_mbps, 3) if s else None,
            "io_write_mbps": round(s.io_write_mbps, 3) if s else None,
            "nprocs": s.nprocs if s else None,
            "jobs": len(self.jobs) + len(self.shares),
            "arch": i.arch if i else "",
            "os": i.os if i else "",
            "kernel": i.kernel if i else "",
            "features": sorted(features),
            "drained": self.drained,
            "owner_back": self.owner_back,  # a workstation whose owner is back: no new batch jobs (issue 13 §3)
            "last_seen": self.last_seen or None,
            "seen_ago": round(time.time() - self.last_seen, 1) if self.last_seen else None,
        }
