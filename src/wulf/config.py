"""Configuration: one TOML file, the same on every node, every key with a default.

The file is ``$WULF_CONFIG`` if set, else ``/etc/wulf/wulf.toml`` if it exists; with neither, the
defaults below apply, so ``wulf up`` works with no file at all. It uses the standard library only.
The command-line tools find the server with :mod:`wulf.locate`, which imports this module only when
there is a file to read.
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from wulf import locate
from wulf.errors import ConfigError
from wulf.model.job import MAX_RETRIES

SYSTEM_CONFIG = Path(locate.SYSTEM_CONFIG)
DEFAULT_PORT = 7878


def default_state_dir() -> Path:
    """Where ``wulf up`` keeps its database, socket and logs (per user)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "wulf"


def _strs(*items: str) -> list[str]:
    return list(items)


@dataclass(frozen=True)
class ServerConfig:
    # TCP address of `wulf server`; "" for none. Without a host (":7878"): every address when TLS is set up
    # ([tls] cert), else loopback only (127.0.0.1): no plain text to the network unless asked for by name
    listen: str = f":{DEFAULT_PORT}"
    state_dir: str = ""  # database, socket, logs; "" means default_state_dir()
    socket: str = ""  # Unix socket path; "" means <state_dir>/wulf.sock
    synchronous: str = "full"  # SQLite durability: "full" (survives power loss) or "normal"
    history: int = 20000  # finished jobs kept in memory for jstat -a / qwait
    start_grace: float = 0.0  # seconds to wait after a restart for agents before placing jobs
    node_lost_after: float = 300.0  # seconds a node may be down before its running jobs end failed (lost); 0: never
    allow: list[str] = field(default_factory=lambda: _strs("0.0.0.0/0", "::/0"), metadata={"item": str})
    admin_group: str = "wulfadm"  # its members (and root) may act on every job and run jobmgr
    rate_limit: float = 20.0  # requests per second each user may make (root: no limit); 0 for none
    rate_burst: int = 100  # ... and how many at once after a pause
    audit_log: str = ""  # administrative actions, one JSON line each; "" means <state_dir>/audit.jsonl
    max_body_mb: float = 64.0  # largest request body of a known caller (a caller not yet known: 64 KB)
    request_timeout: float = 10.0  # seconds a request's headers (and an agent's hello) may take to arrive
    max_connections: int = 256  # open connections per address (TCP) and per user (Unix socket; root: no limit)
    trusted_proxies: list[str] = field(default_factory=list, metadata={"item": str})  # X-Forwarded-For from these
    jobs_per_page: int = 5000  # most jobs one status reply lists (jstat asks for the next page)
    # accounting (issue 11 §7)
    keep_days: float = 365.0  # ended jobs stay in the database (jacct, jeff) this many days; 0: for ever
    private_accounting: bool = False  # true: only administrators see others' jobs in jacct/jeff (as Slurm's PrivateData)
    # a standby server (issue 16 §3): with a PostgreSQL store, one server leads and the others wait; a standby
    # takes over within this many seconds of the leader's end (kill -9, or cut off from the database)
    failover_seconds: float = 10.0

    def __post_init__(self) -> None:
        for name in ("max_body_mb", "request_timeout", "max_connections"):
            value = getattr(self, name)
            if not value > 0 or value == float("inf"):
                raise ConfigError(f"server.{name} must be a number > 0, not {value!r}")
        if self.jobs_per_page < 1:
            raise ConfigError(f"server.jobs_per_page must be at least 1, not {self.jobs_per_page}")
        if not 2 <= self.failover_seconds <= 3600:
            raise ConfigError(f"server.failover_seconds must be a number of seconds in 2..3600, not {self.failover_seconds!r}")
        if not 0 <= self.keep_days < float("inf"):
            raise ConfigError(f"server.keep_days must be a number of days >= 0 (0: for ever), not {self.keep_days!r}")


CGROUPS_MODES = ("auto", "off")
"""[agent] cgroups: use cgroups where the machine offers them (a job runs in one), or never."""


