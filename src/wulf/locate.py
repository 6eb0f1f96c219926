"""Where the server is, found cheaply, so the command-line tools start fast.

:func:`server_url` gives the same answer as ``wulf.config.server_url()`` (which delegates to it),
without :mod:`wulf.config` and what it imports (``dataclasses``, ``pathlib``: over 15 ms):
with ``$WULF_SERVER`` set or no config file, it needs ``os`` only; with a file, ``tomllib``, and
:mod:`wulf.config` only when the file has anything this module does not know, so that
:mod:`wulf.config` says what is wrong with it (or accepts a key added there and not here).
"""

from __future__ import annotations

import os

SYSTEM_CONFIG = "/etc/wulf/wulf.toml"

#: Every key of the config file and the type of its value, as in :mod:`wulf.config` (a unit test
#: checks that they agree; a key missing here only sends a file that has it the slow way).
KEYS: dict[str, dict[str, type]] = {
    "server": {"listen": str, "state_dir": str, "socket": str, "synchronous": str, "history": int,
               "start_grace": float, "node_lost_after": float, "allow": list, "admin_group": str,
               "rate_limit": float, "rate_burst": int, "audit_log": str, "max_body_mb": float,
               "request_timeout": float, "max_connections": int, "trusted_proxies": list, "jobs_per_page": int,
               "keep_days": float, "private_accounting": bool, "failover_seconds": float},
    "agent": {"interval": float, "scratch": str, "state_dir": str, "runtime_dir": str,
              "external_min_cpu": float, "external_min_mem_mb": float, "session_listen": str,
              "reconnect_max": float, "kill_grace": float, "cgroups": str,
              "purge_scratch_hours": float},
    "scheduler": {"default_cpu": float, "default_mem_mb": float, "settle_seconds": float, "shrink_samples": int,
                  "shrink_below": float, "nice_penalty": int, "job_nice": int, "history_jobs": int,
                  "history_min_seconds": float, "rank": str, "policy_plugin": str, "use_observed": bool,
                  "default_retries": int, "checkpoint_exit_code": int},
    "windows": {"timezone": str, "nights": str, "weekends": list},
    "limits": {"groups": dict, "users": dict, "default": float, "time_default": str, "time_max": str,
               "cputime_default": str, "cputime_max": str, "mem_limit_default_mb": float,
               "mem_limit_max_mb": float, "job_max_mb": float, "max_queued_per_user": int},
    "shares": {"users": dict, "groups": dict},
    "mail": {"smtp": str, "from": str, "allowed_domains": list, "digest_seconds": float, "domain": str},
    "nodes": {"features": dict, "owners": dict},
    "migrate": {"busy_cpu": float, "busy_seconds": float, "away_seconds": float, "grace_seconds": float},
    "client": {"server": str, "servers": list},
    "auth": {"key_file": str, "ttl": float, "agent_socket": str},
    "tls": {"ca": str, "cert": str, "key": str},
    "log": {"format": str, "file": str, "max_mb": float, "keep": int, "level": str},
    "compat": {"flavour": str},
    "metrics": {"public": bool},
    "web": {"pam_service": str},
    "store": {"url": str},
}


def _normpath(path: str) -> str:
    """``str(pathlib.PurePosixPath(path))``: no empty or '.' parts, no trailing '/'."""
    if path.startswith("//") and not path.startswith("///"):
        root = "//"
    elif path.startswith("/"):
        root = "/"
    else:
        root = ""
    parts = [p for p in path.split("/") if p and p != "."]
    return root + "/".join(parts) if root or parts else "."


def default_state_dir() -> str:
    """Where ``wulf up`` keeps its database, socket and logs (per user), as a string."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return _normpath(os.path.join(base, "wulf"))


def config_file() -> str | None:
    """The configuration file in effect: ``$WULF_CONFIG``, else the system one if it exists."""
    env = os.environ.get("WULF_CONFIG")
    if env:
        return env
    return SYSTEM_CONFIG if os.path.exists(SYSTEM_CONFIG) else None


def _plain_items(key: str, value: dict[str, object] | list[object]) -> bool:
    """The members of a table or list value are what wulf.config accepts: names in `weekends` and
    `allow`, URLs in `servers`, lists of names in `features`, numbers >= 0 elsewhere."""
    for v in value.values() if isinstance(value, dict) else value:
        if key == "features":
            ok = isinstance(v, list) and all(isinstance(x, str) for x in v)
        elif key in ("weekends", "allow", "servers"):
            ok = isinstance(v, str)
        else:
            ok = type(v) in (int, float) and v >= 0  # type: ignore[operator]
        if not ok:
            return False
    return True


def _plain_file(path: str) -> dict[str, dict[str, object]] | None:
    """The tables of a file that is plainly valid; None when :mod:`wulf.config` must judge it."""
    import tomllib

    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (OSError, ValueError):  # not there, not UTF-8, not TOML: wulf.config says so
        return None
    for name, table in data.items():
        keys = KEYS.get(name)
        if keys is None or not isinstance(table, dict):
            return None
        for key, value in table.items():
            want = keys.get(key)
            if want is None or not (type(value) is want or want is float and type(value) is int):
                return None
            if isinstance(value, (dict, list)) and not _plain_items(key, value):
                return None
    return data


def _url_from_file(path: str) -> str | None:
    """The server's URL by a file that is plainly valid; None when :mod:`wulf.config` must judge it."""
    data = _plain_file(path)
    if data is None:
        return None
    client, server = data.get("client", {}), data.get("server", {})
    if server.get("socket"):
        local = f"unix:{_normpath(str(server['socket']))}"
    else:
        state = _normpath(str(server["state_dir"])) if server.get("state_dir") else default_state_dir()
        local = f"unix:{_normpath(os.path.join(state, 'wulf.sock'))}"
    servers = client.get("servers")
    if isinstance(servers, list) and servers:  # a leader and standbys: the client follows the one that answers
        return ",".join(str(x) for x in servers)
    if client.get("server"):
        # on the server's own machine (its configured socket is there), its socket: no TCP, no TLS
        mine = server.get("socket") or server.get("state_dir")
        return local if mine and os.path.exists(local[5:]) else str(client["server"])
    return local


def server_url() -> str:
    """How clients find the server: $WULF_SERVER, else the config, else the local `wulf up` socket."""
    env = os.environ.get("WULF_SERVER")
    if env:
        return env
    path = config_file()
    if path is None:
        return f"unix:{_normpath(os.path.join(default_state_dir(), 'wulf.sock'))}"
    url = _url_from_file(path)
    if url is not None:
        return url
    from wulf.config import load_config
    from wulf.config import server_url as from_config

    return from_config(load_config())


DEFAULT_AGENT_SOCKET = "/run/wulf/agent.sock"


def tcp_settings() -> tuple[str, str]:
    """What a command needs to talk to the server over TCP: the local agent's socket (to vouch for
    the caller: ``$WULF_AGENT_SOCKET``, else ``[auth] agent_socket``) and the cluster's CA
    certificate (``[tls] ca``; "" for the system's)."""
    path = config_file()
    agent, ca = DEFAULT_AGENT_SOCKET, ""
    if path is not None:
        data = _plain_file(path)
        if data is None:
            from wulf.config import load_config

            cfg = load_config()
            agent, ca = cfg.auth.agent_socket, cfg.tls.ca
        else:
            agent = str(data.get("auth", {}).get("agent_socket", agent))
            ca = str(data.get("tls", {}).get("ca", ""))
    return os.environ.get("WULF_AGENT_SOCKET", agent), ca
