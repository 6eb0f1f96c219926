"""The HTTP API and the agents' WebSocket, over the daemon.

Every error has one shape: ``{"error": {"kind": ..., "message": ...}}`` with kinds ``usage`` (400; and
408, 413, 431 for a request too slow or too large), ``unauthenticated`` (401), ``forbidden`` (403),
``not_found`` (404), ``refused`` (409), ``slow_down`` (429, with ``retry_after``) and ``error`` (500).

Who asks is established by :class:`wulf.server.guard.Guard` before a route runs; routes take it from
``request.state.caller`` (``CallerDep``), never from the request's body. Administrative routes
(``/api/v1/admin/...``) need an administrator (``AdminDep``); they and every action of an
administrator on what is not theirs are written to the audit log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request, WebSocket, WebSocketDisconnect
from fastapi import Path as FastPath
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from wulf import __version__
from wulf.auth.identity import Caller
from wulf.errors import Forbidden, NotFound, Refused, SlowDown, Unauthenticated, UsageError, WulfError
from wulf.model.accounting import MAX_IDS
from wulf.protocol import (
    MAX_OUTPUT_CHUNK,
    NAME_TAKEN,
    PROTOCOL_VERSION,
    Hello,
    IdsRequest,
    InteractiveReply,
    InteractiveRequest,
    LaunchReply,
    LaunchRequest,
    ModifyRequest,
    NiceRequest,
    PlaceReply,
    QueueRequest,
    RunAllRequest,
    SignalRequest,
    SubmitReply,
    SubmitRequest,
    TokenReply,
    TokenRequest,
    WaitRequest,
    agent_message,
)
from wulf.server import accounting
from wulf.server.accounting import Ask
from wulf.server.admission import Admission
from wulf.server.daemon import Daemon
from wulf.server.edge import TRUST
from wulf.server.events import JobChanges
from wulf.server.guard import CALLER, Guard
from wulf.server.loadhistory import LoadHistory
from wulf.server.metrics import CONTENT_TYPE, CountRequests
from wulf.server.nodes import AgentLink, Node
from wulf.server.security import Security
from wulf.server.web import HISTORY_FILE, SecurityHeaders, keep_history, read_history, write_history
from wulf.server.web import router as web_router

log = logging.getLogger("wulf.server")

OUTPUT_AUDIT_EVERY = 600.0
"""Seconds between audit records of one administrator's reads of one job's output (not theirs)."""

# the more particular first: Forbidden and Unauthenticated are kinds of Refused
_STATUS: dict[type[WulfError], tuple[int, str]] = {
    UsageError: (400, "usage"), Unauthenticated: (401, "unauthenticated"), Forbidden: (403, "forbidden"),
    NotFound: (404, "not_found"), Refused: (409, "refused"), SlowDown: (429, "slow_down"),
}


def _error(kind: str, message: str, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"kind": kind, "message": message}}, status_code=status, headers=headers)


def _describe(exc: RequestValidationError | ValidationError) -> str:
    parts = []
    for e in exc.errors()[:3]:
        loc = ".".join(str(x)[:40] for x in e.get("loc", ()) if x != "body")
        msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "bad request: " + "; ".join(parts)


router = APIRouter()


def _daemon(request: Request) -> Daemon:
    d: Daemon = request.app.state.daemon
    return d


DaemonDep = Annotated[Daemon, Depends(_daemon)]


def _security(request: Request) -> Security:
    s: Security = request.app.state.security
    return s


SecurityDep = Annotated[Security, Depends(_security)]


def _caller(request: Request) -> Caller:
    caller: Caller | None = getattr(request.state, CALLER, None)
    if caller is None:  # the guard lets no such request through; this is a second lock
        raise Unauthenticated("who are you? (no identity came with the request)")
    return caller


CallerDep = Annotated[Caller, Depends(_caller)]


def _admin(request: Request, caller: CallerDep, security: SecurityDep) -> Caller:
    if not caller.admin:
        route = request.scope.get("route")
        action = {"quit_node": "quitnode"}.get(route.name, route.name) if route is not None else request.url.path
        name = request.path_params.get("name")
        security.audit.record(caller, action, f"node {name}" if name else "", "refused: not an administrator")
        group = security.admin_group
        raise Forbidden(f"{caller.user} is not an administrator (root, the server's own user"
                        f"{' and group ' + group if group else ''}); only they may do this")
    return caller


AdminDep = Annotated[Caller, Depends(_admin)]


async def _wulf_error(request: Request, exc: WulfError) -> JSONResponse:
    for cls, (status, kind) in _STATUS.items():
        if isinstance(exc, cls):
            if isinstance(exc, Refused):
                caller = getattr(request.state, CALLER, None)
                log.warning("refused %s %s for %s: %s", request.method, request.url.path,
                            caller.describe() if caller else "?", exc.message)
            return _error(kind, exc.message, status)
    return _error("error", exc.message, 500)

async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    return _error("usage", _describe(exc), 400)

async def _missing(request: Request, exc: Exception) -> JSONResponse:
    return _error("not_found", f"no such endpoint: {request.method} {request.url.path}", 404)

async def _not_allowed(request: Request, exc: Exception) -> JSONResponse:
    return _error("usage", f"{request.method} is not allowed on {request.url.path}", 405)

async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """Any other HTTP error the framework raises (a body that is not JSON, ...), in the one shape."""
    status = getattr(exc, "status_code", 500)
    detail = getattr(exc, "detail", None)
    kind = {404: "not_found", 401: "unauthenticated", 403: "forbidden"}.get(status, "usage" if status < 500 else "error")
    message = detail if isinstance(detail, str) and detail else f"the request failed ({status})"
    return _error(kind, message[:1].lower() + message[1:], status, getattr(exc, "headers", None))

@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request, daemon: DaemonDep) -> Response:
    """Prometheus' text format (see wulf.server.metrics). It needs a credential or a token (a read-only
    one serves) unless ``[metrics] public``: the guard lets it through then."""
    if not request.app.state.security.metrics_public:
        _caller(request)
    return Response(daemon.metrics.text(), media_type=CONTENT_TYPE)

@router.get("/healthz")
async def healthz() -> dict[str, Any]:
    return {"ok": True, "version": __version__}

PageAfter = Annotated[int, Query(ge=0, le=2**63 - 1)]
PageLimit = Annotated[int, Query(ge=0, le=2**31)]


@router.get("/api/v1/status")
async def status(daemon: DaemonDep, caller: CallerDep, user: str = "", queue: str = "", all: int = 0,
                 brief: int = 0, after: PageAfter = 0, limit: PageLimit = 0,
                 external: Annotated[int, Query(ge=0, le=1)] = 0) -> dict[str, Any]:
    """Nodes and a page of jobs (``after``: the ``next`` of the last page; ``limit``: at most [server]
    jobs_per_page). Outside work: summed per node and user in ``outside`` (with the first page), or with
    ``external=1``, each process cluster a job of the list."""
    return daemon.status(user, queue, bool(all), brief=bool(brief), viewer=caller, after=after, limit=limit,
                         external=bool(external))

AcctTime = Annotated[float, Query(ge=0, le=1e11, allow_inf_nan=False)]


@router.get("/api/v1/accounting")
async def accounting_(daemon: DaemonDep, caller: CallerDep,
                      user: Annotated[str, Query(max_length=256)] = "", all: Annotated[int, Query(ge=0, le=1)] = 0,
                      start: AcctTime = 0.0, end: AcctTime = 0.0, state: Annotated[str, Query(max_length=200)] = "",
                      queue: Annotated[str, Query(max_length=512)] = "",
                      ids: Annotated[str, Query(max_length=MAX_IDS * 21)] = "",
                      after: Annotated[str, Query(max_length=64)] = "", limit: PageLimit = 0,
                      summary: Annotated[int, Query(ge=0, le=1)] = 0) -> dict[str, Any]:
    """Ended jobs, a page at a time by end time (``after``: the ``next`` of the last page), or per user
    totals (``summary=1``): see wulf.server.accounting. ``start``/``end``: Unix times (end 0: now)."""
    ask = Ask(user=user, all_users=bool(all), start=start, end=end, states=state, queue=queue, ids=ids, cursor=after,
              limit=limit, summary=bool(summary))
    return await accounting.answer(daemon.store, daemon.config, caller, ask)

@router.get("/api/v1/nodes")
async def nodes(daemon: DaemonDep) -> dict[str, Any]:
    return {"nodes": daemon.nodes_public()}

@router.post("/api/v1/jobs")
async def submit(req: SubmitRequest, daemon: DaemonDep, caller: CallerDep) -> SubmitReply:
    return SubmitReply(jobs=await daemon.submit(req, caller))

@router.get("/api/v1/jobs")
async def jobs(daemon: DaemonDep, caller: CallerDep, user: str = "", queue: str = "", all: int = 1,
               after: PageAfter = 0, limit: PageLimit = 0) -> dict[str, Any]:
    page = daemon.status(user, queue, bool(all), viewer=caller, after=after, limit=limit)
    return {"jobs": page["jobs"], "next": page["next"]}

@router.get("/api/v1/jobs/{job_id}")
async def job(job_id: Annotated[int, FastPath(ge=1, le=2**63 - 1)], daemon: DaemonDep,
              caller: CallerDep) -> dict[str, Any]:
    [found] = await daemon.fetch([job_id])
    return daemon.shown(found, caller)

@router.get("/api/v1/jobs/{job_id}/output")
async def job_output(job_id: Annotated[int, FastPath(ge=1, le=2**63 - 1)], request: Request, daemon: DaemonDep,
                     caller: CallerDep, security: SecurityDep, offset: Annotated[int, Query(ge=-2**62, le=2**62)] = 0,
                     limit: Annotated[int, Query(ge=0, le=MAX_OUTPUT_CHUNK)] = MAX_OUTPUT_CHUNK) -> dict[str, Any]:
    """Bytes of a job's output (base64 in ``data``) from ``offset`` (from its end when negative), at most
    ``limit``; ``next`` is the offset to ask next, ``ended`` says that the job has ended and all is read.
    An administrator's reads of another's are audited, once in OUTPUT_AUDIT_EVERY seconds a job at most
    (``jtail -f`` reads every few seconds)."""
    call = daemon.output(job_id, caller, offset, limit)
    others = _others(daemon, [job_id], caller)
    seen: dict[tuple[int, int], float] = request.app.state.output_audited
    now = time.monotonic()
    if not others or now - seen.get((caller.uid, job_id), -OUTPUT_AUDIT_EVERY) < OUTPUT_AUDIT_EVERY:
        return await call
    if len(seen) > 10_000:
        seen.clear()
    seen[(caller.uid, job_id)] = now
    return dict(await _audited(security, caller, "read output", "job " + others[0], call))

def _others(daemon: Daemon, refs: list[int | str], caller: Caller) -> list[str]:
    """The jobs named that are not the caller's (an administrator's action on them is audited)."""
    if not caller.admin:
        return []
    try:
        ids = daemon.resolve(refs)
    except WulfError:  # the action itself says what is wrong
        return []
    out = []
    for i in ids:
        job = daemon.jobs.get(i)
        if job is not None and job.uid != caller.uid:
            out.append(f"{i} ({job.user})")
    return out


async def _on_jobs(action: str, ids: list[int | str], daemon: DaemonDep, security: Security, caller: Caller,
                   call: Any) -> dict[str, Any]:
    others = _others(daemon, ids, caller)
    if not others:
        result: dict[str, Any] = await call
        return result
    target = "jobs " + ", ".join(others)
    try:
        result = await call
    except WulfError as e:
        security.audit.record(caller, action, target, f"refused: {e.message}")
        raise
    security.audit.record(caller, action, target, "ok", answer=result)
    return result


@router.post("/api/v1/jobs/cancel")
async def cancel(req: IdsRequest, daemon: DaemonDep, security: SecurityDep, caller: CallerDep) -> dict[str, Any]:
    return await _on_jobs("cancel", req.ids, daemon, security, caller, daemon.cancel(req.ids, caller))

@router.post("/api/v1/jobs/signal")
async def signal(req: SignalRequest, daemon: DaemonDep, security: SecurityDep, caller: CallerDep) -> dict[str, Any]:
    if not 1 <= req.signal <= 64:
        raise UsageError(f"{req.signal} is not a signal number")
    return await _on_jobs(f"signal {req.signal}", req.ids, daemon, security, caller,
                          daemon.signal(req.ids, req.signal, caller))

@router.post("/api/v1/jobs/nice")
async def nice(req: NiceRequest, daemon: DaemonDep, security: SecurityDep, caller: CallerDep) -> dict[str, Any]:
    return await _on_jobs(f"renice {req.nice}", req.ids, daemon, security, caller,
                          daemon.renice(req.ids, req.nice, caller))

@router.post("/api/v1/jobs/hold")
async def hold(req: IdsRequest, daemon: DaemonDep, security: SecurityDep, caller: CallerDep) -> dict[str, Any]:
    return await _on_jobs("hold", req.ids, daemon, security, caller, daemon.hold(req.ids, caller))

@router.post("/api/v1/jobs/release")
async def release(req: IdsRequest, daemon: DaemonDep, security: SecurityDep, caller: CallerDep) -> dict[str, Any]:
    return await _on_jobs("release", req.ids, daemon, security, caller, daemon.release(req.ids, caller))

@router.post("/api/v1/jobs/modify")
async def modify(req: ModifyRequest, daemon: DaemonDep, security: SecurityDep, caller: CallerDep) -> dict[str, Any]:
    """jmod. Every request is audited (who changed what, on which jobs, and whether it was refused): a
    change of what a job asked for is worth a line, whoever's job it is."""
    changes = JobChanges(cpu=req.cpu, mem_mb=req.mem_mb, time_limit=req.time_limit, queue=req.queue,
                         name=req.name, nice=req.nice, throttle=req.throttle, depend=req.depend)
    shown = [str(i) for i in req.ids[:20]] + (["..."] if len(req.ids) > 20 else [])
    target = "jobs " + ", ".join(shown)
    try:
        result: dict[str, Any] = await daemon.modify(req.ids, changes, caller)
    except WulfError as e:
        security.audit.record(caller, "jmod", target, f"refused: {e.message}", changes=changes.given())
        raise
    security.audit.record(caller, "jmod", target, "ok", changes=changes.given(), answer=result)
    return result

