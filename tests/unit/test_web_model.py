"""The web interface's pure parts: its sessions and one-time links (wulf.server.websession), and what
its pages read of the server's state (wulf.server.webviews)."""

from __future__ import annotations

from pathlib import Path

import pytest

from wulf.auth.identity import WEB, Caller
from wulf.config import Config
from wulf.errors import UsageError
from wulf.model.job import Job, JobState, Origin
from wulf.protocol import JobStarted, JobUse, NodeInfo, NodeSample, Report
from wulf.server.events import JobsStarted, NodeUp, Reported, SchedulePass, Submitted
from wulf.server.loadhistory import CLUSTER, DAY_STEP, HOUR_STEP, KEEP_ENDED, SPANS, LoadHistory
from wulf.server.state import ServerState
from wulf.server.websession import LINK_TTL, MAX_SESSIONS, SESSION_TTL, WebSessions, csrf_ok
from wulf.server.webviews import JobFilter, job_detail, job_page, node_load, overview

T0 = 1_000_000.0


def test_a_session_is_found_by_its_id_until_it_ends() -> None:
    web = WebSessions()
    sid = web.open(1000, 1000, 7, False, T0)
    s = web.find(sid, T0 + 1)
    assert s is not None and (s.uid, s.token_id, s.read_only) == (1000, 7, False) and len(s.csrf) >= 40
    assert web.find(sid + "x", T0) is None
    assert web.find(sid, T0 + SESSION_TTL) is None  # expired
    short = web.open(1000, 1000, 8, True, T0, until=T0 + 60)  # its token expires sooner
    assert web.find(short, T0 + 59) is not None and web.find(short, T0 + 60) is None
    web.close_token(7)
    assert web.find(sid, T0 + 1) is None
    other = web.open(1001, 1001, None, False, T0)
    web.close(other)
    assert web.find(other, T0) is None


def test_the_csrf_token_is_the_sessions_own() -> None:
    web = WebSessions()
    a, b = web.find(web.open(1, 1, None, False, T0), T0), web.find(web.open(2, 2, None, False, T0), T0)
    assert a is not None and b is not None and a.csrf != b.csrf
    assert csrf_ok(a, a.csrf) and not csrf_ok(a, b.csrf) and not csrf_ok(a, None) and not csrf_ok(a, "")


def test_a_link_signs_in_once_and_only_while_it_is_fresh() -> None:
    web = WebSessions()
    code = web.link(1000, 100, T0)
    assert web.peek(code, T0) == (1000, 100) and web.peek(code, T0) == (1000, 100)  # looking uses nothing
    assert web.redeem(code, T0 + 1) == (1000, 100)
    assert web.redeem(code, T0 + 2) is None
    late = web.link(1000, 100, T0)
    assert web.peek(late, T0 + LINK_TTL) is None and web.redeem(late, T0 + LINK_TTL) is None


def test_sessions_are_bounded() -> None:
    web = WebSessions()
    first = web.open(1, 1, None, False, T0)
    for i in range(MAX_SESSIONS + 5):
        web.open(1, 1, None, False, T0 + i)
    assert len(web._sessions) <= MAX_SESSIONS and web.find(first, T0) is None  # the oldest went


def _cluster(n: int = 30) -> tuple[ServerState, list[Job]]:
    state = ServerState(Config())
    state.handle(NodeUp(NodeInfo(name="n1", hostname="n1", cpus=4, mem_mb=4096), "10.0.0.1", 0, (), (), T0))
    jobs = [Job(id=state.new_id(), user="alice" if i % 3 else "bob", uid=1000 if i % 3 else 1001,
                origin=Origin.BATCH, state=JobState.QUEUED, command=f"run {i}", name=f"job{i:02d}", cwd="/",
                queue="default", cpu_req=1.0, mem_req=32, cpu=1.0, mem_mb=32, submitted=T0 + i) for i in range(n)]
    state.handle(Submitted(tuple(jobs)))
    state.handle(SchedulePass(T0 + 100))
    return state, jobs


ALICE = Caller("alice", 1000, 1000, WEB)


