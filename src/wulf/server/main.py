"""Run the job daemon: the store, the daemon and the API on TCP and on a Unix socket.

The Unix socket and the TCP address are served by two uvicorn servers on one loop and one app: the
Unix socket names its callers by the kernel's peer credentials (:mod:`wulf.server.peer`), and TCP
speaks TLS when ``[tls] cert`` is set (and nothing else: a plain-text connection fails its
handshake). The first server handles the signals and the app's start and stop; the second follows it.
Both limit what a connection may cost (:mod:`wulf.server.edge`).

An address without a host (``:7878``, the default) means every address once TLS is set up, and
loopback only until then. A personal cluster (``wulf up``: ``owner_only``) keeps its socket to its
owner (mode 0600, and the guard turns other users away should it be opened to them).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn

from wulf.auth.key import ensure_key
from wulf.auth.tls import server_context
from wulf.config import Config, reload_config
from wulf.errors import UsageError
from wulf.server import gctune
from wulf.server.app import create_app
from wulf.server.daemon import Daemon
from wulf.server.edge import protocols
from wulf.server.security import Security
from wulf.store import is_postgres, open_store, redact
from wulf.store.base import JobStore

log = logging.getLogger("wulf.server")


def parse_listen(text: str, tls: bool = True) -> tuple[str, int]:
    """HOST and PORT of ``text``; no host means every address with ``tls``, else loopback only."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--listen: {text!r} is not HOST:PORT (example: 0.0.0.0:7878)")
    return host.strip("[]") or ("0.0.0.0" if tls else "127.0.0.1"), int(port)


def _tcp_socket(listen: str, tls: bool, any_port: bool = False) -> socket.socket:
    """A socket listening on ``listen``; with ``any_port``, on a free port of the same host if that
    port is taken (``wulf up``: the web interface)."""
    host, port = parse_listen(listen, tls)
    if not tls and not _loopback(host):
        log.warning("listening on %s:%d in plain text: anyone on the network can read and alter what is said "
                    "there (`wulf init` sets up TLS)", host, port)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        try:
            s.bind((host, port))
        except OSError:
            if not any_port:
                raise
            s.bind((host, 0))
    except OSError as e:
        s.close()
        raise UsageError(f"cannot listen on {listen}: {e.strerror} (is another wulf server running?)") from None
    s.listen(1024)
    s.set_inheritable(True)
    return s


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _unix_socket(path: Path, owner_only: bool) -> socket.socket:
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
    # every user of this machine talks to the server through it; a personal cluster's, its owner alone
    os.chmod(path, 0o600 if owner_only else 0o666)
    s.listen(1024)
    return s


