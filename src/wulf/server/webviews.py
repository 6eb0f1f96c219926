"""What the web page reads (``/api/v1/web/...``): reads of the server's state, never changes (no I/O).

The page never gets every job: :func:`job_page` filters, sorts and cuts a page on the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wulf.auth.identity import Caller
from wulf.errors import UsageError
from wulf.model.accounting import acct_row
from wulf.model.job import ACTIVE_STATES, WAITING_STATES, Job, JobState, Origin
from wulf.server import views
from wulf.server.nodes import Node, NodeState
from wulf.server.state import ServerState

#: most jobs in one page of the list
MAX_PAGE = 500
#: what the list may be sorted by: a job's key for each
SORTS = {
    "id": lambda j: j.id,
    "user": lambda j: (j.user, j.id),
    "state": lambda j: (str(j.state), j.id),
    "queue": lambda j: (j.queue, j.id),
    "node": lambda j: (j.node or "", j.id),
    "name": lambda j: (j.name, j.id),
    "cpu": lambda j: (j.cpu, j.id),
    "mem": lambda j: (j.mem_mb, j.id),
    "submitted": lambda j: (j.submitted, j.id),
}
#: what ``state=`` may name besides a state: sets of them
STATE_SETS = {"active": ACTIVE_STATES, "waiting": WAITING_STATES,
              "ended": frozenset(set(JobState) - ACTIVE_STATES)}


@dataclass(frozen=True, slots=True)
class JobFilter:
    user: str = ""
    state: str = ""  # a state, or active, waiting, ended
    queue: str = ""
    node: str = ""
    name: str = ""  # a part of the name (or of the command, for jobs without a name)
    origin: str = ""  # "wulf" (batch and interactive), "external" (outside work found on the nodes); "": all

    def states(self) -> frozenset[JobState] | None:
        if not self.state:
            return None
        if self.state in STATE_SETS:
            return STATE_SETS[self.state]
        try:
            return frozenset({JobState(self.state)})
        except ValueError:
            raise UsageError(f"state: {self.state!r} is none of {', '.join([*JobState, *STATE_SETS])}") from None

    def keeps(self, job: Job, states: frozenset[JobState] | None) -> bool:
        if states is not None and job.state not in states:
            return False
        if self.origin and (job.origin is Origin.EXTERNAL) != (self.origin == "external"):
            return False
        if self.user and job.user != self.user or self.queue and job.queue != self.queue:
            return False
        if self.node and job.node != self.node:
            return False
        return not self.name or self.name in (job.name or job.command[:200])


def node_load(node: Node) -> dict[str, float]:
    """A node's cpu and memory, wulf's jobs apart from the rest (what runs there that wulf did not start,
    found as process clusters or not placed in any): allocated to wulf's jobs, used by them, used outside."""
    s = node.sample
    alloc_cpu = alloc_mem = wulf_cpu = wulf_mem = 0.0
    for j in node.jobs.values():
        if j.origin is Origin.EXTERNAL:
            continue
        alloc_cpu += j.cpu
        alloc_mem += j.mem_mb
        wulf_cpu += j.cpu_used
        wulf_mem += j.mem_used
    used_cpu = s.used_cpu if s else 0.0
    used_mem = s.used_mem_mb if s else 0.0
    return {"cpu_alloc": round(alloc_cpu, 3), "cpu_wulf": round(wulf_cpu, 3),
            "cpu_outside": round(max(0.0, used_cpu - wulf_cpu), 3), "mem_alloc_mb": round(alloc_mem, 1),
            "mem_wulf_mb": round(wulf_mem, 1), "mem_outside_mb": round(max(0.0, used_mem - wulf_mem), 1)}


def loads_now(state: ServerState) -> dict[str, tuple[float, ...]]:
    """Each node's load now, as wulf.server.loadhistory keeps it (a node that is down offers nothing)."""
    out: dict[str, tuple[float, ...]] = {}
    for node in state.nodes.values():
        load = node_load(node)
        up = node.state is not NodeState.DOWN
        out[node.name] = (load["cpu_wulf"], load["cpu_outside"], load["mem_wulf_mb"], load["mem_outside_mb"],
                          node.cpus if up else 0.0, node.mem_mb if up else 0.0)
    return out


def job_uses(state: ServerState) -> dict[int, tuple[float, float]]:
    """The running wulf jobs' cpu and memory in use now, as wulf.server.loadhistory keeps them."""
    return {j.id: (j.cpu_used, j.mem_used) for n in state.nodes.values() for j in n.jobs.values()
            if j.origin is not Origin.EXTERNAL}


def _node(state: ServerState, node: Node) -> dict[str, Any]:
    return {**node.public(state.policy.features.get(node.name, frozenset()), state.view(node)), **node_load(node)}


