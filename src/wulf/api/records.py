"""What the Python API answers: frozen dataclasses built from the server's JSON.

Each record takes the fields the server sends and leaves out those it does not know (a newer server
may send more); a field an older server does not send gets its default. Times are Unix times
(seconds), memory is in MB, cpu in cpus.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

from wulf.model.job import FINAL_STATES, JobState

R = TypeVar("R")


def build(cls: type[R], data: dict[str, Any], **more: Any) -> R:
    """A record of ``cls`` from a JSON object: its known fields, with ``more`` on top."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**({k: v for k, v in data.items() if k in names} | more))


def _state(value: Any) -> JobState:
    return JobState(value)


@dataclass(frozen=True, slots=True)
class Job:
    """One job as ``jstat --json`` shows it (GET /api/v1/jobs/ID). A task of an array is a job of its
    own: ``array_id`` is its array's id and ``array_index`` its index (``ref`` names it as ``ID[i]``)."""

    id: int
    user: str
    state: JobState
    queue: str = "default"
    name: str = ""
    command: str = ""
    origin: str = "batch"  # batch (qr), interactive (jr), external (found running outside wulf)
    node: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    reason: str = ""  # why it waits (queued), or why it ended as it did
    array_id: int | None = None
    array_index: int | None = None
    restarts: int = 0
    attempts: int = 0  # the runs it had (its own and requeued ones)
    uid: int | None = None
    pid: int | None = None
    cwd: str = ""
    output: str = ""  # its output file, on the node it ran on
    cpu: float = 0.0  # cpus allocated (they adapt to measured use)
    mem_mb: float = 0.0
    cpu_req: float = 0.0  # what was asked
    mem_req_mb: float = 0.0
    cpu_used: float = 0.0  # measured now (running jobs)
    mem_used_mb: float = 0.0
    cpu_time: float | None = None
    peak_mem_mb: float | None = None
    submitted: float = 0.0
    started: float | None = None
    ended: float | None = None
    nice: int = 0
    penalized: bool = False
    constraint: str = ""
    time_limit: float | None = None
    cputime_limit: float | None = None
    mem_limit_mb: float | None = None
    dialect: str = ""
    depend: str = ""  # what it waits for: afterok:12:13,afterany:14
    retries: int = 0
    mail_type: str = ""
    mail_user: str = ""
    warn_signal: str = ""  # qr --signal: "USR1@60"
    checkpoint: str = ""  # qr --checkpoint: "USR1@1800"
    checkpoint_exit: int = 85  # the exit code of a run that checkpointed
    checkpoints: int = 0  # of its restarts, those after a checkpoint
    # multi-node and multi-task jobs (issue 13 §1): cpu and mem_mb are then each task's
    ntasks: int = 1
    nodes: str | None = None  # the nodes it runs on, compact (node[1-3,7]); its first node first
    nodes_req: int = 0  # asked for: exactly this many nodes (0: any)
    tasks_per_node: int = 0  # asked for: this many tasks a node (0: any)
    alloc: str = ""  # its slots while it runs: "node1:2,node2:2"
    requeue: bool = False  # qr --requeue: it may be stopped and started over elsewhere
    vacated: int = 0  # of its restarts, those after its workstation's owner came back

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        return build(cls, data, state=_state(data["state"]))

    @property
    def finished(self) -> bool:
        """It has ended (done, failed or cancelled) and will not run again."""
        return self.state in FINAL_STATES

    @property
    def ok(self) -> bool:
        """It ended done: exit code 0."""
        return self.state is JobState.DONE

    @property
    def ref(self) -> str:
        """How commands name it: ``ID``, or ``ARRAY[INDEX]`` for a task of an array."""
        if self.array_id is not None and self.array_index is not None:
            return f"{self.array_id}[{self.array_index}]"
        return str(self.id)


