"""One scheduling pass: fair share, queue priorities, limits, windows, and the reasons jobs wait."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from hypothesis import given, settings
from hypothesis import strategies as st

from wulf.policy.placement import NodePool
from wulf.policy.rank import compile_rank
from wulf.policy.scheduler import schedule
from wulf.policy.snapshot import NodeView, QueuedJob, QueueView, RunningUse, UserView

RANK = compile_rank("cpu_free * 1e9 + mem_free_mb")


def _pool(cpus: float = 4, n: int = 1, mem: float = 100_000) -> NodePool:
    return NodePool([NodeView(f"n{i}", cpus, mem) for i in range(n)], RANK)


def _q(user: str, n: int, start: int, name: str = "default", cpu: float = 1.0, **kw: object) -> QueueView:
    jobs = [QueuedJob(start + i, user, name, cpu, 32) for i in range(n)]
    return QueueView(user, name, jobs, **kw)  # type: ignore[arg-type]


def _owners(result_ids: list[int], split: int) -> Counter[str]:
    return Counter("low" if i < split else "high" for i in result_ids)


def test_users_are_served_in_turn() -> None:
    out = schedule([_q("flood", 1000, 0), _q("one", 3, 5000)], {}, _pool(4))
    users = Counter("flood" if p.job_id < 5000 else "one" for p in out.placements)
    assert users == {"flood": 2, "one": 2}
    assert out.reasons[("flood", "default")].startswith("waiting for room")


def test_running_jobs_count_toward_the_turn() -> None:
    out = schedule([_q("alice", 10, 0), _q("bob", 10, 100)], {"alice": UserView("alice", running=3)}, _pool(5))
    users = Counter("alice" if p.job_id < 100 else "bob" for p in out.placements)
    assert users == {"alice": 1, "bob": 4}


def test_shares_weight_the_turns() -> None:
    users = {"alice": UserView("alice", share=2.0)}
    out = schedule([_q("alice", 100, 0), _q("bob", 100, 1000)], users, _pool(6))
    assert Counter("alice" if p.job_id < 1000 else "bob" for p in out.placements) == {"alice": 4, "bob": 2}


def test_a_users_queues_go_by_priority_then_submission() -> None:
    queues = [_q("u", 3, 0, "low"), _q("u", 3, 10, "high", priority=5), _q("u", 3, 20, "mid")]
    out = schedule(queues, {}, _pool(5))
    assert [p.job_id for p in out.placements] == [10, 11, 12, 0, 1]  # then low (older) before mid


def test_a_blocked_job_is_not_overtaken_by_its_queues_later_jobs() -> None:
    q = QueueView("u", "q", [QueuedJob(1, "u", "q", 4, 32), QueuedJob(2, "u", "q", 1, 32)])
    busy = NodeView("n0", 4, 1000, jobs=(RunningUse(2, 32),))
    out = schedule([q], {}, NodePool([busy], RANK))
    assert out.placements == []
    assert out.reasons[("u", "q")] == "waiting for room: needs 4 cpus and 32 MB"


def test_a_job_no_node_can_ever_run_is_stepped_over() -> None:
    q = QueueView("u", "q", [QueuedJob(1, "u", "q", 64, 32), QueuedJob(2, "u", "q", 1, 32, "gpu")
                             , QueuedJob(3, "u", "q", 1, 32)])
    out = schedule([q], {}, _pool(2))
    assert [p.job_id for p in out.placements] == [3]
    assert "largest node has 2" in out.impossible[1]
    assert "constraint" in out.impossible[2]


def test_user_limit_counts_what_they_occupy() -> None:
    users = {"alice": UserView("alice", occupied_cpu=3.0, limit=4.0)}
    out = schedule([_q("alice", 10, 0), _q("bob", 10, 100)], users, _pool(8))
    assert Counter("alice" if p.job_id < 100 else "bob" for p in out.placements) == {"alice": 1, "bob": 7}
    assert out.reasons[("alice", "default")] == "user limit: alice occupies 4 of 4 cpus"


def test_stopped_queues_and_closed_windows_start_nothing() -> None:
    queues = [_q("u", 2, 0, "stopped", stopped=True), _q("u", 2, 10, "night", window="nights"),
              _q("u", 2, 20, "day")]
    out = schedule(queues, {}, _pool(8), window_open=lambda kind: kind != "nights")
    assert sorted(p.job_id for p in out.placements) == [20, 21]
    assert "stopped" in out.reasons[("u", "stopped")]
    assert "nights only" in out.reasons[("u", "night")]
    out = schedule(queues, {}, _pool(8), window_open=lambda kind: True)
    assert sorted(p.job_id for p in out.placements) == [10, 11, 20, 21]


def test_lazy_queues_are_read_only_as_far_as_needed() -> None:
    seen: list[int] = []

    def gen() -> Iterator[QueuedJob]:
        for i in range(10_000):
            seen.append(i)
            yield QueuedJob(i, "u", "q", 1, 32)

    out = schedule([QueueView("u", "q", gen())], {}, _pool(3))
    assert len(out.placements) == 3 and len(seen) <= 4


def test_a_plugin_can_reorder_users() -> None:
    class Bob:
        def user_key(self, user: UserView, default: float) -> float:
            return -1 if user.name == "bob" else default

    out = schedule([_q("alice", 5, 0), _q("bob", 5, 100)], {}, _pool(3), ordering=Bob())  # type: ignore[arg-type]
    assert all(p.job_id >= 100 for p in out.placements)


@settings(max_examples=150, deadline=None)
@given(
    counts=st.lists(st.integers(0, 40), min_size=2, max_size=5),
    running=st.lists(st.integers(0, 5), min_size=5, max_size=5),
    cpus=st.integers(1, 40),
)
def test_fair_share_for_any_mix(counts: list[int], running: list[int], cpus: int) -> None:
    """Equal jobs: after a pass, users who still wait hold equal running counts (within one), and
    nobody who waits holds more than someone who got less than they wanted."""
    queues = [_q(f"u{i}", n, 1000 * i) for i, n in enumerate(counts)]
    users = {f"u{i}": UserView(f"u{i}", running=running[i]) for i in range(len(counts))}
    out = schedule(queues, users, _pool(cpus))
    got = Counter(f"u{p.job_id // 1000}" for p in out.placements)
    assert len(out.placements) == min(cpus, sum(counts))
    total = {u: users[u].running + got[u] for u in users}
    waiting = [f"u{i}" for i, n in enumerate(counts) if got[f"u{i}"] < n]
    for u in waiting:
        for v in users:
            if got[v]:  # v was served this pass while u still waits: v had no more than u, plus one
                assert total[v] <= total[u] + 1


def _busy(name: str, cpus: float, running: int, outside: float = 0.0) -> NodeView:
    """A node with ``running`` 1-cpu jobs (each using its cpu) and ``outside`` cpus of other work."""
    jobs = tuple(RunningUse(1.0, 32, 1.0, 32, "small") for _ in range(running))
    return NodeView(name, cpus, 100_000, jobs=jobs, observed_cpu=running + outside, observed_mem=32 * running)


def test_room_is_kept_for_the_larger_job_of_a_user_who_is_behind() -> None:
    # "big" runs nothing and needs 4 cpus; "small" runs 7 and has 1-cpu jobs: the cpu free on n1 would
    # go to "small" for ever, one at a time as jobs end, and "big" would never start
    pool = NodePool([_busy("n0", 4, 4), _busy("n1", 4, 3)], RANK)
    users = {"small": UserView("small", running=7)}
    out = schedule([_q("big", 1, 0, cpu=4), _q("small", 5, 100)], users, pool)
    assert out.placements == [] and out.held == {0: "n1"}
    assert out.reasons[("big", "default")] == "waiting for room: needs 4 cpus and 32 MB (room is kept for it on n1)"
    # one job ended on each node since: n0 has as much room now, but the room is still kept on n1
    pool = NodePool([_busy("n0", 4, 3), _busy("n1", 4, 3)], RANK)
    out = schedule([_q("big", 1, 0, cpu=4), _q("small", 5, 100)], users, pool, held=out.held)
    assert out.held == {0: "n1"} and [p.node for p in out.placements] == ["n0"]
    # unless another node has more room
    pool = NodePool([_busy("n0", 4, 1), _busy("n1", 4, 3)], RANK)
    out = schedule([_q("big", 1, 0, cpu=4), _q("small", 5, 100)], users, pool, held=out.held)
    assert out.held == {0: "n0"} and [p.node for p in out.placements] == ["n1"]


def test_no_room_is_kept_for_a_user_who_is_not_behind() -> None:
    pool = NodePool([_busy("n0", 4, 3)], RANK)
    out = schedule([_q("big", 1, 0, cpu=4), _q("small", 5, 100)], {"big": UserView("big", running=7),
                                                                    "small": UserView("small", running=7)}, pool)
    assert out.held == {} and [p.job_id for p in out.placements] == [100]
    assert out.reasons[("big", "default")] == "waiting for room: needs 4 cpus and 32 MB"


def test_room_kept_counts_as_a_turn_until_the_user_catches_up() -> None:
    # four nodes with a cpu free each; "big" (0 running) is 3 behind "small"
    pool = NodePool([_busy(f"n{i}", 4, 3) for i in range(4)], RANK)
    out = schedule([_q("big", 10, 0, cpu=4), _q("small", 5, 100)], {"small": UserView("small", running=3)}, pool)
    assert sorted(out.held) == [0, 1, 2]  # its next three jobs, each on its own node
    assert len(set(out.held.values())) == 3
    assert [p.job_id for p in out.placements] == [100]  # the last free cpu: the turn is "small"'s again
    assert out.placements[0].node not in out.held.values()


def test_no_room_is_kept_where_outside_work_leaves_too_little() -> None:
    # n0 has the most cpu free, but someone outside wulf uses 2 of its 4 cpus: it could never take the job
    pool = NodePool([_busy("n0", 4, 1, outside=2), _busy("n1", 4, 3)], RANK)
    out = schedule([_q("big", 1, 0, cpu=4), _q("small", 5, 100)], {"small": UserView("small", running=7)}, pool)
    assert out.held == {0: "n1"}


def test_why_a_job_waits() -> None:
    from wulf.policy.scheduler import why_waiting
    from wulf.policy.snapshot import QueuedJob

    job, first = QueuedJob(7, "alice", "default", 1, 32), QueuedJob(5, "alice", "default", 4, 64)
    room = "waiting for room: needs 4 cpus and 64 MB"
    assert why_waiting(job, room, impossible="no node matches the constraint 'gpu'") == (
        "no node matches the constraint 'gpu'")
    assert why_waiting(job, room, kept="n3") == "waiting for room: needs 1 cpu and 32 MB (room is kept for it on n3)"
    assert why_waiting(first, room, head=5) == room
    assert why_waiting(job, room, head=5) == "behind job 5 in its queue"
    assert why_waiting(job, room, head=5, up=False) == "no node is up (every node is down or drained)"
    assert why_waiting(job, "queue night runs at nights only", head=5, up=False) == "queue night runs at nights only"
    assert why_waiting(job, "") == "waiting for its turn"


def test_a_job_no_node_can_ever_run_is_said_so_though_every_node_is_full() -> None:
    # the only node is full: the head of the queue (64 cpus on a 4-cpu cluster) can never run, and
    # saying "every node is full" would have its owner wait for room that will never be enough
    q = QueueView("u", "q", [QueuedJob(1, "u", "q", 64, 32), QueuedJob(2, "u", "q", 1, 32)])
    out = schedule([q], {}, NodePool([_busy("n0", 4, 4)], RANK))
    assert out.placements == []
    assert "largest node has 4" in out.impossible[1]
    assert out.reasons[("u", "q")] == "waiting for room: every node is full"  # job 2 waits for room