@router.get("/api/v1/queues")
async def queues(daemon: DaemonDep, caller: CallerDep, user: str = "") -> dict[str, Any]:
    return {"queues": daemon.queues(user, viewer=caller)}

@router.post("/api/v1/queues")
async def set_queue(req: QueueRequest, daemon: DaemonDep, security: SecurityDep, caller: CallerDep) -> dict[str, Any]:
    changes = {"priority": req.priority, "stopped": req.stopped, "window": req.window, "mail": req.mail}
    owner = req.queue.rpartition(":")[0]
    if not owner or owner == caller.user:
        return await daemon.set_queue(req.queue, caller, **changes)
    try:
        result = await daemon.set_queue(req.queue, caller, **changes)
    except WulfError as e:
        if caller.admin:
            security.audit.record(caller, "qset", f"queue {req.queue}", f"refused: {e.message}")
        raise
    security.audit.record(caller, "qset", f"queue {req.queue}", "ok",
                          changes={k: v for k, v in changes.items() if v is not None})
    return result

@router.post("/api/v1/wait")
async def wait(req: WaitRequest, daemon: DaemonDep, caller: CallerDep) -> dict[str, Any]:
    return await daemon.wait(req.ids, req.queues, caller.user, req.timeout)

@router.post("/api/v1/interactive")
async def interactive(req: InteractiveRequest, daemon: DaemonDep, caller: CallerDep) -> InteractiveReply:
    return await daemon.interactive(req, caller)

