"""The server's state machine: the jobs and the nodes' books, which events change and which feed the
policy, with no I/O inside (the model is dask's ``worker_state_machine``).

:meth:`ServerState.handle` takes an event (:mod:`wulf.server.events`) and returns the instructions
(:mod:`wulf.server.instructions`) that carry it out, in order; the shell (the asyncio daemon, or a
simulator on a virtual clock) commits, sends and mails. Every job that ends, however it ends (an
exit, a cancel, a node lost or a reconnecting node that no longer knows it, outside work gone, an
interactive session that could not start), goes through :meth:`ServerState.end`; what cares about an
end subscribes to it (:attr:`end_hooks`: the kinds' teaching, the impossible list, the queue's mail,
the throttle of an array (see wulf.server.arrays);
the shell's waiters through the :class:`~wulf.server.instructions.JobEnded` that ends every end).
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from wulf.config import Config
from wulf.errors import Refused
from wulf.model import depend
from wulf.model.deltas import Taken
from wulf.model.job import Job, JobState, Origin
from wulf.model.mailtypes import mail_types
from wulf.model.tasks import alloc_text
from wulf.policy import migrate
from wulf.policy.adapt import penalty_nice
from wulf.policy.history import History, kind_of
from wulf.policy.limits import occupied_cpu
from wulf.policy.placement import NodePool
from wulf.policy.scheduler import schedule
from wulf.policy.settings import Policy
from wulf.policy.snapshot import NodeView, QueueView, UserView
from wulf.protocol import (
    LIMIT_REASON,
    Ack,
    Cluster,
    JobExit,
    JobStarted,
    Limit,
    NodeSample,
    Renice,
    Resync,
    Signal,
)
from wulf.server import adaptive, jobmail, modify, owners
from wulf.server.arrays import ArrayBook
from wulf.server.events import (
    CancelRequested,
    Drained,
    Event,
    HoldRequested,
    JobChanges,
    JobsExited,
    JobsStarted,
    ModifyRequested,
    NodeDown,
    NodeUp,
    QueueChanged,
    ReleaseRequested,
    ReniceRequested,
    Reported,
    Requeued,
    SchedulePass,
    SessionFailed,
    Submitted,
    Tick,
)
from wulf.server.instructions import (
    Commit,
    CommitSoon,
    Instruction,
    JobEnded,
    Log,
    Mail,
    RecordExits,
    Requeue,
    Send,
    StartJobs,
    Wake,
    WakeAt,
)
from wulf.server.nodes import Node, NodeState
from wulf.server.queues import QueueBook
from wulf.server.waits import Waits

#: how many reports in a row an outside process cluster may be missing before its job is over
EXTERNAL_GONE_AFTER = 2

#: what subscribes to the end of a job: called once per job that ends, after it is recorded ended;
#: returns what else is to be done (in the order given)
EndHook = Callable[[Job], Iterable[Instruction]]


def _no_groups(user: str) -> tuple[str, ...]:
    return ()


class ServerState:
    """The jobs (by id), the users' queues and their waiting jobs, the nodes and what runs there, and
    what the last scheduling pass concluded; changed only by :meth:`handle` (and :meth:`restore`)."""

    def __init__(self, config: Config, groups: Callable[[str], Sequence[str]] = _no_groups,
                 policy: Policy | None = None) -> None:
        self.config = config
        self.policy = policy or Policy.from_config(config)  # (a simulator gives its own variant)
        self.groups = groups  # a user's groups (for group limits and shares); looked up by the shell's means
        self.jobs: dict[int, Job] = {}
        self.book = QueueBook()  # users' queues and their waiting jobs
        self.nodes: dict[str, Node] = {}
        self.running: Counter[str] = Counter()  # user -> running batch jobs (fair share counts these)
        self.reasons: dict[tuple[str, str], str] = {}  # (user, queue) -> why its next job waits
        self.impossible: dict[int, str] = {}  # job -> why no node can ever run it
        self.held_room: dict[int, str] = {}  # job -> the node where room is kept for it (see policy.scheduler)
        self.history: deque[int] = deque()  # ended jobs kept in memory, in the order they ended
        self.kinds: History | None = self.policy.history()  # what ended jobs taught the next of their kind
        self.down_since: dict[str, float] = {}  # node -> when its agent went away (see Tick)
        self.next_id = 1
        self.changes = 0  # events handled: the web page's live updates look for a change (see server.web)
        self._pool: NodePool | None = None  # kept between passes; nodes in _stale are updated first
        self._stale: dict[str, None] = {}  # (a dict: looked at in the order they changed, whatever the hash seed)
        self._views: dict[str, NodeView] = {}  # each node's view, until something of it changes (touch)
        self._outside: dict[str, list[tuple[str, int, float, float]]] = {}  # see outside_of (until touch)
        self._window_at: float | None = None  # when a waiting queue's window next opens or closes
        self._reload = True  # the configuration changed since the last pass
        self._touched = True  # a node changed since the last pass (see _unchanged)
        self.arrays = ArrayBook()  # job arrays, and the admission of throttled arrays' tasks (see server.arrays)
        self.strays: dict[int, str] = {}  # job queued again -> the node where its earlier run still goes
        self.waits = Waits()  # dependents waiting for other jobs to end (see wulf.model.depend)
        #: told of every scheduling pass: the seconds the policy took, the jobs it placed, and the seconds
        #: spent bringing the pool up to date before it (a measurement, for the simulator's figures)
        self.on_pass: Callable[[float, int, float], None] | None = None
        self.relimited: set[int] = set()  # running jobs whose time limit jmod changed: told again on reconnect
        self.desks: dict[str, owners.Desk] = {}  # workstations' watches (issue 13 §3, see wulf.server.owners)
        self.end_hooks: list[EndHook] = [self._teach, self._unlist, self._mail, self._job_mail, self._array_ended,
                                         self._resolve_dependents, self._end_tasks]
        self._handlers: dict[type, Callable[[Any], list[Instruction]]] = {
            Submitted: self._submitted, SchedulePass: self._scheduled, JobsStarted: self._started,
            JobsExited: self._exited, CancelRequested: self._cancel, HoldRequested: self._hold,
            ReleaseRequested: self._release, ReniceRequested: self._renice, QueueChanged: self._queue_changed,
            ModifyRequested: self._modify,
            Drained: self._drained, NodeUp: self._node_up,
            NodeDown: self._node_down, Reported: self._reported, SessionFailed: self._session_failed,
            Tick: self._tick, Requeued: self._requeued,
        }

    def handle(self, event: Event) -> list[Instruction]:
        """Apply ``event``; what the shell is to do about it, in order."""
        self.changes += 1
        out = self._handlers[type(event)](event)
        if len(self.history) > self.config.server.history:  # (whatever ended them: exits, cancels, outside work)
            self._forget_old()
        return out

    # ------------------------------------------------------------------ start and configuration

    def restore(self, jobs: Iterable[Job], next_id: int, node_states: dict[str, str], queues: Iterable[dict[str, Any]],
                now: float, arrays: dict[int, str] | None = None) -> None:
        """Take what the store kept (at the start; no agent is connected yet: every node is down since ``now``)."""
        self.next_id = next_id
        for name, state in node_states.items():
            self.node(name).drained = state == NodeState.DRAIN
        self.book.load(queues)
        self.arrays.load(arrays or {})
        jobs = list(jobs)
        for job in jobs:  # running tasks count against their array's throttle before any waits
            if job.state is JobState.RUNNING and job.array_id is not None:
                self.arrays.running(job)
        self._count_tasks(jobs)
        for job in jobs:
            self.jobs[job.id] = job
            if job.state is JobState.QUEUED and not job.depend:
                self._enqueue(job)
            elif job.state is JobState.RUNNING:
                node = self.node(job.node)
                node.jobs[job.id] = job
                self._share(job)
                if job.origin is Origin.EXTERNAL:
                    node.external[job.ext_key] = job.id
                elif job.origin is Origin.BATCH:
                    self.running[job.user] += 1
            elif job.final:
                self.history.append(job.id)
        self._teach_from_kept()
        self._restore_waits()
        for node in self.nodes.values():
            self.down_since[node.name] = now

    def _count_tasks(self, jobs: list[Job]) -> None:
        """How the arrays' tasks ended, for the jobs waiting for whole arrays, as far as memory goes (tasks
        no longer kept ended long ago)."""
        for job in jobs:
            array = self.arrays.arrays.get(job.array_id) if job.array_id is not None else None
            if array is not None:
                array.left += 1
                if job.final:
                    array.ended(job.state)

    def reload(self, config: Config) -> None:
        """Take a new configuration (checked first: a bad one raises ConfigError and changes nothing)."""
        policy = Policy.from_config(config)
        old, self.config, self.policy = self.policy, config, policy
        if (old.history_jobs, old.history_min_seconds, old.adaptive) != (
                policy.history_jobs, policy.history_min_seconds, policy.adaptive):
            self.kinds = policy.history()
            self._teach_from_kept()
        self._pool = None  # rank, features and the observe flag may have changed
        self._views.clear()
        self._reload = True

    def _teach_from_kept(self) -> None:
        """Let the ended jobs kept in memory teach their kinds, in the order they ended."""
        if self.kinds is not None:
            ended = [self.jobs[i] for i in self.history if i in self.jobs]
            for job in sorted(ended, key=lambda j: j.ended or 0.0):
                self._teach(job)

    def node(self, name: str) -> Node:
        """The node of this name (made when first heard of); the pool looks at it anew."""
        node = self.nodes.get(name)
        if node is None:
            node = self.nodes[name] = Node(name)
        self.touch(name)
        return node

    def touch(self, node: str) -> None:
        """Something of ``node`` changed (jobs, sample, state): the pool must see it anew."""
        self._stale[node] = None
        self._views.pop(node, None)
        self._outside.pop(node, None)
        self._touched = True

    def view(self, node: Node) -> NodeView:
        """What the policy sees of ``node`` (kept until it is touched)."""
        view = self._views.get(node.name)
        if view is None:
            view = self._views[node.name] = node.view(self.policy.features.get(node.name, frozenset()))
        return view

    def outside_of(self, node: Node) -> list[tuple[str, int, float, float]]:
        """The outside work running on ``node``, summed per user (by name): (user, process clusters, cpus,
        memory MB). Kept until the node is touched: a listing asks it of every node."""
        kept = self._outside.get(node.name)
        if kept is None:
            sums: dict[str, list[float]] = {}
            for job in node.jobs.values():
                if job.origin is Origin.EXTERNAL and job.state is JobState.RUNNING:
                    s = sums.get(job.user)
                    if s is None:
                        s = sums[job.user] = [0, 0.0, 0.0]
                    s[0] += 1
                    s[1] += job.cpu_used
                    s[2] += job.mem_used
            kept = self._outside[node.name] = [(u, int(n), cpu, mem) for u, (n, cpu, mem) in sorted(sums.items())]
        return kept

    def new_id(self) -> int:
        job_id = self.next_id
        self.next_id += 1
        return job_id

    # ------------------------------------------------------------------ the end of a job

    def end(self, job: Job, state: JobState, now: float, reason: str | None = None) -> list[Instruction]:
        """The one way a job ends: off its node or out of its queue, into ``state``, into the history;
        then every end hook. Returns what the hooks ask for, and :class:`JobEnded` last.

        A failed run of a job with retries left, or a run that checkpointed (exited with its checkpoint
        exit code), does not end it: it is queued again (see _retry)."""
        if state is JobState.FAILED and self._checkpointed(job):
            return self._retry(job, "checkpointed", checkpointed=True)
        if state is JobState.FAILED and self._vacating(job):
            return self._retry(job, f"the owner of {job.node} came back", vacated=True)
        if state is JobState.FAILED and self._retries_left(job, reason):
            return self._retry(job, reason or "failed")
        if job.state is JobState.RUNNING:
            self._detach(job)
        elif job.state is JobState.QUEUED:
            self.book.remove(job)
        job.set_state(state)
        job.ended = job.ended or now
        if reason is not None:
            job.reason = reason
        self.history.append(job.id)
        out: list[Instruction] = []
        for hook in self.end_hooks:
            told = hook(job)
            if told:
                out += told
        out.append(JobEnded(job))
        return out

    def _mails_alone(self, job: Job, first: bool) -> bool:
        """Whether this job's BEGIN (``first``) or END mail goes: a task of an array mails only for the
        whole array (its first start, its last end), unless ARRAY_TASKS asks for every task's."""
        if job.array_id is None or not job.mail_type or "ARRAY_TASKS" in mail_types(job.mail_type):
            return True
        array = self.arrays.arrays.get(job.array_id)
        if array is None:
            return True
        if first:  # the first task of the array to start
            return not any(self.jobs[i].started for i in array.task_ids() if i in self.jobs and i != job.id)
        return array.left <= 1  # (this hook runs before the task is counted as ended)

    def _job_mail(self, job: Job) -> Iterable[Instruction]:
        """End hook: the job's own END or FAIL mail (see wulf.server.jobmail)."""
        return jobmail.on_end(job) if self._mails_alone(job, first=False) else ()

    def _teach(self, job: Job) -> Iterable[Instruction]:
        """An ended batch job teaches its kind what it used (see wulf.policy.history)."""
        if self.kinds is not None and job.origin is Origin.BATCH and job.started is not None and job.ended is not None:
            self.kinds.teach(kind_of(job.user, job.name, job.cpu_req, job.mem_req), job.state is JobState.DONE,
                             job.ended - job.started, job.cpu_time, job.peak_mem_mb)
        return ()

    def _unlist(self, job: Job) -> Iterable[Instruction]:
        """A job that has ended is no longer one no node can run."""
        if self.impossible:
            self.impossible.pop(job.id, None)
        return ()

    def _mail(self, job: Job) -> Iterable[Instruction]:
        """The queue's owner asked to be mailed when its jobs end (qset --mail)."""
        if job.origin is not Origin.BATCH:
            return ()
        to = self.book.settings(job.user, job.queue).mail
        return (Mail(to, job),) if to else ()

    def _record_exit(self, job: Job, e: JobExit) -> list[Instruction]:
        """What the agent measured; a running job ends (done, or failed with a reason)."""
        if job.state is JobState.QUEUED or job.state is JobState.HELD:
            return []  # an exit of an earlier attempt, told again: that run is over already
        job.exit_code = e.exit_code
        job.signal = e.signal
        job.cpu_time = e.cpu_time
        job.peak_mem_mb = e.peak_mem_mb
        job.started = job.started or e.time
        if job.state is not JobState.RUNNING:  # ended already (cancelled, lost): only the figures
            job.ended = job.ended or e.time
            return []
        ok = e.exit_code == 0 and e.signal is None and not e.reason
        return self.end(job, JobState.DONE if ok else JobState.FAILED, e.time, e.reason)

    def _share(self, job: Job) -> None:
        """A job of several tasks holds its slots on its other nodes too (see Node.shares)."""
        for name in job.node_names[1:]:
            self.node(name).shares[job.id] = job

    @staticmethod
    def _end_tasks(job: Job) -> Iterable[Instruction]:
        """End hook: a job of several tasks that ended leaves no task on its other nodes (wulf launch)."""
        return [Send(name, Signal(ids=[job.id], signal=9)) for name in job.node_names[1:]] if job.alloc else ()

    def _detach(self, job: Job) -> None:
        """Take a running job off its node's books (and a job of several tasks off its other nodes')."""
        for name in job.node_names[1:]:
            other = self.nodes.get(name)
            if other is not None and other.shares.pop(job.id, None) is not None:
                other.share_use.pop(job.id, None)
                self.touch(name)
        node = self.nodes.get(job.node)
        if node is not None and node.jobs.pop(job.id, None) is not None:
            s = node.sample
            if s is not None and (job.cpu_used or job.mem_used):
                # what it used is gone with it: until the node's next report, that room must not look
                # like someone else's work
                node.sample = s.model_copy(update={"used_cpu": max(0.0, s.used_cpu - job.cpu_used),
                                                   "used_mem_mb": max(0.0, s.used_mem_mb - job.mem_used)})
            self.touch(node.name)
        if job.origin is Origin.BATCH and job.state is JobState.RUNNING:
            self.running[job.user] -= 1
            if self.running[job.user] <= 0:
                del self.running[job.user]

    def _forget_old(self) -> None:
        keep = self.config.server.history
        while len(self.history) > keep:
            old = self.history.popleft()
            job = self.jobs.get(old)
            if job is not None and job.final:
                del self.jobs[old]

    # ------------------------------------------------------------------ scheduling

    def pool(self) -> NodePool:
        """The nodes' room and rank, kept between passes: only the nodes that changed are looked at."""
        pool = self._pool
        if pool is None:
            views = (self.view(n) for n in self.nodes.values())
            pool = self._pool = NodePool(views, self.policy.rank, self.policy.observe, self.policy.rank_adjust())
        else:
            for name in self._stale:
                node = self.nodes.get(name)
                if node is not None:
                    pool.update(self.view(node))
        self._stale.clear()
        return pool

    def place_now(self, user: str) -> Node:
        """The node a job of ``user`` is to run on now (jr), room or not."""
        pool = self.pool()
        name = pool.best(user)
        if name is None:
            why = pool.possible(0, 0, "", user) if pool.best() is not None else ""
            raise Refused(why or "no node is up to take the job (see `jstat --nodes`)")
        return self.nodes[name]

    def _users(self, names: set[str]) -> dict[str, UserView]:
        """Fair share and limits of the users with waiting jobs."""
        policy = self.policy
        occupied: dict[str, float] = defaultdict(float)
        if policy.limits or policy.group_limits or policy.default_limit:
            for node in self.nodes.values():
                for j in node.jobs.values():
                    if j.user in names:
                        occupied[j.user] += occupied_cpu(j.cpu, j.cpu_used, j.origin is Origin.EXTERNAL)
        out = {}
        for name in names:
            groups = self.groups(name) if policy.needs_groups else ()
            out[name] = UserView(name, self.running.get(name, 0), occupied[name], policy.user_limit(name, groups),
                                 policy.user_share(name, groups))
        return out

    def _place(self, now: float, out: list[Instruction]) -> list[Job]:
        """Run the policy and apply its placements (the caller commits them, then starts them)."""
        if not self.book.any_waiting():
            self.reasons.clear()
            if self.held_room:  # give back room kept for jobs that are gone
                self.held_room = {}
                self._pool = None
            return []
        queues = []
        sized = self.kinds.sized if self.kinds is not None else None
        for q in self.book.waiting():
            st = q.settings
            waiting = q.jobs.values()
            queues.append(QueueView(st.user, st.name, waiting if sized is None else map(sized, waiting),
                                    st.priority, st.stopped, st.window))
        users = self._users({q.user for q in queues})
        windows = self.policy.windows
        t0 = time.perf_counter()
        pool = self.pool()
        t1 = time.perf_counter()
        result = schedule(queues, users, pool, lambda kind: windows.open(kind, now), self.policy.plugin,
                          self.held_room)
        if self.on_pass is not None:
            self.on_pass(time.perf_counter() - t1, len(result.placements), t1 - t0)
        self.reasons = result.reasons
        self.impossible = result.impossible
        self.held_room = result.held
        self._window_at = self._next_window_change(queues, now)
        out.append(WakeAt(self._window_at))
        jobs = []
        for p in result.placements:
            job = self.jobs[p.job_id]
            self.book.remove(job)
            job.set_state(JobState.RUNNING)
            job.node = p.node
            job.cpu, job.mem_mb = p.cpu, p.mem_mb  # what it asked for, or what its kind taught
            job.reason = ""
            self.nodes[p.node].jobs[job.id] = job
            if p.slots:
                job.alloc = alloc_text(p.slots)
                self._share(job)
            self.touch(p.node)
            self.running[job.user] += 1
            jobs.append(job)
        return jobs

    def _next_window_change(self, queues: list[QueueView], now: float) -> float | None:
        """When the window of a waiting queue next opens or closes."""
        kinds = {q.window for q in queues if q.window != "always" and not q.stopped}
        changes = [c for c in (self.policy.windows.next_change(k, now) for k in kinds) if c is not None]
        return min(changes) if changes else None

    @staticmethod
    def _starts(placed: list[Job]) -> list[Instruction]:
        by_node: dict[str, list[Job]] = {}
        for job in placed:
            by_node.setdefault(job.node, []).append(job)
        return [StartJobs(node, tuple(jobs)) for node, jobs in by_node.items()]

    def _unchanged(self, now: float) -> bool:
        """Whether a pass now would see what the last one saw: no job came to a queue or left one, no
        node changed (its jobs, sample or state), no window opened or closed, the configuration is the
        same. Such a pass would place nothing (many asked for at one moment make one)."""
        return not (self.book.changed or self._touched or self._reload
                    or self._window_at is not None and now >= self._window_at)

    def _scheduled(self, ev: SchedulePass) -> list[Instruction]:
        if self._unchanged(ev.now):
            return []
        out: list[Instruction] = []
        placed = self._place(ev.now, out)
        if placed:  # the assignment is durable before any node hears of it
            out.append(Commit(tuple(placed)))
            out.extend(self._starts(placed))
        return out

    # ------------------------------------------------------------------ users' requests

    def _submitted(self, ev: Submitted) -> list[Instruction]:
        for array_id, spec in ev.arrays:
            self.arrays.add(array_id, spec).left = spec.count
        out: list[Instruction] = []
        tasks: list[Job] = []
        for job in ev.jobs:
            self.jobs[job.id] = job
            if job.state is JobState.QUEUED:
                if job.depend:
                    out += self._admit(job, ev.known)
                elif job.array_id is None:
                    self.book.add(job)
                else:
                    tasks.append(job)
            elif job.state is JobState.HELD:  # submitted held: out of line until released
                if job.depend:
                    out += self._admit(job, ev.known)  # (what it waits for is indexed, or it ends)
            elif job.state is JobState.RUNNING:  # interactive: placed already (see place_now)
                self.nodes[job.node].jobs[job.id] = job
                self.touch(job.node)
        if tasks:
            self._enqueue_tasks(tasks)
        out.append(Wake())
        return out

    def _cancel(self, ev: CancelRequested) -> list[Instruction]:
        ended: list[Instruction] = []
        changed: list[Job] = []
        signals: dict[str, list[int]] = {}
        for job in ev.jobs:
            if job.final:
                continue
            if job.state is JobState.RUNNING:
                signals.setdefault(job.node, []).append(job.id)  # (its tasks elsewhere: see _end_tasks)
            ended += self.end(job, JobState.CANCELLED, ev.now, f"cancelled by {ev.by}")
            changed.append(job)
        if not changed:
            return []
        out: list[Instruction] = [Commit(tuple(changed)), *ended]
        out += [Send(node, Signal(ids=ids, signal=15)) for node, ids in signals.items()]
        out += self._thaw(signals)
        out.append(Wake())
        return out

    def _hold(self, ev: HoldRequested) -> list[Instruction]:
        held = []
        admitted = False  # tasks of a throttled array that now may wait in their queue
        for job in ev.jobs:
            if job.state is JobState.QUEUED:
                self.book.remove(job)
                job.set_state(JobState.HELD)
                job.reason = f"held by {ev.by} (qrls {job.id} releases it)"
                held.append(job)
                admitted = self._array_left(job) or admitted
        out: list[Instruction] = [Commit(tuple(held))] if held else []
        return [*out, Wake()] if admitted else out

    def _release(self, ev: ReleaseRequested) -> list[Instruction]:
        released = []
        for job in ev.jobs:
            if job.state is JobState.HELD:
                job.set_state(JobState.QUEUED)
                job.reason = self.waits.reasons.get(job.id, "")
                if not job.reason and job.id not in self.strays:  # (a dependent, or an earlier run, waited for)
                    self._enqueue(job)
                released.append(job)
        return [Commit(tuple(released)), Wake()] if released else []

    def _renice(self, ev: ReniceRequested) -> list[Instruction]:
        changed = list({j.id: j for j in ev.jobs if j.state is JobState.RUNNING}.values())
        for job in changed:
            job.nice = ev.nice
        out: list[Instruction] = [Commit(tuple(changed))] if changed else []
        adapt = self.policy.adapt
        out += [Send(j.node, Renice(id=j.id, nice=penalty_nice(j.nice, j.penalized, adapt))) for j in changed]
        return out

    def _queue_changed(self, ev: QueueChanged) -> list[Instruction]:
        self.book.change(ev.user, ev.name, **ev.changes)
        return [Wake()]

    def _session_failed(self, ev: SessionFailed) -> list[Instruction]:
        job = self.jobs.get(ev.job_id)
        if job is None:
            return []
        ended = self._record_exit(job, JobExit(id=job.id, exit_code=None, time=ev.now, reason=ev.error))
        return [Commit((job,)), *ended, Wake()]

    def _drained(self, ev: Drained) -> list[Instruction]:
        node = self.nodes.get(ev.node)
        if node is None:
            return []
        node.drained = ev.drained
        self.touch(ev.node)
        return [Wake()]

    # ------------------------------------------------------------------ agents

    def _started(self, ev: JobsStarted) -> list[Instruction]:
        """Note pids and start times; they are committed with the next write."""
        changed = []
        for s in ev.jobs:
            job = self.jobs.get(s.id)
            if job is not None and job.state is JobState.RUNNING:
                job.pid = s.pid
                job.started = s.time
                changed.append(job)
        if not changed:
            return []
        return [CommitSoon(tuple(changed)), *(m for job in changed if self._mails_alone(job, first=True)
                                              for m in jobmail.on_start(job))]

    def _exited(self, ev: JobsExited) -> list[Instruction]:
        """Record exits, and place jobs in the room they leave: one commit for both, then the starts,
        then the agent's acknowledgement."""
        ended: list[Job] = []
        failed: list[Job] = []  # and to be retried
        told: list[Instruction] = []
        for e in ev.exits:
            job = self.jobs.get(e.id) or ev.stored.get(e.id)
            stray = self.strays.get(e.id) == ev.node  # the end of an earlier run, waited for
            if stray:
                del self.strays[e.id]
            if job is None or job.state is JobState.RUNNING and job.node != ev.node:
                continue  # (the exit of a run lost on that node, while it runs again elsewhere: not its end)
            if stray and job.final:
                continue  # (an earlier run's end, after the job ended: neither its end nor its figures)
            was_running = job.state is JobState.RUNNING
            told += self._record_exit(job, e)
            ended.append(job)
            if was_running and job.state is JobState.QUEUED or stray:
                failed.append(job)
        retried = self._park(failed)
        out: list[Instruction] = []
        placed = self._place(ev.now, out) if ev.place else []
        if not ev.place and self.book.any_waiting():
            out.append(Wake())
        if ended or placed:
            out.append(Commit(tuple(ended + placed)))
        out += told
        out += self._starts(placed)  # the next jobs first: the agent starts them before it takes the ack
        out.append(Send(ev.node, Ack(ids=[e.id for e in ev.exits])))
        if retried:
            out.append(Requeue(retried))
        return out

    def _node_up(self, ev: NodeUp) -> list[Instruction]:
        """Agree with a (re)connected agent on what runs there, at once, so that each job is either the
        agent's (running, or ended, as it reports) or back in line, never both."""
        node = self.node(ev.info.name)
        out: list[Instruction] = []
        ended: list[Instruction] = []
        changed, stray, finished = self._reconcile(node, ev, out, ended)
        node.outside.lost()  # (its agent's first report is a full one)
        node.info = ev.info
        node.up, node.host, node.agent_uid = True, ev.host, ev.uid
        self.down_since.pop(node.name, None)
        if changed:
            out.append(Commit(tuple(changed)))
        out += ended
        if finished:
            out.append(RecordExits(node.name, tuple(finished)))
        if stray:
            out.append(Send(node.name, Signal(ids=stray, signal=9)))
        out.append(Wake())
        return out + self._limits_again(node.name, ev.running)

    def _limits_again(self, node: str, running: Iterable[JobStarted]) -> list[Instruction]:
        """The time limits jmod changed of jobs a reconnecting agent runs: it may not have heard of them
        (it was away when they were sent; its journal keeps those it heard of)."""
        if not self.relimited:
            return []
        self.relimited = {i for i in self.relimited if (j := self.jobs.get(i)) is not None
                          and j.state is JobState.RUNNING}
        out: list[Instruction] = []
        for r in running:
            job = self.jobs.get(r.id)
            if r.id in self.relimited and job is not None and job.node == node and job.time_limit is not None:
                out.append(Send(node, Limit(id=job.id, time_limit=job.time_limit)))
        return out

    def _reconcile(self, node: Node, ev: NodeUp, out: list[Instruction],
                   ended: list[Instruction]) -> tuple[list[Job], list[int], list[JobExit]]:
        """Returns the jobs changed (to commit), the strays to kill and the exits to record; adds what
        is to be done before the commit to ``out``, and after it (the ends) to ``ended``."""
        reported = {r.id for r in ev.running}
        changed: dict[int, Job] = {}
        stray: list[int] = []
        for r in ev.running:
            job = self.jobs.get(r.id)
            if job is not None and self._adopt(node, job, out):
                changed[job.id] = job
            if job is None or job.final or job.node != node.name:
                stray.append(r.id)  # cancelled or lost while the agent was away, or not ours any more
                if job is not None:
                    self._await_stray(job, node.name)
            elif job.pid != r.pid:
                job.pid, job.started = r.pid, job.started or r.time
                changed[job.id] = job
        finished: list[JobExit] = []
        for e in ev.finished:
            job = self.jobs.get(e.id)
            if job is not None:
                self._adopt(node, job, out)
                if job.state is JobState.RUNNING and job.node != node.name:
                    continue  # it runs elsewhere now; this stale exit is not its end
                self._await_stray(job, node.name)
            finished.append(e)
        done = {e.id for e in ev.finished}
        for job in list(node.jobs.values()):
            if job.id in reported or job.id in done or job.origin is Origin.EXTERNAL:
                continue
            if job.started or job.origin is Origin.INTERACTIVE:  # an interactive job cannot wait
                ended += self._record_exit(job, JobExit(id=job.id, exit_code=None, time=ev.now,
                                                        reason=f"lost: {node.name} no longer knows this job"))
            else:  # a batch job the node never got goes back in line
                self._detach(job)
                job.set_state(JobState.QUEUED)
                job.node = ""
                job.cpu, job.mem_mb = job.cpu_req, job.mem_req  # a waiting job holds nothing: it asks again
                self.book.add(job)
            changed[job.id] = job
        return list(changed.values()), stray, finished

    def _adopt(self, node: Node, job: Job, out: list[Instruction]) -> bool:
        """A waiting batch job that the agent runs (or ran) after all is the agent's: it runs there."""
        if job.state is not JobState.QUEUED or job.origin is not Origin.BATCH or job.restarts:
            return False  # (a job queued again: what a node still tells of it is of its earlier run)
        out.append(Log(logging.WARNING, f"job {job.id}, waiting, is run by node {node.name}: it is that node's"))
        self.book.remove(job)
        job.set_state(JobState.RUNNING)
        job.node = node.name
        node.jobs[job.id] = job
        self.touch(node.name)
        self.running[job.user] += 1
        if job.array_id is not None:
            self.arrays.running(job)
        return True

    def _node_down(self, ev: NodeDown) -> list[Instruction]:
        node = self.nodes.get(ev.node)
        if node is not None and node.up:
            node.up = False
            self.down_since[node.name] = ev.now
            self.touch(node.name)
        return []

    def _tick(self, ev: Tick) -> list[Instruction]:
        """End the running jobs of nodes down longer than ``[server] node_lost_after`` (0: never)."""
        after = self.config.server.node_lost_after
        out: list[Instruction] = []
        if after <= 0:
            return out
        for name, since in list(self.down_since.items()):
            node = self.nodes.get(name)
            if node is not None and not node.up and ev.now - since >= after and (
                    node.jobs or node.shares or name in self.strays.values()):
                out += self._lose(node, since, ev.now)
        if out:
            out.append(Wake())
        return out

    def _lose(self, node: Node, since: float, now: float) -> list[Instruction]:
        """The node has been down too long: its jobs end (failed, lost). Should its agent come back still
        running one, that job is killed (a stray, see _reconcile) and its record stays as is."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since))
        reason = f"node lost: {node.name} down since {stamp}"
        changed = []
        ended: list[Instruction] = []
        self._strays_lost(node.name)
        kill: list[Instruction] = []
        for job in list(node.shares.values()):  # a job of several tasks that lost one of its nodes fails
            if job.state is JobState.RUNNING:
                kill.append(Send(job.node, Signal(ids=[job.id], signal=9)))
                ended += self._record_exit(job, JobExit(id=job.id, exit_code=None, time=now, reason=reason))
                changed.append(job)
        for job in list(node.jobs.values()):
            if job.origin is Origin.EXTERNAL:
                node.external.pop(job.ext_key, None)
                ended += self.end(job, JobState.DONE, now)
            elif job.state is JobState.RUNNING:
                ended += self._record_exit(job, JobExit(id=job.id, exit_code=None, time=now, reason=reason))
            changed.append(job)
        return [Log(logging.WARNING, f"node {node.name} has been down since {stamp}: {len(changed)} jobs there "
                                     "are lost"), Commit(tuple(changed)), *ended, *kill]

    def _reported(self, ev: Reported) -> list[Instruction]:
        node = self.nodes.get(ev.node)
        if node is None:
            return []
        report = ev.report
        changed = node.take_sample(report.sample)
        for use in report.jobs:
            job = node.jobs.get(use.id)
            if job is not None and (job.cpu_used != use.cpu or job.mem_used != use.mem_mb):
                job.cpu_used, job.mem_used = use.cpu, use.mem_mb
                changed = True
            elif job is None and use.id in node.shares and node.share_use.get(use.id) != (use.cpu, use.mem_mb):
                node.share_use[use.id] = (use.cpu, use.mem_mb)  # the tasks (wulf launch) of a job on another node
                changed = True
        if changed:  # (a report that tells nothing new leaves the node's view, and the next pass, alone)
            self.touch(node.name)
        taken = node.outside.take(report)
        if taken is Taken.APPLIED:
            out = self._external(node, report.clusters, report.sample.time)
        else:  # a delta out of turn: the outside work stays as last seen until a full report comes
            out = [Send(node.name, Resync())] if taken is Taken.ASK else []
        out += self._owner_back(node, report.sample)
        out += self._adapt(node, report.sample.time)
        if self.book.any_waiting():
            out.append(Wake())
        return out

    def _adapt(self, node: Node, now: float) -> list[Instruction]:
        """Adaptive allocation of the node's batch jobs; renice those that take others' room."""
        desk = self.desks.get(node.name)
        changed, renice = adaptive.adapt_node(node, lambda: self.view(node), now, self.policy,
                                              desk.fates if desk is not None else ())
        if changed:
            self.touch(node.name)
        out: list[Instruction] = [CommitSoon(tuple(changed))] if changed else []
        out += [Send(node.name, Renice(id=job_id, nice=nice)) for job_id, nice in renice]
        return out

    def _owner_back(self, node: Node, sample: NodeSample) -> list[Instruction]:
        """A workstation's report: while its owner is back it takes no new batch jobs, and its batch jobs
        checkpoint, are reniced, suspended, queued again or resumed as wulf.policy.migrate decides."""
        owner = self.policy.owners.get(node.name)
        desk = self.desks.get(node.name)
        if owner is None and desk is None:
            return []
        if owner is None:  # no longer a workstation (reload): what was done for its owner is undone
            assert desk is not None
            del self.desks[node.name]
            steps = owners.released(desk, list(node.jobs.values()), sample.time)
            desk.watch = migrate.Watch()
        else:
            if desk is None or desk.owner != owner:
                desk = self.desks[node.name] = owners.Desk(owner)
            steps = owners.reported(desk, list(node.jobs.values()), sample, node.cpus, self.policy.migrate)
        if node.owner_back != desk.watch.back:
            node.owner_back = desk.watch.back
            self.touch(node.name)
        out: list[Instruction] = []
        for job, step, was in steps:
            out += [Send(node.name, m) for m in owners.message(job, step, was, self.policy.adapt)]
            shown = migrate.SHOWN.get(migrate.fate_after(step), "")
            if shown or job.reason in migrate.SHOWN.values():
                job.reason = shown
            out.append(Log(logging.INFO, f"job {job.id} on {node.name}: {step} (its owner {desk.owner} is "
                                         f"{'back' if desk.watch.back else 'away'})"))
        if steps:
            out.append(CommitSoon(tuple(job for job, _, _ in steps)))
        return out

    def _thaw(self, signals: dict[str, list[int]]) -> list[Instruction]:
        """SIGCONT, after their TERM, to the jobs being stopped that a workstation's owner had suspended
        (SIGSTOP): they act on the TERM, rather than wait stopped for the KILL."""
        out: list[Instruction] = []
        for node, ids in signals.items():
            desk = self.desks.get(node)
            stopped = [i for i in ids if desk is not None and desk.fates.get(i) is migrate.Fate.SUSPENDED]
            if stopped:
                out.append(Send(node, Signal(ids=stopped, signal=owners.SIGCONT)))
        return out

    def _vacating(self, job: Job) -> bool:
        """Whether a run that did not end done was stopped by wulf to be queued again because its
        workstation's owner came back (a job with --requeue or retries left; see wulf.server.owners)."""
        desk = self.desks.get(job.node)
        return (job.state is JobState.RUNNING and desk is not None
                and desk.fates.get(job.id) is migrate.Fate.REQUEUED)

    def _external(self, node: Node, clusters: Sequence[Cluster], now: float) -> list[Instruction]:
        """Outside work becomes jobs of origin external while it lasts, so it counts and shows.
        ``clusters`` are those new or changed (all of them in a full report); which are there at all is
        ``node.outside.present``."""
        new: list[Job] = []
        for c in clusters:
            job_id = node.external.get(c.key)
            job = self.jobs.get(job_id) if job_id is not None else None
            if job is None:
                job = Job(id=self.new_id(), user=c.user, uid=c.uid, origin=Origin.EXTERNAL,
                          state=JobState.RUNNING, command=c.command, node=node.name, pid=c.pid,
                          submitted=c.started, started=c.started, cpu_req=0.0, mem_req=0.0, ext_key=c.key)
                self.jobs[job.id] = job
                node.external[c.key] = job.id
                node.jobs[job.id] = job
                new.append(job)
            node.missing.pop(c.key, None)
            if (job.cpu, job.mem_mb) != (c.cpu, c.mem_mb) or job in new:
                job.cpu = job.cpu_used = c.cpu
                job.mem_mb = job.mem_used = c.mem_mb
                self.touch(node.name)
        changed: list[Job] = []
        ended: list[Instruction] = []
        seen = node.outside.present
        for key in [k for k in node.external if k not in seen]:
            node.missing[key] = node.missing.get(key, 0) + 1
            if node.missing[key] >= EXTERNAL_GONE_AFTER:
                del node.missing[key]
                job = self.jobs.get(node.external.pop(key))
                if job is not None and job.state is JobState.RUNNING:
                    ended += self.end(job, JobState.DONE, now)
                    job.cpu_used = job.mem_used = 0.0
                    changed.append(job)
        if not (new or changed):
            return []
        return [Commit(tuple(changed), tuple(new)), *ended]

    # ------------------------------------------------------------------ job arrays (see wulf.server.arrays)

    def _enqueue(self, job: Job) -> None:
        """A queued job waits in its queue, unless it is a task its array's throttle keeps parked."""
        if job.array_id is None or self.arrays.admit(job):
            self.book.add(job)

    def _enqueue_tasks(self, tasks: list[Job]) -> None:
        """:meth:`_enqueue` for the tasks of new arrays, at once."""
        for task in self.arrays.admit_all(tasks):
            self.book.add(task)

    def _array_left(self, job: Job) -> bool:
        """A task stopped being active (held, or ended): the parked tasks it makes room for wait in
        their queue now (True if there are any)."""
        admitted = self.arrays.leave(job)
        for task_id in admitted:
            task = self.jobs.get(task_id)
            if task is not None and task.state is JobState.QUEUED:
                self.book.add(task)
        return bool(admitted)

    def _array_ended(self, job: Job) -> Iterable[Instruction]:
        """End hook: a task that ends makes room under its array's throttle."""
        if job.array_id is None:
            return ()
        return (Wake(),) if self._array_left(job) else ()

    # ------------------------------------------------------------------ dependencies (issue 11 §3)

    def _state_of(self, known: Mapping[int, Job]) -> Callable[[int], JobState]:
        """The state of a job a dependency names, from memory or ``known`` (read from the store); a job
        that is in neither is taken for cancelled (it can never end as asked)."""
        def state_of(job_id: int) -> JobState:
            array = self.arrays.arrays.get(job_id)  # an array's id names all its tasks
            if array is not None:
                return array.state()
            job = self.jobs.get(job_id) or known.get(job_id)
            return job.state if job is not None else JobState.CANCELLED
        return state_of

    def _admit(self, job: Job, known: Mapping[int, Job]) -> list[Instruction]:
        """A new queued job with a dependency: in line if it is met already, waiting if not yet, ended at
        once if it never can be."""
        return self._decide(job, known) or []

    def _decide(self, job: Job, known: Mapping[int, Job], now: float | None = None) -> list[Instruction] | None:
        """Decide a dependent (queued or held) from what its jobs are now: MET puts a queued one in line,
        WAIT indexes it (with its reason), NEVER ends it cancelled. Returns the instructions of an end,
        or None when it has not ended."""
        dep = depend.parse(job.depend)
        verdict, about, kind = depend.verdict(dep, self._state_of(known))
        self.waits.drop(job.id)
        if verdict is depend.Verdict.MET:
            if job.state is JobState.QUEUED:
                job.reason = ""
                self._enqueue(job)
            return None
        assert about is not None and kind is not None
        if verdict is depend.Verdict.WAIT:
            reason = depend.wait_reason(about, kind)
            self.waits.add(job.id, job.depend, reason)
            if job.state is JobState.QUEUED:
                job.reason = reason
            return None
        why = depend.never_reason(about, self._state_of(known)(about))
        ended = self.end(job, JobState.CANCELLED, job.submitted if now is None else now, why)
        return [Commit((job,)), *ended]

    def _resolve_dependents(self, job: Job) -> Iterable[Instruction]:
        """End hook: the dependents of a job that has ended are decided again; those whose dependency can
        no longer be met end at once (and theirs after them, through this same hook). The dependents of
        a whole array are decided when its last task ends."""
        self.waits.drop(job.id)  # a dependent that ends (cancelled, say) waits no more
        array = self.arrays.arrays.get(job.array_id) if job.array_id is not None else None
        last = array is not None and array.ended(job.state)
        out = self._decide_waiting_on(job.id, job.ended)
        if last and array is not None and array.id != job.id:  # (the array's id is its first task's)
            out += self._decide_waiting_on(array.id, job.ended)
        return out

    def _decide_waiting_on(self, job_id: int, now: float | None) -> list[Instruction]:
        waiting = self.waits.dependents(job_id)
        if not waiting:
            return []
        out: list[Instruction] = []
        moved: list[Job] = []
        for dep_id in waiting:
            dependent = self.jobs.get(dep_id)
            if dependent is None or dependent.final:
                self.waits.drop(dep_id)
                continue
            ended = self._decide(dependent, {}, now)
            if ended is not None:
                out += ended
            elif not self.waits.waiting(dep_id):
                moved.append(dependent)
        if moved:  # in line now (committed: the reason they waited is gone)
            out = [Commit(tuple(moved)), *out, Wake()]
        return out

    def _restore_waits(self) -> None:
        """At a restart: index the stored dependents again. Those whose dependency was decided while the
        server was away are settled by :meth:`settle`."""
        for job in self.jobs.values():
            if job.depend and (job.state is JobState.QUEUED or job.state is JobState.HELD):
                self._decide_restored(job)

    def _decide_restored(self, job: Job) -> None:
        dep = depend.parse(job.depend)
        verdict, about, kind = depend.verdict(dep, self._state_of({}))
        if verdict is depend.Verdict.MET and job.state is JobState.QUEUED:
            self._enqueue(job)
        elif verdict is not depend.Verdict.MET:
            assert about is not None and kind is not None
            self.waits.add(job.id, job.depend, depend.wait_reason(about, kind))

    def settle(self, now: float) -> list[Instruction]:
        """After :meth:`restore`: end the dependents whose dependency can never be met any more (their
        jobs ended while the server was away, or just before it stopped)."""
        out: list[Instruction] = []
        for job_id in sorted(self.waits.deps):
            job = self.jobs.get(job_id)
            if job is not None and not job.final and self.waits.waiting(job_id):
                out += self._decide(job, {}, now) or []
        if out:
            out.append(Wake())
        return out

    # ------------------------------------------------------------------ jmod (issue 11 §5, see wulf.server.modify)

    def _modify(self, ev: ModifyRequested) -> list[Instruction]:
        """Change jobs and arrays as :func:`wulf.server.modify.plan` checked (all or nothing: it raises
        before anything changes). One commit for every change, then the ends of dependents whose new
        dependency can never be met, then the running jobs' agents are told their niceness and limits."""
        todo = modify.plan(ev.jobs, ev.changes, ev.arrays, self.policy, ev.admin,
                           lambda i: i in self.jobs or i in ev.known, self._waits_on)
        out: list[Instruction] = []
        sends: list[Instruction] = []
        ended: list[Instruction] = []
        for job, took in todo.jobs:
            out.append(Log(logging.INFO, f"job {job.id} changed by {ev.by}: {modify.describe(job, took)}"))
            if job.state is JobState.RUNNING:
                sends += self._change_running(job, took)
            else:
                ended += self._change_waiting(job, took, ev.known, ev.now)
        arrays = []
        for array_id, throttle in todo.throttles.items():
            old = self.arrays.arrays[array_id].spec.throttle
            self._rethrottle(array_id, throttle)
            arrays.append((array_id, self.arrays.arrays[array_id].text))
            out.append(Log(logging.INFO, f"array {array_id} changed by {ev.by}: throttle {old or 'none'} -> "
                                         f"{throttle or 'none'}"))
        changed = tuple(job for job, _ in todo.jobs)
        return [*out, Commit(changed, arrays=tuple(arrays)), *ended, *sends, Wake()]

    def _change_running(self, job: Job, took: JobChanges) -> list[Instruction]:
        """A running job's name, niceness and time limit; its agent is told the last two."""
        out: list[Instruction] = []
        if took.name is not None:
            job.name = took.name
        if took.nice is not None:
            job.nice = took.nice
            out.append(Send(job.node, Renice(id=job.id, nice=penalty_nice(job.nice, job.penalized,
                                                                           self.policy.adapt))))
        if took.time_limit is not None:
            job.time_limit = took.time_limit
            out.append(Send(job.node, Limit(id=job.id, time_limit=took.time_limit)))
            self.relimited.add(job.id)
        return out

    def _change_waiting(self, job: Job, took: JobChanges, known: Mapping[int, Job], now: float) -> list[Instruction]:
        """A waiting job's changes; it keeps its place in line (by its id: the order it was queued in),
        in its new queue if it moved. Returns the instructions of its end, should its new dependency
        never be met."""
        in_line = self.book.holds(job)
        if in_line:
            self.book.remove(job)
        if took.queue is not None:
            job.queue = took.queue
        if took.cpu is not None:
            job.cpu_req = job.cpu = took.cpu
        if took.mem_mb is not None:
            job.mem_req = job.mem_mb = took.mem_mb
        if took.time_limit is not None:
            job.time_limit = took.time_limit
        if took.nice is not None:
            job.nice = took.nice
        if took.name is not None:
            job.name = took.name
        if took.depend is None:
            if in_line:
                self.book.add(job)
            return []
        return self._redepend(job, took.depend, in_line, known, now)

    def _redepend(self, job: Job, text: str, in_line: bool, known: Mapping[int, Job], now: float) -> list[Instruction]:
        """A waiting job waits for what ``text`` names now (nothing: ""), decided as a new job's would be."""
        waited = self.waits.reasons.get(job.id)
        self.waits.drop(job.id)
        if job.state is JobState.QUEUED and job.array_id is not None and (in_line or self.arrays.is_parked(job)):
            self._array_left(job)  # out of its array's room until decided again
        job.depend = text
        if text:
            ended = self._decide(job, known, now) or []
        else:
            ended = []
            if job.state is JobState.QUEUED:
                if waited is not None and job.reason == waited:
                    job.reason = ""
                self._enqueue(job)
        if job.id in self.strays:  # an earlier run is still waited for: out of line until its exit is in
            self.book.remove(job)
        return ended

    def _waits_on(self, job_id: int) -> set[int]:
        """The jobs that a job waits for now (an array: any of its tasks that have not ended)."""
        array = self.arrays.arrays.get(job_id)
        texts = {j.depend for i in (array.task_ids() if array is not None else (job_id,))
                 if (j := self.jobs.get(i)) is not None and j.depend and not j.final}
        return {d for t in texts for d in depend.ids_of(depend.parse(t))}

    def _rethrottle(self, array_id: int, throttle: int) -> None:
        """An array's new throttle: its waiting tasks in line or parked anew (see ArrayBook.rethrottle)."""
        rec = self.arrays.arrays[array_id]
        running, waiting = [], []
        for i in rec.task_ids():
            job = self.jobs.get(i)
            if job is None:
                continue
            if job.state is JobState.RUNNING:
                running.append(i)
            elif job.state is JobState.QUEUED and (i in rec.parked or self.book.holds(job)):
                waiting.append(i)
        line, parked = self.arrays.rethrottle(array_id, throttle, running, waiting)
        for i in line:
            if not self.book.holds(task := self.jobs[i]):
                self.book.add(task)
        for i in parked:
            self.book.remove(self.jobs[i])

    # ------------------------------------------------------------------ retries (issue 11 §4)

    @staticmethod
    def _retries_left(job: Job, reason: str | None) -> bool:
        """Whether a run that failed is to be retried: a batch job's run that ended (exit, signal, node
        lost) with retries left, unless it went over its own limits (it would again)."""
        return (job.state is JobState.RUNNING and job.origin is Origin.BATCH
                and job.restarts - job.checkpoints - job.vacated < job.retries and not (reason or "").startswith(LIMIT_REASON))

    @staticmethod
    def _checkpointed(job: Job) -> bool:
        """Whether a run that did not end done saved its state to go on later (issue 13 §2): a running
        batch job with --checkpoint that exited with its checkpoint exit code (whatever stopped it: its
        interval, or the signal before its time limit). It is queued again whatever its retries."""
        return (job.state is JobState.RUNNING and job.origin is Origin.BATCH and bool(job.checkpoint)
                and job.signal is None and job.exit_code == job.checkpoint_exit)

    def _retry(self, job: Job, why: str, checkpointed: bool = False, vacated: bool = False) -> list[Instruction]:
        """Put a job whose run failed (or ``checkpointed``) back in line, as its next attempt (the caller
        commits it). Its run is over (its exit was reported, or its node was lost): it never runs twice
        at once. Its restarts count every run before the next; its checkpoints those that checkpointed
        (the rest failed, and count against its retries)."""
        kill = list(self._end_tasks(job))
        self._detach(job)
        job.set_state(JobState.QUEUED)
        job.restarts += 1
        job.node, job.pid, job.started, job.alloc = "", None, None, ""
        job.cpu, job.mem_mb = job.cpu_req, job.mem_req  # a waiting job holds nothing: it asks again
        job.cpu_used = job.mem_used = 0.0
        if checkpointed:
            job.checkpoints += 1
            job.reason = f"queued again after it checkpointed (exit {job.checkpoint_exit}), to run again as restart {job.restarts}"
        elif vacated:
            job.vacated += 1
            job.reason = f"queued again to start over elsewhere: {why}"
        else:
            failed = job.restarts - job.checkpoints - job.vacated
            job.reason = f"queued again after attempt {failed} of {job.retries + 1} failed: {why}"
        if job.id not in self.strays:  # (else it waits for the end of an earlier run a node still has)
            self._enqueue(job)
        return [Log(logging.INFO, f"job {job.id}: {job.reason}"), *kill, *jobmail.on_requeue(job), Wake()]

    def _park(self, jobs: list[Job]) -> tuple[Job, ...]:
        """Jobs queued again after an exit their node reported: out of line until the node has been sent
        the acknowledgement of that exit (see :class:`Requeue`)."""
        for job in jobs:
            self.book.remove(job)
        return tuple(jobs)

    def _await_stray(self, job: Job, node: str) -> None:
        """A node tells of an earlier run of a job queued again (still going, to be killed, or ended and
        not yet acknowledged): the job waits out of line until that run's exit is in and acknowledged (a
        held one too: released, it still waits for it)."""
        if job.state is JobState.QUEUED and job.restarts:
            self.book.remove(job)
            self.strays[job.id] = node
        elif job.state is JobState.HELD and job.restarts:
            self.strays[job.id] = node
        elif job.state is JobState.RUNNING and job.node != node:  # should it be queued again, it waits too
            self.strays[job.id] = node

    def _strays_lost(self, node: str) -> None:
        """The node is lost again: the earlier runs it had are given up; their jobs go back in line."""
        for job_id, where in list(self.strays.items()):
            if where == node:
                del self.strays[job_id]
                job = self.jobs.get(job_id)
                if job is not None and job.state is JobState.QUEUED and not self.waits.waiting(job_id):
                    self._enqueue(job)

    def _requeued(self, ev: Requeued) -> list[Instruction]:
        back = False
        for job in ev.jobs:
            if (job.state is JobState.QUEUED and self.jobs.get(job.id) is job and not self.waits.waiting(job.id)
                    and job.id not in self.strays):
                self._enqueue(job)
                back = True
        return [Wake()] if back else []
