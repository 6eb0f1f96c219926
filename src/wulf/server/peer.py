"""Who is at the other end of the server's Unix socket, as the kernel says (``SO_PEERCRED``).

The server's Unix socket is served by this small extension of uvicorn's HTTP protocol: when a
connection is made it asks the kernel for the connecting process's pid, uid and gid, and every request
(and WebSocket) of that connection carries them in its ASGI scope, ``scope["state"][PEER]``, where
:class:`wulf.server.guard.Guard` reads them. Nothing a client sends can put them there.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

PEER = "wulf.peer"
_PEERCRED = struct.Struct("3i")


def peer_of(transport: asyncio.BaseTransport) -> tuple[int, int, int] | None:
    """(pid, uid, gid) of the process that connected, for a Unix socket; else None."""
    sock: Any = transport.get_extra_info("socket")
    if sock is None or sock.family != socket.AF_UNIX:
        return None
    try:
        pid, uid, gid = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    except OSError:
        return None
    return pid, uid, gid


class PeerHttpProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        peer = peer_of(transport)
        # a copy for this connection: every request's scope["state"] is a copy of it
        self.app_state = {k: v for k, v in self.app_state.items() if k != PEER}
        if peer is not None:
            self.app_state[PEER] = peer