@router.post("/api/v1/launch")
async def launch_tasks(req: LaunchRequest, daemon: DaemonDep, caller: CallerDep) -> LaunchReply:
    return await daemon.launch(req, caller)

@router.get("/api/v1/place")
async def place(daemon: DaemonDep, caller: CallerDep) -> PlaceReply:
    node = daemon.place_now(caller.user)  # for `jr --rsh`: the remote shell goes by host name
    return PlaceReply(node=node.name, host=node.info.hostname if node.info else node.address)

async def _audited(security: Security, caller: Caller, action: str, target: str, call: Any) -> Any:
    try:
        result = await call
    except WulfError as e:
        security.audit.record(caller, action, target, f"refused: {e.message}")
        raise
    security.audit.record(caller, action, target, "ok")
    return result


@router.post("/api/v1/admin/reload")
async def reload(daemon: DaemonDep, security: SecurityDep, caller: AdminDep) -> dict[str, Any]:
    from wulf.config import reload_config

    async def do() -> None:
        config = reload_config(daemon.config)
        security.check(config)
        daemon.reload(config)  # checks the policy before it changes anything
        security.reload(config)

    await _audited(security, caller, "reload", daemon.config.path or "(defaults)", do())
    return {"reloaded": daemon.config.path or "(defaults)"}