def test_the_jobs_list_filters_sorts_and_pages() -> None:
    state, jobs = _cluster()
    page = job_page(state, T0, ALICE, JobFilter(user="alice"), "id", False, 5, 5)
    alices = [j.id for j in jobs if j.user == "alice"]
    assert page["total"] == 20 and [j["id"] for j in page["jobs"]] == alices[5:10]
    page = job_page(state, T0, ALICE, JobFilter(state="waiting"), "name", True, 0, 3)
    assert [j["name"] for j in page["jobs"]] == ["job29", "job28", "job27"]
    assert all(j["reason"] for j in page["jobs"])  # 4 cpus: they wait, and say why
    running = job_page(state, T0, ALICE, JobFilter(state="running", node="n1"), limit=100)
    assert running["total"] == 4 and {j["node"] for j in running["jobs"]} == {"n1"}
    assert job_page(state, T0, ALICE, JobFilter(name="job1"), limit=100)["total"] == 10
    assert job_page(state, T0, ALICE, JobFilter(queue="other"))["total"] == 0
    assert job_page(state, T0, ALICE, JobFilter(origin="wulf"))["total"] == 30
    assert job_page(state, T0, ALICE, JobFilter(origin="external"))["total"] == 0
    assert len(job_page(state, T0, ALICE, JobFilter(), limit=10_000)["jobs"]) == 30  # (at most 500 a page)
    with pytest.raises(UsageError, match="sleeping"):
        job_page(state, T0, ALICE, JobFilter(state="sleeping"))
    with pytest.raises(UsageError, match="colour"):
        job_page(state, T0, ALICE, JobFilter(), "colour")


def test_what_a_viewer_may_do_to_a_job() -> None:
    state, jobs = _cluster(3)
    bobs, alices = jobs[0], jobs[1]
    assert bobs.user == "bob" and alices.user == "alice"
    assert not any(job_detail(state, bobs, T0, ALICE)["may"].values())
    may = job_detail(state, alices, T0, ALICE)["may"]
    assert may["cancel"] and may["output"] and may["renice"] and may["modify"] and not may["release"]
    reader = Caller("alice", 1000, 1000, WEB, read_only=True)
    assert job_detail(state, alices, T0, reader)["may"] == {"output": True, "cancel": False, "hold": False,
                                                            "release": False, "renice": False, "modify": False}
    admin = Caller("carol", 1002, 1002, WEB, admin=True)
    assert job_detail(state, bobs, T0, admin)["may"]["cancel"]


def test_an_ended_jobs_page_has_what_jacct_knows() -> None:
    from wulf.protocol import JobExit
    from wulf.server.events import JobsExited

    state, jobs = _cluster(3)
    alices = jobs[1]
    state.handle(JobsStarted("n1", (JobStarted(id=alices.id, pid=99, time=T0 + 100),)))
    state.handle(JobsExited("n1", (JobExit(id=alices.id, exit_code=0, time=T0 + 110, cpu_time=5.0),), T0 + 110))
    d = job_detail(state, alices, T0 + 120, ALICE)
    assert (d["wait"], d["run"], d["cpu_alloc"], d["cpu_eff"]) == (99.0, 10.0, 1.0, 0.5)
    assert "cpu_eff" not in job_detail(state, jobs[2], T0 + 120, ALICE)  # (it has not ended)


def test_outside_load_is_shown_apart_from_wulfs_jobs() -> None:
    state, jobs = _cluster(2)
    state.handle(JobsStarted("n1", tuple(JobStarted(id=j.id, pid=100 + j.id, time=T0) for j in jobs)))
    sample = NodeSample(time=T0 + 1, used_cpu=2.5, used_mem_mb=700.0)
    state.handle(Reported("n1", Report(sample=sample, jobs=[JobUse(id=j.id, cpu=0.5, mem_mb=100.0) for j in jobs])))
    load = node_load(state.nodes["n1"])
    assert load["cpu_alloc"] == 2.0 and load["cpu_wulf"] == 1.0 and load["cpu_outside"] == 1.5
    assert load["mem_wulf_mb"] == 200.0 and load["mem_outside_mb"] == 500.0
    o = overview(state, T0, ALICE)
    assert o["running"] == 2 and o["up"] == 1 and o["nodes"][0]["cpu_outside"] == 1.5
    assert [(u["user"], u["running"], u["share"]) for u in o["users"]] == [("alice", 1, 1.0), ("bob", 1, 1.0)]


