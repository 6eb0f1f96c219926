"""The server's side of adaptive allocation: feed a node's jobs to the pure rule, apply what it says."""

from __future__ import annotations

from wulf.model.job import Job, JobState, Origin
from wulf.policy.adapt import Holding, adapt, penalty_nice
from wulf.policy.settings import Policy
from wulf.policy.snapshot import NodeView, node_free
from wulf.server.nodes import Node


def adapt_node(node: Node, view: NodeView, now: float, policy: Policy) -> tuple[list[Job], list[tuple[int, int]]]:
    """Adapt the allocations of ``node``'s batch jobs to their measured use.

    Returns the jobs whose allocation changed, and the (job id, niceness) renices to send.
    """
    changed: list[Job] = []
    renice: list[tuple[int, int]] = []
    free = node_free(view, policy.observe)
    for job in node.jobs.values():
        if job.origin is not Origin.BATCH or job.state is not JobState.RUNNING or job.started is None:
            continue
        before = Holding(job.cpu, job.mem_mb, job.cpu_used, job.mem_used, now - job.started, job.settled,
                         job.low_samples, job.penalized, job.reason)
        after = adapt(before, free, policy.adapt)
        if after == before:
            continue
        # what the job's new holding changes in the node's room, for the jobs after it
        taken_before = max(before.cpu, job.cpu_used), max(before.mem, job.mem_used)
        taken_after = max(after.cpu, job.cpu_used), max(after.mem, job.mem_used)
        free = type(free)(free.cpu - taken_after[0] + taken_before[0], free.mem - taken_after[1] + taken_before[1])
        if after.penalized != before.penalized:
            renice.append((job.id, penalty_nice(job.nice, after.penalized, policy.adapt)))
        job.settled, job.low_samples, job.penalized = after.settled, after.low_samples, after.penalized
        if (after.cpu, after.mem) != (job.cpu, job.mem_mb) or after.note != job.reason:
            job.cpu, job.mem_mb, job.reason = after.cpu, after.mem, after.note
            changed.append(job)
    return changed, renice
