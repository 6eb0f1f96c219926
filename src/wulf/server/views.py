"""What the API and the web page show of the server's state: reads, never changes (no I/O; time passed in)."""

from __future__ import annotations

import heapq
import os
from typing import Any

from wulf.auth.identity import Caller
from wulf.model.job import ACTIVE_STATES, Job, JobState, Origin
from wulf.policy.scheduler import why_waiting
from wulf.server.nodes import NodeState
from wulf.server.queues import QueueSettings
from wulf.server.state import ServerState

#: a listing of jobs shows this much of each command (the job itself, GET /api/v1/jobs/ID, all of it)
LIST_COMMAND_CHARS = 1000


def program_of(command: str) -> str:
    """What others see of a command line that is not theirs: the program's name, not its arguments."""
    first = command.split(maxsplit=1)[0] if command.strip() else ""
    return first if first.startswith("[") else os.path.basename(first)


def _by_id(job: Job) -> int:
    return job.id


def _hidden(job: Job, viewer: Caller | None) -> bool:
    """Whether ``viewer`` sees only the program of ``job`` (another user's outside work)."""
    return viewer is not None and job.origin is Origin.EXTERNAL and job.uid != viewer.uid and not viewer.admin


def select(state: ServerState, user: str = "", queue: str = "", all_jobs: bool = False,
           external: bool = True) -> list[Job]:
    """The jobs (active ones, unless ``all_jobs``) of ``user``, of ``queue`` (``NAME`` or ``USER:NAME``);
    outside work too if ``external``."""
    qu, _, qn = queue.rpartition(":") if ":" in queue else ("", "", queue)
    out = []
    for job in state.jobs.values():
        if not all_jobs and job.state not in ACTIVE_STATES:
            continue
        if user and job.user != user:
            continue
        if qn and (job.queue != qn or (qu and job.user != qu)):
            continue
        if not external and job.origin is Origin.EXTERNAL:
            continue
        out.append(job)
    return out


def outside_work(state: ServerState, user: str = "") -> list[dict[str, Any]]:
    """The outside work running on the nodes, summed per node and user (of ``user`` only, if given): how
    many process clusters, and the cpus and memory they use."""
    return [{"node": name, "user": u, "clusters": n, "cpu": round(cpu, 3), "mem_mb": round(mem, 1)}
            for name in sorted(state.nodes) for u, n, cpu, mem in state.outside_of(state.nodes[name])
            if not user or u == user]


def status(state: ServerState, now: float, started: float, user: str = "", queue: str = "",
           all_jobs: bool = False, brief: bool = False, viewer: Caller | None = None, after: int = 0,
           limit: int = 0, external: bool = False) -> dict[str, Any]:
    """Nodes and one page of jobs as the API shows them, by id: the first ``limit`` (at most [server]
    jobs_per_page) after the id ``after``; ``next`` is the ``after`` of the next page, None at the
    end. ``brief``: the jobs' listing fields only (see Job.brief). Commands are cut to
    LIST_COMMAND_CHARS, and ``viewer`` sees only the program of others' outside work.

    Outside work is a job per process cluster only if ``external``; else (a busy cluster of workstations
    has tens of thousands of them) the first page has it summed per node and user, in ``outside``."""
    page = state.config.server.jobs_per_page
    limit = min(limit, page) if limit > 0 else page
    chosen = [j for j in select(state, user, queue, all_jobs, external) if j.id > after]
    more = len(chosen) > limit
    chosen = heapq.nsmallest(limit, chosen, key=_by_id) if more else sorted(chosen, key=_by_id)
    up = any(n.state is NodeState.UP for n in state.nodes.values())
    jobs = []
    for job in chosen:
        d = listed(job, job.brief(now) if brief else job.public(now), viewer)
        if job.state is JobState.QUEUED:
            d["reason"] = waiting_reason(state, job, up)
        jobs.append(d)
    out = {
        "server": {"time": now, "started": started, "next_id": state.next_id},
        "nodes": nodes_public(state),
        "jobs": jobs,
        "arrays": arrays_public(state, {j.array_id for j in chosen if j.array_id is not None}),
        "next": chosen[-1].id if more else None,
    }
    if not external and not after:
        out["outside"] = [] if queue else outside_work(state, user)
    return out


def arrays_public(state: ServerState, ids: set[int]) -> dict[str, dict[str, Any]]:
    """The arrays of these ids, by id (as text, as JSON keys are): spec (``1-1000%50``), task count,
    and how many of their tasks are in each state (of those the server keeps in memory)."""
    out: dict[str, dict[str, Any]] = {}
    for array_id in sorted(ids):
        rec = state.arrays.arrays.get(array_id)
        if rec is None:
            continue
        counts = dict.fromkeys(("queued", "held", "running", "done", "failed", "cancelled"), 0)
        jobs = state.jobs
        for task_id in rec.task_ids():
            task = jobs.get(task_id)
            if task is not None:
                counts[task.state.value] += 1
        out[str(array_id)] = {"id": array_id, "spec": rec.text, "tasks": rec.spec.count,
                              "throttle": rec.spec.throttle, **counts}
    return out


