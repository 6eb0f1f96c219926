"""One scheduling pass: which user's queue is served next, and where its next job goes.

Fair share: users take turns, always the one with the fewest running jobs for their share weight, so
competing users end up with running jobs in proportion to their weights and nobody starves another by
queueing more. Within a user's turn, their queues are served by priority (higher first; equal
priorities in submission order). A queue whose next job finds no room waits: its later jobs do not
overtake it.

Room is kept for a job that waits while its user runs fewer jobs, for their share, than another user
with waiting jobs: the node closest to taking it takes no other job (see :meth:`NodePool.hold`), and
that counts as the user's turn, as a start would. So their next jobs are kept room for in turn until
they have caught up (at most :data:`MAX_HOLDS` at a time). Else a user whose jobs are larger than
another's would wait for as long as the other has small jobs queued, every freed cpu going to one of
those. Room is kept on the same node from pass to pass (the caller passes ``PassResult.held`` on to the
next pass) unless another node has more room.

A user at their cpu limit waits. A stopped queue, or one outside its time window, starts nothing.
Every queue that waits gets a reason, for ``jstat``.

Pure: the pass reads views and returns placements and reasons; it changes nothing else.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from wulf.model.tasks import Shape, compact
from wulf.policy.history import Sized
from wulf.policy.placement import EPS, NodePool
from wulf.policy.snapshot import QueueView, UserView, Waiting


@dataclass(frozen=True, slots=True)
class Placement:
    job_id: int
    node: str
    cpu: float  # what the job starts with: what it asked for, or less when its kind taught that
    mem_mb: float
    #: a job of several tasks: [(node, tasks there)], ``node`` first (cpu and mem_mb are each task's)
    slots: tuple[tuple[str, int], ...] = ()


@dataclass
class PassResult:
    placements: list[Placement] = field(default_factory=list)
    #: (user, queue) -> why that queue's next job waits
    reasons: dict[tuple[str, str], str] = field(default_factory=dict)
    #: job id -> why that job cannot run anywhere (it is stepped over; the jobs behind it go on)
    impossible: dict[int, str] = field(default_factory=dict)
    #: job id -> the node where room is kept for it (give it to the next pass as ``held``)
    held: dict[int, str] = field(default_factory=dict)
    #: the job of several tasks that nodes were reserved for in this pass (at most one; see policy.slots)
    reserved: dict[int, list[str]] = field(default_factory=dict)
    reserved_after: int = 0  # how many placements were made before that reservation (none after are there)


class Ordering(Protocol):
    """What a policy plugin may adjust of the order (both methods are optional on a plugin)."""

    def user_key(self, user: UserView, default: float) -> float: ...

    def queue_key(self, queue: QueueView, default: float) -> float: ...


class _Queue:
    __slots__ = ("head", "holding", "it", "key", "view")

    def __init__(self, view: QueueView, key: float) -> None:
        self.view = view
        self.it: Iterator[Waiting] = iter(view.jobs)
        self.head: Waiting | None = next(self.it, None)
        self.key = key
        self.holding = False  # room is kept for one of its jobs: the ones after it do not start

    def sort_key(self) -> tuple[float, int]:
        return (self.key, self.head.id if self.head else 0)

    def advance(self) -> None:
        self.head = next(self.it, None)


#: the most jobs one user keeps room for in a pass (each holds a node). More lets a user whose jobs are
#: larger catch up faster (a node drains for each), but a pass then does more: with 16, a pass stays well
#: under a millisecond at a thousand nodes, and ``wulf sim`` of 1,000 nodes and 100,000 jobs in a minute
MAX_HOLDS = 16


class _User:
    __slots__ = ("holds", "occupied", "queues", "running", "view")

    def __init__(self, view: UserView) -> None:
        self.view = view
        self.running = view.running  # and the jobs room is kept for in this pass
        self.occupied = view.occupied_cpu
        self.holds = 0
        self.queues: list[tuple[tuple[float, int], int, _Queue]] = []


def _window_reason(q: QueueView, window_open: Callable[[str], bool]) -> str:
    if q.stopped:
        return f"queue {q.name} is stopped (qset {q.name} --start)"
    if q.window != "always" and not window_open(q.window):
        return f"queue {q.name} runs at {q.window} only"
    return ""


def _limit_reason(user: _User, cpu: float) -> str:
    limit = user.view.limit
    if limit is None or user.occupied + cpu <= limit + EPS:
        return ""
    return f"user limit: {user.view.name} occupies {user.occupied:g} of {limit:g} cpus"


def schedule(
    queues: Sequence[QueueView],
    users: Mapping[str, UserView],
    pool: NodePool,
    window_open: Callable[[str], bool] = lambda kind: True,
    ordering: Ordering | None = None,
    held: Mapping[int, str] | None = None,
) -> PassResult:
    """One pass: place what fits, and say why the rest waits. ``pool`` is booked in place (a pool kept
    for the next pass is told of the nodes that changed since, with :meth:`NodePool.update`). ``held`` is
    the last pass's :attr:`PassResult.held`: where room is being kept for which waiting job."""
    out = PassResult()
    held = held or {}
    people: dict[str, _User] = {}
    queue_key = getattr(ordering, "queue_key", None)
    user_key = getattr(ordering, "user_key", None)
    for n, q in enumerate(queues):
        why = _window_reason(q, window_open)
        if why:
            out.reasons[(q.user, q.name)] = why
            continue
        key = -float(q.priority)
        if queue_key is not None:
            key = queue_key(q, key)
        entry = _Queue(q, key)
        if entry.head is None:
            continue
        user = people.get(q.user)
        if user is None:
            user = people[q.user] = _User(users.get(q.user) or UserView(q.user))
        user.queues.append((entry.sort_key(), n, entry))
    turns: list[tuple[float, str]] = []
    for user in people.values():
        heapq.heapify(user.queues)
        turns.append((_turn(user, user_key), user.view.name))
    heapq.heapify(turns)

    def behind(user: _User) -> bool:
        return _behind(user, people, user_key)

    while turns:
        _, name = heapq.heappop(turns)
        user = people[name]
        if not pool:
            _note_impossible(user, pool, out)
            _wait(user, "waiting for room: every node is full", out)
            continue
        if _serve(user, pool, out, held, behind):
            heapq.heappush(turns, (_turn(user, user_key), name))
    pool.end_pass()
    return out


