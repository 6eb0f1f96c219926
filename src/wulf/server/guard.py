"""The gate every request passes: from where (the allow-list), who (the identity), how often (fair use).

An ASGI middleware in front of the API. Connections over TCP from an address outside ``[server]
allow`` are turned away. Every HTTP request but a few public ones (health, the OpenAPI document,
the login page) must say who sends it (see :mod:`wulf.server.security`); the route finds the caller
in ``request.state.caller``. A caller who has used up their budget (``[server] rate_limit`` and
``rate_burst``) is answered 429 with ``Retry-After``; root is not limited. WebSockets (the agents)
pass the allow-list here and authenticate with their first message.
"""

from __future__ import annotations

import html
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any
from urllib.parse import parse_qs

from wulf.auth import credential
from wulf.auth.identity import Caller
from wulf.errors import Unauthenticated, WulfError
from wulf.server.peer import PEER
from wulf.server.security import NO_IDENTITY, Security

log = logging.getLogger("wulf.server")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CALLER = "caller"  # where the route finds who asks: request.state.caller
CREDENTIAL_HEADER = b"x-wulf-credential"
COOKIE = "wulf_token"
PUBLIC = frozenset({"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/login",
                    "/logout"})
#: what a read-only API token may ask besides GET and HEAD: to wait for jobs (it changes nothing)
READ_ONLY_POSTS = frozenset({"/api/v1/wait"})
MAX_BODY = 64 * 1024 * 1024
"""Largest request body read to check a credential (the same bound as agents' messages)."""


