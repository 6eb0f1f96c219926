"""The web interface: its pages and files, its sign-in, its reads (``/api/v1/web/...``) and live updates.

The page is one HTML file and a script (``wulf/server/web/``, shipped in the package: no CDN) that read
JSON from the API and draw tables and SVG bars; it acts through the API's own routes, as the user
signed in, with the session's CSRF token (see :mod:`wulf.server.websession` and the guard).
``GET /api/v1/events`` tells the page when something changed (server-sent events), so that it reads
again within a second or two, without a reload. Every answer carries a strict Content-Security-Policy:
no script but the page's own file, no inline script or style.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi import Path as FastPath
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from wulf.auth.identity import CREDENTIAL, SOCKET, Caller, user_name
from wulf.auth.pam import password_ok
from wulf.errors import Forbidden, NotFound, Refused, SlowDown, Unauthenticated
from wulf.server import loadhistory
from wulf.server.daemon import Daemon
from wulf.server.guard import CALLER, Scope, link_form, login_page, parse_login, same_origin, sign_in_forms
from wulf.server.loadhistory import (
    CLUSTER,
    FIELDS,
    HOUR_STEP,
    JOB_FIELDS,
    SAVE_EVERY,
    SPANS,
    BadHistory,
    LoadHistory,
)
from wulf.server.security import Security
from wulf.server.state import ServerState
from wulf.server.websession import SESSION_COOKIE, SESSION_TTL
from wulf.server.webviews import JobFilter, job_detail, job_page, job_uses, loads_now, node_detail, overview

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml"}
EVERY = 1.0
"""Seconds at least between two changes told to one live page (each makes the page read what it shows
again: on a busy cluster, where something changes all the time, that is this often)."""
LOOK = 0.05
"""Seconds between two looks for a change, per live page (a change after a quiet while is told at once)."""
PING = 15.0
"""Seconds between keep-alive comments on a live page's stream."""
MAX_STREAMS = 16
"""Live pages one user may keep open at once."""

log = logging.getLogger("wulf.server")
router = APIRouter()
# (the page's own routes are not in the OpenAPI document, which is the API's; nor is the live stream, which
# never ends: a client generated from the document could not read it)


def _files() -> dict[str, tuple[bytes, str]]:
    """The page's files, read once: name -> (bytes, content type). Only these are served."""
    out = {}
    for f in resources.files("wulf.server").joinpath("web").iterdir():
        kind = STATIC_TYPES.get("." + f.name.rpartition(".")[2])
        if kind is not None:
            out[f.name] = (f.read_bytes(), kind)
    return out


FILES = _files()


def _caller(request: Request) -> Caller:
    caller: Caller | None = getattr(request.state, CALLER, None)
    if caller is None:
        raise Unauthenticated("who are you? (no identity came with the request)")
    return caller


def _daemon(request: Request) -> Daemon:
    d: Daemon = request.app.state.daemon
    return d


def _security(request: Request) -> Security:
    s: Security = request.app.state.security
    return s


# ---------------------------------------------------------------- pages and files

def _shell() -> HTMLResponse:
    return HTMLResponse(FILES["index.html"][0], headers={"cache-control": "no-store"})


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def home(request: Request) -> HTMLResponse:
    _caller(request)
    return _shell()


@router.get("/nodes", response_class=HTMLResponse, include_in_schema=False)
@router.get("/jobs", response_class=HTMLResponse, include_in_schema=False)
@router.get("/submit", response_class=HTMLResponse, include_in_schema=False)
async def pages(request: Request) -> HTMLResponse:
    _caller(request)
    return _shell()


@router.get("/nodes/{name}", response_class=HTMLResponse, include_in_schema=False)
@router.get("/jobs/{job_id}", response_class=HTMLResponse, include_in_schema=False)
async def item_pages(request: Request) -> HTMLResponse:
    _caller(request)
    return _shell()


@router.get("/table", response_class=HTMLResponse, include_in_schema=False)
async def table(request: Request) -> str:
    """The cluster as one table, without script (what ``/`` was before the web interface)."""
    from wulf.server.page import MAX_WAITING, render

    caller, daemon = _caller(request), _daemon(request)
    return render(daemon.page_view(MAX_WAITING, viewer=caller), daemon.queues(viewer=caller))


