"""Grouping processes into jobs, ignored daemons and clusters; cpu rates between samples."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wulf.agent.clusters import (
    IGNORED,
    MIN_AGE,
    CpuTracker,
    Owner,
    Use,
    assign,
    cpu_rates,
    group,
)
from wulf.agent.procfs import ProcInfo


def proc(
    pid: int, ppid: int, uid: int = 1000, sid: int | None = None, rss_kb: int = 100, ticks: int = 0, start: int = 0
) -> ProcInfo:
    """A process; by default in its parent's session (sid = ppid), so it is not a session leader."""
    return ProcInfo(
        pid=pid, ppid=ppid, uid=uid, sid=ppid if sid is None else sid, pgrp=pid, comm=f"p{pid}",
        cpu_ticks=ticks, starttime_ticks=start, rss_kb=rss_kb, nthreads=1,
    )


def owners_of(procs: list[ProcInfo], job_roots: dict[int, int] | None = None,
              ignore: set[int] | None = None) -> dict[int, Owner]:
    return assign({p.pid: p for p in procs}, job_roots or {}, ignore or set())


def job(ident: int) -> Owner:
    return Owner("job", ident)


def cluster(top: int) -> Owner:
    return Owner("cluster", top)


INIT = proc(1, 0, uid=0, sid=1)
SSHD = proc(500, 1, uid=0, sid=500)


def test_login_shell_and_its_programs_are_one_cluster() -> None:
    # sshd (root) -> session sshd (root) -> bash (alice, session leader) -> matlab -> its helper
    procs = [INIT, SSHD, proc(600, 500, uid=0, sid=600), proc(601, 600, uid=1000, sid=601),
             proc(602, 601, sid=601), proc(603, 602, sid=601)]
    owners = owners_of(procs)
    assert owners[601] == owners[602] == owners[603] == cluster(601)
    assert owners[600] == cluster(600)  # root's session process: another uid, another cluster
    assert owners[500] == cluster(500) and owners[1] == cluster(1)


def test_job_root_wins_regardless_of_uid_and_session() -> None:
    agent = proc(100, 1, uid=0, sid=100)
    root = proc(200, 100, uid=1000, sid=200)
    procs = [INIT, agent, root, proc(201, 200), proc(202, 201, uid=0, sid=202), proc(203, 202, uid=2000)]
    owners = owners_of(procs, {200: 7}, {100})
    assert owners[100] == IGNORED
    assert owners[200] == owners[201] == owners[202] == owners[203] == job(7)


def test_job_root_below_an_ignored_daemon_still_wins() -> None:
    procs = [INIT, proc(10, 1, uid=0, sid=10), proc(11, 10, uid=0), proc(12, 11, sid=12), proc(13, 12)]
    owners = owners_of(procs, {12: 3}, {10})
    assert owners[10] == owners[11] == IGNORED
    assert owners[12] == owners[13] == job(3)


def test_ignored_tree_is_skipped() -> None:
    procs = [INIT, proc(10, 1, uid=0, sid=10), proc(11, 10, uid=0), proc(12, 11, uid=1000, sid=12)]
    owners = owners_of(procs, {}, {10})
    assert owners[10] == owners[11] == owners[12] == IGNORED
    g = group(procs, {}, {10}, {})
    assert g.ignored.nprocs == 3 and g.total.nprocs == 1


def test_an_ignored_pid_1_keeps_its_session_but_not_the_orphans() -> None:
    """In a PID namespace the agent may be pid 1, the adopter of every orphan: they are still load."""
    procs = [INIT, proc(5, 1, sid=5), proc(6, 5), proc(7, 1, uid=0, sid=1), proc(8, 1, sid=40), proc(9, 8)]
    owners = owners_of(procs, {}, {1})
    assert owners[1] == owners[7] == IGNORED  # 7: the agent's own helper, in its session
    assert owners[5] == owners[6] == cluster(5)  # a daemon
    assert owners[8] == owners[9] == cluster(8)  # an orphan of another session


def test_uid_change_splits() -> None:
    procs = [INIT, proc(20, 1, sid=20), proc(21, 20, uid=2000), proc(22, 21, uid=2000), proc(23, 22)]
    owners = owners_of(procs)
    assert owners[20] == cluster(20)
    assert owners[21] == owners[22] == cluster(21)
    assert owners[23] == cluster(23)  # back to the first uid, but below another's process


def test_session_leader_splits() -> None:
    procs = [INIT, proc(30, 1, sid=30), proc(31, 30), proc(32, 31, sid=32), proc(33, 32)]
    owners = owners_of(procs)
    assert owners[30] == owners[31] == cluster(30)
    assert owners[32] == owners[33] == cluster(32)