@router.post("/api/v1/admin/nodes/{name}/drain")
async def drain(name: str, daemon: DaemonDep, security: SecurityDep, caller: AdminDep) -> dict[str, Any]:
    await _audited(security, caller, "drain", f"node {name}", daemon.drain(name, True))
    return {"node": name, "state": "drain"}

@router.post("/api/v1/admin/nodes/{name}/resume")
async def resume(name: str, daemon: DaemonDep, security: SecurityDep, caller: AdminDep) -> dict[str, Any]:
    await _audited(security, caller, "resume", f"node {name}", daemon.drain(name, False))
    return {"node": name, "state": "up"}

@router.post("/api/v1/admin/nodes/{name}/quit")
async def quit_node(name: str, daemon: DaemonDep, security: SecurityDep, caller: AdminDep) -> dict[str, Any]:
    await _audited(security, caller, "quitnode", f"node {name}", daemon.quit_node(name))
    return {"node": name, "quit": True}

@router.post("/api/v1/admin/runall")
async def run_all(req: RunAllRequest, daemon: DaemonDep, security: SecurityDep, caller: AdminDep) -> dict[str, Any]:
    """``wulf runall``: a command as root on nodes; audited with the command and each node's exit."""
    target = f"nodes {','.join(req.nodes)}" if req.nodes else ("nodes " + req.features if req.features else "every node")
    try:
        results = await daemon.runall(req)
    except WulfError as e:
        security.audit.record(caller, "runall", target, f"refused: {e.message}", command=req.command)
        raise
    security.audit.record(caller, "runall", target, "ok", command=req.command,
                          exits={r["node"]: r["exit_code"] if not r["error"] else r["error"] for r in results})
    return {"results": results}

