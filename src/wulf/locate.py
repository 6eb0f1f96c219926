"""Where the server is, found with ``os`` only, so the command-line tools start fast.

:func:`server_url` reads the configuration file (and so imports :mod:`wulf.config`, with ``tomllib``
and ``dataclasses``) only when there is one; with ``$WULF_SERVER`` set, or no file, it needs nothing
else. It gives the same answer as ``wulf.config.server_url()``, which delegates to it.
"""

from __future__ import annotations

import os

SYSTEM_CONFIG = "/etc/wulf/wulf.toml"


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
    return _normpath(base + "/wulf")


def config_file() -> str | None:
    """The configuration file in effect: ``$WULF_CONFIG``, else the system one if it exists."""
    env = os.environ.get("WULF_CONFIG")
    if env:
        return env
    return SYSTEM_CONFIG if os.path.exists(SYSTEM_CONFIG) else None


def server_url() -> str:
    """How clients find the server: $WULF_SERVER, else the config, else the local `wulf up` socket."""
    env = os.environ.get("WULF_SERVER")
    if env:
        return env
    if config_file() is not None:
        from wulf.config import load_config
        from wulf.config import server_url as from_config

        return from_config(load_config())
    return f"unix:{default_state_dir()}/wulf.sock"
