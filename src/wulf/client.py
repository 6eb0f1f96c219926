"""A small client for the wulf HTTP API, standard library only, so the commands start fast.

It is also wulf's Python API::

    from wulf.client import Client
    c = Client()                       # $WULF_SERVER, the config, or the local `wulf up`
    ids = c.submit([{"command": "echo hi", "cwd": "/tmp"}])
    c.wait(ids)
"""

from __future__ import annotations

import http.client
import json
import os
import pwd
import socket
import time
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, urlsplit

from wulf.errors import ServerUnreachable, WulfError, error_from_kind


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


def current_user() -> tuple[str, int]:
    uid = os.getuid()
    try:
        return pwd.getpwuid(uid).pw_name, uid
    except KeyError:
        return str(uid), uid


def _how_to_start(url: str) -> str:
    if url.startswith("unix:"):
        return "start a local cluster with `wulf up`, or set WULF_SERVER to the server's URL"
    return "start it with `wulf server`, or set WULF_SERVER to the right URL"


class Client:
    def __init__(self, url: str | None = None, timeout: float = 30.0) -> None:
        if url is None:
            from wulf.config import server_url

            url = server_url()
        self.url = url
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self.user, self.uid = current_user()

    # ------------------------------------------------------------------ transport

    def _connect(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self.url.startswith("unix:"):
                self._conn = _UnixConnection(self.url[5:], self.timeout)
            else:
                parts = urlsplit(self.url if "//" in self.url else "http://" + self.url)
                if parts.scheme not in ("http", ""):
                    raise WulfError(f"unsupported server URL {self.url!r} (use http://HOST:PORT or unix:PATH)")
                self._conn = http.client.HTTPConnection(parts.hostname or "localhost", parts.port or 7878,
                                                        timeout=self.timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self, method: str, path: str, body: Any = None, timeout: float | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        for attempt in range(2):  # one silent retry when a kept-alive connection was closed
            conn = self._connect()
            if timeout is not None:
                conn.timeout = timeout
                if conn.sock is not None:
                    conn.sock.settimeout(timeout)
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                payload = resp.read()
                break
            except (ConnectionRefusedError, FileNotFoundError) as e:
                self.close()
                raise ServerUnreachable(
                    f"cannot reach the wulf server at {self.url} ({e.strerror}); {_how_to_start(self.url)}"
                ) from None
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                self.close()
                if attempt:
                    raise ServerUnreachable(f"the wulf server at {self.url} closed the connection ({e})") from None
            except (TimeoutError, socket.timeout):
                self.close()
                raise ServerUnreachable(f"the wulf server at {self.url} did not answer in time") from None
            except OSError as e:
                self.close()
                raise ServerUnreachable(
                    f"cannot reach the wulf server at {self.url} ({e.strerror or e}); {_how_to_start(self.url)}"
                ) from None
        try:
            result = json.loads(payload) if payload else None
        except ValueError:
            raise WulfError(f"the server at {self.url} sent something that is not JSON (status {resp.status})") from None
        if resp.status >= 400:
            err = result.get("error") if isinstance(result, dict) else None
            if isinstance(err, dict):
                raise error_from_kind(str(err.get("kind", "error")), str(err.get("message", "")))
            raise WulfError(f"the server answered {resp.status}: {payload[:200]!r}")
        return result

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: Any = None, timeout: float | None = None) -> Any:
        return self.request("POST", path, body if body is not None else {}, timeout=timeout)

    # ------------------------------------------------------------------ API

    def submit(self, jobs: list[dict[str, Any]], env: dict[str, str] | None = None) -> list[int]:
        """Queue jobs (dicts of :class:`wulf.protocol.JobSpec` fields); returns their ids."""
        reply = self.post("/api/v1/jobs", {"jobs": jobs, "env": dict(os.environ) if env is None else env,
                                           "user": self.user, "uid": self.uid})
        return list(reply["jobs"])

    def status(self, user: str = "", queue: str = "", all_jobs: bool = False) -> dict[str, Any]:
        q = f"?all={int(all_jobs)}"
        if user:
            q += "&user=" + quote(user)
        if queue:
            q += "&queue=" + quote(queue)
        return dict(self.get("/api/v1/status" + q))

    def job(self, job_id: int) -> dict[str, Any]:
        return dict(self.get(f"/api/v1/jobs/{int(job_id)}"))

    def cancel(self, ids: Iterable[int]) -> dict[str, Any]:
        return dict(self.post("/api/v1/jobs/cancel", {"ids": list(ids), "user": self.user}))

    def signal(self, ids: Iterable[int], signum: int) -> dict[str, Any]:
        return dict(self.post("/api/v1/jobs/signal", {"ids": list(ids), "signal": signum, "user": self.user}))

    def renice(self, ids: Iterable[int], nice: int) -> dict[str, Any]:
        return dict(self.post("/api/v1/jobs/nice", {"ids": list(ids), "nice": nice, "user": self.user}))

    def wait_once(self, ids: list[int], queues: list[str], timeout: float) -> dict[str, Any]:
        body = {"ids": ids, "queues": queues, "user": self.user, "timeout": timeout}
        return dict(self.post("/api/v1/wait", body, timeout=timeout + self.timeout))

    def wait(self, ids: list[int], queues: list[str] | None = None, timeout: float | None = None) -> dict[str, Any]:
        """Block until every job named (or in the queues named) has ended; returns the last answer."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = 30.0 if deadline is None else max(0.0, min(30.0, deadline - time.monotonic()))
            reply = self.wait_once(ids, queues or [], step)
            if reply["done"] or (deadline is not None and time.monotonic() >= deadline):
                return reply