def _turn(user: _User, user_key: Callable[[UserView, float], float] | None) -> float:
    key = user.running / (user.view.share or 1.0)
    if user_key is not None:
        key = user_key(user.view, key)
    return key


def _wait(user: _User, why: str, out: PassResult) -> None:
    for _, _, q in user.queues:
        out.reasons.setdefault((q.view.user, q.view.name), why)
    user.queues.clear()


def _note_impossible(user: _User, pool: NodePool, out: PassResult) -> None:
    """With no room anywhere, still step over the jobs at the heads of ``user``'s queues that no node could
    ever run, so that each is said to be impossible rather than waiting for room that would never be enough
    (one look each, cached by the pool per kind of job)."""
    for _, _, q in user.queues:
        while (job := q.head) is not None:
            shape: Shape | None = getattr(job, "shape", None)
            if shape is not None and not shape.single:
                why = pool.possible_slots(job.cpu, job.mem_mb, shape, job.constraint, job.user)
            else:
                why = pool.possible(job.cpu, job.mem_mb, job.constraint, job.user)
            if not why:
                break
            out.impossible[job.id] = why
            q.advance()


def _behind(user: _User, people: Mapping[str, _User],
            user_key: Callable[[UserView, float], float] | None) -> bool:
    """Whether another user with waiting jobs runs more jobs, for their share, than ``user``."""
    mine = _turn(user, user_key)
    return any(_turn(u, user_key) > mine for u in people.values() if u is not user)


def _serve(user: _User, pool: NodePool, out: PassResult, held: Mapping[int, str],
           behind: Callable[[_User], bool]) -> bool:
    """Give ``user`` one turn: place the next job of their best queue, or keep room for it. False when
    they are done."""
    while user.queues:
        _, n, q = user.queues[0]
        job = q.head
        assert job is not None
        shape: Shape | None = getattr(job, "shape", None)
        if shape is not None and not shape.single:
            served = _serve_tasks(user, job, shape, pool, out)
            if served is None:
                continue
            return served
        why = _limit_reason(user, job.cpu)
        if why:
            _wait(user, why, out)
            return False
        node = None if q.holding else pool.pick(job.cpu, job.mem_mb, job.constraint, job.user)
        if node is None:
            impossible = pool.possible(job.cpu, job.mem_mb, job.constraint, job.user)
            if impossible:  # it can never run here: step over it
                out.impossible[job.id] = impossible
                _next(user, q, n)
                continue
            kept = None
            if user.holds < MAX_HOLDS and behind(user):
                kept = pool.hold(job.cpu, job.mem_mb, job.constraint, held.get(job.id), job.id, job.user)
            if not q.holding:
                out.reasons[(q.view.user, q.view.name)] = _no_room(job, kept)
            if kept is None:
                heapq.heappop(user.queues)
                continue
            out.held[job.id] = kept
            user.holds += 1
            q.holding = True
        else:
            pool.take(node, job.cpu, job.mem_mb)
            out.placements.append(Placement(job.id, node, job.cpu, job.mem_mb))
        user.running += 1
        user.occupied += job.cpu
        _next(user, q, n)
        return bool(user.queues)
    return False