@dataclass(frozen=True)
class AgentConfig:
    interval: float = 5.0  # seconds between reports
    scratch: str = "/tmp"  # staged scripts and exit-status files
    state_dir: str = ""  # "" means <default_state_dir>/agent-<node>
    runtime_dir: str = ""  # job journal and exit files; "" means a directory in tmpfs (/dev/shm)
    external_min_cpu: float = 0.05  # a process cluster using this many cpus counts as a job
    external_min_mem_mb: float = 64.0  # ... or this much resident memory
    session_listen: str = "0.0.0.0:0"  # where jr connects to an agent (port 0: any free port)
    reconnect_max: float = 30.0  # longest pause between reconnection attempts
    kill_grace: float = 10.0  # seconds between TERM and KILL for a job stopped at a limit or killed
    cgroups: str = "auto"  # "auto": a cgroup per job where the machine offers them; "off": never
    purge_scratch_hours: float = 0.0  # remove what jobs left in scratch unused this long (wulf purge-scratch); 0: off

    def __post_init__(self) -> None:
        if self.kill_grace < 0:
            raise ConfigError(f"agent.kill_grace must be a number of seconds >= 0, not {self.kill_grace!r}")
        if self.purge_scratch_hours < 0:
            raise ConfigError(f"agent.purge_scratch_hours must be a number of hours >= 0 (0: off), not "
                              f"{self.purge_scratch_hours:g}")
        if self.cgroups not in CGROUPS_MODES:
            modes = " or ".join(f'"{m}"' for m in CGROUPS_MODES)
            raise ConfigError(f'agent.cgroups must be {modes}, not "{self.cgroups}"')


@dataclass(frozen=True)
class SchedulerConfig:
    default_cpu: float = 1.0
    default_mem_mb: float = 32.0
    settle_seconds: float = 300.0  # adaptive allocation: requested -> measured after this
    shrink_samples: int = 6  # reports in a row a job uses far less than it holds before it gives room back
    shrink_below: float = 0.5  # "far less": under this fraction of its allocation
    nice_penalty: int = 10  # renice of a job that outgrows its allocation on a full node
    job_nice: int = 0  # the niceness batch jobs start at (people's own work on a node comes first)
    history_jobs: int = 5  # a job starts with what the last this many of its kind used, if less (0: off)
    history_min_seconds: float = 60.0  # a job that ended done after this long teaches its kind
    rank: str = "cpu_free * 1e9 + mem_free_mb"  # placement expression over node metrics; larger is better
    policy_plugin: str = ""  # "package.module:object", a Python policy
    use_observed: bool = True  # count what nodes are seen to use (false: allocations only, never adapted)
    default_retries: int = 0  # how many times a failed job is queued again unless it asks (qr --retries)
    checkpoint_exit_code: int = 85  # a --checkpoint job's run that exits so saved its state: it is queued again

    def __post_init__(self) -> None:
        if not 0 <= self.default_retries <= MAX_RETRIES:
            raise ConfigError(f"scheduler.default_retries must be a whole number from 0 to {MAX_RETRIES}, not "
                              f"{self.default_retries}")
        if isinstance(self.checkpoint_exit_code, bool) or not 1 <= self.checkpoint_exit_code <= 255:
            raise ConfigError("scheduler.checkpoint_exit_code must be an exit code from 1 to 255, not "
                              f"{self.checkpoint_exit_code}")


@dataclass(frozen=True)
class WindowsConfig:
    timezone: str = "UTC"
    nights: str = "19:00-07:00"  # a nights queue runs in this span every day, and all weekend
    weekends: list[str] = field(default_factory=lambda: _strs("Sat", "Sun"), metadata={"item": str})


JOB_MAX_MB_CAP = 32.0
"""The most [limits] job_max_mb may be: half of the largest message an agent takes."""


