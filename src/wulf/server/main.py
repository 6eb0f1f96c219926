"""Run the job daemon: the store, the daemon and the API on TCP and on a Unix socket."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from pathlib import Path

import uvicorn

from wulf.config import Config, load_config
from wulf.errors import UsageError
from wulf.server.app import create_app
from wulf.server.daemon import Daemon
from wulf.store.sqlite import SqliteStore

log = logging.getLogger("wulf.server")


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--listen: {text!r} is not HOST:PORT (example: 0.0.0.0:7878)")
    return host.strip("[]") or "0.0.0.0", int(port)


def _tcp_socket(listen: str) -> socket.socket:
    host, port = parse_listen(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((host, port))
    except OSError as e:
        s.close()
        raise UsageError(f"cannot listen on {listen}: {e.strerror} (is another wulf server running?)") from None
    s.listen(1024)
    s.set_inheritable(True)
    return s


def _unix_socket(path: Path) -> socket.socket:
    path.parent.mkdir(parents=True, exist_ok=True)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a stale socket of a server that is gone
    else:
        s.close()
        raise UsageError(f"a wulf server is already listening on {path}")
    finally:
        probe.close()
    s.bind(str(path))
    os.chmod(path, 0o666)  # every user of this machine talks to the server through it
    s.listen(1024)
    return s


async def serve(config: Config, listen: str | None = None) -> None:
    state = config.state_dir()
    state.mkdir(parents=True, exist_ok=True)
    sockets = [_unix_socket(config.socket_path())]
    listen = config.server.listen if listen is None else listen
    if listen:
        sockets.append(_tcp_socket(listen))
    store = SqliteStore(state / "wulf.db", config.server.synchronous)
    daemon = Daemon(config, store)
    daemon.load()
    server: uvicorn.Server | None = None

    def quit_now() -> None:
        if server is not None:
            server.should_exit = True

    app = create_app(daemon, on_quit=quit_now)
    uconfig = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", ws="websockets-sansio",
                             http="httptools", ws_ping_interval=20, ws_ping_timeout=60,
                             ws_max_size=64 * 1024 * 1024, timeout_graceful_shutdown=2)
    server = uvicorn.Server(uconfig)
    loop = asyncio.get_running_loop()

    def reload() -> None:
        try:
            daemon.reload(load_config(config.path or None))
            log.info("configuration reloaded")
        except Exception as e:
            log.error("reload failed: %s", e)

    loop.add_signal_handler(signal.SIGHUP, reload)
    names = ", ".join(str(s.getsockname()) for s in sockets)
    log.info("wulf server listening on %s; store %s", names, store.path)
    try:
        await server.serve(sockets=sockets)
    finally:
        store.close()
        with contextlib.suppress(OSError):
            config.socket_path().unlink()


def run(config: Config, listen: str | None = None) -> None:
    import uvloop

    uvloop.run(serve(config, listen))