@dataclass(frozen=True, slots=True)
class Node:
    """One node as ``jstat --json`` shows it: its state, size, what it measured last, and what is free."""

    name: str
    state: str  # up, down, drain
    hostname: str = ""
    cpus: float = 0.0
    mem_total_mb: float = 0.0
    cpu_free: float = 0.0  # capacity less the larger of allocated and used (wulf jobs and outside work)
    mem_free_mb: float = 0.0
    cpu_used: float | None = None
    load: float | None = None
    load5: float | None = None
    load15: float | None = None
    mem_available_mb: float | None = None
    swap_free_mb: float | None = None
    scratch_free_mb: float | None = None
    cpu_user: float | None = None
    cpu_system: float | None = None
    cpu_idle: float | None = None
    io_read_mbps: float | None = None
    io_write_mbps: float | None = None
    nprocs: int | None = None
    jobs: int = 0
    arch: str = ""
    os: str = ""
    kernel: str = ""
    features: tuple[str, ...] = ()
    drained: bool = False
    owner_back: bool = False  # a workstation whose owner is back: it takes no new batch jobs
    last_seen: float | None = None
    seen_ago: float | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Node:
        return build(cls, data, features=tuple(data.get("features") or ()))


@dataclass(frozen=True, slots=True)
class Queue:
    """One user's queue (``qset``): its settings, and how many of its jobs wait and run."""

    user: str
    name: str
    priority: int = 0
    stopped: bool = False
    window: str = "always"  # always, nights, weekends
    mail: str = ""
    queued: int = 0
    running: int = 0
    window_open: bool = True
    reason: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Queue:
        return build(cls, data)


@dataclass(frozen=True, slots=True)
class AccountingRecord:
    """One ended job as ``jacct --json`` shows it: what it asked, got and used."""

    id: int
    user: str
    state: JobState
    name: str = ""
    queue: str = "default"
    origin: str = "batch"
    node: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    reason: str = ""
    submitted: float = 0.0
    started: float | None = None
    ended: float | None = None
    wait: float | None = None  # seconds from submission to start
    run: float | None = None  # seconds from start to end
    cpu_req: float = 0.0
    cpu_alloc: float = 0.0
    cpu_time: float | None = None
    cpu_used: float | None = None  # cpu time over run time
    cpu_eff: float | None = None  # cpu time over what was allocated (0-1)
    mem_req_mb: float = 0.0
    peak_mem_mb: float | None = None
    mem_eff: float | None = None
    attempts: int = 0
    checkpoints: int = 0  # of its earlier runs, those that checkpointed (qr --checkpoint)
    command: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AccountingRecord:
        return build(cls, data, state=_state(data["state"]))


@dataclass(frozen=True, slots=True)
class UserSummary:
    """One user's totals over the jobs an accounting query selects (``jacct --summary``)."""

    user: str
    jobs: int
    cpu_hours: float
    mean_wait: float | None = None
    cpu_eff: float | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UserSummary:
        return build(cls, data)


@dataclass(frozen=True, slots=True)
class OutputChunk:
    """Bytes of a job's output (``jtail``): ``data`` starts at ``offset``; ask from ``next`` for more.
    ``ended``: the job has ended and everything is read."""

    data: bytes
    offset: int
    next: int
    size: int
    state: JobState
    ended: bool

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> OutputChunk:
        return build(cls, data, state=_state(data["state"]))


@dataclass(frozen=True, slots=True)
class Changed:
    """What an action on jobs did: the jobs it ``changed`` (cancelled, held, released, reniced,
    signalled) and those it left as they were (``unchanged``: already ended, not queued, not held,
    not running)."""

    changed: tuple[int, ...]
    unchanged: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Whoami:
    """Who the server takes the caller for."""

    user: str
    uid: int
    gid: int | None = None
    admin: bool = False
    via: str = ""  # how the server knows: the Unix socket, a credential an agent signed, an API token
    host: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Whoami:
        return build(cls, data)
