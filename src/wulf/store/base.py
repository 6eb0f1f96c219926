"""What the server needs of a store."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

from wulf.model.job import Job


class JobStore(Protocol):
    def load(self, history: int) -> tuple[list[Job], int]:
        """Every unfinished job and the newest ``history`` finished ones, and the next free job id."""
        ...

    def insert(self, jobs: Sequence[Job], envs: dict[str, str]) -> asyncio.Future[None]:
        """Durably record new jobs (and their environments, by hash); the future is done once committed.

        Writes are applied in the order of the calls, whether or not the caller awaits them."""
        ...

    def update(self, jobs: Sequence[Job]) -> asyncio.Future[None]:
        """Durably record the changing fields of these jobs."""
        ...

    def get(self, job_id: int) -> Job | None: ...

    def env(self, env_hash: str) -> dict[str, str]: ...

    def node_states(self) -> dict[str, str]: ...

    def set_node_state(self, name: str, state: str) -> asyncio.Future[None]: ...

    def queues(self) -> list[dict[str, Any]]:
        """Every queue's settings: user, name, priority, stopped, window, mail."""
        ...

    def set_queue(self, settings: dict[str, Any]) -> asyncio.Future[None]: ...

    def tokens(self) -> list[dict[str, Any]]:
        """Every API token's record (hashed: see wulf.auth.tokens.Token)."""
        ...

    def add_token(self, record: dict[str, Any]) -> asyncio.Future[None]: ...

    def remove_token(self, token_id: int) -> asyncio.Future[None]: ...

    def close(self) -> None: ...
