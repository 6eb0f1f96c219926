"""The HTTP API and the agents' WebSocket, over the daemon.

Every error has one shape: ``{"error": {"kind": ..., "message": ...}}`` with kinds ``usage`` (400),
``not_found`` (404), ``refused`` (409) and ``error`` (500).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import ValidationError

from wulf import __version__
from wulf.errors import NotFound, Refused, UsageError, WulfError
from wulf.protocol import (
    Hello,
    IdsRequest,
    InteractiveReply,
    InteractiveRequest,
    NiceRequest,
    PlaceReply,
    QueueRequest,
    SignalRequest,
    SubmitReply,
    SubmitRequest,
    WaitRequest,
    agent_message,
)
from wulf.server.daemon import Daemon
from wulf.server.nodes import AgentLink

log = logging.getLogger("wulf.server")

_STATUS = {UsageError: 400, NotFound: 404, Refused: 409}
_KIND = {UsageError: "usage", NotFound: "not_found", Refused: "refused"}


def _error(kind: str, message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": {"kind": kind, "message": message}}, status_code=status)


def _describe(exc: RequestValidationError | ValidationError) -> str:
    parts = []
    for e in exc.errors()[:3]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
        parts.append(f"{loc}: {e.get('msg', 'invalid')}" if loc else str(e.get("msg", "invalid")))
    return "bad request: " + "; ".join(parts)


router = APIRouter()


def _daemon(request: Request) -> Daemon:
    d: Daemon = request.app.state.daemon
    return d


DaemonDep = Annotated[Daemon, Depends(_daemon)]


async def _wulf_error(request: Request, exc: WulfError) -> JSONResponse:
    for cls, status in _STATUS.items():
        if isinstance(exc, cls):
            return _error(_KIND[cls], exc.message, status)
    return _error("error", exc.message, 500)

async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    return _error("usage", _describe(exc), 400)

async def _missing(request: Request, exc: Exception) -> JSONResponse:
    return _error("not_found", f"no such endpoint: {request.method} {request.url.path}", 404)

async def _not_allowed(request: Request, exc: Exception) -> JSONResponse:
    return _error("usage", f"{request.method} is not allowed on {request.url.path}", 405)

@router.get("/healthz")
async def healthz() -> dict[str, Any]:
    return {"ok": True, "version": __version__}

@router.get("/api/v1/status")
async def status(daemon: DaemonDep, user: str = "", queue: str = "", all: int = 0) -> dict[str, Any]:
    return daemon.status(user, queue, bool(all))

@router.get("/api/v1/nodes")
async def nodes(daemon: DaemonDep) -> dict[str, Any]:
    return {"nodes": daemon.status()["nodes"]}

@router.post("/api/v1/jobs")
async def submit(req: SubmitRequest, daemon: DaemonDep) -> SubmitReply:
    return SubmitReply(jobs=await daemon.submit(req))

@router.get("/api/v1/jobs")
async def jobs(daemon: DaemonDep, user: str = "", queue: str = "", all: int = 1) -> dict[str, Any]:
    return {"jobs": daemon.status(user, queue, bool(all))["jobs"]}

@router.get("/api/v1/jobs/{job_id}")
async def job(job_id: int, daemon: DaemonDep) -> dict[str, Any]:
    return daemon.get(job_id).public(time.time())

@router.post("/api/v1/jobs/cancel")
async def cancel(req: IdsRequest, daemon: DaemonDep) -> dict[str, Any]:
    return await daemon.cancel(req.ids, req.user)

@router.post("/api/v1/jobs/signal")
async def signal(req: SignalRequest, daemon: DaemonDep) -> dict[str, Any]:
    if not 1 <= req.signal <= 64:
        raise UsageError(f"{req.signal} is not a signal number")
    return await daemon.signal(req.ids, req.signal, req.user)

@router.post("/api/v1/jobs/nice")
async def nice(req: NiceRequest, daemon: DaemonDep) -> dict[str, Any]:
    return await daemon.renice(req.ids, req.nice, req.user)

@router.post("/api/v1/jobs/hold")
async def hold(req: IdsRequest, daemon: DaemonDep) -> dict[str, Any]:
    return await daemon.hold(req.ids, req.user)

@router.post("/api/v1/jobs/release")
async def release(req: IdsRequest, daemon: DaemonDep) -> dict[str, Any]:
    return await daemon.release(req.ids, req.user)

@router.get("/api/v1/queues")
async def queues(daemon: DaemonDep, user: str = "") -> dict[str, Any]:
    return {"queues": daemon.queues(user)}

@router.post("/api/v1/queues")
async def set_queue(req: QueueRequest, daemon: DaemonDep) -> dict[str, Any]:
    return await daemon.set_queue(req.queue, req.user, priority=req.priority, stopped=req.stopped,
                                  window=req.window, mail=req.mail)

@router.post("/api/v1/wait")
async def wait(req: WaitRequest, daemon: DaemonDep) -> dict[str, Any]:
    return await daemon.wait(req.ids, req.queues, req.user, req.timeout)

@router.post("/api/v1/interactive")
async def interactive(req: InteractiveRequest, daemon: DaemonDep) -> InteractiveReply:
    return await daemon.interactive(req)

@router.get("/api/v1/place")
async def place(daemon: DaemonDep) -> PlaceReply:
    node = daemon.place_now()  # for `jr --rsh`: the remote shell goes by host name
    return PlaceReply(node=node.name, host=node.info.hostname if node.info else node.address)

@router.post("/api/v1/admin/reload")
async def reload(daemon: DaemonDep) -> dict[str, Any]:
    from wulf.config import load_config

    daemon.reload(load_config(daemon.config.path or None))
    return {"reloaded": daemon.config.path or "(defaults)"}

@router.post("/api/v1/admin/nodes/{name}/drain")
async def drain(name: str, daemon: DaemonDep) -> dict[str, Any]:
    await daemon.drain(name, True)
    return {"node": name, "state": "drain"}

@router.post("/api/v1/admin/nodes/{name}/resume")
async def resume(name: str, daemon: DaemonDep) -> dict[str, Any]:
    await daemon.drain(name, False)
    return {"node": name, "state": "up"}

@router.post("/api/v1/admin/nodes/{name}/quit")
async def quit_node(name: str, daemon: DaemonDep) -> dict[str, Any]:
    await daemon.quit_node(name)
    return {"node": name, "quit": True}

@router.post("/api/v1/admin/shutdown")
async def shutdown(request: Request, daemon: DaemonDep) -> dict[str, Any]:
    await daemon.quit_all()
    if request.app.state.on_quit is not None:
        asyncio.get_running_loop().call_later(0.3, request.app.state.on_quit)
    return {"shutdown": True}

@router.get("/", response_class=HTMLResponse)
async def page(daemon: DaemonDep) -> str:
    from wulf.server.page import render

    return render(daemon.status(all_jobs=False), daemon.queues())

@router.websocket("/api/v1/agent")
async def agent(ws: WebSocket) -> None:
    daemon: Daemon = ws.app.state.daemon
    await ws.accept()
    try:
        first = agent_message.validate_json(await ws.receive_text())
    except (ValidationError, WebSocketDisconnect):
        await ws.close(code=1002)
        return
    if not isinstance(first, Hello):
        await ws.close(code=1002, reason="the first message must be hello")
        return
    host = ws.client.host if ws.client and ws.client.host else "127.0.0.1"
    if not host or host.startswith("/") or host == "testclient":
        host = "127.0.0.1"

    async def close() -> None:
        with contextlib.suppress(Exception):
            await ws.close()

    link = AgentLink(send=ws.send_text, host=host, close=close)
    node = await daemon.agent_hello(first, link)
    try:
        while True:
            text = await ws.receive_text()
            try:
                msg = agent_message.validate_json(text)
            except ValidationError as e:
                log.warning("bad message from %s: %s", node.name, _describe(e))
                continue
            await daemon.agent_message(node, msg)
    except WebSocketDisconnect:
        pass
    finally:
        await daemon.agent_gone(node, link)


def create_app(daemon: Daemon, on_quit: Any = None) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        daemon.start()
        yield
        await daemon.stop()

    app = FastAPI(title="wulf", version=__version__, lifespan=lifespan)
    app.state.daemon = daemon
    app.state.on_quit = on_quit
    app.add_exception_handler(WulfError, _wulf_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
    app.add_exception_handler(404, _missing)
    app.add_exception_handler(405, _not_allowed)
    app.include_router(router)
    return app