def test_the_load_history_keeps_an_hour_and_a_day_of_points() -> None:
    h = LoadHistory()
    for k in range(2000):  # 8 hours and more, a point every HOUR_STEP
        t = T0 + k * HOUR_STEP
        h.record(t, {"a": (1.0, 0.5, 100.0, 50.0, 4.0, 4096.0), "b": (float(k), 0.0, 0.0, 0.0, 2.0, 2048.0)})
    hour, day = h.points("b", "hour"), h.points("b", "day")
    assert hour is not None and day is not None
    assert len(hour) == SPANS["hour"][1] and hour[-1][0] == T0 + 1999 * HOUR_STEP and hour[-1][1] == 1999.0
    assert [p[0] for p in hour] == sorted(p[0] for p in hour)  # oldest first
    assert day[1][0] - day[0][0] == DAY_STEP and len(day) == int(1999 * HOUR_STEP / DAY_STEP) + 1
    whole = h.points(CLUSTER, "hour")
    assert whole is not None and whole[-1][1:] == [2000.0, 0.5, 100.0, 50.0, 6.0, 6144.0]  # the sum (as floats)
    last = T0 + 1999 * HOUR_STEP
    # a node the server does not know (yet: after a restart its agent comes back a little later) keeps its
    # points until the newest of them is a day old
    h.forget(["a"], last + 60)
    assert h.points("b", "hour") is not None and h.points("b", "day") is not None
    h.forget(["a"], last + 86400 + 1)
    assert h.points("b", "hour") is None and h.points("b", "day") is None and h.points("a", "day") is not None


def test_a_jobs_use_is_kept_while_it_runs_and_for_the_latest_ended() -> None:
    h = LoadHistory()
    for k in range(10):
        h.record_jobs(T0 + k * HOUR_STEP, {1: (0.5 * k, 100.0), 2: (1.0, 10.0 * k)})
    points = h.job_points(1)
    assert points is not None and len(points) == 10 and points[-1] == [T0 + 9 * HOUR_STEP, 4.5, 100.0]
    h.record_jobs(T0 + 10 * HOUR_STEP, {3: (1.0, 1.0)})  # 1 and 2 ended: kept (the latest KEEP_ENDED)
    assert h.job_points(2) is not None
    for k in range(KEEP_ENDED + 5):
        h.record_jobs(T0 + (11 + k) * HOUR_STEP, {100 + k: (1.0, 1.0)})
    assert h.job_points(1) is None and h.job_points(2) is None and h.job_points(100 + KEEP_ENDED + 4) is not None


def test_the_load_history_is_saved_and_read_back(tmp_path: Path) -> None:
    from wulf.server import loadhistory
    from wulf.server.loadhistory import BadHistory

    h = LoadHistory()
    for k in range(300):  # more than the hour's ring holds: it has wrapped
        h.record(1000.0 + k * HOUR_STEP, {"n1": (1.0, 0.5, 100.0, 50.0, 4.0, 8192.0)})
        h.record_jobs(1000.0 + k * HOUR_STEP, {7: (0.9, 20.0)})
    path = tmp_path / "loadhistory.json"
    loadhistory.save(path, h.dump())
    back = loadhistory.load(path)
    for key in ("n1", CLUSTER):
        for span in SPANS:
            assert back.points(key, span) == h.points(key, span)
    assert back.job_points(7) == h.job_points(7)
    back.record(1000.0 + 300 * HOUR_STEP, {"n1": (2.0, 0.0, 0.0, 0.0, 4.0, 8192.0)})  # and goes on
    assert back.points("n1", "hour")[-1][1] == 2.0
    assert loadhistory.load(tmp_path / "none").points(CLUSTER, "hour") is None  # none saved: afresh
    for bad in ("{", '{"format": 99}', '{"format": 1, "rings": [["n1", "week", [0, 0, "", ""]]]}',
                '{"format": 1, "rings": [["n1", "hour", [0, 0, "AAAA", "AAAA"]]]}'):
        path.write_text(bad)
        with pytest.raises(BadHistory):
            loadhistory.load(path)