@dataclass(frozen=True)
class LimitsConfig:
    groups: dict[str, float] = field(default_factory=dict, metadata={"item": float})
    users: dict[str, float] = field(default_factory=dict, metadata={"item": float})
    default: float = 0.0  # most cpus any user may occupy at once; 0 for no limit
    time_default: str = ""  # run-time limit of a job that names none (HH:MM:SS); "" for none
    time_max: str = ""  # the longest a job may ask for
    cputime_default: str = ""
    cputime_max: str = ""
    mem_limit_default_mb: float = 0.0  # 0 for none
    mem_limit_max_mb: float = 0.0
    job_max_mb: float = 8.0  # largest job: its script, command, environment and paths, as sent to a node
    max_queued_per_user: int = 50000  # jobs one user may have waiting (queued or held); 0 for no limit

    def __post_init__(self) -> None:
        if not 0 < self.job_max_mb <= JOB_MAX_MB_CAP:
            raise ConfigError(f"limits.job_max_mb must be more than 0 and at most {JOB_MAX_MB_CAP:g} (an agent "
                              f"takes messages of up to 64 MiB), not {self.job_max_mb:g}")
        if self.max_queued_per_user < 0:
            raise ConfigError(f"limits.max_queued_per_user must be 0 (no limit) or more, not "
                              f"{self.max_queued_per_user}")


@dataclass(frozen=True)
class SharesConfig:
    users: dict[str, float] = field(default_factory=dict, metadata={"item": float})
    groups: dict[str, float] = field(default_factory=dict, metadata={"item": float})


@dataclass(frozen=True)
class MailConfig:
    smtp: str = "localhost:25"
    sender: str = field(default="wulf@localhost", metadata={"key": "from"})
    # mail only to these domains and their subdomains (and to bare local user names); [] for any
    allowed_domains: list[str] = field(default_factory=list, metadata={"item": str})
    digest_seconds: float = 10.0  # jobs of one recipient ending within this long make one mail
    # qr --mail-type without --mail-user mails the submitting user at this domain ("": their bare user name,
    # which the SMTP server delivers on its own host)
    domain: str = ""

    def __post_init__(self) -> None:
        if self.digest_seconds < 0:
            raise ConfigError(f"mail.digest_seconds must be a number of seconds >= 0, not {self.digest_seconds:g}")
        for d in self.allowed_domains:
            if not d.strip(". ") or any(ch.isspace() or ch == "@" for ch in d):
                raise ConfigError(f"mail.allowed_domains: {d!r} is not a domain (e.g. \"example.org\")")
        if self.domain and (not self.domain.strip(". ") or any(ch.isspace() or ch == "@" for ch in self.domain)):
            raise ConfigError(f"mail.domain: {self.domain!r} is not a domain (e.g. \"example.org\")")


@dataclass(frozen=True)
class NodesConfig:
    features: dict[str, list[str]] = field(default_factory=dict, metadata={"item": list})
    # node -> user: the node is that user's workstation (issue 13 §3: wulf's jobs leave when they are
    # back, see [migrate]); such a node also has the feature "workstation" (qr --constraint)
    owners: dict[str, str] = field(default_factory=dict, metadata={"item": str})

    def __post_init__(self) -> None:
        for node, user in self.owners.items():
            if not user.strip() or any(ch.isspace() or ch == "\0" for ch in user):
                raise ConfigError(f"nodes.owners: {node} must name a user (ws7 = \"alice\"), not {user!r}")


@dataclass(frozen=True)
class MigrateConfig:
    """What wulf does when a workstation's owner comes back (see wulf.policy.migrate)."""

    busy_cpu: float = 0.5  # the owner is back when work wulf did not start uses this many cpus ...
    busy_seconds: float = 30.0  # ... for this long
    away_seconds: float = 900.0  # ... and gone once below it this long (as HTCondor's 15 minutes of idle keyboard)
    grace_seconds: float = 120.0  # owner's work starved this long after: jobs are suspended or queued again

    def __post_init__(self) -> None:
        if not 0 < self.busy_cpu <= 100000:
            raise ConfigError(f"migrate.busy_cpu must be a number of cpus more than 0, not {self.busy_cpu:g}")
        for key in ("busy_seconds", "away_seconds", "grace_seconds"):
            value = getattr(self, key)
            if not 0 <= value <= 86400 * 365:
                raise ConfigError(f"migrate.{key} must be a number of seconds from 0 to a year, not {value:g}")


@dataclass(frozen=True)
class StoreConfig:
    # where the server keeps its jobs: "" for the embedded SQLite file <state_dir>/wulf.db, or a PostgreSQL
    # URL ("postgresql://wulf@db.example.org/wulf"; a password belongs in the server's ~/.pgpass, not here)
    url: str = ""

    def __post_init__(self) -> None:
        if self.url and not self.url.startswith(("postgresql://", "postgres://")):
            raise ConfigError(f"store.url must be \"\" (SQLite) or a postgresql:// URL, not {self.url!r}")


