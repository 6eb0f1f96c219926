"""The server's state machine: the jobs and the nodes' books, which events change and which feed the
policy, with no I/O inside (the model is dask's ``worker_state_machine``).

:meth:`ServerState.handle` takes an event (:mod:`wulf.server.events`) and returns the instructions
(:mod:`wulf.server.instructions`) that carry it out, in order; the shell (the asyncio daemon, or a
simulator on a virtual clock) commits, sends and mails. Every job that ends, however it ends (an
exit, a cancel, a node lost or a reconnecting node that no longer knows it, outside work gone, an
interactive session that could not start), goes through :meth:`ServerState.end`; what cares about an
end subscribes to it (:attr:`end_hooks`: the kinds' teaching, the impossible list, the queue's mail;
the shell's waiters through the :class:`~wulf.server.instructions.JobEnded` that ends every end).
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from wulf.config import Config
from wulf.errors import Refused
from wulf.model.job import Job, JobState, Origin
from wulf.policy.adapt import penalty_nice
from wulf.policy.history import History, kind_of
from wulf.policy.limits import occupied_cpu
from wulf.policy.placement import NodePool
from wulf.policy.scheduler import schedule
from wulf.policy.settings import Policy
from wulf.policy.snapshot import QueueView, UserView
from wulf.protocol import Ack, Cluster, JobExit, Renice, Signal
from wulf.server import adaptive, jobmail
from wulf.server.events import (
    CancelRequested,
    Drained,
    Event,
    HoldRequested,
    JobsExited,
    JobsStarted,
    NodeDown,
    NodeUp,
    QueueChanged,
    ReleaseRequested,
    ReniceRequested,
    Reported,
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
    Send,
    StartJobs,
    Wake,
    WakeAt,
)
from wulf.server.nodes import Node, NodeState
from wulf.server.queues import QueueBook

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

    def __init__(self, config: Config, groups: Callable[[str], Sequence[str]] = _no_groups) -> None:
        self.config = config
        self.policy = Policy.from_config(config)
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
        self._pool: NodePool | None = None  # kept between passes; nodes in _stale are updated first
        self._stale: set[str] = set()
        self.end_hooks: list[EndHook] = [self._teach, self._unlist, self._mail, jobmail.on_end]
        self._handlers: dict[type, Callable[[Any], list[Instruction]]] = {
            Submitted: self._submitted, SchedulePass: self._scheduled, JobsStarted: self._started,
            JobsExited: self._exited, CancelRequested: self._cancel, HoldRequested: self._hold,
            ReleaseRequested: self._release, ReniceRequested: self._renice, QueueChanged: self._queue_changed,
            Drained: self._drained, NodeUp: self._node_up,
            NodeDown: self._node_down, Reported: self._reported, SessionFailed: self._session_failed,
            Tick: self._tick,
        }

    def handle(self, event: Event) -> list[Instruction]:
        """Apply ``event``; what the shell is to do about it, in order."""
        return self._handlers[type(event)](event)

    # ------------------------------------------------------------------ start and configuration

    def restore(self, jobs: Iterable[Job], next_id: int, node_states: dict[str, str], queues: Iterable[dict[str, Any]],
                now: float) -> None:
        """Take what the store kept (at the start; no agent is connected yet: every node is down since ``now``)."""
        self.next_id = next_id
        for name, state in node_states.items():
            self.node(name).drained = state == NodeState.DRAIN
        self.book.load(queues)
        for job in jobs:
            self.jobs[job.id] = job
            if job.state is JobState.QUEUED:
                self.book.add(job)
            elif job.state is JobState.RUNNING:
                node = self.node(job.node)
                node.jobs[job.id] = job
                if job.origin is Origin.EXTERNAL:
                    node.external[job.ext_key] = job.id
                elif job.origin is Origin.BATCH:
                    self.running[job.user] += 1
            elif job.final:
                self.history.append(job.id)
        self._teach_from_kept()
        for node in self.nodes.values():
            self.down_since[node.name] = now

    def reload(self, config: Config) -> None:
        """Take a new configuration (checked first: a bad one raises ConfigError and changes nothing)."""
        policy = Policy.from_config(config)
        old, self.config, self.policy = self.policy, config, policy
        if (old.history_jobs, old.history_min_seconds, old.adaptive) != (
                policy.history_jobs, policy.history_min_seconds, policy.adaptive):
            self.kinds = policy.history()
            self._teach_from_kept()
        self._pool = None  # rank, features and the observe flag may have changed

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
        self._stale.add(node)

    def new_id(self) -> int:
        job_id = self.next_id
        self.next_id += 1
        return job_id

    # ------------------------------------------------------------------ the end of a job

    def end(self, job: Job, state: JobState, now: float, reason: str | None = None) -> list[Instruction]:
        """The one way a job ends: off its node or out of its queue, into ``state``, into the history;
        then every end hook. Returns what the hooks ask for, and :class:`JobEnded` last."""
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

    def _detach(self, job: Job) -> None:
        """Take a running job off its node's books."""
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
        features = self.policy.features
        pool = self._pool
        if pool is None:
            views = (n.view(features.get(n.name, frozenset())) for n in self.nodes.values())
            pool = self._pool = NodePool(views, self.policy.rank, self.policy.observe, self.policy.rank_adjust())
        else:
            for name in self._stale:
                node = self.nodes.get(name)
                if node is not None:
                    pool.update(node.view(features.get(name, frozenset())))
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
        result = schedule(queues, users, self.pool(), lambda kind: windows.open(kind, now), self.policy.plugin,
                          self.held_room)
        self.reasons = result.reasons
        self.impossible = result.impossible
        self.held_room = result.held
        out.append(WakeAt(self._next_window_change(queues, now)))
        jobs = []
        for p in result.placements:
            job = self.jobs[p.job_id]
            self.book.remove(job)
            job.set_state(JobState.RUNNING)
            job.node = p.node
            job.cpu, job.mem_mb = p.cpu, p.mem_mb  # what it asked for, or what its kind taught
            job.reason = ""
            self.nodes[p.node].jobs[job.id] = job
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

    def _scheduled(self, ev: SchedulePass) -> list[Instruction]:
        out: list[Instruction] = []
        placed = self._place(ev.now, out)
        if placed:  # the assignment is durable before any node hears of it
            out.append(Commit(tuple(placed)))
            out.extend(self._starts(placed))
        return out

    # ------------------------------------------------------------------ users' requests

    def _submitted(self, ev: Submitted) -> list[Instruction]:
        for job in ev.jobs:
            self.jobs[job.id] = job
            if job.state is JobState.QUEUED:
                self.book.add(job)
            elif job.state is JobState.RUNNING:  # interactive: placed already (see place_now)
                self.nodes[job.node].jobs[job.id] = job
                self.touch(job.node)
        return [Wake()]

    def _cancel(self, ev: CancelRequested) -> list[Instruction]:
        ended: list[Instruction] = []
        changed: list[Job] = []
        signals: dict[str, list[int]] = {}
        for job in ev.jobs:
            if job.final:
                continue
            if job.state is JobState.RUNNING:
                signals.setdefault(job.node, []).append(job.id)
            ended += self.end(job, JobState.CANCELLED, ev.now, f"cancelled by {ev.by}")
            changed.append(job)
        if not changed:
            return []
        out: list[Instruction] = [Commit(tuple(changed)), *ended]
        out += [Send(node, Signal(ids=ids, signal=15)) for node, ids in signals.items()]
        out.append(Wake())
        return out

    def _hold(self, ev: HoldRequested) -> list[Instruction]:
        held = []
        for job in ev.jobs:
            if job.state is JobState.QUEUED:
                self.book.remove(job)
                job.set_state(JobState.HELD)
                job.reason = f"held by {ev.by} (qrls {job.id} releases it)"
                held.append(job)
        return [Commit(tuple(held))] if held else []

    def _release(self, ev: ReleaseRequested) -> list[Instruction]:
        released = []
        for job in ev.jobs:
            if job.state is JobState.HELD:
                job.set_state(JobState.QUEUED)
                job.reason = ""
                self.book.add(job)
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
        return [CommitSoon(tuple(changed)), *(m for job in changed for m in jobmail.on_start(job))]

    def _exited(self, ev: JobsExited) -> list[Instruction]:
        """Record exits, and place jobs in the room they leave: one commit for both, then the starts,
        then the agent's acknowledgement."""
        ended: list[Job] = []
        told: list[Instruction] = []
        for e in ev.exits:
            job = self.jobs.get(e.id) or ev.stored.get(e.id)
            if job is None:
                continue
            told += self._record_exit(job, e)
            ended.append(job)
        out: list[Instruction] = []
        placed = self._place(ev.now, out)
        if ended or placed:
            out.append(Commit(tuple(ended + placed)))
        out += told
        out += self._starts(placed)  # the next jobs first: the agent starts them before it takes the ack
        out.append(Send(ev.node, Ack(ids=[e.id for e in ev.exits])))
        self._forget_old()
        return out

    def _node_up(self, ev: NodeUp) -> list[Instruction]:
        """Agree with a (re)connected agent on what runs there, at once, so that each job is either the
        agent's (running, or ended, as it reports) or back in line, never both."""
        node = self.node(ev.info.name)
        out: list[Instruction] = []
        ended: list[Instruction] = []
        changed, stray, finished = self._reconcile(node, ev, out, ended)
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
        if job.state is not JobState.QUEUED or job.origin is not Origin.BATCH:
            return False
        out.append(Log(logging.WARNING, f"job {job.id}, waiting, is run by node {node.name}: it is that node's"))
        self.book.remove(job)
        job.set_state(JobState.RUNNING)
        job.node = node.name
        node.jobs[job.id] = job
        self.touch(node.name)
        self.running[job.user] += 1
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
            if node is not None and not node.up and ev.now - since >= after and node.jobs:
                out += self._lose(node, since, ev.now)
        if out:
            out.append(Wake())
        return out

    def _lose(self, node: Node, since: float, now: float) -> list[Instruction]:
        """The node has been down too long: its jobs end (failed, lost). Should its agent come back still
        running one, that job is killed (a stray, see _reconcile) and its record stays as is."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since))
        reason = f"lost: node {node.name} down since {stamp}"
        changed = []
        ended: list[Instruction] = []
        for job in list(node.jobs.values()):
            if job.origin is Origin.EXTERNAL:
                node.external.pop(job.ext_key, None)
                ended += self.end(job, JobState.DONE, now)
            elif job.state is JobState.RUNNING:
                ended += self._record_exit(job, JobExit(id=job.id, exit_code=None, time=now, reason=reason))
            changed.append(job)
        return [Log(logging.WARNING, f"node {node.name} has been down since {stamp}: {len(changed)} jobs there "
                                     "are lost"), Commit(tuple(changed)), *ended]

    def _reported(self, ev: Reported) -> list[Instruction]:
        node = self.nodes.get(ev.node)
        if node is None:
            return []
        report = ev.report
        node.sample = report.sample
        self.touch(node.name)
        for use in report.jobs:
            job = node.jobs.get(use.id)
            if job is not None:
                job.cpu_used, job.mem_used = use.cpu, use.mem_mb
        out = self._external(node, report.clusters, report.sample.time)
        out += self._adapt(node, report.sample.time)
        if self.book.any_waiting():
            out.append(Wake())
        return out

    def _adapt(self, node: Node, now: float) -> list[Instruction]:
        """Adaptive allocation of the node's batch jobs; renice those that take others' room."""
        features = self.policy.features.get(node.name, frozenset())
        changed, renice = adaptive.adapt_node(node, node.view(features), now, self.policy)
        out: list[Instruction] = [CommitSoon(tuple(changed))] if changed else []
        out += [Send(node.name, Renice(id=job_id, nice=nice)) for job_id, nice in renice]
        return out

    def _external(self, node: Node, clusters: Sequence[Cluster], now: float) -> list[Instruction]:
        """Outside work becomes jobs of origin external while it lasts, so it counts and shows."""
        new: list[Job] = []
        seen = set()
        for c in clusters:
            seen.add(c.key)
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
            job.cpu = job.cpu_used = c.cpu
            job.mem_mb = job.mem_used = c.mem_mb
        changed: list[Job] = []
        ended: list[Instruction] = []
        for key in list(node.external):
            if key in seen:
                continue
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
