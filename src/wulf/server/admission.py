"""Agents admitted a few at a time (issue 16 §2): after a restart of the server, every agent of the
cluster connects within seconds; taking in all their handshakes at once left each waiting on all the
others, and at thousands of nodes a fifth of them timed out and tried again, which only made the storm
last longer.

An agent's connection is accepted at once (its WebSocket handshake is answered, so the agent's own
timeout for it does not run out) and its hello read and its credential checked; then it waits its turn
here. At most ``HELLO_CONCURRENCY`` nodes are brought up at the same time (reconciled, welcomed, their
changes committed); the others wait in the order they came, with no time limit (their connection is
open; nothing more is read from it until they are up). Agents that find no server back off with jitter
(wulf.agent.backoff), so that the next storm is spread too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

log = logging.getLogger("wulf.server")

HELLO_CONCURRENCY = 32
"""Nodes brought up at the same time; the others wait their turn."""
QUIET = 10.0
"""Seconds between two log lines about a queue of agents."""


class Admission:
    def __init__(self, concurrency: int = HELLO_CONCURRENCY) -> None:
        self._turns = asyncio.Semaphore(concurrency)
        self.waiting = 0
        self.admitted = 0
        self._said = 0.0

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Wait for a turn to bring a node up, and hold it while doing so."""
        self.waiting += 1
        try:
            if self._turns.locked():
                self._note()
            await self._turns.acquire()
        finally:
            self.waiting -= 1
        try:
            self.admitted += 1
            yield
        finally:
            self._turns.release()

    def _note(self) -> None:
        now = time.monotonic()
        if now - self._said >= QUIET:
            self._said = now
            log.info("agents connect faster than they are taken in: %d wait their turn", self.waiting)
