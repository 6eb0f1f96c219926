"""Configuration: one TOML file, the same on every node, every key with a default.

The file is ``$WULF_CONFIG`` if set, else ``/etc/wulf/wulf.toml`` if it exists; with neither, the
defaults below apply, so ``wulf up`` works with no file at all. It uses the standard library only.
The command-line tools find the server with :mod:`wulf.locate`, which imports this module only when
there is a file to read.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from wulf import locate
from wulf.errors import ConfigError

SYSTEM_CONFIG = Path(locate.SYSTEM_CONFIG)
DEFAULT_PORT = 7878


def default_state_dir() -> Path:
    """Where ``wulf up`` keeps its database, socket and logs (per user)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "wulf"


@dataclass(frozen=True)
class ServerConfig:
    listen: str = f"0.0.0.0:{DEFAULT_PORT}"  # TCP address of `wulf server`; "" for none
    state_dir: str = ""  # database, socket, logs; "" means default_state_dir()
    socket: str = ""  # Unix socket path; "" means <state_dir>/wulf.sock
    synchronous: str = "full"  # SQLite durability: "full" (survives power loss) or "normal"
    history: int = 20000  # finished jobs kept in memory for jstat -a / qwait
    start_grace: float = 0.0  # seconds to wait after a restart for agents before placing jobs


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


@dataclass(frozen=True)
class SchedulerConfig:
    default_cpu: float = 1.0
    default_mem_mb: float = 32.0


@dataclass(frozen=True)
class ClientConfig:
    server: str = ""  # URL of the server; "" means the local default of `wulf up`


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    client: ClientConfig = field(default_factory=ClientConfig)
    path: str = ""  # the file this was read from, "" for defaults

    def state_dir(self) -> Path:
        return Path(self.server.state_dir) if self.server.state_dir else default_state_dir()

    def socket_path(self) -> Path:
        return Path(self.server.socket) if self.server.socket else self.state_dir() / "wulf.sock"


_SECTIONS = {"server": ServerConfig, "agent": AgentConfig, "scheduler": SchedulerConfig, "client": ClientConfig}


def _section(name: str, cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: [{name}] must be a table")
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        f = known.get(key)
        if f is None:
            raise ConfigError(f"{where}: unknown key {name}.{key} (known: {', '.join(sorted(known))})")
        default = getattr(cls(), key)
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not type(default):
            raise ConfigError(
                f"{where}: {name}.{key} must be {type(default).__name__}, not {type(value).__name__}"
            )
        values[key] = value
    return cls(**values)


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
    if cfg.client.server:
        return cfg.client.server
    return f"unix:{cfg.socket_path()}"
