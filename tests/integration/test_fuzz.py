"""Malformed and hostile requests against the HTTP API, generated from its OpenAPI document
(schemathesis, in-process against the ASGI app with the real daemon and store behind it).

The fuzzing user is an ordinary user (uid 65534) on the Unix socket; another user (uid 4242) has jobs,
a queue and a token. Whatever is thrown at it, the API answers no 5xx, every error has the one
error shape, and nothing of the other user's, or of the cluster's, changes.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from wulf.auth.identity import SOCKET, Caller
from wulf.auth.key import ClusterKey
from wulf.config import parse_config
from wulf.protocol import JobSpec, SubmitRequest
from wulf.server.app import create_app
from wulf.server.daemon import Daemon
from wulf.server.peer import PEER
from wulf.server.security import Security
from wulf.store.sqlite import SqliteStore

FUZZER = (1, 65534, 65534)  # (pid, uid, gid) on the Unix socket
OTHER = Caller("4242", 4242, 4242, SOCKET, "local")
EXAMPLES = 40  # per operation and identity: the whole test stays well under a minute
SLOW = ["/api/v1/wait"]  # may wait up to a minute by design

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::ResourceWarning")


class _As:
    """The server's transport layer, for tests: every request comes from ``peer`` on the Unix socket
    (or, with None, from 127.0.0.1 over TCP with no identity)."""

    def __init__(self, app: Any, peer: tuple[int, int, int] | None) -> None:
        self.app, self.peer = app, peer

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            state = dict(scope.get("state") or {})
            if self.peer is not None:
                state[PEER] = self.peer
            else:
                scope = {**scope, "client": ("127.0.0.1", 40000)}
            scope = {**scope, "state": state}
        await self.app(scope, receive, send)


class World:
    def __init__(self, tmp: Path) -> None:
        config = parse_config(f'[server]\nstate_dir = "{tmp}"\nrate_limit = 0.0\n')
        self.store = SqliteStore(tmp / "wulf.db")
        self.daemon = Daemon(config, self.store)
        self.daemon.load()
        self.security = Security(config, ClusterKey(b"k" * 32), self.store)
        asyncio.run(self._others())
        self.app = create_app(self.daemon, self.security)
        self.before = self.snapshot()

    async def _others(self) -> None:
        req = SubmitRequest(jobs=[JobSpec(command="sleep 1", cwd="/tmp", queue="q"), JobSpec(command="x", cwd="/")])
        self.ids = await self.daemon.submit(req, OTHER)
        await self.daemon.hold([self.ids[1]], OTHER)
        await self.daemon.set_queue("q", OTHER, priority=3)
        await self.security.create_token(OTHER, "theirs", None)

    def snapshot(self) -> dict[str, Any]:
        jobs = {i: self.daemon.get(i).public(0.0) for i in self.ids}
        for j in jobs.values():
            j.pop("age")
        return {
            "jobs": jobs,
            "queues": [{k: q[k] for k in ("user", "name", "priority", "stopped", "window", "mail", "queued")}
                       for q in self.daemon.queues() if q["user"] == OTHER.user],
            "tokens": [t for t in self.security.tokens.by_id.values() if t.uid == OTHER.uid],
            "nodes": {n: (node.drained, node.link) for n, node in self.daemon.nodes.items()},
            "shutdown": self.app.state.on_quit,
        }


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    w = World(tmp_path_factory.mktemp("fuzz"))
    yield w
    w.store.close()


def _schema(world: World, peer: tuple[int, int, int] | None) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", _As(world.app, peer)).exclude(path=SLOW)


def _error_shape(response: Any) -> None:
    kind = response.headers.get("content-type") or [""]
    if response.status_code >= 400 and kind[0].startswith("application/json"):
        body = response.json()
        assert set(body) == {"error"} and {"kind", "message"} <= set(body["error"]), body
        assert isinstance(body["error"]["message"], str) and body["error"]["message"]


def _fuzz(schema: Any, check: Any, examples: int = EXAMPLES) -> tuple[int, int]:
    """Throw well-formed and malformed requests (schemathesis' positive and negative modes) at every
    operation of ``schema``; ``check(case, response)`` each answer. How many operations there were,
    and how many requests were made."""
    operations = [r.ok() for r in schema.get_all_operations()]
    calls = 0
    for op in operations:
        strategy = st.one_of(op.as_strategy(GenerationMode.POSITIVE), op.as_strategy(GenerationMode.NEGATIVE))

        @given(case=strategy)
        @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def one(case: Any) -> None:
            nonlocal calls
            calls += 1
            response = case.call()
            case.validate_response(response, checks=[not_a_server_error])
            _error_shape(response)
            check(case, response)

        one()
    return len(operations), calls


def test_an_ordinary_user_gets_no_server_error(world: World) -> None:
    assert _fuzz(_schema(world, FUZZER), lambda case, response: None)[0] > 20


MANY = int(os.environ.get("WULF_FUZZ_REQUESTS", "100000"))


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("who", ["user", "nobody"])
def test_a_hundred_thousand_requests_without_a_server_error(world: World, who: str) -> None:
    """The long run (the slow stage of ./dev test): 10^5 generated requests in all, half as an ordinary
    user and half as nobody at all (two tests, which ./dev runs side by side), and not one server error.
    Hypothesis stops early on an operation with few distinct requests, so rounds go on until the count
    is reached."""
    schema = _schema(world, FUZZER if who == "user" else None)
    want = MANY // 2
    per = want // 30 + 1
    done = rounds = 0
    while done < want and rounds < 20:
        done += _fuzz(schema, lambda case, response: None, examples=per)[1]
        rounds += 1
    print(f"fuzz as {who}: {done} requests in {rounds} rounds, no server error")
    assert done >= want
    assert world.snapshot() == world.before  # and nothing of anyone else's changed


def test_nobody_unknown_gets_in(world: World) -> None:
    def check(case: Any, response: Any) -> None:
        public = case.path in ("/healthz", "/openapi.json", "/login", "/logout")
        assert public or response.status_code in (400, 401, 404, 405), (case.path, response.status_code)

    _fuzz(_schema(world, None), check)


def test_nothing_of_anyone_elses_changed(world: World) -> None:
    assert world.snapshot() == world.before
