"""The server's network edge: what a connection may cost before anyone knows who is at the other end.

Every connection, on TCP and on the Unix socket, is served by :class:`EdgeHttp` (uvicorn's httptools
protocol, with the peer credentials of :mod:`wulf.server.peer`), and the agents' WebSocket by
:class:`EdgeWebSocket`. Without these limits one client without credentials could hold every file
descriptor of the server with idle connections, or make it read a gigabyte:

- at most ``[server] max_connections`` open connections per address on TCP, and per user on the
  Unix socket (as the kernel names them; root's are not counted). One more is answered 429 and closed;
- a request's headers must arrive within ``[server] request_timeout`` seconds (counted from the
  connection for its first request) and be at most 64 KB; its body must keep coming, at 64 KB a second
  past that time, else the connection is dropped (408 if nothing was answered). Between requests,
  uvicorn's keep-alive timeout closes an idle connection;
- a WebSocket's first message (an agent's hello) may be 512 KB; nothing more is read from it until
  the app has taken that hello as good (it calls ``scope["state"][TRUST]``); a WebSocket the app
  closes before that is closed at once, without waiting for the other end's part of the closing
  handshake.

The size limits of bodies are the guard's (:mod:`wulf.server.guard`), which knows who asks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn._types import ASGIReceiveEvent, ASGISendEvent
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame, Opcode
from websockets.server import ServerProtocol

from wulf.server.peer import PeerHttpProtocol, peer_of

log = logging.getLogger("wulf.server")

MAX_HEAD = 64 * 1024
"""Largest request line and headers."""
BODY_RATE = 64 * 1024
"""Bytes a second a body must keep coming at, past ``request_timeout``."""
HELLO_MAX = 512 * 1024
"""Largest first message on a WebSocket (an agent's hello: its node and the jobs it runs, ~60 bytes each)."""
TRUST = "wulf.trust"
"""Where a WebSocket's scope state holds the call that lifts the limits of its first message."""
QUIET = 60.0
"""Seconds between two log lines about the connections of one client."""


@dataclass
class Limits:
    """What a connection may cost ([server] max_connections and request_timeout; a reload changes them)."""

    max_connections: int = 256
    request_timeout: float = 10.0


class Gate:
    """Who holds how many connections: one count per TCP address or Unix-socket user."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._count: Counter[Hashable] = Counter()
        self._held: dict[object, Hashable] = {}  # transport -> whose it is
        self._quiet_until: dict[Hashable, float] = {}

    def admit(self, transport: object, key: Hashable | None) -> bool:
        """Whether one more connection of ``key`` (None: root's, not counted) may stay open."""
        if key is None:
            return True
        if self._count[key] >= self.limits.max_connections:
            return False
        self._count[key] += 1
        self._held[transport] = key
        return True

    def release(self, transport: object) -> None:
        key = self._held.pop(transport, None)
        if key is not None:
            self._count[key] -= 1
            if self._count[key] <= 0:
                del self._count[key]

    def note(self, key: Hashable | None, what: str) -> None:
        """Log ``what`` happened to a connection of ``key``, once a minute per client at most."""
        now = time.monotonic()
        if self._quiet_until.get(key, 0.0) > now:
            return
        if len(self._quiet_until) > 10000:
            self._quiet_until = {k: t for k, t in self._quiet_until.items() if t > now}
        self._quiet_until[key] = now + QUIET
        log.warning("%s: %s (more like it in the next minute are not logged)", describe(key), what)


def client_key(transport: Any) -> Hashable | None:
    """Whose connection this is: ("uid", n) on the Unix socket (None for root), ("addr", ip) on TCP."""
    peer = peer_of(transport)
    if peer is not None:
        return None if peer[1] == 0 else ("uid", peer[1])
    name = transport.get_extra_info("peername")
    return ("addr", str(name[0]) if isinstance(name, tuple) and name else "?")


def describe(key: Hashable | None) -> str:
    if isinstance(key, tuple) and len(key) == 2:
        return f"uid {key[1]} on the Unix socket" if key[0] == "uid" else f"{key[1]}"
    return "root on the Unix socket"


def http_error(status: int, kind: str, message: str, **extra: Any) -> bytes:
    """A whole HTTP response in the API's error shape, that closes the connection."""
    body = json.dumps({"error": {"kind": kind, "message": message, **extra}}).encode()
    retry = f"retry-after: {extra['retry_after']}\r\n" if "retry_after" in extra else ""
    return (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n{retry}\r\n").encode() + body


_REASONS = {408: "Request Timeout", 429: "Too Many Requests", 431: "Request Header Fields Too Large"}


class EdgeHttp(PeerHttpProtocol):
    """uvicorn's HTTP protocol with the limits above (``gate`` is set by :func:`protocols`)."""

    gate: ClassVar[Gate]

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._timer: asyncio.TimerHandle | None = None
        self._phase = ""  # "head", "body", or "" between requests
        self._began = 0.0
        self._got = 0  # bytes of the phase so far
        self._key = client_key(transport)
        limits = self.gate.limits
        if not self.gate.admit(transport, self._key):
            self.gate.note(self._key, f"refused connections beyond {limits.max_connections} ([server] max_connections)")
            self._drop(http_error(429, "slow_down", f"too many connections from {describe(self._key)} (at most "
                                  f"{limits.max_connections}: [server] max_connections); try again later",
                                  retry_after=1))
            return
        self._start("head")

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop()
        self.gate.release(self.transport)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._phase == "head" and not self.transport.is_closing():
            self._got += len(data)  # all of it went into headers that are not complete yet
            if self._got > MAX_HEAD:
                self.gate.note(self._key, f"dropped a request with headers over {MAX_HEAD // 1024} KB")
                self._drop(http_error(431, "usage", f"the request's headers are larger than {MAX_HEAD // 1024} KB"))

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._timer is None:  # the first request's time runs from the connection
            self._start("head")

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if not self.transport.is_closing():
            self._start("body")

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._got += len(body)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._stop()

    def handle_websocket_upgrade(self) -> None:
        self._stop()  # the WebSocket's own limits take over (see EdgeWebSocket)
        super().handle_websocket_upgrade()

    def _start(self, phase: str) -> None:
        self._stop()
        self._phase, self._began, self._got = phase, self.loop.time(), 0
        self._timer = self.loop.call_later(self.gate.limits.request_timeout, self._check)

    def _stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._phase = ""

    def _check(self) -> None:
        """Time is up for the part of the request being read: drop it unless its body still comes."""
        self._timer = None
        if self.transport.is_closing():
            return
        timeout = self.gate.limits.request_timeout
        if self._phase == "body":
            if self.flow.read_paused:  # the app does not take the body yet: this time does not count
                self._began += timeout
                self._timer = self.loop.call_later(timeout, self._check)
                return
            allowed = timeout + self._got / BODY_RATE
            late = self.loop.time() - self._began
            if late < allowed:
                self._timer = self.loop.call_later(allowed - late, self._check)
                return
            self.gate.note(self._key, f"dropped a request whose body did not keep coming ([server] request_timeout "
                                      f"{timeout:g}s)")
            self._phase = ""
            self.transport.close()
            return
        self.gate.note(self._key, f"dropped a connection whose request did not arrive within {timeout:g}s "
                                  "([server] request_timeout)")
        self._drop(http_error(408, "usage", f"the request did not arrive within {timeout:g}s"))

    def _drop(self, response: bytes) -> None:
        self._stop()
        self.transport.write(response)
        self.transport.close()


class _HelloFirst(ServerProtocol):
    """websockets' server side, with a smaller limit for the first message than for later ones."""

    def __init__(self, *args: Any, first_max: int, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._later = self.max_message_size
        self.max_message_size = first_max

    def recv_frame(self, frame: Frame) -> None:
        super().recv_frame(frame)
        if frame.fin and frame.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
            self.max_message_size = self._later  # nothing more is read until the app trusts the first


class EdgeWebSocket(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol: a small first message, and no more reading until the app trusts it."""

    gate: ClassVar[Gate]

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.conn = _HelloFirst(extensions=self.conn.available_extensions, max_size=self.config.ws_max_size,
                                logger=self.conn.logger, first_max=HELLO_MAX)
        self.trusted = False

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["state"][TRUST] = self.trust

    def trust(self) -> None:
        """The first message was good: read on, with the larger limit."""
        self.trusted = True
        if self.read_paused and self.queue.empty():
            self.read_paused = False
            self.transport.resume_reading()

    async def receive(self) -> ASGIReceiveEvent:
        message = await self.queue.get()
        if self.trusted and self.read_paused and self.queue.empty():
            self.read_paused = False
            self.transport.resume_reading()
        return message

    async def send(self, message: ASGISendEvent) -> None:
        await super().send(message)
        if message["type"] == "websocket.close" and not self.trusted:
            self.transport.close()  # refused: not a byte more from it

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.gate.release(self.transport)


def protocols(limits: Limits) -> tuple[type[EdgeHttp], type[EdgeWebSocket]]:
    """The two protocol classes of one server process, sharing one count of connections."""
    gate = Gate(limits)
    http = type("Http", (EdgeHttp,), {"gate": gate})
    ws = type("WebSocket", (EdgeWebSocket,), {"gate": gate})
    return http, ws