@pytest.mark.parametrize("ppid", [0, 1, 999])  # none, init, missing (gone, or outside the namespace)
def test_parent_init_or_missing_splits(ppid: int) -> None:
    procs = [INIT, proc(40, ppid, sid=7), proc(41, 40, sid=7)]
    owners = owners_of(procs)
    assert owners[40] == owners[41] == cluster(40)


def test_pid_2_is_an_ordinary_parent_in_a_namespace() -> None:
    procs = [INIT, proc(2, 1, sid=2), proc(3, 2, sid=2)]
    assert owners_of(procs)[3] == cluster(2)


@pytest.mark.parametrize("links", [[(5, 5)], [(10, 11), (11, 10)], [(1, 3), (2, 1), (3, 2), (4, 3)]])
def test_cycles_do_not_hang(links: list[tuple[int, int]]) -> None:
    procs = [proc(pid, ppid) for pid, ppid in links]
    owners = owners_of(procs)
    assert set(owners) == {pid for pid, _ in links}
    assert all(o.kind == "cluster" for o in owners.values())


def test_a_deep_tree_needs_no_recursion() -> None:
    procs = [INIT] + [proc(pid, pid - 1, sid=2) for pid in range(2, 50_002)]
    owners = owners_of(list(reversed(procs)))  # leaves first: the longest walks
    assert owners[50_001] == cluster(2)


def test_group_sums_jobs_clusters_and_noise() -> None:
    procs = [
        INIT,
        proc(100, 1, uid=0, sid=100, rss_kb=50_000),  # the agent, ignored
        proc(200, 100, sid=200, rss_kb=1000, ticks=5), proc(201, 200, rss_kb=3000),  # job 9
        proc(300, 1, sid=300, rss_kb=200_000), proc(301, 300, rss_kb=100),  # big cluster
        proc(400, 1, sid=400, rss_kb=10),  # a small daemon: noise
    ]
    cpu = {200: 0.5, 201: 1.0, 300: 0.25, 301: 0.0, 400: 0.01, 100: 3.0, 1: 0.0}
    g = group(procs, {200: 9}, {100}, cpu, min_cpu=0.2, min_rss_kb=100_000)
    assert g.jobs == {9: Use(1.5, 4000, 2)}
    assert [(c.pid, c.key, c.uid, c.use) for c in g.clusters] == [(300, "300:0", 1000, Use(0.25, 200_100, 2))]
    assert g.noise == Use(0.01, INIT.rss_kb + 10, 2)
    assert g.ignored == Use(3.0, 50_000, 1)
    assert g.total.nprocs == 6 and g.total.rss_kb == 4000 + 200_100 + 110
    assert g.total.cpu == pytest.approx(1.76)


def test_a_cluster_is_reported_for_cpu_or_memory() -> None:
    procs = [proc(10, 1, sid=10, rss_kb=5), proc(20, 1, sid=20, rss_kb=900)]
    g = group(procs, {}, set(), {10: 0.3}, min_cpu=0.3, min_rss_kb=900)
    assert sorted(c.pid for c in g.clusters) == [10, 20]
    g = group(procs, {}, set(), {10: 0.29}, min_cpu=0.3, min_rss_kb=901)
    assert g.clusters == [] and g.noise.nprocs == 2


# ---------------------------------------------------------------- the property: each process once


@st.composite
def process_tables(draw: st.DrawFn) -> tuple[list[ProcInfo], dict[int, int], set[int]]:
    pids = draw(st.lists(st.integers(1, 60), min_size=1, max_size=40, unique=True))
    procs = [
        proc(
            pid,
            draw(st.sampled_from([0, 1, 2, 99, *pids])),  # any parent: missing, itself, cycles
            uid=draw(st.sampled_from([0, 1000, 1001])),
            sid=draw(st.sampled_from([pid, 0, *pids])),
            rss_kb=draw(st.integers(0, 10_000)),
        )
        for pid in pids
    ]
    job_roots = {pid: draw(st.integers(1, 5)) for pid in draw(st.sets(st.sampled_from(pids), max_size=5))}
    ignore = draw(st.sets(st.sampled_from(pids), max_size=4))
    return procs, job_roots, ignore


