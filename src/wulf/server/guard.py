"""The gate every request passes: from where (the allow-list), who (the identity), how often (fair use).

An ASGI middleware in front of the API. Connections over TCP from an address outside ``[server]
allow`` are turned away. Every HTTP request but a few public ones (health, the OpenAPI document,
the login page) must say who sends it (see :mod:`wulf.server.security`); the route finds the caller
in ``request.state.caller``. A caller who has used up their budget (``[server] rate_limit`` and
``rate_burst``) is answered 429 with ``Retry-After``; root is not limited. A browser's session
(:mod:`wulf.server.websession`) reads with its cookie; it acts only with its CSRF token, from the page's
own origin, and only through the page's forms. WebSockets (the agents)
pass the allow-list here and authenticate with their first message.

Every body is capped before it is read: 64 KB while the sender is not known (the public paths), and
``[server] max_body_mb`` for a known caller; beyond, the answer is 413 (and an unknown sender's
connection is closed). On a personal cluster's socket (``wulf up``), other users are turned away.
"""

from __future__ import annotations

import html
import ipaddress
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any
from urllib.parse import parse_qs

from starlette.exceptions import HTTPException

from wulf.auth import credential
from wulf.auth.identity import Caller, user_name
from wulf.errors import Forbidden, Unauthenticated, WulfError
from wulf.server.peer import PEER, loopback_uid
from wulf.server.security import NO_IDENTITY, PUBLIC_MAX_BODY, Security
from wulf.server.websession import CSRF_HEADER, SESSION_COOKIE, csrf_ok, may_ask

log = logging.getLogger("wulf.server")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CALLER = "caller"  # where the route finds who asks: request.state.caller
CREDENTIAL_HEADER = b"x-wulf-credential"
PUBLIC = frozenset({"/healthz", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/login",
                    "/logout"})
STATIC = "/static/"  # the web page's script, style and icons: public
#: the web page's own pages (the same page, which reads what it shows from the API)
PAGES = frozenset({"", "nodes", "jobs", "submit", "table"})
#: what a read-only API token may ask besides GET and HEAD: to wait for jobs (it changes nothing)
READ_ONLY_POSTS = frozenset({"/api/v1/wait"})
CLOSE = (b"connection", b"close")


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


LOGIN_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>wulf: sign in</title>
<link rel="stylesheet" href="/static/wulf.css"><link rel="icon" href="data:,"></head>
<body class="login"><h1>wulf</h1><p>{why}</p>{form}</body></html>"""
TOKEN_FORM = """<form method="post" action="/login"><label>API token <input name="token" type="password" size="50"
autocomplete="off"></label> <button>Sign in</button></form>
<p>Make a token on a machine of the cluster with <code>wulf token create</code>, or sign in with the link
that <code>wulf up</code> or <code>wulf web</code> prints.</p>"""
PASSWORD_FORM = """<form method="post" action="/login"><label>User <input name="user" size="16"
autocomplete="username"></label> <label>Password <input name="password" type="password" size="24"
autocomplete="current-password"></label> <button>Sign in</button></form><p>or</p>"""
LINK_FORM = """<form method="post" action="/login"><input type="hidden" name="once" value="{code}">
<button>Sign in as {user}</button></form>"""


def login_page(why: str, status: int = 200, form: str = TOKEN_FORM) -> tuple[int, bytes]:
    return status, LOGIN_PAGE.format(why=html.escape(why), form=form).encode()


def link_form(code: str, user: str) -> str:
    return LINK_FORM.format(code=html.escape(code), user=html.escape(user))


def is_page(path: str) -> bool:
    """Whether ``path`` is one of the web page's (an unknown browser is shown the sign-in form there)."""
    return path.split("/")[1] in PAGES


def same_origin(scope: Scope) -> bool:
    """Whether a browser's request comes from a page of this server (a request without Origin is no
    browser's cross-site request: browsers send it with every POST)."""
    origin = _header(scope, b"origin")
    return origin is None or origin.partition("://")[2] == _header(scope, b"host")


def _is_loopback(host: str) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    return (mapped or ip).is_loopback


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


