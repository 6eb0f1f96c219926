"""The pure placement and fair-share rules."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from wulf.policy.placement import best_node, choose_node, free_capacity, schedule
from wulf.policy.snapshot import BACKGROUND_CPU, Free, NodeView, QueuedJob, RunningUse, node_free


def test_free_counts_the_larger_of_allocation_and_use() -> None:
    node = NodeView("a", cpus=4, mem_mb=1000, jobs=(RunningUse(1.0, 100, cpu_used=0.2, mem_used=300),))
    assert node_free(node) == Free(3.0, 700)


def test_outside_use_takes_room() -> None:
    # a job uses 0.5 of its 1 cpu; someone outside wulf uses 2 more cpus
    node = NodeView("a", cpus=4, mem_mb=1000, jobs=(RunningUse(1.0, 100, 0.5, 50),),
                    observed_cpu=2.5 + BACKGROUND_CPU, observed_mem=550)
    assert node_free(node) == Free(1.0, 400)


def test_background_hum_does_not_take_room() -> None:
    node = NodeView("a", cpus=2, mem_mb=1000, observed_cpu=BACKGROUND_CPU / 2)
    assert node_free(node).cpu == 2


def test_choose_node_prefers_most_free_and_fitting_memory() -> None:
    free = {"a": Free(2, 100), "b": Free(4, 50), "c": Free(1, 5000)}
    assert choose_node(free, 1, 80) == "a"  # b has more cpu but not the memory
    assert choose_node(free, 1, 10) == "b"
    assert choose_node(free, 3, 10) == "b"
    assert choose_node(free, 5, 10) is None  # nobody has 5 cpus free: wait


def test_no_node_has_the_memory_goes_where_most_is_free() -> None:
    free = {"a": Free(2, 100), "b": Free(2, 300)}
    assert choose_node(free, 1, 10_000) == "b"


def test_unschedulable_nodes_take_nothing() -> None:
    nodes = [NodeView("a", 4, 1000, schedulable=False), NodeView("b", 1, 1000)]
    assert set(free_capacity(nodes)) == {"b"}
    assert best_node(free_capacity(nodes)) == "b"
    assert best_node({}) is None


def _jobs(user: str, n: int, start: int, cpu: float = 1.0) -> list[QueuedJob]:
    return [QueuedJob(start + i, user, "default", cpu, 32) for i in range(n)]


def test_users_are_served_in_turn() -> None:
    queued = {"flood": _jobs("flood", 1000, 0), "one": _jobs("one", 3, 5000)}
    placed = schedule(queued, {}, {"a": Free(4, 10_000)})
    users = Counter("flood" if p.job_id < 5000 else "one" for p in placed)
    assert users == {"flood": 2, "one": 2}


def test_running_jobs_count_toward_the_turn() -> None:
    queued = {"alice": _jobs("alice", 10, 0), "bob": _jobs("bob", 10, 100)}
    placed = schedule(queued, {"alice": 3}, {"a": Free(5, 10_000)})
    users = Counter("alice" if p.job_id < 100 else "bob" for p in placed)
    assert users == {"alice": 1, "bob": 4}


def test_a_blocked_job_is_not_overtaken_by_its_users_later_jobs() -> None:
    queued = {"u": [QueuedJob(1, "u", "q", 4, 32), QueuedJob(2, "u", "q", 1, 32)]}
    assert schedule(queued, {}, {"a": Free(2, 1000)}) == []


def test_lazy_queues_are_read_only_as_far_as_needed() -> None:
    seen = []

    def gen() -> object:
        for j in _jobs("u", 10_000, 0):
            seen.append(j.id)
            yield j

    placed = schedule({"u": gen()}, {}, {"a": Free(3, 1000)})  # type: ignore[dict-item]
    assert len(placed) == 3 and len(seen) <= 4


@settings(max_examples=200, deadline=None)
@given(
    nodes=st.lists(st.tuples(st.integers(1, 16), st.integers(64, 4096)), min_size=1, max_size=8),
    jobs=st.lists(st.tuples(st.sampled_from("abcd"), st.sampled_from([0.5, 1.0, 2.0]), st.integers(1, 512)),
                  max_size=60),
)
def test_no_node_is_ever_given_more_cpu_than_it_has(nodes: list[tuple[int, int]],
                                                    jobs: list[tuple[str, float, int]]) -> None:
    free = {f"n{i}": Free(c, m) for i, (c, m) in enumerate(nodes)}
    queued: dict[str, list[QueuedJob]] = {}
    for i, (user, cpu, mem) in enumerate(jobs):
        queued.setdefault(user, []).append(QueuedJob(i, user, "q", cpu, mem))
    placed = schedule(queued, {}, dict(free))
    by_id = {j.id: j for js in queued.values() for j in js}
    used: Counter[str] = Counter()
    for p in placed:
        used[p.node] += by_id[p.job_id].cpu  # type: ignore[assignment]
    for name, f in free.items():
        assert used[name] <= f.cpu + 1e-9
    # served in turn: running counts differ by at most one among users who still had jobs waiting
    counts = Counter(by_id[p.job_id].user for p in placed)
    waiting = [u for u, js in queued.items() if counts[u] < len(js)]
    if waiting and all(j.cpu == 0.5 for js in queued.values() for j in js):
        assert max(counts[u] for u in waiting) - min(counts[u] for u in waiting) <= 1
