"""The agent's credential service: it vouches for the users of its machine, as munged does.

The agent (root, and so able to read the cluster key) listens on a Unix socket that every local user
may connect to. The kernel names the connecting process's uid and gid (``SO_PEERCRED``); the agent
signs a credential for exactly those, for the request the caller names by its digest, and for
nothing else. A command talking to the server over TCP asks here first (see
:func:`wulf.client.fetch_credential`); the server checks the signature (see
:mod:`wulf.auth.credential`).

One line each way: ``CRED <sha256 hex>\\n`` asked, ``OK <credential>\\n`` or ``ERR <why>\\n`` answered.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import socketserver
import struct
import threading
import time
from pathlib import Path

from wulf.auth import credential
from wulf.auth.key import ClusterKey

log = logging.getLogger("wulf.agent")

_PEERCRED = struct.Struct("3i")  # pid, uid, gid
_HEX = frozenset("0123456789abcdef")


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    """(pid, uid, gid) of the process at the other end of a Unix socket, as the kernel knows them."""
    pid, uid, gid = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    return pid, uid, gid


def answer(key: ClusterKey, host: str, line: bytes, uid: int, gid: int, now: float) -> bytes:
    """The answer to one request line from the process with ``uid`` and ``gid``."""
    word, _, digest = line.strip().decode("ascii", "replace").partition(" ")
    if word != "CRED" or len(digest) != 64 or not set(digest) <= _HEX:
        return b"ERR bad request: send CRED <sha256 hex of the request>\n"
    cred = credential.encode(key, credential.USER, uid, gid, host, now, digest)
    return f"OK {cred}\n".encode("ascii")


class _Handler(socketserver.StreamRequestHandler):
    timeout = 5.0
    server: VouchServer

    def handle(self) -> None:
        line = self.rfile.readline(256)
        if not line:
            return
        _, uid, gid = peer_credentials(self.connection)
        self.wfile.write(answer(self.server.key, self.server.host, line, uid, gid, time.time()))


class VouchServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """The service, in threads of its own: a busy agent loop does not hold up the commands."""

    daemon_threads = True
    allow_reuse_address = False

    def __init__(self, path: Path, key: ClusterKey, host: str) -> None:
        self.key = key
        self.host = host
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(path)
        super().__init__(str(path), _Handler)
        os.chmod(path, 0o666)  # every user of this machine may ask for their own credential
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.5},
                                        name="wulf-vouch", daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=5)
        self.server_close()
        with contextlib.suppress(OSError):
            self.path.unlink()


def _remove_stale(path: Path) -> None:
    """Remove a socket that nobody listens on any more; refuse to take over a live one."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except FileNotFoundError:
        return
    except OSError:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    finally:
        probe.close()
    raise OSError(f"another agent answers on {path} already")


def serve(path: Path, key: ClusterKey, host: str) -> VouchServer | None:
    """Start the service at ``path``; None (and a warning) when it cannot be."""
    try:
        server = VouchServer(path, key, host)
    except OSError as e:
        log.warning("cannot vouch for this machine's users on %s: %s; they can reach the server over TCP "
                    "only with a token", path, e.strerror or e)
        return None
    server.start()
    log.info("vouching for this machine's users on %s", path)
    return server