class _MainServer(uvicorn.Server):
    """The Unix socket's server: it takes the signals, and passes an exit on to the TCP server."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.followers: list[uvicorn.Server] = []

    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)
        for f in self.followers:
            f.should_exit = True


class _FollowerServer(uvicorn.Server):
    """The TCP server: no signal handlers of its own (they would replace the main server's)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _uvicorn_config(app: Any, **kw: Any) -> uvicorn.Config:
    # log_config=None: uvicorn's lines go through wulf's handlers ([log]), not handlers of its own
    return uvicorn.Config(app, log_level="warning", log_config=None, access_log=False, ws_ping_interval=20, ws_ping_timeout=60,
                          ws_max_size=64 * 1024 * 1024, timeout_graceful_shutdown=2, timeout_keep_alive=5, **kw)


def web_url(tcp: socket.socket, tls: bool) -> str:
    """Where a browser reaches the server listening on ``tcp``."""
    host, port = tcp.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = socket.getfqdn()
    elif ":" in host:
        host = f"[{host}]"
    return f"{'https' if tls else 'http'}://{host}:{port}/"


async def _lead(config: Config, where: str) -> JobStore:
    """The PostgreSQL store, once this server leads (wulf.store.leader: the others stand by)."""
    from wulf.store.postgres import PgStore

    store = await asyncio.to_thread(PgStore, where, True, config.server.failover_seconds)
    log.info("this server leads (store %s)", redact(where))
    return store


def _leader(store: JobStore | None, *sockets: socket.socket | None) -> dict[str, Any] | None:
    """What jstat shows of the server that leads (None without standbys: SQLite)."""
    if store is None:
        return None
    return {"host": socket.gethostname(), "pid": os.getpid(), "since": getattr(store, "leads_since", None),
            "listen": ", ".join(str(s.getsockname()) for s in sockets if s is not None)}


async def serve(config: Config, listen: str | None = None, owner_only: bool = False, any_port: bool = False) -> None:
    state = config.state_dir()
    state.mkdir(parents=True, exist_ok=True, mode=0o755)  # every user reaches the socket in it
    # the database (every job's environment), the key and the audit log are the server's alone
    os.umask(0o077)
    for name in ("wulf.db", "wulf.db-wal", "wulf.db-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(state / name, 0o600)
    tls = server_context(config.tls.cert, config.tls.key) if config.tls.cert else None
    key, made = ensure_key(config.key_path())
    if made:
        log.info("made a new cluster key %s; every agent needs a copy (readable by root only)", key.path)
    Security.check(config)
    where = config.store.url or str(state / "wulf.db")
    # PostgreSQL: a standby waits here, serving nothing (no socket yet), until it leads
    leading = await _lead(config, where) if is_postgres(where) else None
    unix = _unix_socket(config.socket_path(), owner_only)
    listen = config.server.listen if listen is None else listen
    tcp = _tcp_socket(listen, tls is not None, any_port) if listen else None
    store = leading or open_store(where, config.server.synchronous)
    daemon = Daemon(config, store)
    daemon.leader = _leader(leading, unix, tcp)
    daemon.launch_secret = key.derive("launch")  # (jobs' launch keys outlive a restart of the server)
    daemon.load()
    security = Security(config, key, store, owner_only=owner_only)
    main: _MainServer | None = None

    def quit_now() -> None:
        if main is not None:
            for s in (main, *main.followers):
                s.should_exit = True

    app = create_app(daemon, security, on_quit=quit_now, web_url=web_url(tcp, tls is not None) if tcp else "")
    http, ws = protocols(security.limits)
    main = _MainServer(_uvicorn_config(app, lifespan="on", http=http, ws=ws, proxy_headers=False))
    follower: _FollowerServer | None = None
    if tcp is not None:
        factory = None if tls is None else _tls_factory(tls)
        proxies = config.server.trusted_proxies  # X-Forwarded-For is believed from these alone
        follower = _FollowerServer(_uvicorn_config(app, lifespan="off", http=http, ws=ws,
                                                   ssl_context_factory=factory, proxy_headers=bool(proxies),
                                                   forwarded_allow_ips=list(proxies) or None))
        main.followers.append(follower)
    loop = asyncio.get_running_loop()

    def reload() -> None:
        try:
            new = reload_config(daemon.config)
            security.check(new)
            daemon.reload(new)  # checks the policy before it changes anything
            security.reload(new)
            log.info("configuration reloaded")
        except Exception as e:
            log.error("reload failed: %s", e)

    loop.add_signal_handler(signal.SIGHUP, reload)
    names = ", ".join(str(s.getsockname()) for s in (unix, tcp) if s is not None)
    log.info("wulf server listening on %s%s; store %s", names, " (TLS)" if tls and tcp else "", redact(where))
    try:
        await _serve_both(main, follower, unix, tcp)
    finally:
        store.close()
        with contextlib.suppress(OSError):
            config.socket_path().unlink()


async def _serve_both(main: _MainServer, follower: _FollowerServer | None, unix: socket.socket,
                      tcp: socket.socket | None) -> None:
    """The server on its Unix socket, then (once the app has started) on TCP, until told to stop."""
    follower_task: asyncio.Task[None] | None = None
    tending: asyncio.Task[None] | None = None
    try:
        main_task = asyncio.create_task(main.serve(sockets=[unix]))
        while not main.started and not main_task.done():
            await asyncio.sleep(0.01)
        # (the process's collector, once the jobs are read: a policy of this process, not of the Daemon,
        # which tests also run in their own processes)
        gctune.settle()
        tending = asyncio.create_task(gctune.keep_tending(), name="wulf-gc")
        if follower is not None and tcp is not None and not main_task.done():
            follower_task = asyncio.create_task(follower.serve(sockets=[tcp]))
        await main_task
    finally:
        if tending is not None:
            tending.cancel()
        if follower is not None and follower_task is not None:
            follower.should_exit = True
            await follower_task


def _tls_factory(ctx: ssl.SSLContext) -> Any:
    def factory(config: uvicorn.Config, default: Any) -> ssl.SSLContext:
        return ctx

    return factory


def run(config: Config, listen: str | None = None, owner_only: bool = False, any_port: bool = False) -> None:
    import uvloop

    from wulf.rlimits import raise_open_files

    raise_open_files()  # a connection per node and per client
    uvloop.run(serve(config, listen, owner_only, any_port))
