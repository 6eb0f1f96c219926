"""What :class:`~wulf.server.state.ServerState` asks its shell to do, in the order it is to be done.

The order carries the server's promises: a :class:`StartJobs` follows the :class:`Commit` of those
jobs' assignment (a restarted server never starts a job twice), an :class:`~wulf.protocol.Ack` of exits
follows the commit that records them, and the jobs placed in the room they leave share that commit.
:class:`JobEnded` and :class:`Mail` follow the commit of the end they tell of.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from wulf.model.job import Job
from wulf.protocol import JobExit


@dataclass(frozen=True, slots=True)
class Commit:
    """Write these jobs (``new``: insert them first) in one transaction; what follows waits for it.
    ``arrays``: arrays whose spec changed (id, its text: a new throttle), written with the jobs."""

    jobs: tuple[Job, ...] = ()
    new: tuple[Job, ...] = ()
    arrays: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True, slots=True)
class CommitSoon:
    """These jobs changed in passing (pids, start times, adapted allocations): write them with the next
    commit, or soon."""

    jobs: tuple[Job, ...]


@dataclass(frozen=True, slots=True)
class Send:
    """Send ``msg`` to ``node``'s agent (dropped when it is not connected: it reconciles on return)."""

    node: str
    msg: BaseModel


@dataclass(frozen=True, slots=True)
class StartJobs:
    """Start these jobs on ``node`` (their assignment is committed by then); those ended meanwhile are left out."""

    node: str
    jobs: tuple[Job, ...]


@dataclass(frozen=True, slots=True)
class RecordExits:
    """Exits an agent reported in its hello: read the jobs not in memory from the store, then hand
    them back as :class:`~wulf.server.events.JobsExited`."""

    node: str
    exits: tuple[JobExit, ...]


@dataclass(frozen=True, slots=True)
class JobEnded:
    """``job`` has reached a final state (once per job): its waiters may go on."""

    job: Job


@dataclass(frozen=True, slots=True)
class Mail:
    """Tell ``to`` about ``job``: that it has ended, to the owner of its queue (``kind`` "queue", in a
    digest with others ending close together); or, as the job's owner asked (wulf.server.jobmail), that
    it began ("begin"), ended ("end") or went back in line ("requeue"), in a mail of its own."""

    to: str
    job: Job
    kind: str = "queue"


@dataclass(frozen=True, slots=True)
class Requeue:
    """These jobs failed and are to run again; their node has been sent the acknowledgement of that exit
    by now (an agent never starts a job whose exit it still keeps): hand them back as
    :class:`~wulf.server.events.Requeued`, and they go back in line."""

    jobs: tuple[Job, ...]


@dataclass(frozen=True, slots=True)
class Wake:
    """Run a scheduling pass soon (many before it runs make one)."""


@dataclass(frozen=True, slots=True)
class WakeAt:
    """Run a scheduling pass at ``at`` (a queue's window opens or closes then), instead of the time asked
    before; None: no such time."""

    at: float | None


@dataclass(frozen=True, slots=True)
class Log:
    """A line for the server's log (``level`` as in :mod:`logging`)."""

    level: int
    text: str


Instruction = (Commit | CommitSoon | Send | StartJobs | RecordExits | JobEnded | Mail | Wake | WakeAt | Log
               | Requeue)