@router.post("/api/v1/admin/shutdown")
async def shutdown(request: Request, daemon: DaemonDep, security: SecurityDep, caller: AdminDep) -> dict[str, Any]:
    await _audited(security, caller, "shutdown", "the server and every agent", daemon.quit_all())
    if request.app.state.on_quit is not None:
        asyncio.get_running_loop().call_later(0.3, request.app.state.on_quit)
    return {"shutdown": True}

# ---------------------------------------------------------------- API tokens

@router.post("/api/v1/tokens")
async def create_token(req: TokenRequest, security: SecurityDep, caller: CallerDep) -> TokenReply:
    return await security.create_token(caller, req.name, req.days, req.read_only)

@router.get("/api/v1/tokens")
async def tokens(security: SecurityDep, caller: CallerDep) -> dict[str, Any]:
    return {"tokens": security.list_tokens(caller)}

@router.delete("/api/v1/tokens/{token_id}")
async def revoke_token(token_id: Annotated[int, FastPath(ge=1, le=2**63 - 1)], security: SecurityDep, caller: CallerDep) -> dict[str, Any]:
    await security.revoke_token(caller, token_id)
    return {"revoked": token_id}

@router.get("/api/v1/whoami")
async def whoami(caller: CallerDep) -> dict[str, Any]:
    return {"user": caller.user, "uid": caller.uid, "gid": caller.gid, "via": caller.via, "host": caller.host,
            "admin": caller.admin}