def _serve_tasks(user: _User, job: Waiting, shape: Shape, pool: NodePool, out: PassResult) -> bool | None:
    """:func:`_serve` for a job of several tasks: all its slots at once or none. Placed: as ``_serve``
    returns; else its queue waits (None: look at the user's next queue), and the first such job of
    the pass reserves the nodes it is to run on (see wulf.policy.slots)."""
    _, n, q = user.queues[0]
    total = job.cpu * shape.ntasks
    why = _limit_reason(user, total)
    if why:
        _wait(user, why, out)
        return False
    slots = pool.pick_slots(job.cpu, job.mem_mb, shape, job.constraint, job.user)
    if slots is None:
        impossible = pool.possible_slots(job.cpu, job.mem_mb, shape, job.constraint, job.user)
        if impossible:
            out.impossible[job.id] = impossible
            _next(user, q, n)
            return None
        kept = None
        if not out.reserved:
            kept = pool.reserve(job.cpu, job.mem_mb, shape, job.constraint, job.id, job.user)
            if kept is not None:
                out.reserved[job.id] = kept
                out.reserved_after = len(out.placements)
        out.reasons[(q.view.user, q.view.name)] = _no_room_tasks(job, shape, kept)
        heapq.heappop(user.queues)
        return None
    pool.slots_take(slots, job.cpu, job.mem_mb)
    out.placements.append(Placement(job.id, slots[0][0], job.cpu, job.mem_mb, tuple(slots)))
    user.running += 1
    user.occupied += total
    _next(user, q, n)
    return bool(user.queues)


def _no_room_tasks(job: Waiting, shape: Shape, kept: list[str] | None) -> str:
    many = f"{shape.ntasks} tasks" + (f" on {shape.nodes} nodes" if shape.nodes else "")
    what = f"waiting for room: needs {many} of {job.cpu:g} cpu{'s' if job.cpu != 1 else ''} and {job.mem_mb:g} MB"
    if job.constraint:
        what += f" on nodes matching {job.constraint!r}"
    if kept:
        what += f" (nodes {compact(kept)} are reserved for it)"
    return what


def _next(user: _User, q: _Queue, n: int) -> None:
    q.advance()
    if q.head is None:
        heapq.heappop(user.queues)
    else:
        heapq.heapreplace(user.queues, (q.sort_key(), n, q))


def _no_room(job: Waiting, held: str | None) -> str:
    what = f"{job.cpu:g} cpu{'s' if job.cpu != 1 else ''} and {job.mem_mb:g} MB"
    if isinstance(job, Sized):
        what += " (what its last jobs like it used)"
    if job.constraint:
        what += f" on a node matching {job.constraint!r}"
    if held:
        what += f" (room is kept for it on {held})"
    return f"waiting for room: needs {what}"


def why_waiting(job: Waiting, queue_why: str, kept: str | None = None, impossible: str | None = None,
                head: int | None = None, up: bool = True) -> str:
    """Why ``job`` waits, for ``jstat``, from what the last pass said: ``queue_why`` of its queue
    (:attr:`PassResult.reasons`), ``kept`` the node room is kept on for it, ``impossible`` why it can
    never run; ``head`` the first job of its queue, ``up`` whether any node takes jobs."""
    if impossible:
        return impossible
    if kept:
        return _no_room(job, kept)
    room = not queue_why or queue_why.startswith("waiting for room")
    if room and not up:
        return "no node is up (every node is down or drained)"
    if room and queue_why and head is not None and head != job.id:
        return f"behind job {head} in its queue"
    return queue_why or "waiting for its turn"