@router.get("/static/{name}", include_in_schema=False)
async def static(name: str) -> Response:
    found = FILES.get(name)
    if found is None or name == "index.html":
        raise NotFound(f"no file {name}")
    return Response(found[0], media_type=found[1], headers={"cache-control": "no-cache"})


# ---------------------------------------------------------------- sign-in

def _signed_in(request: Request, sid: str) -> Response:
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(SESSION_COOKIE, sid, httponly=True, samesite="strict", secure=request.url.scheme == "https",
                        max_age=int(SESSION_TTL), path="/")
    return response


LINK_GONE = "This sign-in link is used up or expired: `wulf web` prints a new one."


def _page(why: str, status: int, security: Security, form: str = "") -> HTMLResponse:
    code, body = login_page(why, status, form or sign_in_forms(security))
    return HTMLResponse(body, status_code=code)


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, once: Annotated[str, Query(max_length=100)] = "") -> HTMLResponse:
    """The sign-in form; with ``once``, the button that redeems a one-time link (a click, so that a
    program that only fetches the link, to preview it, does not use it up)."""
    security = _security(request)
    if not once:
        return _page("Sign in to see the cluster.", 200, security)
    whose = security.web.peek(once, time.time())
    if whose is None:
        return _page(LINK_GONE, 401, security)
    return _page("Sign in with the link made for you.", 200, security, link_form(once, user_name(whose[0])))


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    """Sign in with an API token, a one-time code or (where ``[web] pam_service`` is set) a Unix password:
    a new session, its id in a cookie (HttpOnly, SameSite=Strict). Refused from another site's page (a
    forged sign-in)."""
    security = _security(request)
    if not same_origin(request.scope):
        return _page("Refused: this sign-in came from another site's page.", 403, security)
    form = parse_login(await request.body())
    now = time.time()
    if form["once"]:
        whose = security.web.redeem(form["once"], now)
        if whose is None:
            return _page(LINK_GONE, 401, security)
        return _signed_in(request, security.web.open(whose[0], whose[1], None, False, now))
    try:
        if form["user"]:
            uid, gid = await _password(request, security, form["user"], form["password"])
            return _signed_in(request, security.web.open(uid, gid, None, False, now))
        caller = await security.from_token(form["token"].strip())
    except (Unauthenticated, SlowDown) as e:
        return _page(e.message, 429 if isinstance(e, SlowDown) else 401, security)
    found = security.tokens.find(form["token"].strip(), now)
    assert found is not None  # from_token found it
    return _signed_in(request, security.web.open(caller.uid, caller.gid, found.id, caller.read_only, now,
                                                 found.expires))


async def _password(request: Request, security: Security, user: str, password: str) -> tuple[int, int]:
    """The uid and gid of ``user`` if ``password`` is theirs (PAM says); each address may try a few."""
    import pwd

    if not security.pam_service:
        raise Unauthenticated("this server takes no passwords ([web] pam_service): sign in with an API token")
    where = (request.client.host if request.client else "") or "?"
    wait = security.password_tries.take(where, time.monotonic())
    if wait > 0:
        raise SlowDown(f"too many passwords tried from {where}: try again in {wait:.0f}s", retry_after=wait)
    try:
        pw = pwd.getpwnam(user)
    except (KeyError, ValueError):
        pw = None
    # (a personal cluster, `wulf up`, is its owner's alone)
    allowed = pw is not None and pw.pw_uid != 0 and not security.foreign((0, pw.pw_uid, pw.pw_gid))
    ok = allowed and bool(password) and await asyncio.to_thread(password_ok, security.pam_service, user, password)
    if not ok or pw is None:
        log.warning("refused a sign-in to the web interface as %r from %s: wrong user or password", user[:64], where)
        raise Unauthenticated("wrong user or password (root signs in with `wulf web`)")
    log.info("%s signed in to the web interface with their password, from %s", user, where)
    return pw.pw_uid, pw.pw_gid