async def _refuse_ws(ws: WebSocket, code: int, reason: str = "") -> None:
    with contextlib.suppress(Exception):  # it may have gone already
        await ws.close(code=code, reason=reason[:120])


async def _hello(ws: WebSocket, timeout: float) -> Hello | None:
    """An agent's first message, if it is a hello that came within ``timeout`` seconds and speaks this
    server's protocol; else None, and the WebSocket is closed (the edge lets it be 512 KB at most)."""
    where = ws.client.host if ws.client and ws.client.host else "the Unix socket"
    try:
        async with asyncio.timeout(timeout):
            text = await ws.receive_text()
        mismatch = _other_protocol(text)
        if mismatch:
            log.warning("refused node %s", mismatch)
            await _refuse_ws(ws, 1008, mismatch)
            return None
        first = agent_message.validate_json(text)
    except TimeoutError:
        log.warning("refused a WebSocket from %s: no hello within %gs ([server] request_timeout)", where, timeout)
        await _refuse_ws(ws, 1008, f"no hello within {timeout:g}s")
        return None
    except WebSocketDisconnect as e:
        if e.code == 1009:
            log.warning("refused a WebSocket from %s: its first message was too large for a hello", where)
        return None
    except (OSError, RuntimeError):  # it went away: nothing to read (nor to close)
        return None
    except (ValidationError, KeyError):  # KeyError: bytes, not text
        await _refuse_ws(ws, 1002, "the first message must be a hello")
        return None
    if not isinstance(first, Hello):
        await _refuse_ws(ws, 1002, "the first message must be hello")
        return None
    return first


def _other_protocol(text: str) -> str:
    """Why a hello of another protocol is refused ("" if it speaks this server's), read before the hello
    is: a newer agent's hello may have fields this server does not know. Says which side to upgrade
    (it goes in the close frame's reason: short)."""
    try:
        hello = json.loads(text)
        version, node = hello.get("version"), hello.get("node") or {}
        name = str(node.get("name", "?"))[:32] if isinstance(node, dict) else "?"
    except (ValueError, AttributeError):
        return ""  # not a hello at all: validation says so
    if not isinstance(version, int) or version == PROTOCOL_VERSION:
        return ""
    name = "".join(ch if ch.isprintable() else "?" for ch in name)
    if version < PROTOCOL_VERSION:
        return f"{name}: protocol {version} < {PROTOCOL_VERSION} (wulf {__version__}): upgrade wulf on node {name}"
    return f"{name}: protocol {version} > {PROTOCOL_VERSION} (wulf {__version__}): upgrade the server first"


