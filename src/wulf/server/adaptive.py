"""The server's side of adaptive allocation: feed a node's jobs to the pure rule, apply what it says."""

from __future__ import annotations

from collections.abc import Callable, Container

from wulf.model.job import Job, JobState, Origin
from wulf.policy.adapt import Holding, adapt_jobs, penalty_nice, steady
from wulf.policy.settings import Policy
from wulf.policy.snapshot import NodeView, node_free
from wulf.server.nodes import Node

#: a tuple made directly (twice as quick as through its class): one is made for every job on every report
_holding = tuple.__new__


def adapt_node(node: Node, view: Callable[[], NodeView], now: float, policy: Policy,
               skip: Container[int] = ()) -> tuple[list[Job], list[tuple[int, int]]]:
    """Adapt the allocations of ``node``'s batch jobs to their measured use (``view``: what the policy
    sees of the node, asked for only when some job may change). ``skip``: jobs left as they are (those
    a workstation's owner has reniced or stopped, see wulf.server.owners).

    Returns the jobs whose allocation changed, and the (job id, niceness) renices to send.
    """
    changed: list[Job] = []
    renice: list[tuple[int, int]] = []
    if not policy.adaptive:
        return changed, renice
    jobs: list[Job] = []
    before: list[Holding] = []
    settings = policy.adapt
    all_steady = True
    for job in node.jobs.values():
        if (job.origin is not Origin.BATCH or job.state is not JobState.RUNNING or job.started is None
                or job.alloc or job.id in skip):
            continue
        jobs.append(job)
        h = _holding(Holding, (job.cpu, job.mem_mb, job.cpu_used, job.mem_used, now - job.started, job.settled,
                               job.low_samples, job.penalized, job.reason))
        before.append(h)
        if all_steady and not steady(h, settings):
            all_steady = False
    if all_steady:
        return changed, renice
    after = adapt_jobs(before, node_free(view(), policy.observe), settings)
    for job, b, a in zip(jobs, before, after, strict=True):
        if a == b:
            continue
        if a.penalized != b.penalized:
            renice.append((job.id, penalty_nice(job.nice, a.penalized, policy.adapt)))
        job.settled, job.low_samples, job.penalized = a.settled, a.low_samples, a.penalized
        if (a.cpu, a.mem) != (job.cpu, job.mem_mb) or a.note != job.reason:
            job.cpu, job.mem_mb, job.reason = a.cpu, a.mem, a.note
            changed.append(job)
    return changed, renice