async def _respond(send: Send, status: int, body: bytes, content_type: bytes,
                   headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


async def refuse(send: Send, status: int, kind: str, message: str,
                 headers: Sequence[tuple[bytes, bytes]] = (), **extra: Any) -> None:
    body = json.dumps({"error": {"kind": kind, "message": message, **extra}}).encode()
    await _respond(send, status, body, b"application/json", headers)


LOGIN_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>wulf: sign in</title></head>
<body style="font-family: sans-serif; margin: 3em">
<h1>wulf</h1><p>{why}</p>
<form method="post" action="/login"><label>API token <input name="token" type="password" size="50"
autocomplete="off"></label> <button>Sign in</button></form>
<p>Make a token on a machine of the cluster with <code>wulf token create</code>.</p></body></html>"""


def login_page(why: str, status: int = 200) -> tuple[int, bytes]:
    return status, LOGIN_PAGE.format(why=html.escape(why)).encode()


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", ()):
        if k == name:
            return bytes(v).decode("latin-1")
    return None


def _cookie(scope: Scope, name: str) -> str | None:
    raw = _header(scope, b"cookie")
    if not raw:
        return None
    for part in raw.split(";"):
        k, _, v = part.strip().partition("=")
        if k == name:
            return v
    return None


def _target(scope: Scope) -> str:
    raw = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string") or b""
    return (bytes(raw) + (b"?" + bytes(query) if query else b"")).decode("latin-1")


class _BodyTooLarge(Exception):
    pass


async def _read_body(receive: Receive) -> tuple[bytes, Receive] | None:
    """The whole body, and a receive that hands it to the app again; None if the client left."""
    chunks: list[bytes] = []
    size = 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return None
        chunk = msg.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise _BodyTooLarge
        chunks.append(chunk)
        if not msg.get("more_body", False):
            break
    body = b"".join(chunks)
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


class Guard:
    def __init__(self, app: ASGIApp, security: Security) -> None:
        self.app = app
        self.security = security
        self._quiet_until: dict[str, float] = {}  # who -> until when "slow down" is not logged again

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        peer = state.get(PEER)
        if peer is None:
            host = (scope.get("client") or ("",))[0] or ""
            if not self.security.allow.allows(host):
                log.warning("refused a connection from %s: not in [server] allow", host or "an unknown address")
                if kind == "websocket":
                    await send({"type": "websocket.close", "code": 1008, "reason": "address not allowed"})
                else:
                    await refuse(send, 403, "forbidden", f"connections from {host or 'your address'} are not "
                                 "allowed ([server] allow)")
                return
        if kind == "websocket" or scope["path"] in PUBLIC:
            await self.app(scope, receive, send)
            return
        try:
            found = await self._identify(scope, receive, peer)
        except _BodyTooLarge:
            await refuse(send, 413, "usage", f"the request is larger than {MAX_BODY // 2**20} MB")
            return
        except Unauthenticated as e:
            log.warning("refused %s %s from %s: %s", scope["method"], scope["path"], _where(scope, peer), e.message)
            if scope["path"] == "/" and scope["method"] in ("GET", "HEAD"):
                status, body = login_page(e.message, 401)
                await _respond(send, status, body, b"text/html; charset=utf-8")
            else:
                await refuse(send, 401, "unauthenticated", e.message, [(b"www-authenticate", b'Bearer realm="wulf"')])
            return
        if found is None:
            return  # the client went away
        caller, receive = found
        if await self._admit(scope, send, caller):
            state[CALLER] = caller
            await self.app(scope, receive, send)

    async def _admit(self, scope: Scope, send: Send, caller: Caller) -> bool:
        """Whether a known caller's request goes on: not a change asked with a read-only token, and
        within the caller's request budget. If not, the refusal is sent."""
        if caller.read_only and scope["method"] not in ("GET", "HEAD") and scope["path"] not in READ_ONLY_POSTS:
            await refuse(send, 403, "forbidden", "this API token is read-only: it may look, not change anything "
                         "(`wulf token create` without --read-only makes one that may)")
            return False
        if caller.uid != 0:
            wait = self.security.limiter.take(caller.user, time.monotonic())
            if wait > 0:
                await self._slow_down(send, caller, wait)
                return False
        return True

    async def _identify(self, scope: Scope, receive: Receive,
                        peer: tuple[int, int, int] | None) -> tuple[Caller, Receive] | None:
        sec = self.security
        auth = _header(scope, b"authorization")
        if auth is not None:
            scheme, _, token = auth.strip().partition(" ")
            if scheme.lower() != "bearer":
                raise Unauthenticated("only Authorization: Bearer <API token> is understood")
            return sec.from_token(token.strip()), receive
        text = _header(scope, CREDENTIAL_HEADER)
        if text is not None:
            cred = sec.credential(text.strip())  # signed and fresh, before the body is read
            read = await _read_body(receive)
            if read is None:
                return None
            body, receive = read
            return sec.from_credential(cred, credential.request_digest(scope["method"], _target(scope), body)), receive
        if peer is not None:
            return sec.from_peer(peer), receive
        cookie = _cookie(scope, COOKIE)
        if cookie and scope["method"] in ("GET", "HEAD"):
            return sec.from_token(cookie), receive
        raise Unauthenticated(NO_IDENTITY)

    async def _slow_down(self, send: Send, caller: Caller, wait: float) -> None:
        now = time.monotonic()
        if self._quiet_until.get(caller.user, 0.0) <= now:
            log.warning("%s is over their request budget; asking them to slow down", caller.user)
            self._quiet_until = {u: t for u, t in self._quiet_until.items() if t > now}
            self._quiet_until[caller.user] = now + 60.0
        await refuse(send, 429, "slow_down",
                     f"slow down: {caller.user} has made too many requests; try again in {wait:.2f}s",
                     [(b"retry-after", str(max(1, math.ceil(wait))).encode())], retry_after=round(wait, 3))


def _where(scope: Scope, peer: tuple[int, int, int] | None) -> str:
    if peer is not None:
        return f"uid {peer[1]} (pid {peer[0]}) on the Unix socket"
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "an unknown address"


def parse_login(body: bytes) -> str:
    """The token of the login form's body (application/x-www-form-urlencoded)."""
    try:
        values = parse_qs(body.decode("ascii"), max_num_fields=4)
    except (UnicodeDecodeError, ValueError):
        raise WulfError("the form is not as sent by the login page") from None
    return (values.get("token") or [""])[0].strip()
