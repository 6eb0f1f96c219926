"""Where a job goes: the nodes with room, ranked, and the best one that fits.

:class:`NodePool` is built for a scheduling pass from the node views (or kept from pass to pass and
told of the nodes that changed). It keeps the nodes that have room in a heap by rank, so that picking
a node costs a few heap operations, not a scan of every node: a pass over a thousand nodes places
thousands of jobs. Room only shrinks during a pass, so once no node fits a request, no node fits any
larger request with the same constraint, and the pool remembers that until it is next updated; and
when no node has the cpus a request asks for, it knows that without looking at each.

A node whose agent does not run as root runs only its own user's jobs (:attr:`NodeView.owner`): a
request names its user, and such a node is matched as if the request's constraint said so.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from wulf.policy.constraint import Constraint, parse_constraint
from wulf.policy.rank import DEFAULT_RANK, compile_rank
from wulf.policy.snapshot import Free, NodeView, node_free

if TYPE_CHECKING:
    from wulf.model.tasks import Shape

from wulf.policy.slots import EPS as EPS
from wulf.policy.slots import fit, slots_in

#: a node with less cpu free than this takes no more jobs in this pass
MIN_CPU = 0.01

#: ranks nodes from their metrics (see wulf.policy.rank); larger is better
RankFn = Callable[[Mapping[str, float]], float]


def node_metrics(node: NodeView, free: Free, jobs: int) -> dict[str, float]:
    """What a rank expression may read of a node: its last sample, and its room by wulf's accounting."""
    m = dict(node.metrics)
    m.update(cpus=node.cpus, mem_total_mb=node.mem_mb, cpu_free=free.cpu, mem_free_mb=free.mem, jobs=jobs)
    return m


