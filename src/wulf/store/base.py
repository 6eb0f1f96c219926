"""What the server needs of a store."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from wulf.model.accounting import AcctQuery
from wulf.model.job import Job

KEY_TTL = 24 * 3600.0
"""How long a submission's idempotency key is remembered (seconds): a client that tries again within
this time gets the ids of its first try."""


@dataclass(frozen=True)
class Submission:
    """A submission's idempotency key: ``uid``'s ``key`` names these jobs until ``expires``."""

    uid: int
    key: str
    expires: float


@dataclass(frozen=True)
class ArrayRow:
    """A job array as stored: its id (its first task's), its spec (``1-1000%50``), its script (once);
    ``rest``: the indices of its tasks after the first, which are stored as copies of the first's row
    with their own ids (the first's plus their position) and indices."""

    id: int
    spec: str
    script: str | None
    rest: Sequence[int] = ()


class JobStore(Protocol):
    def load(self, history: int) -> tuple[list[Job], int]:
        """Every unfinished job and the newest ``history`` finished ones, and the next free job id."""
        ...

    def insert(self, jobs: Sequence[Job], envs: dict[str, str],
               submission: Submission | None = None, arrays: Sequence[ArrayRow] = ()) -> asyncio.Future[None]:
        """Durably record new jobs (and their environments, by hash, the key they were submitted with,
        and arrays: each array's first task is one of ``jobs``, its other tasks are written as copies of
        it (see ArrayRow), and a task's script is its array's, stored once); the future is done once
        committed (it fails with a WulfError).

        Writes are applied in the order of the calls, whether or not the caller awaits them."""
        ...

    def submissions(self, now: float) -> dict[tuple[int, str], tuple[float, list[int]]]:
        """When the key of each submission not expired at ``now`` expires, and its jobs' ids, by (uid, key),
        the first to expire first."""
        ...

    def update(self, jobs: Sequence[Job], arrays: Sequence[tuple[int, str]] = ()) -> asyncio.Future[None]:
        """Durably record the changing fields of these jobs, and new specs of arrays (id, text: jmod
        --throttle), in one transaction."""
        ...

    def get(self, job_id: int) -> Job | None: ...

    def arrays(self) -> dict[int, str]:
        """Every array's spec, by id."""
        ...

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

    # accounting (issue 11 §7): blocking reads, each run in a worker thread off the event loop

    def accounting(self, q: AcctQuery) -> list[Job]:
        """A page of the ended jobs ``q`` asks for, by (ended, id)."""
        ...

    def accounting_summary(self, q: AcctQuery) -> list[dict[str, Any]]:
        """Per user (by name): jobs, cpu_hours, mean_wait, cpu_eff over the jobs ``q`` asks for."""
        ...

    def forget_ended(self, before: float, batch: int) -> asyncio.Future[int]:
        """Delete up to ``batch`` of the jobs that ended before ``before``; gives how many it deleted."""
        ...

    def close(self) -> None: ...
