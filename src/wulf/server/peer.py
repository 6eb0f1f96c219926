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
import sys
from pathlib import Path
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


# ---------------------------------------------------------------- loopback TCP

_TCP_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))


def loopback_uid(client: tuple[str, int], server: tuple[str, int]) -> int | None:
    """The uid owning the socket that connected from ``client`` to ``server`` over loopback TCP, as the
    kernel's socket tables say (the client's end: its local address is ``client``); None if not found.

    A personal cluster (``wulf up``) listens on loopback TCP for its web page, where every user of the
    machine reaches it, and browsers send a host's cookies to all its ports: this is how it serves only
    its owner there, whatever credentials another user came by."""
    want = (_address(client), _address(server))
    for table in _TCP_TABLES:
        try:
            lines = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 7 and (_parse(f[1]), _parse(f[2])) == want:
                return int(f[7])
    return None


def _address(addr: tuple[str, int]) -> tuple[bytes, int]:
    host, port = addr[0], addr[1]
    try:
        packed = socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return b"", -1
    if len(packed) == 16 and packed[:12] == b"\0" * 10 + b"\xff\xff":  # an IPv4 address in an IPv6 socket
        packed = packed[12:]
    return packed, port


def _parse(field: str) -> tuple[bytes, int]:
    """``0100007F:1F90`` (the table's address: 32-bit words in the host's byte order, the port in hex)."""
    host, _, port = field.partition(":")
    try:
        raw = bytes.fromhex(host)
        words = b"".join(raw[i:i + 4][::-1] if sys.byteorder == "little" else raw[i:i + 4]
                         for i in range(0, len(raw), 4))
        if len(words) == 16 and words[:12] == b"\0" * 10 + b"\xff\xff":
            words = words[12:]
        return words, int(port, 16)
    except ValueError:
        return b"", -2