@router.get("/logout")
async def logout(request: Request) -> Response:
    sid = request.cookies.get(SESSION_COOKIE)
    if sid:
        _security(request).web.close(sid)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.post("/api/v1/web/link")
async def make_link(request: Request) -> dict[str, Any]:
    """A one-time sign-in link for the caller (``wulf up``, ``wulf web``): only for who asks from a
    machine of the cluster, as themselves (not with a token, not from a browser)."""
    caller = _caller(request)
    if caller.via not in (SOCKET, CREDENTIAL):
        raise Forbidden("a sign-in link is made by `wulf web` on a machine of the cluster")
    base: str = request.app.state.web_url
    if not base:
        raise Refused("this server does not listen on TCP, where a browser could reach it ([server] listen)")
    code = _security(request).web.link(caller.uid, caller.gid, time.time())
    return {"url": base, "link": f"{base}login?once={code}", "user": caller.user}


# ---------------------------------------------------------------- what the page reads

@router.get("/api/v1/web/session")
async def session(request: Request) -> dict[str, Any]:
    """Who the page's user is, what they may do, and (for a browser's session) its CSRF token."""
    caller = _caller(request)
    sid = request.cookies.get(SESSION_COOKIE)
    found = _security(request).web.find(sid, time.time()) if sid and caller.via == "web" else None
    return {"user": caller.user, "uid": caller.uid, "admin": caller.admin, "read_only": caller.read_only,
            "csrf": found.csrf if found else "", "home": await asyncio.to_thread(_home, caller.user)}


def _home(user: str) -> str:
    import pwd

    try:
        return pwd.getpwnam(user).pw_dir
    except KeyError:
        return "/tmp"


@router.get("/api/v1/web/overview")
async def web_overview(request: Request) -> dict[str, Any]:
    return overview(_daemon(request).state, time.time(), _caller(request))


