"""Job states, origins and the one table of allowed transitions."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from wulf.errors import InvalidTransition
from wulf.model.tasks import Shape, compact, parse_alloc

if TYPE_CHECKING:
    from wulf.policy.snapshot import RunningUse


class JobState(StrEnum):
    QUEUED = "queued"
    HELD = "held"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Origin(StrEnum):
    BATCH = "batch"  # queued with qr
    INTERACTIVE = "interactive"  # started now with jr
    EXTERNAL = "external"  # found running on a node, not started by wulf


#: the most times a job may be queued again after it fails (qr --retries, [scheduler] default_retries)
MAX_RETRIES = 100

FINAL_STATES = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED})
WAITING_STATES = frozenset({JobState.QUEUED, JobState.HELD})
ACTIVE_STATES = frozenset({JobState.QUEUED, JobState.HELD, JobState.RUNNING})

TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.HELD, JobState.CANCELLED, JobState.FAILED}),
    JobState.HELD: frozenset({JobState.QUEUED, JobState.CANCELLED}),
    # running -> queued: the node never started it (lost before start) and it goes back in line
    JobState.RUNNING: frozenset(
        {JobState.DONE, JobState.FAILED, JobState.CANCELLED, JobState.QUEUED}
    ),
    JobState.DONE: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}


def check_transition(job_id: int, old: JobState, new: JobState) -> None:
    """Raise :class:`InvalidTransition` unless ``old -> new`` is in the table."""
    if new not in TRANSITIONS[old]:
        raise InvalidTransition(f"job {job_id}: {old} -> {new} is not allowed")


@dataclass(slots=True, eq=False)
class Job:
    """The server's record of one job (mutable; every change goes through the server's state)."""

    id: int
    user: str
    uid: int
    origin: Origin
    state: JobState
    command: str
    cwd: str = ""
    name: str = ""
    queue: str = "default"
    script: str | None = None
    env_hash: str = ""
    output: str = ""
    keep_script: bool = False
    cpu_req: float = 1.0  # what was asked for
    mem_req: float = 32.0
    cpu: float = 1.0  # what is allocated now
    mem_mb: float = 32.0
    node: str = ""
    pid: int | None = None
    submitted: float = 0.0
    started: float | None = None
    ended: float | None = None
    exit_code: int | None = None
    signal: int | None = None
    cpu_time: float | None = None
    peak_mem_mb: float | None = None
    reason: str = ""
    nice: int = 0
    ext_key: str = ""  # for external jobs: the agent's key of its process cluster
    constraint: str = ""  # qr --constraint: the nodes it may run on
    time_limit: float | None = None  # seconds of wall time (qr --time)
    cputime_limit: float | None = None  # seconds of cpu time (qr --cputime)
    mem_limit_mb: float | None = None  # hard memory limit (qr --mem-limit)
    gid: int | None = None  # the owner's group when they submitted it (None: their primary group)
    umask: int | None = None  # the owner's umask when they submitted it (None: 022)
    dialect: str = ""  # "slurm", "pbs", "sge": the system its script was written for (see wulf.compat)
    # job arrays (qr --array, see wulf.model.array): the array this job is a task of, and its index
    array_id: int | None = None
    array_index: int | None = None
    # dependencies and retries (issue 11 §3, §4)
    depend: str = ""  # what it waits for, as wulf.model.depend writes it: "afterok:12:13,afterany:14"
    retries: int = 0  # how many times it is queued again after it fails (qr --retries)
    restarts: int = 0  # how many times it has been queued again so far (WULF_RESTART_COUNT)
    # mail about the job itself (qr --mail-type/--mail-user; see wulf.server.jobmail)
    mail_type: str = ""  # canonical list of BEGIN,END,FAIL,REQUEUE,ARRAY_TASKS (wulf.model.mailtypes); "" none
    mail_user: str = ""  # where it goes (checked at submission); "" when mail_type is
    # warning signals and checkpoints (issue 13 §2, see wulf.model.checkpoint)
    warn_signal: str = ""  # qr --signal: "USR1@60", SIGUSR1 a minute before the time limit
    checkpoint: str = ""  # qr --checkpoint: "USR1@1800" (every half hour and before a stop), "USR1"
    checkpoint_exit: int = 85  # the exit code of a run that checkpointed ([scheduler] checkpoint_exit_code)
    checkpoints: int = 0  # how many of its restarts followed a checkpoint (not a failure)
    # multi-node and multi-task jobs (issue 13 §1, see wulf.model.tasks): with ntasks > 1, cpu_req/mem_req
    # and cpu/mem_mb are each task's (one slot's), and a running job holds ``alloc``'s slots
    ntasks: int = 1  # tasks in all (qr --ntasks, or --nodes × --ntasks-per-node)
    nodes_req: int = 0  # qr --nodes: on exactly this many nodes (0: as few or as many as fit)
    tasks_per_node: int = 0  # qr --ntasks-per-node (0: any number on a node)
    alloc: str = ""  # while it runs: its slots, "first:2,n2:2" (wulf.model.tasks.alloc_text); "" for one task
    # workstations whose owner comes back (issue 13 §3, see wulf.server.owners)
    requeue: bool = False  # qr --requeue: it may be stopped and started over elsewhere (Slurm's --requeue)
    vacated: int = 0  # how many of its restarts followed a stop because a workstation's owner came back
    # measured now, and the adaptive allocation's state (not stored)
    cpu_used: float = 0.0
    mem_used: float = 0.0
    settled: bool = False
    low_samples: int = 0
    penalized: bool = False
    # what the policy last saw of it on its node (wulf.server.nodes.Node.view), made again only when its
    # figures change: a view is made of every job on a node each time the node changes (not stored)
    seen: RunningUse | None = None

    @property
    def shape(self) -> Shape:
        """How its tasks are to be laid out (what the scheduler places)."""
        return Shape(self.ntasks, self.nodes_req, self.tasks_per_node)

    @property
    def node_names(self) -> list[str]:
        """The nodes it runs on, its first (its own) node first."""
        return [n for n, _ in parse_alloc(self.alloc)] if self.alloc else ([self.node] if self.node else [])

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    def set_state(self, new: JobState) -> None:
        check_transition(self.id, self.state, new)
        self.state = new

    def brief(self, now: float) -> dict[str, Any]:
        """What a listing of jobs (jstat's table) shows of the job: a few of :meth:`public`'s fields, so
        that a listing of a hundred thousand jobs is quick to make, send and read."""
        return {
            "id": self.id,
            "user": self.user,
            "origin": str(self.origin),
            "state": str(self.state),
            "queue": self.queue,
            "node": self.node or None,
            "exit_code": self.exit_code,
            "command": self.command,
            "cpu": self.cpu,
            "mem_mb": self.mem_mb,
            "age": round(now - (self.started or self.submitted), 3),
            "reason": self.reason,
            "array_id": self.array_id,
            "array_index": self.array_index,
            "restarts": self.restarts,
            "checkpoints": self.checkpoints,  # of the restarts, those after a checkpoint (issue 13 §2)
            "ntasks": self.ntasks,
            "nodes": compact(self.node_names) if self.alloc else (self.node or None),
            "vacated": self.vacated,  # ... those after its workstation's owner came back (issue 13 §3)
        }

    def public(self, now: float) -> dict[str, Any]:
        """The job as the API and `jstat --json` show it: what a listing shows (:meth:`brief`), and the rest."""
        return {
            **self.brief(now),
            "name": self.name,
            "uid": self.uid,
            "pid": self.pid,
            "signal": self.signal,
            "cwd": self.cwd,
            "output": self.output,
            "cpu_req": self.cpu_req,
            "mem_req_mb": self.mem_req,
            "cpu_used": round(self.cpu_used, 3),
            "mem_used_mb": round(self.mem_used, 1),
            "cpu_time": self.cpu_time,
            "peak_mem_mb": self.peak_mem_mb,
            "submitted": self.submitted,
            "started": self.started,
            "ended": self.ended,
            "nice": self.nice,
            "penalized": self.penalized,
            "constraint": self.constraint,
            "time_limit": self.time_limit,
            "cputime_limit": self.cputime_limit,
            "mem_limit_mb": self.mem_limit_mb,
            "dialect": self.dialect,
            "depend": self.depend,
            "retries": self.retries,
            "attempts": self.restarts + (self.started is not None),  # the runs it had (its own and requeued)
            "mail_type": self.mail_type,
            "mail_user": self.mail_user,
            "warn_signal": self.warn_signal,
            "checkpoint": self.checkpoint,
            "checkpoint_exit": self.checkpoint_exit,
            "nodes_req": self.nodes_req,
            "tasks_per_node": self.tasks_per_node,
            "alloc": self.alloc,
            "requeue": self.requeue,
        }