def too_large(limit: int) -> str:
    if limit == PUBLIC_MAX_BODY:
        return f"the request is larger than {limit // 1024} KB, all that may be sent before saying who sends it"
    return f"the request is larger than {limit / 2**20:g} MB ([server] max_body_mb)"


class BodyTooLarge(HTTPException):
    """A body grew past its cap while the app read it: answered 413 in the one error shape."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large(limit), headers={"connection": "close"})


def _declared(scope: Scope) -> int:
    """The body's length as its Content-Length says (0 if it says nothing readable)."""
    text = _header(scope, b"content-length")
    return int(text) if text is not None and text.strip().isdigit() else 0


def _capped(receive: Receive, limit: int) -> Receive:
    """``receive``, raising :class:`BodyTooLarge` once the body passes ``limit`` bytes."""
    seen = 0

    async def capped() -> Message:
        nonlocal seen
        msg = await receive()
        seen += len(msg.get("body", b""))
        if seen > limit:
            raise BodyTooLarge(limit)
        return msg

    return capped


async def _drain(receive: Receive) -> None:
    """Read what is left of a body and drop it (a known caller then gets its answer, not a closed pipe)."""
    while True:
        msg = await receive()
        if msg["type"] != "http.request" or not msg.get("more_body", False):
            return


async def _read_body(receive: Receive, limit: int) -> tuple[bytes, Receive] | None:
    """The whole body, and a receive that hands it to the app again; None if the client left.
    A body over ``limit`` is read to its end, dropped, and raises BodyTooLarge."""
    chunks: list[bytes] = []
    size = 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return None
        chunk = msg.get("body", b"")
        size += len(chunk)
        if size > limit:
            if msg.get("more_body", False):
                await _drain(receive)
            raise BodyTooLarge(limit)
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
        if not await self._from_where(scope, send, peer):
            return
        if kind == "websocket":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if path in PUBLIC or path.startswith(STATIC) or path == "/metrics" and self.security.metrics_public:
            if _declared(scope) > PUBLIC_MAX_BODY:
                await refuse(send, 413, "usage", too_large(PUBLIC_MAX_BODY), [CLOSE])
                return
            await self.app(scope, _capped(receive, PUBLIC_MAX_BODY), send)
            return
        limit = self.security.max_body
        try:
            found = await self._identify(scope, receive, peer, limit)
        except BodyTooLarge as e:
            await refuse(send, 413, "usage", str(e.detail))
            return
        except (Forbidden, Unauthenticated) as e:
            await self._turn_away(scope, send, peer, e)
            return
        if found is None:
            return  # the client went away
        caller, receive = found
        if _declared(scope) > limit:
            await _drain(receive)
            await refuse(send, 413, "usage", too_large(limit))
            return
        if await self._admit(scope, send, caller):
            state[CALLER] = caller
            await self.app(scope, _capped(receive, limit), send)

    async def _turn_away(self, scope: Scope, send: Send, peer: tuple[int, int, int] | None,
                         e: Forbidden | Unauthenticated) -> None:
        """Answer a request whose sender is not known (401; the sign-in form on a page) or whose session
        may not ask it (403)."""
        path = scope["path"]
        log.warning("refused %s %s from %s: %s", scope["method"], path, _where(scope, peer), e.message)
        # a body nobody will read: the connection goes with the answer, not on taking it in
        unread = [CLOSE] if _declared(scope) or _header(scope, b"transfer-encoding") else []
        if isinstance(e, Forbidden):
            await refuse(send, 403, "forbidden", e.message, unread)
        elif is_page(path) and scope["method"] in ("GET", "HEAD"):
            status, body = login_page(e.message, 401, sign_in_forms(self.security))
            await _respond(send, status, body, b"text/html; charset=utf-8")
        else:
            await refuse(send, 401, "unauthenticated", e.message,
                         [(b"www-authenticate", b'Bearer realm="wulf"'), *unread])

    async def _from_where(self, scope: Scope, send: Send, peer: tuple[int, int, int] | None) -> bool:
        """Whether the connection may be served at all: over TCP from an allowed address, on a personal
        cluster's socket by its owner (or root). If not, the refusal is sent."""
        websocket = scope["type"] == "websocket"
        if peer is not None:
            if not self.security.foreign(peer):
                return True
            owner = user_name(self.security.own_uid)
            why = f"this wulf cluster is {owner}'s alone (a `wulf up`): only {owner} and root may use it"
            log.warning("refused uid %d (pid %d) on the socket of a personal cluster", peer[1], peer[0])
        else:
            host = (scope.get("client") or ("",))[0] or ""
            if not self.security.allow.allows(host):
                log.warning("refused a connection from %s: not in [server] allow", host or "an unknown address")
                why = f"connections from {host or 'your address'} are not allowed ([server] allow)"
            elif not self._foreign_on_loopback(scope):
                return True
            else:
                owner = user_name(self.security.own_uid)
                why = f"this wulf cluster is {owner}'s alone (a `wulf up`): only {owner} and root may use it"
                log.warning("refused a connection over loopback from another user than %s", owner)
        if websocket:
            await send({"type": "websocket.close", "code": 1008, "reason": why[:120]})
        else:
            await refuse(send, 403, "forbidden", why)
        return False

    def _foreign_on_loopback(self, scope: Scope) -> bool:
        """Whether a loopback TCP connection to a personal cluster is not its owner's (nor root's), as the
        kernel's socket tables say (see wulf.server.peer.loopback_uid)."""
        client, server = scope.get("client"), scope.get("server")
        if not self.security.owner_only or not client or not server or not _is_loopback(client[0]):
            return False
        uid = loopback_uid((client[0], client[1]), (server[0], server[1]))
        return uid is None or self.security.foreign((0, uid, 0))

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

    async def _identify(self, scope: Scope, receive: Receive, peer: tuple[int, int, int] | None,
                        limit: int) -> tuple[Caller, Receive] | None:
        sec = self.security
        auth = _header(scope, b"authorization")
        if auth is not None:
            scheme, _, token = auth.strip().partition(" ")
            if scheme.lower() != "bearer":
                raise Unauthenticated("only Authorization: Bearer <API token> is understood")
            return await sec.from_token(token.strip()), receive
        text = _header(scope, CREDENTIAL_HEADER)
        if text is not None:
            cred = sec.credential(text.strip())  # signed and fresh, before the body is read
            read = await _read_body(receive, limit)
            if read is None:
                return None
            body, receive = read
            digest = credential.request_digest(scope["method"], _target(scope), body)
            return await sec.from_credential(cred, digest), receive
        if peer is not None:
            return await sec.from_peer(peer), receive
        sid = _cookie(scope, SESSION_COOKIE)
        if sid:
            return await self._session(scope, sid, peer), receive
        raise Unauthenticated(NO_IDENTITY)

    async def _session(self, scope: Scope, sid: str, peer: tuple[int, int, int] | None) -> Caller:
        """Who a browser's session is; Forbidden for a change it may not ask (see the module's doc)."""
        session = self.security.web.find(sid, time.time())
        if session is None:
            raise Unauthenticated("this browser's session has ended (signed out, expired, or the server restarted): "
                                  "sign in again at /login")
        if scope["method"] not in ("GET", "HEAD"):
            if not may_ask(scope["path"]):
                raise Forbidden("the web page's session may not do this: use the commands or an API token")
            if not csrf_ok(session, _header(scope, CSRF_HEADER)) or not same_origin(scope):
                raise Forbidden("refused a request of the web page's session without its CSRF token (or from "
                                "another site): reload the page")
        return await self.security.from_session(session, (scope.get("client") or ("",))[0] or "local")

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


def sign_in_forms(security: Security) -> str:
    """The sign-in page's forms: the API token's, and the password's where ``[web] pam_service`` is set."""
    return (PASSWORD_FORM if security.pam_service else "") + TOKEN_FORM


def parse_login(body: bytes) -> dict[str, str]:
    """The fields of the login form's body (application/x-www-form-urlencoded): token, once, user, password."""
    try:
        values = parse_qs(body.decode("utf-8"), max_num_fields=4)
    except (UnicodeDecodeError, ValueError):
        raise WulfError("the form is not as sent by the login page") from None
    return {k: (values.get(k) or [""])[0] for k in ("token", "once", "user", "password")}
