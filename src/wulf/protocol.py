"""The messages between server, agents and clients, defined once and shared by both ends.

Agents and the server speak JSON over one WebSocket per node; each message is one of the models
below, told apart by its ``type``. Clients use the HTTP API, whose bodies are the ``*Request`` and
``*Reply`` models. ``PROTOCOL_VERSION`` changes whenever a message changes incompatibly.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    TypeAdapter,
    model_serializer,
)

from wulf.model.array import MAX_TASKS
from wulf.model.job import MAX_RETRIES
from wulf.model.tasks import MAX_JOB_TASKS

PROTOCOL_VERSION = 5
"""2: wulf 0.1.0. 3: wulf 0.2.0 (a start names the job's dialect, array and attempt; an agent of 0.1.0
could not read it). 4: wulf 0.3.0 (a running job's new time limit, ``Limit``, from jmod). 5: reports as
deltas (``Report.seq``/``base``/``full``/``gone``, and ``Resync``): a server of 4 would drop every report
of an agent of 5 (it forbids fields it does not know)."""

JobId = Annotated[int, Field(ge=1, le=2**63 - 1)]
"""A job id as a client may name one (the store's integers are 64 bits)."""
JobRef = JobId | Annotated[str, Field(pattern=r"^[0-9]{1,19}(\[[0-9]{1,10}\])?$")]
"""A job as a client may name one: its id, or ``"ID[i]"``, task i of array ID (see wulf.model.array)."""

# ---------------------------------------------------------------- what a client may send
# Everything a client sends reaches the store and, through an agent running as root, a process.
# It is checked here, where it arrives (HTTP 400, kind "usage"): text is UTF-8 without NUL bytes,
# numbers are finite and within bounds, lists and strings are bounded. Sizes a site may want to
# change (scripts, environments, queued jobs) are checked by the daemon against [limits].

MAX_IDS = 10_000
"""Most job ids one request may name (the client splits longer lists)."""
MAX_SUBMIT_JOBS = 10_000
"""Most jobs one submission may carry (the client splits larger ones)."""
MAX_COMMAND_BYTES = 128 * 1024 - 1
"""The longest command line: the kernel's limit on one argument (MAX_ARG_STRLEN), as `sh -c` gets it."""
MAX_PATH = 4096
MAX_CPUS = 100_000.0
MAX_MB = 1e9  # a petabyte
MAX_SECONDS = 1e9  # thirty years


def _text(value: Any) -> Any:
    """UTF-8 text without NUL: what may reach a process, a file name or the store (checked before
    the length, whose own check would call a lone surrogate just "not a valid string")."""
    if not isinstance(value, str):
        return value  # not text: the type's own check says so
    if "\x00" in value:
        raise ValueError("contains a NUL byte")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: bytes that were not UTF-8 where the client read them
            raise ValueError("is not valid UTF-8 text (it has undecodable bytes)") from None
    return value


def _command(value: str) -> str:
    if len(value) > MAX_COMMAND_BYTES // 4 and len(value.encode("utf-8", "surrogatepass")) > MAX_COMMAND_BYTES:
        raise ValueError("is longer than the 128 KiB the system allows for one command line: "
                         "put it in a script (qr -s FILE)")
    return value


def _env_name(name: str) -> str:
    """Any name a process environment can hold (not empty, no '='): ``BASH_FUNC_module%%`` too."""
    if not name or "=" in name:
        raise ValueError(f"{name[:40]!r} is not an environment variable name (empty, or has '=')")
    return name


Text = Annotated[str, BeforeValidator(_text)]
ShortText = Annotated[str, Field(max_length=256), BeforeValidator(_text)]
PathText = Annotated[str, Field(max_length=MAX_PATH), BeforeValidator(_text)]
CommandText = Annotated[str, BeforeValidator(_text), AfterValidator(_command)]
EnvName = Annotated[str, Field(max_length=MAX_PATH), BeforeValidator(_text), AfterValidator(_env_name)]
Env = dict[EnvName, Text]
Cpus = Annotated[float, Field(gt=0, le=MAX_CPUS)]
Megabytes = Annotated[float, Field(gt=0, le=MAX_MB)]
Seconds = Annotated[float, Field(gt=0, le=MAX_SECONDS)]
Dialect = Literal["", "slurm", "pbs", "sge"]

#: the start of the reason of an exit the agent caused because the job went over one of its own limits
#: (time, cpu time, memory): such a job is not retried, it would go over again
LIMIT_REASON = "exceeded its "


class Msg(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Request(Msg):
    """What a client sends: as a message, and no NaN or infinity anywhere."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


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


class JobSpec(Request):
    """One job as a client submits it (its script's size is checked against [limits] script_max_mb)."""

    command: CommandText = ""  # run with /bin/sh -c
    script: Text | None = None  # or a script staged as a file and run by its #! line (or /bin/sh)
    name: ShortText = ""
    queue: ShortText = "default"
    cwd: PathText
    cpu: Cpus | None = None  # None: the configured default
    mem_mb: Megabytes | None = None
    output: PathText = ""  # "" means <cwd>/wulf-<id>.out; %j is replaced by the job id
    keep_script: bool = False
    constraint: Annotated[str, Field(max_length=1024), BeforeValidator(_text)] = ""  # e.g. "arch=x86_64,bigmem"
    time_limit: Seconds | None = None  # seconds of wall time; None: the site default
    cputime_limit: Seconds | None = None  # seconds of cpu time; None: the site default
    mem_limit_mb: Megabytes | None = None  # hard memory limit; None: the site default
    nice: int | None = Field(default=None, ge=-20, le=19)  # None: scheduler.job_nice
    dialect: Dialect = ""  # the system its script was written for: its jobs see that system's variables
    array: Annotated[str, Field(max_length=1024), BeforeValidator(_text)] = ""  # "1-100%5": one job a task
    # dependencies and retries (issue 11 §3, §4)
    depend: Annotated[str, Field(max_length=16384), BeforeValidator(_text)] = ""  # "afterok:12:13,afterany:14"
    retries: int | None = Field(default=None, ge=0, le=MAX_RETRIES)  # None: [scheduler] default_retries
    mail_type: ShortText = ""  # when to mail about the job: BEGIN,END,FAIL,REQUEUE,ALL,NONE,ARRAY_TASKS
    mail_user: ShortText = ""  # where ("": the submitting user at [mail] domain)
    hold: bool = False  # queued held (sbatch -H, qsub -h, qr --hold): it waits for a release (qrls)
    # warning signals and checkpoints (issue 13 §2, see wulf.model.checkpoint)
    warn_signal: ShortText = ""  # "USR1@60": SIGUSR1 a minute before its time limit (needs one)
    checkpoint: ShortText = ""  # "USR1@1800": checkpoint every half hour and before a stop wulf chooses
    # multi-node and multi-task jobs (issue 13 §1): cpu and mem_mb are then each task's (see wulf.model.tasks)
    ntasks: int | None = Field(default=None, ge=1, le=MAX_JOB_TASKS)  # None: one, or --nodes × --ntasks-per-node
    nodes: int | None = Field(default=None, ge=1, le=MAX_JOB_TASKS)  # on exactly this many nodes
    tasks_per_node: int | None = Field(default=None, ge=1, le=MAX_JOB_TASKS)
    requeue: bool = False  # it may be stopped and started over elsewhere (issue 13 §3: a workstation's owner)


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
    dialect: str = ""  # "slurm", "pbs", "sge": the job's environment gets that system's variables
    # a task of a job array: its array's id, its index, and the array's count and first and last index
    array_id: int | None = None
    array_index: int | None = None
    array_count: int | None = None
    array_min: int | None = None
    array_max: int | None = None
    array_step: int | None = None  # the step between indices when it is one range (0-30:3: 3), else 1
    restarts: int = 0  # how many times it ran before (WULF_RESTART_COUNT)
    # warning signals and checkpoints (issue 13 §2): SIGNAL, its time before the time limit (--signal);
    # the checkpoint signal, its interval (--checkpoint); the checkpoint exit code; and whether its output
    # is appended to (a run after a checkpoint continues the earlier runs' file)
    warn_signal: int | None = Field(default=None, ge=1, le=64)
    warn_before: Seconds | None = None
    checkpoint_signal: int | None = Field(default=None, ge=1, le=64)
    checkpoint_every: Seconds | None = None
    checkpoint_exit: int | None = Field(default=None, ge=1, le=255)
    append_output: bool = False

    # a job of several tasks (issue 13 §1): its slots, "first:2,n2:2" (this node first), and its tasks in all
    alloc: Annotated[str, Field(max_length=1 << 20)] = ""
    ntasks: int = Field(default=1, ge=1, le=MAX_JOB_TASKS)
    launch_key: str = ""  # what proves `wulf launch` runs inside the job (WULF_LAUNCH_KEY; see server.launch)

    @model_serializer(mode="wrap")
    def _without_array(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """A job that is no task is sent without the array fields, as before arrays, one without warning
        signals or checkpoints without theirs, and a job of one task without the fields of jobs of
        several: an agent of the same protocol version that predates them (it forbids fields it does not
        know) still takes it."""
        data: dict[str, Any] = handler(self)
        if self.array_id is None:
            for name in _ARRAY_FIELDS:
                data.pop(name, None)
        for name, default in _CHECKPOINT_FIELDS.items():
            if data.get(name, default) == default:
                data.pop(name, None)
        if not self.alloc:
            data.pop("alloc", None)
            data.pop("ntasks", None)
            data.pop("launch_key", None)
        return data


_ARRAY_FIELDS = ("array_id", "array_index", "array_count", "array_min", "array_max", "array_step")
_CHECKPOINT_FIELDS: dict[str, Any] = {"warn_signal": None, "warn_before": None, "checkpoint_signal": None,
                                      "checkpoint_every": None, "checkpoint_exit": None, "append_output": False}


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
    """A node's sample, its jobs' use, and its outside work (see wulf.model.deltas).

    The sample and the jobs are whole in every report. The outside work is whole in a ``full`` report;
    else the report is a delta on report ``base`` of the same connection: ``clusters`` are the clusters
    that are new or changed since, ``gone`` the keys of those that ended. A delta whose base is not the
    last report the server took in is not applied: the server asks for a full one (``Resync``)."""

    type: Literal["report"] = "report"
    sample: NodeSample
    jobs: list[JobUse] = []
    clusters: list[Cluster] = []
    seq: int = Field(default=0, ge=0)  # this report's number on its connection
    base: int = Field(default=0, ge=0)  # a delta: the report it is relative to
    full: bool = True
    gone: list[str] = []  # a delta: keys of clusters that ended since ``base``


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
    task: int | None = None  # a task of `wulf launch` (see Session.task)


class Ran(Msg):
    """What a command of ``wulf runall`` did on this node (see RunCommand)."""

    type: Literal["ran"] = "ran"
    id: int
    exit_code: int | None = None  # None: it did not end by itself (timed out and killed, or did not start)
    output: str = ""  # its stdout and stderr, at most RUNALL_OUTPUT_BYTES (the end is kept)
    error: str = ""  # why there is no exit code


class Output(Msg):
    """The answer to :class:`ReadOutput`: bytes of a job's output file, read as the job's owner."""

    type: Literal["output"] = "output"
    req: int
    data: str = ""  # base64 of the bytes read
    offset: int = 0  # where in the file they start
    size: int = 0  # the file's size when read
    error: str = ""  # why nothing could be read (for the user)
    missing: bool = False  # the file is not there (a job not yet started, or removed)


AgentMessage = Annotated[Hello | Report | Started | Exited | SessionReady | Ran | Output,
                         Field(discriminator="type")]
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


class Limit(Msg):
    """A running job's wall-time limit is now ``time_limit`` seconds from its start (jmod --time): the
    agent checks it against that from now on, and stops the job once it is over it."""

    type: Literal["limit"] = "limit"
    id: int
    time_limit: float = Field(gt=0, le=MAX_SECONDS)


class Session(Msg):
    """Prepare an interactive job: it starts when jr connects with the token."""

    type: Literal["session"] = "session"
    job: StartJob
    token: str
    pty: bool
    #: a task of ``wulf launch`` in job ``job.id`` (issue 13 §1), not an interactive job: it runs in the
    #: job's cgroup here, and its exit goes only to ``wulf launch``. The number is its session's (the server's
    #: serial, unique among the job's tasks); the task's own id is in its environment (WULF_TASK_ID)
    task: int | None = None

    @model_serializer(mode="wrap")
    def _without_task(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """An interactive job's session is sent as before tasks (an agent that predates them takes it)."""
        data: dict[str, Any] = handler(self)
        if self.task is None:
            data.pop("task", None)
        return data


class Ack(Msg):
    """The server has durably recorded these exits; the agent may forget them."""

    type: Literal["ack"] = "ack"
    ids: list[int]


class Quit(Msg):
    type: Literal["quit"] = "quit"


class Resync(Msg):
    """The server could not apply a delta (a report was lost, or came out of turn): the agent's next
    report is a full one."""

    type: Literal["resync"] = "resync"


RUNALL_OUTPUT_BYTES = 256 * 1024
"""The most output of one node's command ``wulf runall`` shows (its end: what a failure says last)."""


class RunCommand(Msg):
    """``wulf runall``: run ``command`` as root with ``sh -c`` on this node (an administrator asked;
    the server has audited it), for at most ``timeout`` seconds; answer with Ran."""

    type: Literal["run"] = "run"
    id: int
    command: str
    timeout: float


MAX_OUTPUT_CHUNK: Final = 1024 * 1024
"""Most bytes of a job's output one read returns (jtail, GET /api/v1/jobs/{id}/output)."""


class ReadOutput(Msg):
    """Read up to ``limit`` bytes of a job's output file from ``offset`` (from the end when negative), as
    the job's owner (``uid``, ``gid``): answered with :class:`Output`."""

    type: Literal["read_output"] = "read_output"
    req: int
    job: int
    uid: int
    gid: int | None = None
    path: str
    offset: int
    limit: int = Field(ge=0, le=MAX_OUTPUT_CHUNK)


ServerMessage = Annotated[
    Welcome | Start | Signal | Renice | Limit | Session | Ack | Quit | RunCommand | ReadOutput | Resync,
    Field(discriminator="type")
]
server_message = TypeAdapter(ServerMessage)


# ---------------------------------------------------------------- client <-> server (HTTP)


class SubmitRequest(Request):
    """Jobs to queue. Whose they are is not said here: the server knows who asks (see wulf.auth)."""

    jobs: list[JobSpec] = Field(min_length=1, max_length=MAX_SUBMIT_JOBS)
    env: Env = {}  # its size is checked against [limits] env_max_kb
    umask: int | None = Field(default=None, ge=0, le=0o777)  # the jobs' umask; None: 022
    # idempotency: the same caller's submission with the same key (within a day) answers the first's ids
    key: str = Field(default="", max_length=128, pattern=r"^[A-Za-z0-9._:-]*$")


class SubmitReply(Msg):
    jobs: list[int]


class IdsRequest(Request):
    ids: list[JobRef] = Field(min_length=1, max_length=MAX_IDS)


class SignalRequest(IdsRequest):
    signal: int = 15


class NiceRequest(IdsRequest):
    nice: int = Field(ge=-20, le=19)


class ModifyRequest(IdsRequest):
    """jmod: change jobs that wait (or, of those that run, their niceness and time limit) and arrays'
    throttles; fields left None stay as they are. ``depend`` "" drops the jobs' dependencies."""

    cpu: Cpus | None = None
    mem_mb: Megabytes | None = None
    time_limit: Seconds | None = None
    queue: ShortText | None = None
    name: ShortText | None = None
    nice: int | None = Field(default=None, ge=-20, le=19)
    throttle: int | None = Field(default=None, ge=0, le=MAX_TASKS)  # 0: no throttle
    depend: Annotated[str, Field(max_length=16384), BeforeValidator(_text)] | None = None


class QueueRequest(Request):
    """qset: change a queue's settings (fields left None stay as they are)."""

    queue: ShortText  # "QUEUE" (the caller's own) or "USER:QUEUE"
    priority: int | None = Field(default=None, ge=-1_000_000, le=1_000_000)
    stopped: bool | None = None
    window: ShortText | None = None  # always, nights, weekends
    mail: ShortText | None = None  # "" for no mail


class WaitRequest(Request):
    ids: list[JobRef] = Field(default=[], max_length=MAX_IDS)
    queues: list[ShortText] = Field(default=[], max_length=100)  # "QUEUE" (the caller's) or "USER:QUEUE"
    timeout: float = Field(default=1.0, ge=0.0, le=60.0)


class InteractiveRequest(Request):
    job: JobSpec
    env: Env = {}
    umask: int | None = Field(default=None, ge=0, le=0o777)
    pty: bool = False


class LaunchRequest(Request):
    """``wulf launch`` from inside job ``job``: ``command`` as ``ntasks`` tasks (None: one a slot) across
    its allocation, with ``env`` and in ``cwd``; ``secret`` is the job's WULF_LAUNCH_KEY."""

    job: int = Field(ge=1)
    secret: Annotated[str, Field(max_length=256)]
    ntasks: int | None = Field(default=None, ge=1, le=MAX_JOB_TASKS)
    command: CommandText = Field(min_length=1)
    cwd: PathText
    env: Env = {}
    #: only on these of its nodes, one task each (wulf-rsh)
    nodes: Annotated[list[Annotated[str, Field(max_length=MAX_PATH)]], Field(max_length=MAX_JOB_TASKS)] | None = None


class LaunchedTask(Msg):
    task: int
    node: str
    host: str
    port: int
    token: str


class LaunchReply(Msg):
    tasks: list[LaunchedTask]


class InteractiveReply(Msg):
    id: int
    node: str
    host: str
    port: int
    token: str


class PlaceReply(Msg):
    node: str
    host: str


class RunAllRequest(Request):
    """``wulf runall``: a command to run as root on nodes (all of them when neither is given)."""

    command: CommandText = Field(min_length=1)
    nodes: list[ShortText] = Field(default=[], max_length=MAX_IDS)
    features: ShortText = ""  # only nodes with these features (a constraint: "gpu,bigmem")
    timeout: Seconds = 60.0
    parallel: int = Field(default=32, ge=1, le=10_000)


class TokenRequest(Request):
    """wulf token create: a new API token for the caller."""

    name: Annotated[str, Field(max_length=64), BeforeValidator(_text)] = ""
    days: float | None = Field(default=None, gt=0, le=3650)  # None: until revoked
    read_only: bool = False  # the token may look (GET, and wait for jobs), not change anything


class TokenReply(Msg):
    id: int
    token: str  # shown this once; the server keeps only its hash
    user: str
    name: str
    expires: float | None
    read_only: bool = False