@settings(max_examples=400, deadline=None)
@given(process_tables(), st.floats(0, 2), st.integers(0, 20_000))
def test_every_process_is_counted_exactly_once(
    table: tuple[list[ProcInfo], dict[int, int], set[int]], min_cpu: float, min_rss_kb: int
) -> None:
    procs, job_roots, ignore = table
    cpu = {p.pid: (p.pid % 7) / 4 for p in procs}
    g = group(procs, job_roots, ignore, cpu, min_cpu, min_rss_kb)
    parts = [*g.jobs.values(), *(c.use for c in g.clusters), g.noise]
    assert sum(u.nprocs for u in parts) == g.total.nprocs
    assert g.total.nprocs + g.ignored.nprocs == len(procs)
    assert sum(u.rss_kb for u in parts) + g.ignored.rss_kb == sum(p.rss_kb for p in procs)
    assert sum(u.cpu for u in parts) + g.ignored.cpu == pytest.approx(sum(cpu.values()))
    assert len({c.pid for c in g.clusters}) == len(g.clusters)


@settings(max_examples=400, deadline=None)
@given(process_tables())
def test_ownership_follows_the_rules(table: tuple[list[ProcInfo], dict[int, int], set[int]]) -> None:
    procs, job_roots, ignore = table
    by_pid = {p.pid: p for p in procs}
    owners = assign(by_pid, job_roots, ignore)
    assert set(owners) == set(by_pid)
    for pid, owner in owners.items():
        if pid in job_roots:
            assert owner == job(job_roots[pid])
        elif pid in ignore:
            assert owner == IGNORED
        elif owner.kind == "cluster":
            assert by_pid[owner.ident].uid == by_pid[pid].uid  # a cluster is one user's
            assert owners[owner.ident] == owner  # and its top is in it
        elif owner.kind == "job":
            assert _has_ancestor_root(pid, by_pid, job_roots, owner.ident)


def _has_ancestor_root(pid: int, by_pid: dict[int, ProcInfo], job_roots: dict[int, int], ident: int) -> bool:
    seen: set[int] = set()
    while pid in by_pid and pid not in seen:
        if job_roots.get(pid) == ident:
            return True
        seen.add(pid)
        pid = by_pid[pid].ppid
    return False


# ---------------------------------------------------------------- cpu rates


HZ = 100


def test_rates_of_known_processes_come_from_the_ticks_since_last_time() -> None:
    procs = [proc(10, 1, ticks=700, start=50), proc(11, 1, ticks=120, start=60)]
    rates = cpu_rates(procs, {(10, 50): 500, (11, 60): 120}, elapsed=2.0, uptime=1000.0, clock_ticks=HZ)
    assert rates == {10: pytest.approx(1.0), 11: 0.0}


def test_a_new_process_is_rated_over_its_own_life() -> None:
    # started 4 s ago (uptime 1000 s, start at tick 99_600), used 2 s of cpu: half a core
    rates = cpu_rates([proc(10, 1, ticks=200, start=99_600)], {}, elapsed=5.0, uptime=1000.0, clock_ticks=HZ)
    assert rates[10] == pytest.approx(0.5)


def test_a_reused_pid_is_a_new_process() -> None:
    procs = [proc(10, 1, ticks=100, start=99_800)]  # pid 10 again, started 2 s ago
    rates = cpu_rates(procs, {(10, 50): 5_000}, elapsed=5.0, uptime=1000.0, clock_ticks=HZ)
    assert rates[10] == pytest.approx(0.5)


def test_a_process_just_born_is_not_a_burst() -> None:
    rates = cpu_rates([proc(10, 1, ticks=1, start=99_999)], {}, elapsed=5.0, uptime=1000.0, clock_ticks=HZ)
    assert rates[10] == pytest.approx(0.01 / MIN_AGE)


def test_ticks_going_backwards_give_zero() -> None:
    rates = cpu_rates([proc(10, 1, ticks=5, start=1)], {(10, 1): 9}, elapsed=5.0, uptime=1000.0, clock_ticks=HZ)
    assert rates[10] == 0.0


def test_tracker_first_gives_lifetime_averages_then_intervals() -> None:
    tracker = CpuTracker(HZ)
    first = tracker.update([proc(10, 1, ticks=10_000, start=0)], uptime=200.0)
    assert first[10] == pytest.approx(0.5)
    second = tracker.update([proc(10, 1, ticks=10_300, start=0), proc(11, 1, ticks=50, start=20_000)], 203.0)
    assert second == {10: pytest.approx(1.0), 11: pytest.approx(0.5 / 3.0)}
    third = tracker.update([proc(11, 1, ticks=50, start=20_000)], 208.0)  # pid 10 is gone
    assert third == {11: 0.0}
