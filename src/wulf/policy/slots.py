"""How a job of several tasks is laid out on nodes: pure, from each candidate node's room in slots.

The scheduler gives a job of several tasks all its slots in one pass or none (:func:`fit` either
returns the whole allocation or None), so no job ever holds part of what it needs while it waits for
the rest: two such jobs can never each hold what the other waits for (no deadlock). So that a large
job is not kept waiting for ever by small ones that take each node's room as it frees, the first
such job of a pass that does not fit *reserves* the nodes it would run on once their jobs end (see
:meth:`wulf.policy.placement.NodePool.reserve`): no other job starts there in that pass, and each
pass reserves them again (the same nodes when they still serve) until they have room for it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from wulf.model.tasks import Shape

#: rounding slack so that 0.1 + 0.2 cpus fit in 0.3 (the placement's too)
EPS = 1e-9


def slots_in(cpu_free: float, mem_free: float, cpu: float, mem: float) -> int:
    """How many tasks of ``cpu`` and ``mem`` fit in that room."""
    if cpu_free + EPS < cpu or mem_free + EPS < mem:
        return 0
    by_cpu = math.floor((cpu_free + EPS) / cpu) if cpu > 0 else 1 << 30
    by_mem = math.floor((mem_free + EPS) / mem) if mem > 0 else 1 << 30
    return max(0, min(by_cpu, by_mem))


def fit(shape: Shape, room: Sequence[tuple[str, int]]) -> list[tuple[str, int]] | None:
    """The allocation for ``shape`` from ``room`` (each candidate node and how many slots it has, best
    first): [(node, tasks there)], the first node first; None when it does not fit (never a part).

    The best node alone when it takes every task; else nodes in the order given."""
    room = [(n, k) for n, k in room if k > 0]
    if shape.per_node:
        chosen = [(n, shape.per_node) for n, k in room if k >= shape.per_node][:shape.nodes]
        return chosen if len(chosen) == shape.nodes else None
    if shape.nodes:
        return _on_nodes(shape, room)
    for n, k in room:
        if k >= shape.ntasks:
            return [(n, shape.ntasks)]
    out: list[tuple[str, int]] = []
    left = shape.ntasks
    for n, k in room:
        take = min(k, left)
        out.append((n, take))
        left -= take
        if not left:
            return out
    return None


def _on_nodes(shape: Shape, room: list[tuple[str, int]]) -> list[tuple[str, int]] | None:
    """Exactly ``shape.nodes`` nodes, at least one task on each: the best-ranked ones if they have the
    room in all, else those with the most room."""
    if len(room) < shape.nodes:
        return None
    chosen = room[:shape.nodes]
    if sum(k for _, k in chosen) < shape.ntasks:
        chosen = sorted(room, key=lambda nk: -nk[1])[:shape.nodes]  # (stable: equal room keeps rank order)
        if sum(k for _, k in chosen) < shape.ntasks:
            return None
    counts = [1] * len(chosen)
    left = shape.ntasks - len(chosen)
    for i, (_, k) in enumerate(chosen):
        more = min(k - 1, left)
        counts[i] += more
        left -= more
    return [(n, c) for (n, _), c in zip(chosen, counts, strict=True)]
