"""Accounting in the server: queries of ended jobs (GET /api/v1/accounting), and forgetting the old ones.

Queries read the store in a worker thread (each with its own read connection: see
SqliteStore.accounting), never on the event loop. Who sees what follows jstat: everyone sees every
user's jobs, except the command line of another user's outside work (its program only), unless
``[server] private_accounting`` keeps others' jobs to administrators. Jobs that ended more than
``[server] keep_days`` ago are deleted at start and then hourly, a thousand per transaction.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wulf.auth.identity import Caller
from wulf.config import Config
from wulf.errors import Forbidden, UsageError, WulfError
from wulf.model.accounting import FINAL, MAX_IDS, AcctQuery, acct_row
from wulf.model.job import Job, Origin
from wulf.server.views import LIST_COMMAND_CHARS, program_of
from wulf.store.base import JobStore

log = logging.getLogger("wulf.server")

PRUNE_EVERY = 3600.0  # seconds between two rounds of deleting jobs older than keep_days
PRUNE_BATCH = 1000  # jobs deleted per transaction: the writer is never held long


@dataclass(frozen=True)
class Ask:
    """What GET /api/v1/accounting was asked (the API bounds each field; see wulf.server.app)."""

    user: str = ""
    all_users: bool = False
    start: float = 0.0
    end: float = 0.0  # 0: now
    states: str = ""  # comma-separated
    queue: str = ""  # NAME or USER:NAME
    ids: str = ""  # comma-separated
    cursor: str = ""  # the `next` of the page before
    limit: int = 0  # 0: [server] jobs_per_page
    summary: bool = False


def _split(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()] if text else []


def _ids(text: str) -> tuple[int, ...]:
    parts = _split(text)
    if len(parts) > MAX_IDS:
        raise UsageError(f"at most {MAX_IDS} job ids at once, not {len(parts)}")
    out = []
    for p in parts:
        if not p.isdecimal() or not 1 <= int(p) < 2**63:
            raise UsageError(f"{p[:40]!r} is not a job id (job ids are whole numbers, as jstat shows them)")
        out.append(int(p))
    return tuple(dict.fromkeys(out))


def _states(text: str) -> tuple[str, ...]:
    states = _split(text)
    for s in states:
        if s not in FINAL:
            raise UsageError(f"state {s[:40]!r} is not the state of an ended job ({', '.join(FINAL)})")
    return tuple(dict.fromkeys(states))


def _cursor(text: str) -> tuple[float, int] | None:
    if not text:
        return None
    ended, _, jid = text.partition(":")
    try:
        cursor = float(ended), int(jid)
    except ValueError:
        cursor = (float("nan"), 0)
    if not 0 <= cursor[0] < float("inf"):
        raise UsageError(f"{text[:40]!r} is not a page cursor (give the `next` of the page before)")
    return cursor


def _private(config: Config, caller: Caller) -> bool:
    return config.server.private_accounting and not caller.admin


def _users(ask: Ask, config: Config, caller: Caller, by_id: bool) -> tuple[str, ...]:
    """Whose jobs: the caller's own unless others are named (or, by id, whoever's they are)."""
    if ask.all_users or (by_id and not ask.user):
        if _private(config, caller) and not by_id:
            raise Forbidden(f"only administrators see every user's jobs here ([server] private_accounting); "
                            f"{caller.user} sees their own")
        return ()
    who = ask.user or caller.user
    if who != caller.user and _private(config, caller):
        raise Forbidden(f"only administrators see {who}'s jobs here ([server] private_accounting); "
                        f"{caller.user} sees their own")
    return (who,)


def build(ask: Ask, config: Config, caller: Caller, now: float) -> AcctQuery:
    """The store's query for ``ask`` from ``caller``; UsageError or Forbidden if it is not one."""
    ids = _ids(ask.ids)
    end = ask.end or now
    if not ids and ask.start >= end:
        raise UsageError(f"the start ({ask.start:.0f}) must be before the end ({end:.0f})")
    qu, _, qn = ask.queue.rpartition(":")
    page = config.server.jobs_per_page
    return AcctQuery(users=_users(ask, config, caller, bool(ids)), start=ask.start, end=end,
                     states=_states(ask.states), queue=qn, queue_user=qu, ids=ids, after=_cursor(ask.cursor),
                     limit=len(ids) if ids else min(ask.limit, page) if ask.limit > 0 else page)


def shown_row(job: Job, caller: Caller) -> dict[str, Any]:
    """A job's accounting line as ``caller`` may see it: another user's outside work shows its program
    only (as jstat shows it), and a long command is cut."""
    row = acct_row(job)
    command = job.command
    if job.origin is Origin.EXTERNAL and job.uid != caller.uid and not caller.admin:
        command = program_of(command)
    row["command"] = command if len(command) <= LIST_COMMAND_CHARS else command[:LIST_COMMAND_CHARS] + "…"
    return row


async def answer(store: JobStore, config: Config, caller: Caller, ask: Ask) -> dict[str, Any]:
    """GET /api/v1/accounting: ``{"jobs": [...], "next": CURSOR or None}``, or with ``summary``
    ``{"users": [...]}``. The store is read in a worker thread."""
    q = build(ask, config, caller, time.time())
    if ask.summary:
        return {"users": await asyncio.to_thread(store.accounting_summary, q)}
    jobs = await asyncio.to_thread(store.accounting, q)
    if q.ids and _private(config, caller):
        for job in jobs:
            if job.uid != caller.uid:
                raise Forbidden(f"job {job.id} belongs to {job.user}: only administrators see others' jobs here "
                                f"([server] private_accounting)")
    more = not q.ids and len(jobs) == q.limit and jobs[-1].ended is not None
    return {"jobs": [shown_row(j, caller) for j in jobs],
            "next": f"{jobs[-1].ended!r}:{jobs[-1].id}" if more else None}


async def prune(store: JobStore, before: float) -> int:
    """Delete the jobs that ended before ``before``, PRUNE_BATCH per transaction; how many."""
    total = 0
    while True:
        n = await store.forget_ended(before, PRUNE_BATCH)
        total += n
        if n < PRUNE_BATCH:
            return total
        await asyncio.sleep(0)  # other writes go between two batches


async def keep_pruning(store: JobStore, config: Callable[[], Config]) -> None:
    """Forever: delete jobs older than ``[server] keep_days`` (read each round: a reload changes it)."""
    while True:
        days = config().server.keep_days
        if days > 0:
            try:
                n = await prune(store, time.time() - days * 86400)
                if n:
                    log.info("deleted %d jobs that ended more than %g days ago ([server] keep_days)", n, days)
            except WulfError as e:
                log.error("could not delete old jobs: %s", e.message)
        await asyncio.sleep(PRUNE_EVERY)