class NodePool:
    """The schedulable nodes of one pass: their room, their rank, and which fit a request.

    A pool may also outlive a pass: :meth:`update` tells it of a node whose view changed (a simulator
    or a server that keeps its pool between passes), and leaves it as a pool built anew from the
    current views would be. Equally ranked nodes go in the order the pool first saw them.
    """

    def __init__(
        self,
        nodes: Iterable[NodeView],
        rank: RankFn | None = None,
        observe: bool = True,
        adjust: Callable[[NodeView, Mapping[str, float], float], float] | None = None,
    ) -> None:
        self._rank = rank if rank is not None else compile_rank(DEFAULT_RANK)
        self._adjust = adjust
        self._observe = observe
        self.views: dict[str, NodeView] = {}
        self.free: dict[str, Free] = {}
        self._metrics: dict[str, dict[str, float]] = {}
        self._version: dict[str, int] = {}
        self._index: dict[str, int] = {}  # the order nodes were first seen in: ties of rank go by it
        self._heap: list[tuple[float, int, str, int]] = []  # (-rank, index, name, version)
        self._entry: dict[str, tuple[float, int, str, int]] = {}  # each node's current entry, if it has room
        # (-cpu free, index, name, version): made when first asked for (a pass that places all it looks at
        # never needs it)
        self._roomiest: list[tuple[float, int, str, int]] | None = None
        self._constraints: dict[str, Constraint] = {"": parse_constraint("")}
        self._matches: dict[tuple[str, str], bool] = {}
        self._failed: dict[str, list[tuple[float, float]]] = {}  # constraint -> requests that fit nowhere
        self._everywhere: dict[str, NodeView] = {}  # every node known, schedulable or not
        self._possible: dict[tuple[float, float, str], str] = {}
        self._possible_slots: dict[tuple[float, float, Shape, str], str] = {}  # (as _possible: until nodes change)
        self._owned = 0  # schedulable or not, nodes that run only their owner's jobs
        self._holding: set[str] = set()  # nodes that keep room for a job in this pass
        # room booked by hold, by job: (node, cpu, mem, the node's version then); and those held this pass
        self._kept: dict[int, tuple[str, float, float, int]] = {}
        self._renewed: set[int] = set()
        self._alone: dict[str, Free] = {}  # room once the jobs now on a node end (worked out when asked)
        # jobs of several tasks (see wulf.policy.slots): the nodes reserved in this pass, and by whom last
        self._reserved: dict[str, None] = {}  # (a dict: they go back in the order they were taken, whatever the hash seed)
        self._reserved_for: dict[int, list[str]] = {}
        for node in nodes:
            self.update(node)

    def update(self, node: NodeView) -> None:
        """The pool's knowledge of ``node`` (new, changed, or no longer schedulable) is now this view.

        Between passes only: what a pass has learnt about which requests fit nowhere is forgotten.
        """
        name = node.name
        old = self._everywhere.get(name)
        if old is None:
            self._index[name] = len(self._index)
        if old is None or old.cpus != node.cpus or old.mem_mb != node.mem_mb or (
                old.attrs is not node.attrs and old.attrs != node.attrs) or old.features != node.features or (
                old.owner != node.owner):
            self._possible.clear()
            self._possible_slots.clear()
            if old is not None:
                self._matches = {k: v for k, v in self._matches.items() if k[1] != name}
            self._owned += bool(node.owner) - bool(old is not None and old.owner)
        self._everywhere[name] = node
        self._failed.clear()
        self._holding.discard(name)
        self._alone.pop(name, None)
        self._version[name] = self._version.get(name, 0) + 1
        if not node.schedulable:
            if name in self.views:
                del self.views[name], self.free[name], self._metrics[name]
                self._entry.pop(name, None)
            return
        free = node_free(node, self._observe)
        self.views[name] = node
        self.free[name] = free
        self._metrics[name] = node_metrics(node, free, len(node.jobs))
        self._push(name)

    def _score(self, name: str) -> float:
        m = self._metrics[name]
        r = self._rank(m)
        return self._adjust(self.views[name], m, r) if self._adjust is not None else r

    def _push(self, name: str) -> None:
        free = self.free[name].cpu
        if free < MIN_CPU:
            self._entry.pop(name, None)
            return
        index, version = self._index[name], self._version[name]
        entry = self._entry[name] = (-self._score(name), index, name, version)
        heapq.heappush(self._heap, entry)
        if self._roomiest is not None:
            heapq.heappush(self._roomiest, (-free, index, name, version))
        if len(self._heap) > 4 * len(self._entry) + 64:
            self._compact()

    def _compact(self) -> None:
        """Drop the entries of nodes whose room changed since (they are skipped when met anyway)."""
        self._heap = list(self._entry.values())
        heapq.heapify(self._heap)
        if self._roomiest is not None:
            self._roomiest = self._roomiest_now()

    def _roomiest_now(self) -> list[tuple[float, int, str, int]]:
        heap = [(-self.free[n].cpu, e[1], n, e[3]) for n, e in self._entry.items()]
        heapq.heapify(heap)
        return heap

    def _most_cpu_free(self) -> float:
        """The most cpu free on any node that takes jobs (-1 when none does)."""
        heap = self._roomiest
        if heap is None:
            heap = self._roomiest = self._roomiest_now()
        while heap and heap[0][3] != self._version[heap[0][2]]:
            heapq.heappop(heap)
        return -heap[0][0] if heap and heap[0][2] in self._entry else -1.0

    def constraint(self, text: str) -> Constraint:
        c = self._constraints.get(text)
        if c is None:
            c = self._constraints[text] = parse_constraint(text)
        return c

    def _key(self, constraint: str, user: str | None) -> str:
        """What a request must match: its constraint, and its user while some nodes run only their
        owner's jobs (the key of the pool's caches, read back by :meth:`_match`)."""
        return f"{constraint}\0{user}" if self._owned and user else constraint

    def _match(self, key: str, node: NodeView) -> bool:
        if not key:
            return True
        cached = (key, node.name)
        ok = self._matches.get(cached)
        if ok is None:
            text, _, user = key.partition("\0")
            ok = (not text or self.constraint(text).matches(node.attrs, node.features)) and (
                not user or node.owner is None or node.owner == user)
            self._matches[cached] = ok
        return ok

    def possible(self, cpu: float, mem: float, constraint: str = "", user: str | None = None) -> str:
        """"" if some node known (up or not) could ever take such a job of ``user``; else why none can."""
        key = (cpu, mem, self._key(constraint, user))
        why = self._possible.get(key)
        if why is None:
            why = self._possible[key] = self._why_impossible(cpu, mem, key[2])
        return why

    def _why_impossible(self, cpu: float, mem: float, key: str) -> str:
        matching = [n for n in self._everywhere.values() if self._match(key, n)]
        constraint, _, user = key.partition("\0")
        if not matching and user and any(self._match(constraint, n) for n in self._everywhere.values()):
            owners = sorted({n.owner for n in self._everywhere.values() if n.owner and self._match(constraint, n)})
            return (f"no node runs {user}'s jobs: the agents{' that match' if constraint else ''} run as "
                    f"{', '.join(owners)}, not as root, and so run only their own user's jobs")
        if not matching:
            return f"no node matches the constraint {constraint!r}"
        if not any(n.cpus + EPS >= cpu for n in matching):
            return f"needs {cpu:g} cpus; the largest node{' that matches' if constraint else ''} has " \
                   f"{max(n.cpus for n in matching):g}"
        if not any(n.cpus + EPS >= cpu and n.mem_mb + EPS >= mem for n in matching):
            return f"needs {mem:g} MB; no node{' that matches' if constraint else ''} with {cpu:g} cpus has so much"
        return ""

    def pick(self, cpu: float, mem: float, constraint: str = "", user: str | None = None) -> str | None:
        """The best-ranked node with ``cpu`` and ``mem`` free that meets ``constraint`` (and runs jobs of
        ``user``); None if none."""
        constraint = self._key(constraint, user)
        failed = self._failed.get(constraint)
        if failed and any(cpu + EPS >= c and mem + EPS >= m for c, m in failed):
            return None
        heap = self._heap
        version = self._version
        while heap and heap[0][3] != version[heap[0][2]]:
            heapq.heappop(heap)  # stale: the node was taken from since
        if heap:  # most often the best-ranked node fits
            name = heap[0][2]
            f = self.free[name]
            if f.cpu + EPS >= cpu and f.mem + EPS >= mem and self._match(constraint, self.views[name]):
                return name
        if self._most_cpu_free() + EPS < cpu:  # no node has the cpus: no need to look at each
            self._failed.setdefault(constraint, []).append((cpu, mem))
            return None
        free, views, match = self.free, self.views, self._match
        found = self._first(heap, lambda name: (f := free[name]).cpu + EPS >= cpu and f.mem + EPS >= mem
                            and match(constraint, views[name]))
        if found is None:
            self._failed.setdefault(constraint, []).append((cpu, mem))
        return found

    def hold(self, cpu: float, mem: float, constraint: str = "", prefer: str | None = None,
             job: int | None = None, user: str | None = None) -> str | None:
        """Keep room for a job that fits nowhere now: book it on the node with the most cpu free of those
        that could take it once the jobs now on them end (by size, outside work and constraint), so that
        no other job is placed there in this pass and its room grows as its jobs end. ``prefer`` is the
        node held for it before: it is kept unless another has more cpu free. A node keeps room for one
        job at a time (and one that has no room left is not taken for another). That node, or None when
        no node could take it.

        A pool kept from pass to pass keeps the booking for ``job`` until the end of a pass that did not
        hold room for it again (:meth:`end_pass`), or until the node is updated."""
        constraint = self._key(constraint, user)
        kept = self._kept.get(job) if job is not None else None
        if kept is not None and kept[0] == prefer and self._version.get(prefer) == kept[3]:
            # booked in an earlier pass and the node unchanged since: kept, unless another has more room
            if self.free[prefer].cpu + kept[1] + EPS >= self._most_cpu_free():
                self._holding.add(prefer)
                self._renewed.add(job)  # type: ignore[arg-type]
                return prefer
        best: str | None = None
        if (prefer is not None and prefer in self.views and prefer not in self._holding
                and self.free[prefer].cpu + EPS >= self._most_cpu_free() and self._could_take(prefer, cpu, mem, constraint)):
            best = prefer  # no node has more room: no need to look further
        else:
            best = self._roomiest_that_could_take(cpu, mem, constraint)
            if (prefer is not None and prefer != best and prefer in self.views and prefer not in self._holding
                    and (best is None or self.free[prefer].cpu + EPS >= self.free[best].cpu)
                    and self._could_take(prefer, cpu, mem, constraint)):
                best = prefer
        if best is not None:
            if job is not None:
                self._release(job)
            self.take(best, cpu, mem)
            self._version[best] += 1  # and out of the running for the rest of the pass, room left or not
            self._entry.pop(best, None)
            self._holding.add(best)
            if job is not None:
                self._kept[job] = (best, cpu, mem, self._version[best])
                self._renewed.add(job)
        return best

    def end_pass(self) -> None:
        """At the end of a pass (``schedule`` calls it): give back the room booked for jobs this pass did
        not hold room for again; what it did hold stays booked in a pool kept for the next pass."""
        for job in [j for j in self._kept if j not in self._renewed]:
            self._release(job)
        self._renewed.clear()
        self._holding.clear()
        self._failed.clear()
        for name in self._reserved:  # back in the running (their room was never booked)
            if name in self.views:
                self._version[name] += 1
                self._push(name)
        self._reserved.clear()

    # ------------------------------------------------------------------ jobs of several tasks

    def pick_slots(self, cpu: float, mem: float, shape: Shape, constraint: str = "",
                   user: str | None = None) -> list[tuple[str, int]] | None:
        """All the slots a job of ``shape`` (each task ``cpu`` and ``mem``) needs, on nodes with room
        now, best-ranked first (see :func:`wulf.policy.slots.fit`); None when they are not all free.
        Nothing is booked: the caller takes each node's share."""
        key = self._key(constraint, user)
        if shape.per_node:
            # (a job that waits is looked at on every pass: when fewer nodes than it needs have even the
            # cpu for its tasks, it does not fit, and the nodes need not be ranked; the bound is loose)
            need = cpu * shape.per_node * (1 - 1e-9) - 2 * EPS
            if sum(1 for f in self.free.values() if f.cpu >= need) < shape.nodes:
                return None
        entries = sorted(self._entry.values())
        if shape.per_node:
            # (as fit: the first nodes, in rank order, with room for that many tasks; there is no need to
            # work out the room of the nodes after them, on a cluster of a thousand nodes a pass's cost)
            chosen: list[tuple[str, int]] = []
            for e in entries:
                name = e[2]
                free = self.free[name]
                if free.cpu + EPS < cpu or free.mem + EPS < mem:  # (no slot: most nodes of a full cluster)
                    continue
                if self._match(key, self.views[name]) and slots_in(free.cpu, free.mem, cpu, mem) >= shape.per_node:
                    chosen.append((name, shape.per_node))
                    if len(chosen) == shape.nodes:
                        return chosen
            return None
        room = [(e[2], slots_in(self.free[e[2]].cpu, self.free[e[2]].mem, cpu, mem))
                for e in entries if self._match(key, self.views[e[2]])]
        return fit(shape, room)

    def possible_slots(self, cpu: float, mem: float, shape: Shape, constraint: str = "",
                       user: str | None = None) -> str:
        """"" if the nodes known (up or not) could ever take such a job all at once; else why not."""
        key = self._key(constraint, user)
        why = self._possible_slots.get((cpu, mem, shape, key))
        if why is None:
            why = self._possible_slots[(cpu, mem, shape, key)] = self._why_never(cpu, mem, shape, constraint, user)
        return why

    def _why_never(self, cpu: float, mem: float, shape: Shape, constraint: str, user: str | None) -> str:
        why = self.possible(cpu, mem, constraint, user)
        if why:
            return why
        key = self._key(constraint, user)
        room = [(n.name, slots_in(n.cpus, n.mem_mb, cpu, mem)) for n in self._everywhere.values()
                if self._match(key, n)]
        if fit(shape, room) is not None:
            return ""
        nodes = sum(1 for _, k in room if k)
        return (f"needs {_shape_text(shape)} of {cpu:g} cpus and {mem:g} MB; the {nodes} node{'s' * (nodes != 1)}"
                f"{' that match' if constraint else ''} could never hold them all at once")

    def reserve(self, cpu: float, mem: float, shape: Shape, constraint: str = "", job: int | None = None,
                user: str | None = None) -> list[str] | None:
        """Reserve, for the rest of this pass, the nodes a job of ``shape`` that fits nowhere now would
        run on once the jobs on them end: no other job is placed there. The nodes reserved for ``job``
        in the last pass come first, then those with the most cpu free. Those nodes, or None when they
        could not take it even then."""
        key = self._key(constraint, user)
        before = self._reserved_for.get(job, []) if job is not None else []
        names = [n for n in before if n in self._entry] + sorted(
            (n for n in self._entry if n not in before), key=lambda n: -self.free[n].cpu)
        room = []
        enough = 0  # nodes with room for shape.per_node tasks: with that many, fit() looks no further
        for name in names:
            if name in self._holding or not self._match(key, self.views[name]):
                continue
            alone = self._alone.get(name)
            if alone is None:
                alone = self._alone[name] = node_free(self.views[name], self._observe, jobs=False)
            k = slots_in(alone.cpu, alone.mem, cpu, mem)
            room.append((name, k))
            if shape.per_node and k >= shape.per_node:
                enough += 1
                if enough == shape.nodes:
                    break
        chosen = fit(shape, room)
        if chosen is None:
            return None
        reserved = [n for n, _ in chosen]
        for name in reserved:
            self._version[name] += 1
            self._entry.pop(name, None)
            self._reserved[name] = None
            self._holding.add(name)  # (no room is kept there for another job in this pass either)
        if job is not None:
            self._reserved_for = {job: reserved}
        return reserved

    def _release(self, job: int) -> None:
        kept = self._kept.pop(job, None)
        if kept is None:
            return
        name, cpu, mem, version = kept
        if self._version.get(name) != version or name not in self.views:
            return  # updated since (its room is the view's again) or booked since (the caller updates it)
        f = self.free[name]
        free = self.free[name] = Free(f.cpu + cpu, f.mem + mem)
        m = self._metrics[name]
        m["cpu_free"], m["mem_free_mb"], m["jobs"] = free.cpu, free.mem, m["jobs"] - 1
        self._version[name] += 1
        self._push(name)

    def _roomiest_that_could_take(self, cpu: float, mem: float, constraint: str) -> str | None:
        self._most_cpu_free()  # (makes the heap)
        heap = self._roomiest
        assert heap is not None
        return self._first(heap, lambda name: name not in self._holding and self._could_take(name, cpu, mem, constraint))

    def _first(self, heap: list[tuple[float, int, str, int]], test: Callable[[str], bool]) -> str | None:
        """The first node in ``heap``'s order that passes ``test``, else None. Stale entries (the node
        changed since) are dropped on the way; the live ones looked at are put back."""
        version = self._version
        skipped = []
        found: str | None = None
        while heap:
            entry = heapq.heappop(heap)
            if entry[3] != version[entry[2]]:
                continue  # stale: the node was taken from since
            skipped.append(entry)
            if test(entry[2]):
                found = entry[2]
                break
        for entry in skipped:
            heapq.heappush(heap, entry)
        return found

    def _could_take(self, name: str, cpu: float, mem: float, constraint: str) -> bool:
        """Whether node ``name`` would have the room once the jobs now on it end."""
        view = self.views[name]
        room = self._alone.get(name)
        if room is None:
            room = self._alone[name] = node_free(view, self._observe, jobs=False)
        return room.cpu + EPS >= cpu and room.mem + EPS >= mem and self._match(constraint, view)

    def take(self, name: str, cpu: float, mem: float) -> None:
        """Book ``cpu`` and ``mem`` on ``name`` for a job just placed there."""
        f = self.free[name]
        free = self.free[name] = Free(f.cpu - cpu, f.mem - mem)
        m = self._metrics[name]
        m["cpu_free"], m["mem_free_mb"], m["jobs"] = free.cpu, free.mem, m["jobs"] + 1
        self._version[name] += 1
        self._push(name)

    def slots_take(self, slots: Iterable[tuple[str, int]], cpu: float, mem: float) -> None:
        """Book a job of several tasks: each node its share (``cpu`` and ``mem`` a task)."""
        for name, k in slots:
            self.take(name, cpu * k, mem * k)

    def best(self, user: str | None = None) -> str | None:
        """The node an interactive job (of ``user``) goes to now, room or not: the best-ranked one."""
        key = self._key("", user)
        return max((n for n in self.views if self._match(key, self.views[n])), key=self._score, default=None)

    def __bool__(self) -> bool:
        """Whether any node has room left (at least MIN_CPU free)."""
        return bool(self._entry)


def _shape_text(shape: Shape) -> str:
    if shape.per_node:
        return f"{shape.nodes} nodes × {shape.per_node} tasks"
    if shape.nodes:
        return f"{shape.ntasks} tasks on {shape.nodes} nodes"
    return f"{shape.ntasks} tasks"
