"""``wulf runall``: an administrator's command run as root on chosen nodes, through their agents.

The server sends each chosen node a RunCommand on its agent's connection, at most ``parallel`` at a
time, and gathers the Ran answers. A node that is down, or whose agent goes away before it answers,
gets a result that says so. Nothing here touches the jobs: this is the shell's business, next to the
state machine, not in it.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

from wulf.errors import NotFound, UsageError
from wulf.protocol import Ran, RunAllRequest, RunCommand
from wulf.server.nodes import Node

#: seconds an agent may take beyond the command's timeout to answer (it kills the command at the timeout)
ANSWER_GRACE = 15.0


def choose(nodes: dict[str, Node], names: list[str], features: str,
           features_of: Callable[[str], frozenset[str]]) -> list[Node]:
    """The nodes named (each must exist), or all, less those that lack the features asked for."""
    if names:
        unknown = [n for n in names if n not in nodes]
        if unknown:
            raise NotFound(f"no node {unknown[0]}" + (f" (and {len(unknown) - 1} more unknown)" if len(unknown) > 1 else ""))
        chosen = [nodes[n] for n in dict.fromkeys(names)]
    else:
        chosen = sorted(nodes.values(), key=lambda n: n.name)
    if features:
        from wulf.policy.constraint import parse_constraint

        constraint = parse_constraint(features)
        chosen = [n for n in chosen if constraint.matches(n.attrs(), features_of(n.name))]
    if not chosen:
        raise UsageError("no node matches" if names or features else "there are no nodes")
    return chosen


class RunAll:
    """The commands sent and not yet answered, by request id."""

    def __init__(self, send: Callable[[str, str], Awaitable[bool]]) -> None:
        self._send = send  # (node, text) -> whether it was sent
        self._ids = itertools.count(1)
        self._waiting: dict[int, tuple[str, asyncio.Future[Ran]]] = {}

    async def run(self, req: RunAllRequest, nodes: list[Node]) -> list[dict[str, Any]]:
        limit = asyncio.Semaphore(req.parallel)

        async def one(node: Node) -> dict[str, Any]:
            async with limit:
                return await self._one(node, req)

        return list(await asyncio.gather(*(one(n) for n in nodes)))

    async def _one(self, node: Node, req: RunAllRequest) -> dict[str, Any]:
        out: dict[str, Any] = {"node": node.name, "exit_code": None, "output": "", "error": ""}
        if node.link is None:
            out["error"] = "the node is down (no agent connected)"
            return out
        rid = next(self._ids)
        fut: asyncio.Future[Ran] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = (node.name, fut)
        try:
            if not await self._send(node.name, RunCommand(id=rid, command=req.command,
                                                          timeout=req.timeout).model_dump_json()):
                out["error"] = "the node's agent went away"
                return out
            async with asyncio.timeout(req.timeout + ANSWER_GRACE):
                ran = await fut
        except TimeoutError:
            out["error"] = "its agent did not answer"
            return out
        finally:
            self._waiting.pop(rid, None)
        out.update(exit_code=ran.exit_code, output=ran.output, error=ran.error)
        return out

    def answered(self, node: str, ran: Ran) -> None:
        waiting = self._waiting.get(ran.id)
        if waiting is not None and waiting[0] == node and not waiting[1].done():  # from the node it went to
            waiting[1].set_result(ran)

    def gone(self, node: str) -> None:
        """The node's agent went away: what it was to answer will not come."""
        for name, fut in list(self._waiting.values()):
            if name == node and not fut.done():
                fut.set_result(Ran(id=0, error="the node's agent went away before it answered"))
