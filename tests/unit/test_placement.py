"""The pure node accounting and placement rules."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from wulf.policy.placement import NodePool
from wulf.policy.rank import compile_rank
from wulf.policy.snapshot import BACKGROUND_CPU, Free, NodeView, RunningUse, node_free


def test_free_counts_the_larger_of_allocation_and_use() -> None:
    node = NodeView("a", cpus=4, mem_mb=1000, jobs=(RunningUse(1.0, 100, cpu_used=0.2, mem_used=300),))
    assert node_free(node) == Free(3.0, 700)


def test_outside_use_takes_room() -> None:
    # a job uses 0.5 of its 1 cpu; someone outside wulf uses 2 more cpus
    node = NodeView("a", cpus=4, mem_mb=1000, jobs=(RunningUse(1.0, 100, 0.5, 50),),
                    observed_cpu=2.5 + BACKGROUND_CPU, observed_mem=550)
    assert node_free(node) == Free(1.0, 400)
    # the allocation-only policy sees only what wulf gave out
    assert node_free(node, observe=False) == Free(3.0, 900)


def test_external_jobs_hold_only_what_they_use_and_nothing_to_allocation_only() -> None:
    node = NodeView("a", cpus=4, mem_mb=1000, jobs=(RunningUse(2.0, 200, 2.0, 200, "matlab", external=True),),
                    observed_cpu=2.0 + BACKGROUND_CPU, observed_mem=200)
    assert node_free(node) == Free(2.0, 800)
    assert node_free(node, observe=False) == Free(4.0, 1000)


def test_background_hum_does_not_take_room() -> None:
    node = NodeView("a", cpus=2, mem_mb=1000, observed_cpu=BACKGROUND_CPU / 2)
    assert node_free(node).cpu == 2


def _pool(*nodes: tuple[str, float, float], rank: str = "cpu_free * 1e9 + mem_free_mb") -> NodePool:
    return NodePool([NodeView(n, c, m) for n, c, m in nodes], compile_rank(rank))


def test_pick_prefers_most_free_and_fitting_memory() -> None:
    pool = _pool(("a", 2, 100), ("b", 4, 50), ("c", 1, 5000))
    assert pool.pick(1, 80) == "a"  # b has more cpu but not the memory
    assert pool.pick(1, 10) == "b"
    assert pool.pick(3, 10) == "b"
    assert pool.pick(5, 10) is None  # nobody has 5 cpus free: wait


def test_no_node_with_the_memory_means_wait() -> None:
    pool = _pool(("a", 2, 100), ("b", 2, 300))
    assert pool.pick(1, 10_000) is None
    assert "no node" in pool.possible(1, 10_000)
    assert pool.possible(1, 200) == ""


def test_take_books_room_and_reranks() -> None:
    pool = _pool(("a", 4, 1000), ("b", 3, 1000))
    assert pool.pick(1, 10) == "a"
    pool.take("a", 2, 10)
    assert pool.pick(1, 10) == "b"
    pool.take("b", 3, 10)
    assert pool.pick(2, 10) == "a"
    pool.take("a", 2, 10)
    assert pool.pick(0.5, 10) is None
    assert not pool.free["a"].cpu and not pool.free["b"].cpu


def test_rank_expression_decides() -> None:
    pool = _pool(("a", 8, 1000), ("b", 2, 64000), rank="mem_free_mb")
    assert pool.pick(1, 10) == "b"
    pool = _pool(("a", 8, 1000), ("b", 2, 64000), rank="-jobs")
    assert pool.pick(1, 10) in {"a", "b"}


def test_constraints_select_nodes() -> None:
    nodes = [NodeView("a", 8, 1000, attrs={"arch": "x86_64"}),
             NodeView("b", 2, 1000, attrs={"arch": "aarch64"}, features=frozenset({"bigmem"}))]
    pool = NodePool(nodes, compile_rank("cpu_free"))
    assert pool.pick(1, 10, "bigmem") == "b"
    assert pool.pick(1, 10, "arch=x86_64") == "a"
    assert pool.pick(1, 10, "arch=sparc") is None
    assert "constraint" in pool.possible(1, 10, "arch=sparc")
    assert pool.pick(4, 10, "bigmem") is None
    assert "largest node that matches has 2" in pool.possible(4, 10, "bigmem")


def test_a_node_whose_agent_is_not_root_takes_only_its_owners_jobs() -> None:
    nodes = [NodeView("mine", 8, 1000, owner="alice", attrs={"arch": "x86_64"}), NodeView("big", 4, 1000)]
    pool = NodePool(nodes, compile_rank("cpu_free"))
    assert pool.pick(1, 10, "", "alice") == "mine" and pool.best("alice") == "mine"
    assert pool.pick(1, 10, "", "bob") == "big" and pool.best("bob") == "big"
    assert pool.pick(1, 10) == "mine"  # (no user named: no restriction)
    assert pool.pick(6, 10, "", "bob") is None and "largest node has 4" in pool.possible(6, 10, "", "bob")
    assert pool.hold(6, 10, "", None, 1, "bob") is None and pool.hold(6, 10, "", None, 2, "alice") == "mine"
    pool.end_pass()
    pool.update(NodeView("big", 4, 1000, schedulable=False))
    assert pool.pick(1, 10, "", "bob") is None and pool.possible(1, 10, "", "bob") == ""  # big may come back
    pool.update(NodeView("big", 4, 1000, owner="carol"))
    assert pool.possible(1, 10, "arch=x86_64", "bob") == (
        "no node runs bob's jobs: the agents that match run as alice, not as root, and so run only their own "
        "user's jobs")
    assert "carol" in pool.possible(1, 10, "", "bob") and pool.best("bob") is None
    pool.update(NodeView("big", 4, 1000))  # its agent now runs as root
    assert pool.possible(1, 10, "", "bob") == "" and pool.pick(1, 10, "", "bob") == "big"


def test_unschedulable_nodes_take_nothing_but_count_as_possible() -> None:
    nodes = [NodeView("a", 4, 1000, schedulable=False), NodeView("b", 1, 1000)]
    pool = NodePool(nodes, compile_rank("cpu_free"))
    assert pool.best() == "b"
    assert pool.pick(2, 10) is None and pool.possible(2, 10) == ""
    assert NodePool([], compile_rank("cpu_free")).best() is None


@settings(max_examples=200, deadline=None)
@given(
    nodes=st.lists(st.tuples(st.integers(1, 16), st.integers(64, 4096), st.booleans()), min_size=1, max_size=8),
    jobs=st.lists(st.tuples(st.sampled_from([0.5, 1.0, 2.0, 3.0]), st.integers(1, 1024),
                            st.sampled_from(["", "fast", "!fast", "cpus>=8"])), max_size=60),
)
def test_no_node_is_ever_overcommitted_and_constraints_hold(
        nodes: list[tuple[int, int, bool]], jobs: list[tuple[float, int, str]]) -> None:
    views = [NodeView(f"n{i}", c, m, attrs={"cpus": str(c)}, features=frozenset({"fast"} if f else set()))
             for i, (c, m, f) in enumerate(nodes)]
    pool = NodePool(views, compile_rank("cpu_free * 1e9 + mem_free_mb"))
    used: dict[str, list[float]] = {v.name: [0.0, 0.0] for v in views}
    for cpu, mem, constraint in jobs:
        node = pool.pick(cpu, mem, constraint)
        if node is None:
            # nothing fits: then truly no node has the room and matches
            assert not any(pool.free[v.name].cpu + 1e-9 >= cpu and pool.free[v.name].mem + 1e-9 >= mem
                           and pool.constraint(constraint).matches(v.attrs, v.features) for v in views)
            continue
        view = pool.views[node]
        assert pool.constraint(constraint).matches(view.attrs, view.features)
        pool.take(node, cpu, mem)
        used[node][0] += cpu
        used[node][1] += mem
    for v in views:
        assert used[v.name][0] <= v.cpus + 1e-9 and used[v.name][1] <= v.mem_mb + 1e-9


def test_a_pool_with_no_room_left_is_empty() -> None:
    pool = _pool(("a", 2, 1000), ("b", 1, 1000))
    assert pool
    for name, cpu in (("a", 2), ("b", 1)):
        assert pool.pick(cpu, 10) == name
        pool.take(name, cpu, 10)
    assert not pool and pool.pick(0.5, 10) is None


def _views(rooms: list[tuple[float, float]]) -> list[NodeView]:
    """Nodes of 8 cpus with a job each that holds ``cpu`` and uses ``used``."""
    return [NodeView(f"n{i}", 8, 8000, jobs=(RunningUse(cpu, 100, used, 100),) if cpu else (),
                     observed_cpu=used, observed_mem=100 if cpu else 0)
            for i, (cpu, used) in enumerate(rooms)]


_room = st.tuples(st.sampled_from([0.0, 1.0, 4.0, 7.5, 8.0]), st.sampled_from([0.0, 2.0, 8.0]))


@settings(max_examples=150, deadline=None)
@given(first=st.lists(_room, min_size=1, max_size=6), changes=st.lists(st.tuples(st.integers(0, 5), _room,
       st.booleans()), max_size=12), jobs=st.lists(st.sampled_from([0.5, 1.0, 2.0, 4.0]), max_size=12))
def test_an_updated_pool_is_a_pool_built_anew(first: list[tuple[float, float]],
                                              changes: list[tuple[int, tuple[float, float], bool]],
                                              jobs: list[float]) -> None:
    rank = compile_rank("cpu_free * 1e9 + mem_free_mb")
    views = _views(first)
    kept = NodePool(views, rank)
    for i, room, up in changes:  # nodes change between passes; the kept pool is told of each
        i %= len(views)
        views[i] = replace(_views([room])[0], name=views[i].name, schedulable=up)
        kept.update(views[i])
        kept.pick(1.0, 10)  # a pass in between: what it learns must not outlive the next update
    fresh = NodePool(views, rank)
    assert kept.free == fresh.free and bool(kept) == bool(fresh)
    for cpu in jobs:
        a, b = kept.pick(cpu, 10), fresh.pick(cpu, 10)
        assert a == b
        if a is not None:
            kept.take(a, cpu, 10)
            fresh.take(a, cpu, 10)


def test_room_kept_for_a_job_lasts_while_passes_keep_it() -> None:
    node = NodeView("a", 4, 1000, jobs=(RunningUse(3, 10, 3, 10),), observed_cpu=3, observed_mem=10)
    other = NodeView("b", 4, 1000, jobs=(RunningUse(4, 10, 4, 10),), observed_cpu=4, observed_mem=10)
    pool = NodePool([node, other], compile_rank("cpu_free"))
    assert pool.pick(4, 10) is None and pool.hold(4, 10, job=7) == "a"
    assert pool.free["a"].cpu == -3 and pool.pick(1, 10) is None  # nothing else goes there
    pool.end_pass()
    assert pool.free["a"].cpu == -3  # a pool kept for the next pass keeps the booking ...
    assert pool.hold(4, 10, prefer="a", job=7) == "a" and pool.free["a"].cpu == -3  # ... held again as it is
    pool.end_pass()
    pool.end_pass()  # a pass that did not hold room for job 7 again: it is given back
    assert pool.free["a"].cpu == 1 and pool.pick(1, 10) == "a"
    assert pool.hold(4, 10, job=8) == "a"
    pool.update(node)  # the node changed: its room is its view's again
    assert pool.free["a"].cpu == 1
    pool.end_pass()
    assert pool.free["a"].cpu == 1


def test_no_room_is_kept_on_a_node_that_could_never_take_the_job() -> None:
    small = NodeView("small", 2, 1000)
    busy = NodeView("busy", 8, 1000, jobs=(RunningUse(7, 10, 7, 10),), observed_cpu=7, observed_mem=10)
    pool = NodePool([small, busy], compile_rank("cpu_free"))
    assert pool.hold(4, 10, job=1) == "busy"  # "small" has more free, but only 2 cpus
    assert pool.hold(4, 10, job=2) is None  # one job per node