@dataclass(frozen=True)
class ClientConfig:
    server: str = ""  # URL of the server; "" means the local default of `wulf up`
    # every server's URL when one leads and others stand by (a PostgreSQL store); the commands and agents
    # follow the one that answers. Given, it is used instead of `server`
    servers: list[str] = field(default_factory=list, metadata={"item": str})


@dataclass(frozen=True)
class AuthConfig:
    key_file: str = ""  # the cluster key; "" means <state_dir>/cluster.key
    ttl: float = 60.0  # seconds a credential is good for (the cluster's clocks must agree this well)
    agent_socket: str = "/run/wulf/agent.sock"  # where an agent vouches for its machine's users; "" for none


@dataclass(frozen=True)
class TlsConfig:
    ca: str = ""  # the cluster's CA certificate: agents and commands check the server with it
    cert: str = ""  # the server's certificate; with it (and key), the server speaks only TLS on TCP
    key: str = ""  # the server's private key


LOG_FORMATS = ("text", "json")
"""[log] format: one line of text, or one JSON object a line (time, level, logger, message)."""


@dataclass(frozen=True)
class LogConfig:
    format: str = "text"  # "text", or "json": one object a line
    file: str = ""  # "" for stderr (journald); else a file ("{daemon}" becomes server or agent), rotated by size
    max_mb: float = 50.0  # a log file is rotated when it reaches this size
    keep: int = 5  # log files kept, the current one included (never more: the oldest is removed)
    level: str = "info"  # "debug", "info", "warning" or "error" (-v: debug)

    def __post_init__(self) -> None:
        if self.format not in LOG_FORMATS:
            raise ConfigError(f'log.format must be "text" or "json", not "{self.format}"')
        if not 0 < self.max_mb < 1e6:
            raise ConfigError(f"log.max_mb must be a number of megabytes > 0, not {self.max_mb:g}")
        if not 1 <= self.keep <= 1000:
            raise ConfigError(f"log.keep must be a number of files from 1 to 1000, not {self.keep}")
        if self.level not in ("debug", "info", "warning", "error"):
            raise ConfigError(f'log.level must be "debug", "info", "warning" or "error", not "{self.level}"')


@dataclass(frozen=True)
class MetricsConfig:
    public: bool = False  # GET /metrics without a credential or token (for a Prometheus on a trusted network)


@dataclass(frozen=True)
class WebConfig:
    pam_service: str = ""  # sign in to the web interface with the Unix password, checked by this PAM service; "": not