def _users(state: ServerState) -> list[dict[str, Any]]:
    """Per user: wulf's jobs running (and the cpus they hold), queued, held, their fair-share weight; and
    the outside process clusters of theirs found on the nodes (and the cpus they use), apart."""
    users: dict[str, dict[str, Any]] = {}
    for job in state.jobs.values():
        js = job.state
        if js not in ACTIVE_STATES:
            continue
        u = users.get(job.user)
        if u is None:
            u = users[job.user] = {"user": job.user, "running": 0, "cpus": 0.0, "queued": 0, "held": 0,
                                   "outside": 0, "outside_cpu": 0.0}
        if job.origin is Origin.EXTERNAL:
            u["outside"] += 1
            u["outside_cpu"] += job.cpu_used
        elif js is JobState.RUNNING:
            u["running"] += 1
            u["cpus"] += job.cpu
        else:
            u["queued" if js is JobState.QUEUED else "held"] += 1
    policy = state.policy
    for name, u in users.items():  # fair share: their weight (of [shares]); what they hold of wulf's cpus now
        u["share"] = policy.user_share(name, state.groups(name) if policy.needs_groups else ())
    return [users[n] for n in sorted(users)]


def overview(state: ServerState, now: float, viewer: Caller | None) -> dict[str, Any]:
    """The cluster now: its nodes (with their load split), per user, per queue, and the jobs counted."""
    nodes = [_node(state, n) for n in sorted(state.nodes.values(), key=lambda n: n.name)]
    users = _users(state)
    return {"time": now, "nodes": nodes, "users": users, "queues": views.queues(state, now, viewer=viewer),
            "running": sum(u["running"] for u in users), "waiting": sum(u["queued"] + u["held"] for u in users),
            "outside": sum(u["outside"] for u in users),
            "up": sum(1 for n in state.nodes.values() if n.state is NodeState.UP), "changes": state.changes}


def _listed(state: ServerState, job: Job, now: float, viewer: Caller | None, up: bool) -> dict[str, Any]:
    d = views.listed(job, job.brief(now), viewer)
    d["name"] = job.name
    d["submitted"] = job.submitted
    if job.state is JobState.QUEUED:
        d["reason"] = views.waiting_reason(state, job, up)
    return d


def job_page(state: ServerState, now: float, viewer: Caller | None, where: JobFilter, sort: str = "id",
             desc: bool = False, offset: int = 0, limit: int = 50) -> dict[str, Any]:
    """One page of the jobs the server keeps in memory (active ones and the latest ended), filtered and
    sorted: ``total`` counts all that pass the filter."""
    key = SORTS.get(sort)
    if key is None:
        raise UsageError(f"sort: {sort!r} is none of {', '.join(SORTS)}")
    limit = max(1, min(limit, MAX_PAGE))
    states = where.states()
    chosen = [j for j in state.jobs.values() if where.keeps(j, states)]
    chosen.sort(key=key, reverse=desc)
    up = any(n.state is NodeState.UP for n in state.nodes.values())
    jobs = [_listed(state, j, now, viewer, up) for j in chosen[offset:offset + limit]]
    return {"total": len(chosen), "offset": offset, "limit": limit, "jobs": jobs, "changes": state.changes}


def job_detail(state: ServerState, job: Job, now: float, viewer: Caller | None) -> dict[str, Any]:
    """A job as GET /api/v1/jobs/ID shows it, and why it waits, its array, and what ``viewer`` may do."""
    d = views.shown(job, viewer, now)
    up = any(n.state is NodeState.UP for n in state.nodes.values())
    d["waiting_reason"] = views.waiting_reason(state, job, up) if job.state is JobState.QUEUED else ""
    if job.array_id is not None:
        d["array"] = views.arrays_public(state, {job.array_id}).get(str(job.array_id))
    if job.final:  # and what jacct knows of it: how long it waited and ran, and how well it used its cpus
        row = acct_row(job)
        d.update({k: row[k] for k in ("wait", "run", "cpu_alloc", "cpu_eff")})
    theirs = viewer is not None and (viewer.uid == job.uid or viewer.admin)
    mine = theirs and viewer is not None and not viewer.read_only
    d["may"] = {"output": theirs and job.origin is not Origin.EXTERNAL, "cancel": mine and job.state in ACTIVE_STATES, "hold": mine and job.state is JobState.QUEUED,
                "release": mine and job.state is JobState.HELD, "renice": mine and job.state is JobState.RUNNING,
                # (jmod: what waits takes any change; what runs, a new time limit; outside work none)
                "modify": mine and job.state in ACTIVE_STATES and job.origin is Origin.BATCH}
    return d


def node_detail(state: ServerState, name: str, now: float, viewer: Caller | None) -> dict[str, Any] | None:
    """A node, its load split, and what runs there: wulf's jobs and outside process clusters."""
    node = state.nodes.get(name)
    if node is None:
        return None
    up = node.state is NodeState.UP
    jobs = [_listed(state, j, now, viewer, up) for j in sorted(node.jobs.values(), key=lambda j: j.id)]
    for d, j in zip(jobs, sorted(node.jobs.values(), key=lambda j: j.id), strict=True):
        d["cpu_used"], d["mem_used_mb"] = round(j.cpu_used, 3), round(j.mem_used, 1)
    return {"node": _node(state, node), "jobs": jobs, "changes": state.changes}
