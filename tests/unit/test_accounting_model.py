"""Accounting without processes: the times jacct reads, each job's line, the store's queries (with
their indexes), who may see what, and forgetting old jobs."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from wulf.auth.identity import SOCKET, Caller
from wulf.cli.jacct import jobs_table, summary_table
from wulf.cli.jeff import describe
from wulf.cli.when import parse_when
from wulf.config import parse_config
from wulf.errors import ConfigError, Forbidden, UsageError
from wulf.model.accounting import AcctQuery, acct_row, attempts
from wulf.model.job import Job, JobState, Origin
from wulf.server import accounting
from wulf.server.accounting import Ask, build
from wulf.store import open_store
from wulf.store.base import JobStore
from wulf.store.sqlite import SqliteStore

TZ = timezone(timedelta(hours=1))
NOW = datetime(2026, 12, 7, 15, 30, 0, tzinfo=TZ)
DAY = 86400.0


# ---------------------------------------------------------------- times as users write them

@pytest.mark.parametrize(("text", "expected"), [
    ("now", NOW),
    ("today", datetime(2026, 12, 7, tzinfo=TZ)),
    ("midnight", datetime(2026, 12, 7, tzinfo=TZ)),
    ("yesterday", datetime(2026, 12, 6, tzinfo=TZ)),
    ("noon", datetime(2026, 12, 7, 12, tzinfo=TZ)),
    ("2026-12-01", datetime(2026, 12, 1, tzinfo=TZ)),
    ("2026-12-01T10:00", datetime(2026, 12, 1, 10, tzinfo=TZ)),
    ("2026-12-01 10:00:30", datetime(2026, 12, 1, 10, 0, 30, tzinfo=TZ)),
    ("2026-12-01T10:00Z", datetime(2026, 12, 1, 10, tzinfo=UTC)),
    ("2026-12-01T10:00+03:00", datetime(2026, 12, 1, 10, tzinfo=timezone(timedelta(hours=3)))),
    ("09:15", datetime(2026, 12, 7, 9, 15, tzinfo=TZ)),
    ("now-7days", NOW - timedelta(days=7)),
    ("now - 2 hours", NOW - timedelta(hours=2)),
    ("now+1w", NOW + timedelta(weeks=1)),
    ("now-90", NOW - timedelta(seconds=90)),
    ("-7d", NOW - timedelta(days=7)),
    ("-30m", NOW - timedelta(minutes=30)),
    ("-12H", NOW - timedelta(hours=12)),
])
def test_times_users_write(text: str, expected: datetime) -> None:
    assert parse_when(text, NOW) == expected.timestamp()


@pytest.mark.parametrize(("text", "says"), [
    ("", "is not a time"),
    ("last week", "is not a time"),
    ("-7", "needs a unit"),
    ("now-7fortnights", "unknown unit"),
    ("2026-13-01", "is not a date"),
    ("2026-02-30", "is not a date"),
    ("25:00", "is not a time of day"),
    ("12/01/26", "is not a time"),
    ("-999999999w", "hundred years"),
])
def test_bad_times_are_one_clear_line(text: str, says: str) -> None:
    with pytest.raises(UsageError, match=says) as e:
        parse_when(text, NOW, "-S")
    assert e.value.message.startswith("-S: ") and "\n" not in e.value.message


# ---------------------------------------------------------------- a job's line

def _ended(jid: int, user: str = "alice", ended: float = 1000.0, state: JobState = JobState.DONE, **kw: Any) -> Job:
    fields: dict[str, Any] = {"submitted": ended - 100, "started": ended - 90, "cpu": 2.0, "cpu_req": 2.0,
                              "mem_req": 512.0, "cpu_time": 90.0, "peak_mem_mb": 128.0, "exit_code": 0,
                              "node": "n1", "name": f"job{jid}", "command": "run --secret x"}
    fields.update(kw)
    return Job(id=jid, user=user, uid=1000 if user == "alice" else 1001, origin=Origin.BATCH, state=state,
               ended=ended, **fields)


def test_a_jobs_line_says_wait_run_and_efficiency() -> None:
    row = acct_row(_ended(7))
    assert row["wait"] == 10 and row["run"] == 90
    assert row["cpu_time"] == 90 and row["cpu_used"] == 1.0 and row["cpu_eff"] == 0.5  # 90 s of 2 cpus x 90 s
    assert row["mem_eff"] == 0.25 and row["attempts"] == 1 and row["exit_code"] == 0
    never = acct_row(_ended(8, started=None, cpu_time=None, peak_mem_mb=None, state=JobState.CANCELLED))
    assert never["wait"] is None and never["run"] is None and never["cpu_eff"] is None and never["mem_eff"] is None
    assert attempts(_ended(8, started=None)) == 0


def test_tables_and_words_show_the_lines() -> None:
    row = acct_row(_ended(7))
    table = jobs_table([row])
    assert "CPU(REQ/USED)" in table and "2/1.00" in table and "50%" in table and "512M/128M" in table
    assert summary_table([{"user": "alice", "jobs": 3, "cpu_hours": 1.5, "mean_wait": 10.0, "cpu_eff": 0.5}]) \
        .splitlines()[1].split() == ["alice", "3", "1.50", "10s", "50%"]
    words = describe(row)
    assert "State: done (exit code 0)" in words and "50.0% efficiency" in words
    assert "peak 128M of 512M asked (25.0%)" in words and "Attempts: 1" in words
    running = {**row, "state": "running", "ended": None}
    assert "known once it ends" in describe(running)


# ---------------------------------------------------------------- the store's queries

@pytest.fixture
def store(store_url: str) -> Iterator[JobStore]:
    """A store on each backend (see the store_url fixture)."""
    s = open_store(store_url)
    try:
        yield s
    finally:
        s.close()


def _fill(store: JobStore, jobs: list[Job]) -> None:
    async def go() -> None:
        await store.insert(jobs, {})

    asyncio.run(go())


def _world() -> list[Job]:
    jobs = []
    for i in range(1, 61):  # alice and bob, a job every 10 days back from day 600; some failed
        user = "alice" if i % 2 else "bob"
        jobs.append(_ended(i, user, ended=i * 10 * DAY, state=JobState.FAILED if i % 5 == 0 else JobState.DONE,
                           queue="big" if i % 3 == 0 else "default"))
    jobs.append(Job(id=61, user="alice", uid=1000, origin=Origin.BATCH, state=JobState.RUNNING, command="x",
                    submitted=5.0, started=6.0))
    return jobs


def test_store_answers_by_user_window_state_queue_and_ids(store: JobStore) -> None:
    _fill(store, _world())
    ids = [j.id for j in store.accounting(AcctQuery(users=("alice",), start=100 * DAY, end=200 * DAY))]
    assert ids == [11, 13, 15, 17, 19]  # ended in [100, 200) days, by end time; running jobs never
    assert [j.id for j in store.accounting(AcctQuery(start=100 * DAY, end=130 * DAY))] == [10, 11, 12]
    failed = store.accounting(AcctQuery(states=("failed",), end=1e12))
    assert [j.id for j in failed] == [5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60]
    big = store.accounting(AcctQuery(users=("bob",), queue="big", end=1e12))
    assert [j.id for j in big] == [6, 12, 18, 24, 30, 36, 42, 48, 54, 60]
    assert [j.id for j in store.accounting(AcctQuery(ids=(61, 3, 999), limit=3))] == [61, 3]  # any state, by id


def test_store_pages_by_end_time(store: JobStore) -> None:
    same = [_ended(i, ended=50.0) for i in range(1, 8)]  # one end time: the id breaks ties
    _fill(store, same)
    seen: list[int] = []
    after = None
    while True:
        page = store.accounting(AcctQuery(end=1e12, limit=3, after=after))
        seen += [j.id for j in page]
        if len(page) < 3:
            break
        after = (page[-1].ended or 0.0, page[-1].id)
    assert seen == list(range(1, 8))


def test_store_summary_per_user(store: JobStore) -> None:
    _fill(store, [_ended(1, "alice", cpu_time=3600.0, started=0.0, submitted=-10.0, ended=3600.0, cpu=1.0),
                  _ended(2, "alice", cpu_time=1800.0, started=0.0, submitted=-30.0, ended=3600.0, cpu=1.0),
                  _ended(3, "bob", ended=50.0, started=None, cpu_time=None, state=JobState.CANCELLED)])
    summary = store.accounting_summary(AcctQuery(end=1e12))
    assert summary == [
        {"user": "alice", "jobs": 2, "cpu_hours": 1.5, "mean_wait": 20.0, "cpu_eff": 0.75},
        {"user": "bob", "jobs": 1, "cpu_hours": 0.0, "mean_wait": None, "cpu_eff": None},
    ]


def test_queries_use_the_accounting_indexes(tmp_path: Path) -> None:
    """A million jobs answer quickly only if the planner searches an index, never scans the table."""
    from wulf.store.sqlite import _acct_where

    conn = SqliteStore(tmp_path / "wulf.db")._reader()
    for q, index in ((AcctQuery(users=("alice",), start=1.0, end=2.0, after=(1.0, 5)), "jobs_user_ended"),
                     (AcctQuery(start=1.0, end=2.0), "jobs_ended")):
        where, params = _acct_where(q)
        if q.after:
            where += " AND (ended, id) > (?, ?)"
            params += list(q.after)
        plan = " ".join(r[-1] for r in conn.execute(
            f"EXPLAIN QUERY PLAN SELECT id FROM jobs WHERE {where} ORDER BY ended, id LIMIT 10", params))
        assert f"USING INDEX {index}" in plan and "TEMP B-TREE" not in plan, plan


def test_forget_ended_deletes_old_jobs_in_batches(store: JobStore) -> None:
    _fill(store, _world())

    async def go() -> tuple[int, int]:
        first = await store.forget_ended(300 * DAY, 7)
        rest = await accounting.prune(store, 300 * DAY)
        return first, rest

    assert asyncio.run(go()) == (7, 22)  # 29 ended before day 300
    left = store.accounting(AcctQuery(end=1e12))
    assert [j.id for j in left] == list(range(30, 61))
    assert store.get(61) is not None  # a running job is never forgotten


# ---------------------------------------------------------------- who may see what

ALICE = Caller("alice", 1000, 1000, SOCKET)
ADMIN = Caller("carol", 1002, 1002, SOCKET, admin=True)


def test_default_is_ones_own_jobs_and_others_are_asked_for() -> None:
    config = parse_config("")
    assert build(Ask(), config, ALICE, 100.0).users == ("alice",)
    assert build(Ask(user="bob"), config, ALICE, 100.0).users == ("bob",)
    assert build(Ask(all_users=True), config, ALICE, 100.0).users == ()
    assert build(Ask(ids="3,4,3"), config, ALICE, 100.0).ids == (3, 4)
    assert build(Ask(ids="3"), config, ALICE, 100.0).users == ()  # by id: whoever's it is


def test_private_accounting_keeps_others_jobs_to_administrators() -> None:
    config = parse_config("[server]\nprivate_accounting = true\n")
    with pytest.raises(Forbidden, match="only administrators see bob's jobs"):
        build(Ask(user="bob"), config, ALICE, 100.0)
    with pytest.raises(Forbidden):
        build(Ask(all_users=True), config, ALICE, 100.0)
    assert build(Ask(user="alice"), config, ALICE, 100.0).users == ("alice",)
    assert build(Ask(user="bob"), config, ADMIN, 100.0).users == ("bob",)


@pytest.mark.parametrize(("ask", "says"), [
    (Ask(states="running"), "not the state of an ended job"),
    (Ask(ids="1,x"), "is not a job id"),
    (Ask(ids=",".join(map(str, range(1, 1100)))), "at most 1000"),
    (Ask(cursor="soon"), "not a page cursor"),
    (Ask(cursor="nan:3"), "not a page cursor"),
    (Ask(cursor="inf:3"), "not a page cursor"),
    (Ask(start=200.0, end=100.0), "must be before the end"),
])
def test_bad_questions_are_usage_errors(ask: Ask, says: str) -> None:
    with pytest.raises(UsageError, match=says):
        build(ask, parse_config(""), ALICE, 1000.0)


def test_others_outside_work_shows_its_program_only(store: JobStore) -> None:
    outside = _ended(1, "bob", command="/usr/bin/python secret.py --token abc")
    outside.origin = Origin.EXTERNAL
    _fill(store, [outside])
    config = parse_config("")

    async def ask(caller: Caller) -> str:
        reply = await accounting.answer(store, config, caller, Ask(user="bob", start=0.0, end=1e9))
        return str(reply["jobs"][0]["command"])

    assert asyncio.run(ask(ALICE)) == "python"
    assert asyncio.run(ask(ADMIN)) == "/usr/bin/python secret.py --token abc"


def test_private_accounting_refuses_anothers_job_by_id(store: JobStore) -> None:
    _fill(store, [_ended(1, "bob")])
    config = parse_config("[server]\nprivate_accounting = true\n")
    with pytest.raises(Forbidden, match="job 1 belongs to bob"):
        asyncio.run(accounting.answer(store, config, ALICE, Ask(ids="1")))


def test_keep_days_must_be_a_number_of_days() -> None:
    assert parse_config("").server.keep_days == 365
    with pytest.raises(ConfigError, match="keep_days"):
        parse_config("[server]\nkeep_days = -1\n")


@pytest.mark.parametrize(("argv", "says"), [
    (["-S", "now+1d"], "is in the future"),
    (["-S", "-1d", "-E", "-2d"], "is not before"),
    (["-S", "-7"], "needs a unit"),
    (["--state", "running"], "is not how a job ends"),
    (["-u", "bob", "-a"], "give one"),
    (["--summary", "12"], "not job ids"),
])
def test_jacct_refuses_before_asking_the_server(argv: list[str], says: str) -> None:
    from wulf.cli import jacct

    with pytest.raises(UsageError, match=says):
        jacct._main(argv)


def test_a_time_after_a_flag_is_not_an_option() -> None:
    from wulf.cli.jacct import _glue_times

    assert _glue_times(["-S", "-7d", "-E", "-1h", "--state", "failed", "--", "-S"]) == [
        "--starttime=-7d", "--endtime=-1h", "--state", "failed", "--", "-S"]
    assert _glue_times(["-S", "today", "12"]) == ["-S", "today", "12"]