@router.get("/api/v1/web/jobs")
async def web_jobs(request: Request, user: Annotated[str, Query(max_length=256)] = "",
                   state: Annotated[str, Query(max_length=20)] = "", queue: Annotated[str, Query(max_length=256)] = "",
                   node: Annotated[str, Query(max_length=256)] = "", name: Annotated[str, Query(max_length=256)] = "",
                   origin: Annotated[str, Query(pattern="^(|all|wulf|external)$")] = "",
                   sort: Annotated[str, Query(max_length=20)] = "id", desc: Annotated[int, Query(ge=0, le=1)] = 0,
                   offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
                   limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
    """A page of the jobs the server keeps in memory (active, and the latest ended), filtered and sorted
    (see wulf.server.webviews.job_page; ``origin``: wulf's jobs, outside work, or all); ``total`` counts
    all that pass the filter."""
    where = JobFilter(user=user, state=state, queue=queue, node=node, name=name, origin="" if origin == "all" else origin)
    return job_page(_daemon(request).state, time.time(), _caller(request), where, sort, bool(desc), offset, limit)


@router.get("/api/v1/web/jobs/{job_id}")
async def web_job(request: Request, job_id: Annotated[int, FastPath(ge=1, le=2**63 - 1)]) -> dict[str, Any]:
    daemon = _daemon(request)
    [found] = await daemon.fetch([job_id])
    return job_detail(daemon.state, found, time.time(), _caller(request))


@router.get("/api/v1/web/nodes/{name}")
async def web_node(request: Request, name: Annotated[str, FastPath(max_length=256)]) -> dict[str, Any]:
    found = node_detail(_daemon(request).state, name, time.time(), _caller(request))
    if found is None:
        raise NotFound(f"no node {name}")
    return found


@router.get("/api/v1/web/history")
async def history(request: Request, node: Annotated[str, Query(max_length=256)] = "",
                  span: Annotated[str, Query(pattern="^(hour|day)$")] = "hour",
                  job: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0) -> dict[str, Any]:
    """The load of ``node`` (of the whole cluster if none) over the last hour or day, or the use of
    ``job`` over the last hour of its run: ``points`` are ``[time, *fields]``, oldest first (see
    wulf.server.loadhistory)."""
    _caller(request)
    found: LoadHistory = request.app.state.load_history
    if job:
        return {"job": job, "step": SPANS["hour"][0], "fields": ["time", *JOB_FIELDS],
                "points": found.job_points(job) or []}
    if node and node not in _daemon(request).state.nodes and found.points(node, span) is None:
        raise NotFound(f"no node {node}")  # (one not back since a restart still has its plots)
    return {"node": node, "span": span, "step": SPANS[span][0], "fields": ["time", *FIELDS],
            "points": found.points(node or CLUSTER, span) or []}


HISTORY_FILE = "loadhistory.json"
"""The plots' points, in the server's state directory (see wulf.server.loadhistory)."""


async def keep_history(state: ServerState, history: LoadHistory, saved: Path) -> None:
    """Sample the nodes' load for the plots, every HOUR_STEP seconds, for as long as the server runs; save
    them every SAVE_EVERY seconds (written out in a thread)."""
    last_save = time.monotonic()
    while True:
        now = time.time()
        history.record(now, loads_now(state))
        history.record_jobs(now, job_uses(state))
        history.forget(state.nodes, now)
        if time.monotonic() - last_save >= SAVE_EVERY:
            last_save = time.monotonic()
            try:
                await asyncio.to_thread(loadhistory.save, saved, history.dump())
            except OSError as e:
                log.warning("cannot save the load history to %s: %s", saved, e)
        await asyncio.sleep(HOUR_STEP)


@router.get("/api/v1/events", include_in_schema=False)
async def events(request: Request) -> StreamingResponse:
    """Server-sent events: ``change`` (with the count of changes) as soon as the server's state changes
    (a job submitted, started or ended, a node's report; within LOOK seconds), at most every EVERY
    seconds."""
    caller = _caller(request)
    open_streams: dict[int, int] = request.app.state.streams
    if open_streams.get(caller.uid, 0) >= MAX_STREAMS:
        raise SlowDown(f"{caller.user} has {MAX_STREAMS} live pages open already: close some", retry_after=5.0)
    daemon = _daemon(request)

    async def stream() -> AsyncIterator[str]:
        seen, sent, said = -1, -EVERY, time.monotonic()  # changes told; when a change, when anything was sent
        open_streams[caller.uid] = open_streams.get(caller.uid, 0) + 1  # (counted once it runs: see finally)
        try:
            yield "retry: 2000\n\n"
            while not await request.is_disconnected():
                changes, now = daemon.state.changes, time.monotonic()
                if changes != seen and now - sent >= EVERY:
                    seen, sent = changes, now
                    yield f"event: change\ndata: {json.dumps({'changes': changes, 'time': time.time()})}\n\n"
                    said = now
                elif now - said >= PING:
                    said = now
                    yield ": ping\n\n"
                await asyncio.sleep(LOOK)
        finally:
            open_streams[caller.uid] -= 1
            if not open_streams[caller.uid]:
                del open_streams[caller.uid]

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"cache-control": "no-store", "x-accel-buffering": "no"})


# ---------------------------------------------------------------- headers on every answer

class SecurityHeaders:
    """Headers every answer gets: the Content-Security-Policy, no sniffing, no framing, no referrer to
    another site (a sign-in link's code must not leak; "no-referrer" would make the browser's Origin
    "null" on the page's own posts, which the CSRF check refuses)."""

    HEADERS = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
               (b"x-frame-options", b"DENY"), (b"referrer-policy", b"same-origin")]

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)



def read_history(saved: Path) -> LoadHistory:
    """The plots' points saved by the last run; afresh (and a warning) if they cannot be read."""
    try:
        return loadhistory.load(saved)
    except (OSError, BadHistory) as e:
        log.warning("the load history in %s cannot be read (%s): the plots start afresh", saved, e)
        return LoadHistory()


def write_history(saved: Path, history: LoadHistory) -> None:
    try:
        loadhistory.save(saved, history.dump())
    except OSError as e:
        log.warning("cannot save the load history to %s: %s", saved, e)
