"""The server's side of workstations (issue 13 §3): each report of a node that ``[nodes.owners]`` names
feeds the pure decision (:mod:`wulf.policy.migrate`); what it decides becomes messages to the node's agent.

The outside work that says the owner is back is the owner's own processes that wulf did not start (the
node's external jobs of that user): another user's work there, or a neighbour's test run on a shared
machine, is not the owner sitting down. The owner's work is starved when the node's processes together
leave less than a quarter of a cpu idle. The node's watch lives in memory only (after a restart of the
server it starts afresh); what each job has been through (its fate) is also kept as its reason, which
is stored: after a restart, a node with such jobs is taken to have its owner back until they are seen away
(so a job suspended before it is resumed then, not at once).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from pydantic import BaseModel

from wulf.model.checkpoint import parse_checkpoint
from wulf.model.job import Job, JobState, Origin
from wulf.policy import migrate
from wulf.policy.adapt import AdaptSettings, penalty_nice
from wulf.protocol import NodeSample, Renice, Signal

#: idle cpus under which the node's work (the owner's among it) is taken to be starved
STARVED_IDLE_CPU = 0.25

SIGSTOP, SIGCONT = 19, 18

#: a job's fate from its stored reason (after a restart of the server)
_BY_REASON = {text: fate for fate, text in migrate.SHOWN.items()}


@dataclass
class Desk:
    """One workstation's watch, and the fate of each batch job there (by id) while it is there."""

    owner: str
    watch: migrate.Watch = field(default_factory=migrate.Watch)
    fates: dict[int, migrate.Fate] = field(default_factory=dict)


def outside_cpu(owner: str, jobs: Iterable[Job]) -> float:
    """The cpus the owner's own processes, not started by wulf, use on the node."""
    return sum(j.cpu_used for j in jobs if j.origin is Origin.EXTERNAL and j.user == owner)


def starved(sample: NodeSample, cpus: float) -> bool:
    """Whether the node's processes leave it (almost) no idle cpu."""
    return cpus - sample.used_cpu < STARVED_IDLE_CPU


def batch_jobs(jobs: Iterable[Job]) -> list[Job]:
    return [j for j in jobs if j.origin is Origin.BATCH and j.state is JobState.RUNNING]


def view_of(job: Job, fate: migrate.Fate) -> migrate.JobView:
    ckpt = bool(job.checkpoint) and parse_checkpoint(job.checkpoint) is not None
    retries_left = job.restarts - job.checkpoints - job.vacated < job.retries
    return migrate.JobView(job.id, ckpt, job.requeue or retries_left, fate)


def message(job: Job, step: migrate.Step, was: migrate.Fate, adapt: AdaptSettings) -> list[BaseModel]:
    """What the agent is told to carry out ``step`` on ``job`` (whose fate was ``was``)."""
    if step is migrate.Step.CHECKPOINT:
        notice = parse_checkpoint(job.checkpoint)
        assert notice is not None
        return [Signal(ids=[job.id], signal=notice.signum)]
    if step is migrate.Step.RENICE:
        return [Renice(id=job.id, nice=penalty_nice(job.nice, True, adapt))]
    if step is migrate.Step.SUSPEND:
        return [Signal(ids=[job.id], signal=SIGSTOP)]
    if step is migrate.Step.REQUEUE:  # (TERM, KILL after the grace; its exit queues it again, see ServerState)
        out: list[BaseModel] = [Signal(ids=[job.id], signal=SIGCONT)] if was is migrate.Fate.SUSPENDED else []
        return [*out, Signal(ids=[job.id], signal=15)]
    out = [Signal(ids=[job.id], signal=SIGCONT)] if was is migrate.Fate.SUSPENDED else []
    return [*out, Renice(id=job.id, nice=penalty_nice(job.nice, job.penalized, adapt))]


def released(desk: Desk, jobs: list[Job], now: float) -> list[tuple[Job, migrate.Step, migrate.Fate]]:
    """The node is no longer a workstation: the steps that undo what was done to its jobs."""
    batch = {j.id: j for j in batch_jobs(jobs)}
    views = [view_of(batch[i], f) for i, f in desk.fates.items() if i in batch]
    return [(batch[i], step, desk.fates[i]) for i, step in migrate.decide(migrate.Watch(), now, False, views,
                                                                          migrate.Settings())]


def reported(desk: Desk, jobs: list[Job], sample: NodeSample, cpus: float,
             s: migrate.Settings) -> list[tuple[Job, migrate.Step, migrate.Fate]]:
    """A report of the desk's node: the steps due for its batch jobs (job, step, its fate before); their
    fates are moved on, and those of jobs no longer there forgotten."""
    now = sample.time
    batch = {j.id: j for j in batch_jobs(jobs)}
    desk.fates = {i: f for i, f in desk.fates.items() if i in batch}
    for i, j in batch.items():
        if i not in desk.fates and j.reason in _BY_REASON:  # (the server restarted: the owner was back)
            desk.fates[i] = _BY_REASON[j.reason]
            if desk.watch == migrate.Watch():
                desk.watch = migrate.Watch(back_since=now)
    desk.watch = migrate.observe(desk.watch, now, outside_cpu(desk.owner, jobs), s)
    views = [view_of(j, desk.fates.get(i, migrate.Fate.RUNNING)) for i, j in batch.items()]
    out = []
    for job_id, step in migrate.decide(desk.watch, now, starved(sample, cpus), views, s):
        was = desk.fates.get(job_id, migrate.Fate.RUNNING)
        fate = migrate.fate_after(step)
        if fate is migrate.Fate.RUNNING:
            desk.fates.pop(job_id, None)
        else:
            desk.fates[job_id] = fate
        out.append((batch[job_id], step, was))
    return out