def shown(job: Job, viewer: Caller | None, now: float, state: ServerState | None = None) -> dict[str, Any]:
    """One job as ``viewer`` may see it (GET /api/v1/jobs/ID): all of it, but only the program of
    another user's outside work (its command line may hold what is not for everyone); a waiting job's
    reason is why it waits (given the ``state`` it waits in), as in a listing."""
    d = job.public(now)
    if state is not None and job.state is JobState.QUEUED:
        d["reason"] = waiting_reason(state, job, any(n.state is NodeState.UP for n in state.nodes.values()))
    if _hidden(job, viewer):
        d["command"] = program_of(job.command)
    _mail_private(job, d, viewer)
    return d


def _mail_private(job: Job, d: dict[str, Any], viewer: Caller | None) -> None:
    """Where a job's owner gets mail is theirs to know (and administrators'), as of a queue."""
    if "mail_user" in d and viewer is not None and viewer.uid != job.uid and not viewer.admin:
        d["mail_user"] = ""


def listed(job: Job, d: dict[str, Any], viewer: Caller | None) -> dict[str, Any]:
    """``d``, a listing's line for ``job``, with its command as ``viewer`` may see it, cut short."""
    command = program_of(job.command) if _hidden(job, viewer) else job.command
    d["command"] = command if len(command) <= LIST_COMMAND_CHARS else command[:LIST_COMMAND_CHARS] + "…"
    _mail_private(job, d, viewer)
    return d


def nodes_public(state: ServerState) -> list[dict[str, Any]]:
    """The nodes as the API shows them, by name."""
    features = state.policy.features
    return [n.public(features.get(n.name, frozenset()), state.view(n))
            for n in sorted(state.nodes.values(), key=lambda n: n.name)]


def page_view(state: ServerState, now: float, max_waiting: int, viewer: Caller | None = None) -> dict[str, Any]:
    """What the web page shows, in one pass over the jobs: the nodes; the running jobs and the first
    ``max_waiting`` waiting ones (earliest first; ``waiting_not_listed`` counts the rest), as
    listed (Job.brief); and per user, jobs running and the cpus they hold, jobs queued and held."""
    up = any(n.state is NodeState.UP for n in state.nodes.values())
    jobs = []
    users: dict[str, dict[str, Any]] = {}
    waiting = 0
    for job in state.jobs.values():
        js = job.state
        if js not in ACTIVE_STATES:
            continue
        u = users.get(job.user)
        if u is None:
            u = users[job.user] = {"user": job.user, "running": 0, "cpus": 0.0, "queued": 0, "held": 0}
        if js is JobState.RUNNING:
            u["running"] += 1
            u["cpus"] += job.cpu
        else:
            u["queued" if js is JobState.QUEUED else "held"] += 1
            waiting += 1
            if waiting > max_waiting:
                continue
        d = listed(job, job.brief(now), viewer)
        if js is JobState.QUEUED:
            d["reason"] = waiting_reason(state, job, up)
        jobs.append(d)
    return {"server": {"time": now}, "nodes": nodes_public(state), "jobs": jobs,
            "waiting_not_listed": max(0, waiting - max_waiting), "users": [users[n] for n in sorted(users)]}


def waiting_reason(state: ServerState, job: Job, up: bool) -> str:
    """Why a queued job waits, in a line (see wulf.policy.scheduler.why_waiting)."""
    waits = state.waits.reasons.get(job.id)
    if waits:  # for other jobs to end (a dependency)
        return waits
    q = state.book.queues.get((job.user, job.queue))
    kept = state.held_room.get(job.id)
    # (what it needs shows only where room is kept for it: only then is it looked up)
    if job.array_id is not None and state.arrays.is_parked(job):
        rec = state.arrays.arrays[job.array_id]
        return f"array {rec.id} runs at most {rec.spec.throttle} tasks at once"
    waiting = state.kinds.sized(job) if kept and state.kinds is not None else job
    return why_waiting(waiting, state.reasons.get((job.user, job.queue), ""), kept, state.impossible.get(job.id),
                       next(iter(q.jobs), None) if q is not None else None, up)


def queue_public(state: ServerState, st: QueueSettings, now: float, viewer: Caller | None = None) -> dict[str, Any]:
    """One queue as the API shows it; ``viewer`` sees the mail address of their own only (administrators: all)."""
    d = st.public()
    if viewer is not None and viewer.user != st.user and not viewer.admin:
        d["mail"] = ""  # where its owner gets mail is theirs to know
    q = state.book.queues.get((st.user, st.name))
    d["queued"] = len(q.jobs) if q else 0
    d["running"] = sum(1 for n in state.nodes.values() for j in n.jobs.values()
                       if j.user == st.user and j.queue == st.name and j.origin is Origin.BATCH)
    d["window_open"] = state.policy.windows.open(st.window, now)
    d["reason"] = state.reasons.get((st.user, st.name), "")
    return d


def queues(state: ServerState, now: float, user: str = "", viewer: Caller | None = None) -> list[dict[str, Any]]:
    """The queues (of ``user``), by user and name."""
    return [queue_public(state, q.settings, now, viewer) for (u, _), q in sorted(state.book.queues.items())
            if not user or u == user]