@dataclass(frozen=True)
class CompatConfig:
    flavour: str = "pbs"  # what qsub, qstat and qdel are (see `wulf compat`): "pbs" (Torque, PBS Pro) or "sge"

    def __post_init__(self) -> None:
        if self.flavour not in ("pbs", "sge"):
            raise ConfigError(f'compat.flavour must be "pbs" or "sge", not "{self.flavour}"')


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    windows: WindowsConfig = field(default_factory=WindowsConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    shares: SharesConfig = field(default_factory=SharesConfig)
    mail: MailConfig = field(default_factory=MailConfig)
    nodes: NodesConfig = field(default_factory=NodesConfig)
    migrate: MigrateConfig = field(default_factory=MigrateConfig)
    client: ClientConfig = field(default_factory=ClientConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    tls: TlsConfig = field(default_factory=TlsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    compat: CompatConfig = field(default_factory=CompatConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    web: WebConfig = field(default_factory=WebConfig)
    path: str = ""  # the file this was read from, "" for defaults

    def state_dir(self) -> Path:
        return Path(self.server.state_dir) if self.server.state_dir else default_state_dir()

    def socket_path(self) -> Path:
        return Path(self.server.socket) if self.server.socket else self.state_dir() / "wulf.sock"

    def key_path(self) -> Path:
        return Path(self.auth.key_file) if self.auth.key_file else self.state_dir() / "cluster.key"

    def audit_path(self) -> Path:
        return Path(self.server.audit_log) if self.server.audit_log else self.state_dir() / "audit.jsonl"


_SECTIONS: dict[str, type] = {
    "server": ServerConfig, "agent": AgentConfig, "scheduler": SchedulerConfig, "windows": WindowsConfig,
    "limits": LimitsConfig, "shares": SharesConfig, "mail": MailConfig, "nodes": NodesConfig,
    "migrate": MigrateConfig, "client": ClientConfig, "auth": AuthConfig, "tls": TlsConfig, "log": LogConfig,
    "compat": CompatConfig, "metrics": MetricsConfig, "web": WebConfig, "store": StoreConfig,
}


def _number(value: Any) -> Any:
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _member_ok(v: Any, item: type) -> bool:
    if item is list:
        return isinstance(v, list) and all(isinstance(x, str) for x in v)
    if item is float:
        return type(v) is float and math.isfinite(v) and v >= 0
    return type(v) is item


def _items(what: str, value: Any, item: type) -> Any:
    """Check the members of a list or table value; numbers become floats where floats are wanted."""
    members: Any = value.items() if isinstance(value, dict) else enumerate(value)
    out: dict[Any, Any] = {}
    for k, v in members:
        v = _number(v) if item is float else v
        if not _member_ok(v, item):
            want = {float: "a number >= 0", str: "a string", list: "a list of strings"}[item]
            raise ConfigError(f"{what}: {k!s} must be {want}, not {v!r}")
        out[k] = v
    return out if isinstance(value, dict) else list(out.values())


def _section(name: str, cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: [{name}] must be a table")
    known = {f.metadata.get("key", f.name): f for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        f = known.get(key)
        if f is None:
            raise ConfigError(f"{where}: unknown key {name}.{key} (known: {', '.join(sorted(known))})")
        default = getattr(cls(), f.name)
        if isinstance(default, float):
            value = _number(value)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{where}: {name}.{key} must be a finite number, not {value}")
        if type(value) is not type(default):
            raise ConfigError(
                f"{where}: {name}.{key} must be {type(default).__name__}, not {type(value).__name__}"
            )
        if "item" in f.metadata:
            value = _items(f"{where}: {name}.{key}", value, f.metadata["item"])
        values[f.name] = value
    try:
        return cls(**values)
    except ConfigError as e:  # a value the section itself checks (see AgentConfig)
        raise ConfigError(f"{where}: {e.message}") from None


def parse_config(text: str, where: str = "<config>") -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{where}: not valid TOML: {e}") from None
    sections: dict[str, Any] = {}
    for name, value in data.items():
        cls = _SECTIONS.get(name)
        if cls is None:
            raise ConfigError(f"{where}: unknown section [{name}] (known: {', '.join(sorted(_SECTIONS))})")
        sections[name] = _section(name, cls, value, where)
    return replace(Config(**sections), path=where)


def config_path() -> Path | None:
    env = os.environ.get("WULF_CONFIG")
    if env:
        return Path(env)
    return SYSTEM_CONFIG if SYSTEM_CONFIG.exists() else None


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    p = Path(path) if path else config_path()
    if p is None:
        return Config()
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read config file {p}: {e.strerror}") from None
    return parse_config(text, str(p))


def reload_config(old: Config) -> Config:
    """The configuration file of ``old`` read again, keeping what a running server cannot change: its
    state directory, socket and address (which may have come from its command line)."""
    new = load_config(old.path or None)
    s = old.server
    return replace(new, server=replace(new.server, state_dir=s.state_dir, socket=s.socket, listen=s.listen))


def server_url(config: Config | None = None) -> str:
    """How clients find the server: $WULF_SERVER, else the config, else the local `wulf up` socket.

    Without ``config``, this is :func:`wulf.locate.server_url`, which reads the config file only if
    there is one.
    """
    if config is None:
        return locate.server_url()
    env = os.environ.get("WULF_SERVER")
    if env:
        return env
    cfg = config
    if cfg.client.servers:
        return ",".join(cfg.client.servers)
    if cfg.client.server:
        # on the server's own machine (its configured socket is there), its socket: no TCP, no TLS
        mine = cfg.server.socket or cfg.server.state_dir
        return f"unix:{cfg.socket_path()}" if mine and cfg.socket_path().exists() else cfg.client.server
    return f"unix:{cfg.socket_path()}"