@router.websocket("/api/v1/agent")
async def agent(ws: WebSocket) -> None:
    daemon: Daemon = ws.app.state.daemon
    try:
        await ws.accept()
    except (WebSocketDisconnect, OSError, RuntimeError):  # it went away before the upgrade was answered
        return
    first = await _hello(ws, daemon.config.server.request_timeout)
    if first is None:
        return
    try:
        agent_uid = ws.app.state.security.agent(first)
    except Unauthenticated as e:
        log.warning("refused node %s from %s: %s", first.node.name, ws.client.host if ws.client else "?", e.message)
        await _refuse_ws(ws, 1008, e.message)
        return
    trust = ws.scope.get("state", {}).get(TRUST)
    if callable(trust):
        trust()  # a good hello: later messages may be as large as agents send
    host = ws.client.host if ws.client and ws.client.host else "127.0.0.1"
    if not host or host.startswith("/") or host == "testclient":
        host = "127.0.0.1"

    async def close() -> None:
        with contextlib.suppress(Exception):
            await ws.close()

    if agent_uid != 0:
        log.info("node %s: its agent runs as uid %d, not as root: it runs only that user's jobs", first.node.name,
                 agent_uid)
    link = AgentLink(send=ws.send_text, host=host, close=close, uid=agent_uid)
    admission: Admission = ws.app.state.admission
    try:
        try:
            async with admission.turn():  # (a storm of reconnections is taken in a few at a time)
                node = await daemon.agent_hello(first, link)
        except Refused as e:  # another agent has this node's name: this one stops (see NAME_TAKEN)
            await _refuse_ws(ws, NAME_TAKEN, e.message)
            return
        await _serve_agent(ws, daemon, node)
    except WebSocketDisconnect:
        pass
    except Exception as e:  # the handshake (or a message) failed: the node must not stay up
        log.error("node %s: dropped its connection: %s: %s", first.node.name, type(e).__name__, e)
        await _refuse_ws(ws, 1011, "the server failed to take in what this agent said")
    finally:
        node_now = daemon.nodes.get(first.node.name)
        if node_now is not None:
            await daemon.agent_gone(node_now, link)  # only if this connection is still the node's


async def _serve_agent(ws: WebSocket, daemon: Daemon, node: Node) -> None:
    while True:
        text = await ws.receive_text()
        try:
            msg = agent_message.validate_json(text)
        except ValidationError as e:
            log.warning("bad message from %s: %s", node.name, _describe(e))
            continue
        await daemon.agent_message(node, msg)


def create_app(daemon: Daemon, security: Security, on_quit: Any = None, web_url: str = "") -> FastAPI:
    """The app; ``web_url``: where a browser reaches it (its TCP address), for the sign-in links."""
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        daemon.start()
        saved = daemon.config.state_dir() / HISTORY_FILE
        app.state.load_history = read_history(saved)
        sampler = asyncio.create_task(keep_history(daemon.state, app.state.load_history, saved),
                                      name="wulf-load-history")
        yield
        sampler.cancel()
        write_history(saved, app.state.load_history)
        await daemon.stop()

    # no /docs nor /redoc: they load their scripts from a CDN, which the web interface's origin must not
    # run (such a script could act as the signed-in user); /openapi.json describes the API
    app = FastAPI(title="wulf", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.daemon = daemon
    app.state.security = security
    app.state.admission = Admission()
    app.state.on_quit = on_quit
    app.state.web_url = web_url
    app.state.load_history = LoadHistory()  # the plots of the web page
    app.state.streams = {}  # uid -> the live pages (server-sent events) they have open
    app.state.output_audited = {}  # (administrator's uid, job) -> when their read of its output was audited
    app.add_exception_handler(WulfError, _wulf_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
    app.add_exception_handler(404, _missing)
    app.add_exception_handler(405, _not_allowed)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.include_router(web_router)
    app.include_router(router)
    app.add_middleware(Guard, security=security)
    app.add_middleware(CountRequests, metrics=daemon.metrics)
    app.add_middleware(SecurityHeaders)
    return app
