"""The messages between server, agents and clients, defined once and shared by both ends.

Agents and the server speak JSON over one WebSocket per node; each message is one of the models
below, told apart by its ``type``. Clients use the HTTP API, whose bodies are the ``*Request`` and
``*Reply`` models. ``PROTOCOL_VERSION`` changes whenever a message changes incompatibly.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

PROTOCOL_VERSION = 2

JobId = Annotated[int, Field(ge=1, le=2**63 - 1)]
"""A job id as a client may name one (the store's integers are 64 bits)."""


class Msg(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# ---------------------------------------------------------------- shared records


class NodeInfo(Msg):
    name: str
    hostname: str
    cpus: float
    mem_mb: float
    arch: str = ""
    os: str = ""
    kernel: str = ""
    session_port: int = 0  # where jr connects for interactive jobs
    session_host: str = ""  # address to reach it; "" means the address the server sees


class NodeSample(Msg):
    """What an agent measured on its node at one moment."""

    time: float
    load1: float = 0.0
    load5: float = 0.0
    load15: float = 0.0
    cpu_user: float = 0.0  # fractions of the whole machine over the last interval
    cpu_system: float = 0.0
    cpu_idle: float = 1.0
    mem_total_mb: float = 0.0
    mem_available_mb: float = 0.0
    swap_total_mb: float = 0.0
    swap_free_mb: float = 0.0
    scratch_free_mb: float = 0.0
    io_read_mbps: float = 0.0
    io_write_mbps: float = 0.0
    nprocs: int = 0
    used_cpu: float = 0.0  # summed over the processes this agent sees (not its own)
    used_mem_mb: float = 0.0


class JobUse(Msg):
    """Measured use of one wulf job."""

    id: int
    cpu: float
    mem_mb: float
    nprocs: int = 1


class Cluster(Msg):
    """A process cluster wulf did not start: one user's processes linked by parent/child."""

    key: str  # "<pid>:<start time>" of its top process, stable while it lives
    pid: int
    uid: int
    user: str
    command: str
    cpu: float
    mem_mb: float
    nprocs: int
    started: float


class JobSpec(Msg):
    """One job as a client submits it."""

    command: str = ""  # run with /bin/sh -c
    script: str | None = None  # or a script staged as a file and run by its #! line (or /bin/sh)
    name: str = ""
    queue: str = "default"
    cwd: str
    cpu: float | None = None  # None: the configured default
    mem_mb: float | None = None
    output: str = ""  # "" means <cwd>/wulf-<id>.out; %j is replaced by the job id
    keep_script: bool = False
    constraint: str = ""  # node attributes the job needs, e.g. "arch=x86_64,bigmem"
    time_limit: float | None = None  # seconds of wall time; None: the site default
    cputime_limit: float | None = None  # seconds of cpu time; None: the site default
    mem_limit_mb: float | None = None  # hard memory limit; None: the site default
    nice: int | None = Field(default=None, ge=-20, le=19)  # None: scheduler.job_nice


class StartJob(Msg):
    """What an agent needs to start one job."""

    id: int
    name: str
    user: str
    uid: int
    gid: int | None = None  # the owner's group at submission; None: their primary group
    umask: int | None = None  # the owner's umask at submission; None: 022
    queue: str
    command: str
    script: str | None
    cwd: str
    env: dict[str, str]
    output: str
    keep_script: bool
    cpu: float
    mem_mb: float
    time_limit: float | None = None  # seconds of wall time, enforced by the agent
    cputime_limit: float | None = None  # seconds of cpu time
    mem_limit_mb: float | None = None  # MB of memory (cgroup, or RLIMIT_AS without cgroups)
    nice: int = Field(default=0, ge=-20, le=19)  # the niceness it starts at (scheduler.job_nice, jnice)


class JobStarted(Msg):
    id: int
    pid: int
    time: float


class JobExit(Msg):
    id: int
    exit_code: int | None  # None when unknown (lost)
    signal: int | None = None
    time: float
    cpu_time: float = 0.0
    peak_mem_mb: float = 0.0
    reason: str = ""  # set when the job did not run to its own end


# ---------------------------------------------------------------- agent -> server


NAME_TAKEN: Final = 4409
"""The WebSocket close code with which the server refuses an agent because another agent is connected
under its node's name: the refused agent says so and stops (it is a mistake to correct, not to wait out)."""


class Hello(Msg):
    type: Literal["hello"] = "hello"
    version: int = PROTOCOL_VERSION
    node: NodeInfo
    auth: str = ""  # a credential of kind "agent" for this node, signed with the cluster key
    running: list[JobStarted] = []
    finished: list[JobExit] = []


class Report(Msg):
    type: Literal["report"] = "report"
    sample: NodeSample
    jobs: list[JobUse] = []
    clusters: list[Cluster] = []


class Started(Msg):
    type: Literal["started"] = "started"
    jobs: list[JobStarted]


class Exited(Msg):
    type: Literal["exited"] = "exited"
    jobs: list[JobExit]


class SessionReady(Msg):
    type: Literal["session_ready"] = "session_ready"
    id: int
    error: str = ""


AgentMessage = Annotated[Hello | Report | Started | Exited | SessionReady, Field(discriminator="type")]
agent_message = TypeAdapter(AgentMessage)


# ---------------------------------------------------------------- server -> agent


class Welcome(Msg):
    type: Literal["welcome"] = "welcome"
    interval: float
    known: list[int] = []  # jobs the server believes run there


class Start(Msg):
    type: Literal["start"] = "start"
    jobs: list[StartJob]


class Signal(Msg):
    type: Literal["signal"] = "signal"
    ids: list[int]
    signal: int


class Renice(Msg):
    type: Literal["renice"] = "renice"
    id: int
    nice: int


class Session(Msg):
    """Prepare an interactive job: it starts when jr connects with the token."""

    type: Literal["session"] = "session"
    job: StartJob
    token: str
    pty: bool


class Ack(Msg):
    """The server has durably recorded these exits; the agent may forget them."""

    type: Literal["ack"] = "ack"
    ids: list[int]


class Quit(Msg):
    type: Literal["quit"] = "quit"


ServerMessage = Annotated[
    Welcome | Start | Signal | Renice | Session | Ack | Quit, Field(discriminator="type")
]
server_message = TypeAdapter(ServerMessage)


# ---------------------------------------------------------------- client <-> server (HTTP)


class SubmitRequest(Msg):
    """Jobs to queue. Whose they are is not said here: the server knows who asks (see wulf.auth)."""

    jobs: list[JobSpec] = Field(min_length=1)
    env: dict[str, str] = {}
    umask: int | None = Field(default=None, ge=0, le=0o777)  # the jobs' umask; None: 022
    # idempotency: the same caller's submission with the same key (within a day) answers the first's ids
    key: str = Field(default="", max_length=128, pattern=r"^[A-Za-z0-9._:-]*$")


class SubmitReply(Msg):
    jobs: list[int]


class IdsRequest(Msg):
    ids: list[JobId] = Field(min_length=1)


class SignalRequest(IdsRequest):
    signal: int = 15


class NiceRequest(IdsRequest):
    nice: int = Field(ge=-20, le=19)


class QueueRequest(Msg):
    """qset: change a queue's settings (fields left None stay as they are)."""

    queue: str  # "QUEUE" (the caller's own) or "USER:QUEUE"
    priority: int | None = None
    stopped: bool | None = None
    window: str | None = None  # always, nights, weekends
    mail: str | None = None  # "" for no mail


class WaitRequest(Msg):
    ids: list[JobId] = []
    queues: list[str] = []  # "QUEUE" (the caller's) or "USER:QUEUE"
    timeout: float = Field(default=1.0, ge=0.0, le=60.0)


class InteractiveRequest(Msg):
    job: JobSpec
    env: dict[str, str] = {}
    umask: int | None = Field(default=None, ge=0, le=0o777)
    pty: bool = False


class InteractiveReply(Msg):
    id: int
    node: str
    host: str
    port: int
    token: str


class PlaceReply(Msg):
    node: str
    host: str


class TokenRequest(Msg):
    """wulf token create: a new API token for the caller."""

    name: str = Field(default="", max_length=64)
    days: float | None = Field(default=None, gt=0, le=3650)  # None: until revoked
    read_only: bool = False  # the token may look (GET, and wait for jobs), not change anything


class TokenReply(Msg):
    id: int
    token: str  # shown this once; the server keeps only its hash
    user: str
    name: str
    expires: float | None
    read_only: bool = False
