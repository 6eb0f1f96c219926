"""What happens to the server, as :class:`~wulf.server.state.ServerState` is told of it.

Each event is a fact the shell (:class:`~wulf.server.daemon.Daemon`, or a simulator) has already
established: a submission is committed before :class:`Submitted` is handed in, an agent's message has
been read and checked, the jobs an exit names that are no longer in memory have been read from the
store. Time is always passed in, never read: the same events on a virtual clock give the same answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from wulf.model.array import ArraySpec
from wulf.model.job import Job
from wulf.protocol import JobExit, JobStarted, NodeInfo, Report


@dataclass(frozen=True, slots=True)
class Submitted:
    """New jobs, committed: batch jobs wait in their queues; an interactive one already runs on its node.
    ``arrays``: the arrays (id, spec) some of them are tasks of, new with them. ``known``: the jobs their
    dependencies name that are not in memory any more, as read from the store."""

    jobs: tuple[Job, ...]
    arrays: tuple[tuple[int, ArraySpec], ...] = ()
    known: Mapping[int, Job] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SchedulePass:
    """Run the policy over the waiting jobs and place what it places."""

    now: float


@dataclass(frozen=True, slots=True)
class JobsStarted:
    """An agent started these jobs (their pids and start times)."""

    node: str
    jobs: tuple[JobStarted, ...]


@dataclass(frozen=True, slots=True)
class JobsExited:
    """An agent reports these exits. ``stored``: the jobs they name that are not in memory any more, as
    read from the store (their exit is recorded, nothing else). ``place``: False leaves placing jobs in
    the room they leave to a :class:`SchedulePass` that comes at this moment (the simulator hands over
    all of one moment's exits, on many nodes, then makes one pass, as it does for arrivals)."""

    node: str
    exits: tuple[JobExit, ...]
    now: float
    stored: Mapping[int, Job] = field(default_factory=dict)
    place: bool = True


@dataclass(frozen=True, slots=True)
class CancelRequested:
    """``by`` cancels these jobs (checked: theirs, or an administrator's); those already ended stay so."""

    jobs: tuple[Job, ...]
    by: str
    now: float


@dataclass(frozen=True, slots=True)
class HoldRequested:
    """``by`` holds these jobs (qhold): those queued stop waiting for a node."""

    jobs: tuple[Job, ...]
    by: str


@dataclass(frozen=True, slots=True)
class ReleaseRequested:
    """These jobs, held, go back in line in their old places (qrls)."""

    jobs: tuple[Job, ...]


@dataclass(frozen=True, slots=True)
class ReniceRequested:
    """These jobs are to run at ``nice`` (checked: lowering it is for administrators); those not
    running are left as they are."""

    jobs: tuple[Job, ...]
    nice: int


@dataclass(frozen=True, slots=True)
class JobChanges:
    """What jmod changes (None: left as it is). ``depend`` "" drops the dependencies; ``throttle`` 0
    takes an array's throttle away."""

    cpu: float | None = None
    mem_mb: float | None = None
    time_limit: float | None = None
    queue: str | None = None
    name: str | None = None
    nice: int | None = None
    throttle: int | None = None
    depend: str | None = None

    def given(self) -> dict[str, Any]:
        """The changes asked for, by field."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


@dataclass(frozen=True, slots=True)
class ModifyRequested:
    """``by`` changes these jobs (jmod; checked here: theirs, or ``admin``). All or nothing: a job that
    cannot take a change refuses the whole request (UsageError, Forbidden) and nothing changes.
    ``arrays``: the arrays named by their id (all their tasks are among ``jobs``; those that run or
    ended take only what a running job may take). ``known``: the jobs the new dependency names that
    are not in memory any more, as read from the store."""

    jobs: tuple[Job, ...]
    changes: JobChanges
    by: str
    admin: bool
    now: float
    arrays: frozenset[int] = frozenset()
    known: Mapping[int, Job] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class QueueChanged:
    """A queue's settings change (qset; checked here: UsageError): its jobs may start now, or not."""

    user: str
    name: str
    changes: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Drained:
    """An administrator drains a node (it takes no new jobs) or resumes it."""

    node: str
    drained: bool


@dataclass(frozen=True, slots=True)
class NodeUp:
    """An agent said hello: what it still runs and what ended while it was away (the reconciliation)."""

    info: NodeInfo
    host: str  # where it connected from
    uid: int  # the user it runs as (0: root)
    running: tuple[JobStarted, ...]
    finished: tuple[JobExit, ...]
    now: float


@dataclass(frozen=True, slots=True)
class NodeDown:
    """The node's agent went away (its jobs go on: it reconciles when it is back)."""

    node: str
    now: float


@dataclass(frozen=True, slots=True)
class Reported:
    """A node's periodic report: its sample, its jobs' use, the outside work seen there."""

    node: str
    report: Report


@dataclass(frozen=True, slots=True)
class SessionFailed:
    """An interactive job's node could not start it."""

    job_id: int
    error: str
    now: float


@dataclass(frozen=True, slots=True)
class Requeued:
    """The exits that failed these jobs are acknowledged to their node: those still to be retried go
    back in line (see :class:`~wulf.server.instructions.Requeue`)."""

    jobs: tuple[Job, ...]


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passes: nodes down longer than ``[server] node_lost_after`` lose their jobs."""

    now: float


Event = (Submitted | SchedulePass | JobsStarted | JobsExited | CancelRequested | HoldRequested | ReleaseRequested
         | ReniceRequested | ModifyRequested | QueueChanged | Drained | NodeUp | NodeDown | Reported | SessionFailed
         | Tick | Requeued)
