"""The discrete-event simulation: a cluster on a virtual clock, driven by the real policy as the server drives it.

What happens, and what the policy sees of it:

- **Jobs arrive** in their user's queue. A scheduling pass follows every batch of events at one virtual
  moment (as the server places after exits and arrivals), with :func:`wulf.policy.scheduler.schedule`
  over a :class:`~wulf.policy.placement.NodePool` of the node views. The pool is kept from pass to pass
  and told of the nodes whose view changed (:meth:`NodePool.update`), which leaves it as a pool built
  anew would be; a pass that nothing could have changed (no arrival, no changed node, no window
  opening) is skipped, since it would place nothing.
- **A job runs** on its node at the node's speed: 1 while the cpu wanted there (by the jobs, at what they
  really use, and by the outside load) is at most the node's cpus, else what weighted fair sharing gives
  it, as Linux's scheduler shares a cpu: alike when jobs run at the niceness of outside work, and
  outside work first when the jobs run niced (``scheduler.job_nice``; see :func:`shares`). Each node
  keeps a virtual "work clock" advancing at that speed, and its jobs by the work-clock time they finish
  at, so a change of speed costs one event, not one per job.
- **Outside load** (interactive users) comes and goes: off for a while (the person thinks, types, is
  away), then on with a computation of a given amount of work, ``on`` seconds of it at full speed on
  average. That work runs at its own speed (a work clock of its own), so a computation that batch jobs share the
  node with takes longer and keeps wanting its cpus for longer: a person's work is not done sooner
  because others took their cpu. (Outside load that never goes off simply wants its cpus throughout.)
- **Memory is not shared like cpu.** When what a node's processes use (jobs, at what they really use,
  and the outside load) passes its memory, the kernel's out-of-memory killer ends the process that uses
  the most, as Linux does, until the rest fit. A job killed so is submitted again a minute later, at
  the head of its queue (as its user would; the work it did is lost, and its wait counts to the start
  of the run that finishes), up to :data:`MAX_RESUBMITS` times; an outside computation killed so goes
  off (its user starts over later).
- **Agents report** every ``interval`` seconds (nodes spread over the interval): a report carries what
  each job uses and what the node uses in all (jobs and outside load), as a real agent measures it, and
  runs adaptive allocation (:func:`wulf.policy.adapt.adapt_jobs`) on the node's jobs, as the server
  does on every report (not under allocation-only, ``observe`` false: there a job holds what it asked
  for throughout, as in a classic batch scheduler). A report of a node where nothing changed, whose
  jobs' allocations were left as they were by the last one and none of which reaches its settling
  time, changes nothing and is not simulated. Between reports the server knows only the last one (less the jobs that ended since).
- **Exits** reach the server at once (agents send them when they happen); the job's allocation is freed,
  and its last measured use is taken out of its node's last report (``exits_free_use``; without it the
  room a job leaves looks taken by outside work until the node next reports, and room kept for a job
  as large as a node moves away after every exit there, so such a job never starts while smaller ones
  are queued).
- **Jobs of a kind learn from each other** (:mod:`wulf.policy.history`): a job that ends after
  ``history_min_seconds`` teaches its kind (its user, name and request) its mean cpu and peak memory,
  and the next jobs of the kind start with what the last ones used, when that is less than they ask
  for, as the server does from the exits it records (not under allocation-only). A job the
  out-of-memory killer ended teaches nothing.
- **Night and weekend windows** open and close on the virtual clock (day 0 is a Monday, 08:00 in the
  configured time zone's UTC offset at the epoch below).
"""

from __future__ import annotations

import heapq
import math
import random
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from wulf.policy.adapt import Holding, adapt_jobs
from wulf.policy.history import kind_of
from wulf.policy.placement import NodePool
from wulf.policy.scheduler import schedule
from wulf.policy.settings import Policy
from wulf.policy.snapshot import NodeView, QueueView, RunningUse, UserView, node_free
from wulf.sim.metrics import Recorder, Summary
from wulf.sim.workload import QueueSpec, SimJob, SimNode, Workload

#: the virtual clock's zero: Monday 2025-01-06 08:00 UTC (for night and weekend windows)
EPOCH = 1736150400.0
#: jobs whose work ends within this many (work-clock) seconds of each other end together
_EPS = 1e-6
#: report phases: the nodes report in this many groups spread over the interval
_PHASES = 5

#: a job the out-of-memory killer ends is submitted again this many times, then given up
MAX_RESUBMITS = 3

#: seconds after it was killed that a job is submitted again (its user, or their script, noticed)
RESUBMIT_AFTER = 60.0

# event kinds, in the order events at the same moment are handled
_END, _OUTSIDE, _REPORT, _WINDOW, _RESUBMIT = range(5)


def cfs_weight(nice: int) -> float:
    """The cpu weight Linux's scheduler gives a thread at ``nice`` (1024 at 0, each step about 1.25x)."""
    return 1024.0 / 1.25 ** nice


def shares(cpus: float, jobs: float, outside: float, job_weight: float = 1.0) -> tuple[float, float]:
    """The speed (fraction of the cpu each wants) of a node's jobs and of its outside load, which want
    ``jobs`` and ``outside`` cpus: weighted fair sharing as Linux's scheduler does it, each thread of the
    jobs weighing ``job_weight`` of an outside thread (1: they share alike), none getting more than a cpu."""
    if jobs + outside <= cpus:
        return 1.0, 1.0
    unit = cpus / (outside + jobs * job_weight)  # each outside thread's share, while no one has a whole cpu
    if unit <= 1.0:
        return unit * job_weight, unit
    return (cpus - outside) / jobs, 1.0  # outside threads get a whole cpu each; the jobs the rest


class _Run:
    """A running job: its allocation and measured use as the server knows them, and its progress."""

    __slots__ = ("cpu", "cpu_used", "holding", "job", "low", "mem", "mem_used", "note", "penalized", "settled",
                 "start", "use", "vend")

    def __init__(self, job: SimJob, start: float, vend: float) -> None:
        self.job = job
        self.start = start
        self.vend = vend  # the node's work-clock time it finishes at
        self.cpu = job.cpu
        self.mem = job.mem_mb
        self.cpu_used = 0.0  # not measured until the node's next report
        self.mem_used = 0.0
        self.settled = False
        self.low = 0
        self.penalized = False
        self.note = ""
        # what the policy was last given of it, kept while its figures stay the same (built anew, they
        # cost more than the rest of a report)
        self.use: RunningUse | None = None
        self.holding: Holding | None = None

    def occupied(self) -> float:
        return max(self.cpu, self.cpu_used)


class _Node:
    __slots__ = ("busy", "demand", "ends", "index", "mem_demand", "out_busy", "out_on", "out_rate", "out_rng",
                 "out_vend", "out_version", "out_vtime", "out_want", "phase", "rate", "report_at", "runs", "sample_cpu", "sample_mem", "spec", "version", "view",
                 "vstamp", "vtime")

    def __init__(self, spec: SimNode, index: int, phase: float, seed: int) -> None:
        self.spec = spec
        self.index = index
        self.phase = phase
        self.runs: dict[int, _Run] = {}
        self.ends: list[tuple[float, int]] = []  # (work-clock end, job id)
        self.vtime = 0.0  # work clock
        self.vstamp = 0.0  # the virtual time vtime was last brought to
        self.rate = 1.0
        self.demand = 0.0  # cpu the jobs want
        self.mem_demand = 0.0
        self.busy = 0.0  # cpu the jobs get
        self.out_busy = 0.0  # cpu the outside load gets
        self.out_want = 0.0  # cpu the outside load wants
        self.version = 0  # of the end event in the queue
        self.sample_cpu = 0.0  # the last report
        self.sample_mem = 0.0
        self.report_at: float | None = None
        self.view: NodeView | None = None
        self.out_rng = random.Random(f"{seed}:{spec.name}")
        o = spec.outside
        self.out_on = o is not None and (not o.off or self.out_rng.random() < o.on / (o.on + o.off))
        self.out_vtime = 0.0  # the outside load's work clock (it runs at its own speed)
        self.out_rate = 1.0
        self.out_vend = 0.0  # the outside work clock's time the computation that is on ends at
        self.out_version = 0  # of the outside event in the queue

    def outside_cpu(self) -> float:
        o = self.spec.outside
        return o.cpu if o is not None and self.out_on else 0.0

    def outside_mem(self) -> float:
        o = self.spec.outside
        return o.mem_mb if o is not None and self.out_on else 0.0


class _Queue:
    __slots__ = ("jobs", "spec")

    def __init__(self, spec: QueueSpec) -> None:
        self.spec = spec
        self.jobs: deque[SimJob] = deque()


@dataclass
class _User:
    name: str
    index: int
    limit: float | None
    share: float
    running: int = 0
    queued: int = 0
    occupied: float = 0.0


class Engine:
    """One simulation of ``workload`` under ``policy``; :meth:`run` it once."""

    def __init__(self, workload: Workload, policy: Policy, seed: int = 1, interval: float = 5.0,
                 record_every: float | None = None, exits_free_use: bool = True) -> None:
        if not workload.nodes:
            raise ValueError("a workload to simulate needs nodes")
        self.w = workload
        self.policy = policy
        self.exits_free_use = exits_free_use
        self.job_weight = cfs_weight(policy.job_nice) / cfs_weight(0)
        self.interval = interval
        self.now = 0.0
        self.nodes = [_Node(n, i, (i % _PHASES) * interval / _PHASES, seed) for i, n in enumerate(workload.nodes)]
        self.by_name = {n.spec.name: n for n in self.nodes}
        self.events: list[tuple[float, int, int, int, int]] = []  # (time, kind, seq, node index, version)
        self.seq = 0
        self.next_arrival = 0
        self.queues: dict[tuple[str, str], _Queue] = {}
        for q in workload.queues:
            self.queues[(q.user, q.name)] = _Queue(q)
        self.waiting: dict[tuple[str, str], _Queue] = {}  # queues with jobs, in the order they first had some
        names = sorted({j.user for j in workload.jobs} | {q.user for q in workload.queues})
        self.users = {u: _User(u, i, policy.user_limit(u, ()), policy.user_share(u, ())) for i, u in enumerate(names)}
        self.stale: set[_Node] = set()  # nodes whose view the pool has not been told of
        self.windows_at: set[float] = set()
        self.need_pass = False
        self.done = 0  # jobs that ended or can never start
        self.rec = Recorder(workload, [u for u in self.users], sum(n.cpus for n in workload.nodes),
                            record_every or max(interval, 1.0))
        self.pool: NodePool | None = None
        self.held: dict[int, str] = {}  # where the last pass kept room for which job
        self.history = policy.history()
        self.pass_seconds = 0.0
        self.update_seconds = 0.0

    # ------------------------------------------------------------------ the loop

    def run(self) -> Summary:
        wall = time.perf_counter()
        for node in self.nodes:
            o = node.spec.outside
            if o is not None and o.off:
                self._outside_turns(node, 0.0)
            self._set_rate(node, 0.0)
            self._sample(node)  # the agents reported before the first job came
        self.pool = NodePool((self._view(n) for n in self.nodes), self.policy.rank, self.policy.observe,
                             self.policy.rank_adjust())
        jobs = self.w.jobs
        horizon = (jobs[-1].arrival if jobs else 0.0) + 10 * self.w.bound() + 86400.0
        while self.done < len(jobs):
            t = self._next_time()
            if t is None or t > horizon:
                break
            self.rec.advance(t, self)
            self.now = t
            self._batch(t)
            if self.need_pass:
                self.need_pass = False
                self._pass(t)
        self.rec.advance(self.now, self)
        return self.rec.summary(self, time.perf_counter() - wall)

    def _next_time(self) -> float | None:
        t = self.events[0][0] if self.events else None
        jobs = self.w.jobs
        if self.next_arrival < len(jobs):
            a = jobs[self.next_arrival].arrival
            if t is None or a < t:
                t = a
        return t

    def _batch(self, t: float) -> None:
        """Everything that happens at ``t``: ends and outside load first, then arrivals, then reports."""
        events = self.events
        jobs = self.w.jobs
        arrivals_done = False
        while True:
            if not arrivals_done and (not events or events[0][0] > t or events[0][1] >= _REPORT):
                while self.next_arrival < len(jobs) and jobs[self.next_arrival].arrival <= t:
                    self._arrive(jobs[self.next_arrival])
                    self.next_arrival += 1
                arrivals_done = True
            if not events or events[0][0] > t:
                break
            _, kind, _, index, version = heapq.heappop(events)
            if kind == _RESUBMIT:
                self._requeue(self.w.jobs[index])
                continue
            node = self.nodes[index]
            if kind == _END:
                if version == node.version:
                    self._end(node, t)
            elif kind == _OUTSIDE:
                if version == node.out_version:
                    self._toggle(node, t)
            elif kind == _REPORT:
                if node.report_at == t:
                    self._report(node, t)
            else:
                self.windows_at.discard(t)
                self.need_pass = True

    def _push(self, t: float, kind: int, index: int = 0, version: int = 0) -> None:
        self.seq += 1
        heapq.heappush(self.events, (t, kind, self.seq, index, version))

    # ------------------------------------------------------------------ speed and progress

    def _advance(self, node: _Node, t: float) -> None:
        node.vtime += (t - node.vstamp) * node.rate
        node.out_vtime += (t - node.vstamp) * node.out_rate
        node.vstamp = t

    def _set_rate(self, node: _Node, t: float) -> None:
        """After what the node's processes want changed (its work clock brought to ``t`` first)."""
        outside = node.outside_cpu()
        cpus = node.spec.cpus
        node.rate, node.out_rate = rate, out_rate = shares(cpus, node.demand, outside, self.job_weight)
        busy, out_busy = node.demand * rate, outside * out_rate
        self.rec.busy += busy - node.busy
        self.rec.out_busy += out_busy - node.out_busy
        self.rec.out_wanted += outside - node.out_want
        node.busy, node.out_busy, node.out_want = busy, out_busy, outside
        node.version += 1
        if node.ends:
            left = max(0.0, node.ends[0][0] - node.vtime)
            self._push(t + left / rate, _END, node.index, node.version)
        if node.out_on and node.spec.outside is not None and node.spec.outside.off:
            self._push_outside(node, t + max(0.0, node.out_vend - node.out_vtime) / out_rate)

    def _changed(self, node: _Node, t: float) -> None:
        """The node's jobs or load changed: its view is stale, and its agent reports it next time."""
        node.view = None
        self.stale.add(node)
        self._want_report(node, t)

    def _next_phase(self, node: _Node, t: float, strictly: bool = False) -> float:
        k = math.ceil((t - node.phase) / self.interval - 1e-9)
        at = node.phase + max(0, k) * self.interval
        if at < t or strictly and at <= t:
            at += self.interval
        return at

    def _want_report(self, node: _Node, t: float, strictly: bool = False) -> None:
        at = self._next_phase(node, t, strictly)
        if node.report_at is None or at < node.report_at:
            node.report_at = at
            self._push(at, _REPORT, node.index)

    # ------------------------------------------------------------------ events

    def _arrive(self, job: SimJob) -> None:
        key = (job.user, job.queue)
        q = self.waiting.get(key)
        if q is None:
            q = self.queues.get(key)
            if q is None:
                q = self.queues[key] = _Queue(QueueSpec(job.user, job.queue))
            self.waiting[key] = q
        q.jobs.append(job)
        self.users[job.user].queued += 1
        self.rec.queued += 1
        self.need_pass = True

    def _start(self, job: SimJob, node: _Node, t: float, cpu: float, mem: float) -> None:
        """``job`` starts on ``node`` holding ``cpu`` and ``mem`` (what it asked for, or what its kind
        taught)."""
        self._advance(node, t)
        run = _Run(job, t, node.vtime + job.duration)
        if (cpu, mem) != (job.cpu, job.mem_mb):
            run.cpu, run.mem = cpu, mem
            self.rec.sized += 1
        node.runs[job.id] = run
        heapq.heappush(node.ends, (run.vend, job.id))
        node.demand += job.used_cpu
        node.mem_demand += job.used_mem_mb
        self._set_rate(node, t)
        self._changed(node, t)
        user = self.users[job.user]
        user.running += 1
        user.queued -= 1
        user.occupied += run.occupied()
        self.rec.started(job, t)

    def _end(self, node: _Node, t: float) -> None:
        self._advance(node, t)
        ends = node.ends
        while ends and ends[0][0] <= node.vtime + _EPS:
            _, job_id = heapq.heappop(ends)
            run = self._gone(node, node.runs.pop(job_id))
            self.rec.ended(run.job, t)
            if self.history is not None:
                job = run.job
                self.history.teach(kind_of(job.user, job.name, job.cpu, job.mem_mb), True, t - run.start,
                                   job.work, job.used_mem_mb)
            self.done += 1
        self._after_exits(node, t)

    def _gone(self, node: _Node, run: _Run) -> _Run:
        """A job has left ``node`` (it ended, or was killed): the server hears of its exit at once."""
        if self.exits_free_use:
            # the server takes the job's last measured use out of its node's last report (the best
            # guess until the next one; else the room it leaves looks taken by outside work)
            node.sample_cpu = max(0.0, node.sample_cpu - run.cpu_used)
            node.sample_mem = max(0.0, node.sample_mem - run.mem_used)
        user = self.users[run.job.user]
        user.running -= 1
        user.occupied -= run.occupied()
        return run

    def _after_exits(self, node: _Node, t: float) -> None:
        node.demand = sum(r.job.used_cpu for r in node.runs.values())
        node.mem_demand = sum(r.job.used_mem_mb for r in node.runs.values())
        self._set_rate(node, t)
        self._changed(node, t)
        self.need_pass = True

    def _out_of_memory(self, node: _Node, t: float) -> None:
        """While the node's processes use more memory than it has, the one that uses the most is killed."""
        if node.mem_demand + node.outside_mem() <= node.spec.mem_mb + _EPS:
            return
        self._advance(node, t)
        killed: list[_Run] = []
        while node.mem_demand + node.outside_mem() > node.spec.mem_mb + _EPS:
            # (of equals, the newest: the one whose coming did not fit)
            run = max(node.runs.values(), key=lambda r: (r.job.used_mem_mb, r.start, r.job.id), default=None)
            if node.outside_mem() and (run is None or node.outside_mem() >= run.job.used_mem_mb):
                node.out_on = False
                self._outside_turns(node, t)
                self.rec.outside_killed += 1
                continue
            assert run is not None
            killed.append(self._gone(node, node.runs.pop(run.job.id)))
            node.mem_demand -= run.job.used_mem_mb
        if killed:
            node.ends = [e for e in node.ends if e[1] in node.runs]
            heapq.heapify(node.ends)
            for run in killed:
                if self.rec.killed(run.job, t - run.start) <= MAX_RESUBMITS:
                    self._push(t + RESUBMIT_AFTER, _RESUBMIT, run.job.id)
                else:
                    self.done += 1
        self._after_exits(node, t)

    def _requeue(self, job: SimJob) -> None:
        """A killed job, submitted again at the head of its queue."""
        key = (job.user, job.queue)
        q = self.waiting.get(key)
        if q is None:
            q = self.waiting[key] = self.queues[key]
        q.jobs.appendleft(job)
        self.users[job.user].queued += 1
        self.rec.queued += 1
        self.need_pass = True

    def _outside_turns(self, node: _Node, t: float) -> None:
        """The outside load (that goes on and off) turns on or off at ``t`` (its work clock brought to
        ``t``): on, with a computation of ``on`` seconds of work on average, which ends when the node's
        work clock reaches it, so at the node's speed (:meth:`_set_rate` moves the event); off, for
        ``off`` seconds on average."""
        o = node.spec.outside
        assert o is not None and o.off
        if node.out_on:
            node.out_vend = node.out_vtime + node.out_rng.expovariate(1 / o.on)
        else:
            self._push_outside(node, t + node.out_rng.expovariate(1 / o.off))

    def _push_outside(self, node: _Node, at: float) -> None:
        node.out_version += 1
        self._push(at, _OUTSIDE, node.index, node.out_version)

    def _toggle(self, node: _Node, t: float) -> None:
        self._advance(node, t)
        node.out_on = not node.out_on
        self._outside_turns(node, t)
        self._set_rate(node, t)
        self._changed(node, t)
        if node.out_on:
            self._out_of_memory(node, t)

    def _sample(self, node: _Node) -> None:
        """What the node's agent measures now."""
        rate = node.rate
        users = self.users
        for run in node.runs.values():
            job = run.job
            cpu_used = job.used_cpu * rate
            if cpu_used != run.cpu_used or job.used_mem_mb != run.mem_used:
                before = run.occupied()
                run.cpu_used, run.mem_used = cpu_used, job.used_mem_mb
                run.use = run.holding = None
                users[job.user].occupied += run.occupied() - before
                node.view = None
        cpu, mem = node.demand * rate + node.outside_cpu() * node.out_rate, node.mem_demand + node.outside_mem()
        if (cpu, mem) != (node.sample_cpu, node.sample_mem):
            node.sample_cpu, node.sample_mem = cpu, mem
            node.view = None
        if node.view is None:
            self.stale.add(node)

    def _report(self, node: _Node, t: float) -> None:
        """The node's agent reports: the server takes its figures and adapts the jobs' allocations."""
        node.report_at = None
        self._sample(node)
        self.need_pass = True
        if not self.policy.adaptive:
            return
        changed = self._adapt(node, t)
        if changed:
            self._want_report(node, t, strictly=True)
            return
        settle = self.policy.adapt.settle_seconds
        unsettled = [r.start + settle for r in node.runs.values() if not r.settled]
        if unsettled:
            self._want_report(node, max(min(unsettled), t), strictly=min(unsettled) <= t)

    def _adapt(self, node: _Node, t: float) -> bool:
        """Adaptive allocation of the node's jobs, as the server runs it on every report."""
        runs = list(node.runs.values())
        if not runs:
            return False
        settle = self.policy.adapt.settle_seconds
        before = []
        for r in runs:
            h = r.holding
            # a job's age matters to adapt only as age < settle_seconds: while that stays, and the
            # job's figures stay, what it was last given is what it would be given now
            if h is None or not r.settled and (h.age < settle) != (t - r.start < settle):
                h = r.holding = Holding(r.cpu, r.mem, r.cpu_used, r.mem_used, t - r.start, r.settled, r.low,
                                        r.penalized, r.note)
            before.append(h)
        after = adapt_jobs(before, node_free(self._view(node), self.policy.observe), self.policy.adapt)
        changed = False
        users = self.users
        for run, b, a in zip(runs, before, after, strict=True):
            if a is b or a == b:
                continue
            changed = True
            if a.penalized != b.penalized:
                self.rec.renices += 1
            occupied = run.occupied()
            if (a.cpu, a.mem) != (run.cpu, run.mem):
                run.use = None
            run.cpu, run.mem, run.settled, run.low, run.penalized, run.note = (
                a.cpu, a.mem, a.settled, a.low_samples, a.penalized, a.note)
            run.holding = a
            users[run.job.user].occupied += run.occupied() - occupied
        if changed:
            node.view = None
            self.stale.add(node)
        return changed

    # ------------------------------------------------------------------ the policy

    def _view(self, node: _Node) -> NodeView:
        view = node.view
        if view is None:
            s = node.spec
            jobs = tuple(r.use or self._use(r) for r in node.runs.values())
            cpus = s.cpus
            view = node.view = NodeView(
                s.name, cpus, s.mem_mb, True, jobs, node.sample_cpu, node.sample_mem, None, s.attrs, s.features,
                {"cpu_user": node.sample_cpu / cpus, "cpu_idle": max(0.0, 1 - node.sample_cpu / cpus),
                 "cpu_system": 0.0, "load1": node.demand + node.outside_cpu(),
                 "mem_available_mb": max(0.0, s.mem_mb - node.sample_mem), "nprocs": float(len(jobs))})
        return view

    @staticmethod
    def _use(run: _Run) -> RunningUse:
        use = run.use = RunningUse(run.cpu, run.mem, run.cpu_used, run.mem_used, run.job.user)
        return use

    def _pass(self, t: float) -> None:
        if not self.waiting:
            return
        pool = self.pool
        assert pool is not None
        u0 = time.perf_counter()
        for node in self.stale:
            pool.update(self._view(node))
        self.stale.clear()
        sized = self.history.sized if self.history is not None else None
        queues = [QueueView(q.spec.user, q.spec.name, q.jobs if sized is None else map(sized, q.jobs),
                            q.spec.priority, q.spec.stopped, q.spec.window)
                  for q in self.waiting.values()]
        users = {}
        for q in queues:
            u = self.users[q.user]
            users[u.name] = UserView(u.name, u.running, u.occupied, u.limit, u.share)
        windows = self.policy.windows
        epoch = EPOCH + t
        p0 = time.perf_counter()
        result = schedule(queues, users, pool, lambda kind: windows.open(kind, epoch), self.policy.plugin,
                          self.held)
        self.held = result.held
        p1 = time.perf_counter()
        self.rec.passed(p1 - p0, len(result.placements))
        jobs = self.w.jobs
        started = {}
        for p in result.placements:
            node = started[p.node] = self.by_name[p.node]
            self._start(jobs[p.job_id], node, t, p.cpu, p.mem_mb)
        for job_id in result.impossible:
            job = jobs[job_id]
            self.rec.rejected(job, result.impossible[job_id])
            self.users[job.user].queued -= 1
            self.done += 1
        gone = {p.job_id for p in result.placements} | set(result.impossible)
        if gone:
            self._forget(gone)
        for node in started.values():  # once the placed jobs have left their queues
            self._out_of_memory(node, t)
        self._watch_windows(queues, t)
        self.update_seconds += (time.perf_counter() - u0) - (p1 - p0)

    def _forget(self, gone: set[int]) -> None:
        """Take placed and impossible jobs out of their queues. A pass goes through each queue in order,
        so what it took from a queue is among the jobs nearest its head: each queue is looked through
        only as far as its last job taken."""
        jobs = self.w.jobs
        per_queue: dict[tuple[str, str], int] = {}
        for job_id in gone:
            job = jobs[job_id]
            key = (job.user, job.queue)
            per_queue[key] = per_queue.get(key, 0) + 1
        for key, count in per_queue.items():
            q = self.waiting[key].jobs
            kept: list[SimJob] = []
            while count:
                job = q.popleft()
                if job.id in gone:
                    count -= 1
                else:
                    kept.append(job)
            q.extendleft(reversed(kept))
            if not q:
                del self.waiting[key]
        self.rec.queued -= len(gone)

    def _watch_windows(self, queues: Sequence[QueueView], t: float) -> None:
        kinds = {q.window for q in queues if q.window != "always" and not q.stopped}
        for kind in kinds:
            change = self.policy.windows.next_change(kind, EPOCH + t)
            if change is not None:
                at = change - EPOCH
                if at not in self.windows_at:
                    self.windows_at.add(at)
                    self._push(at, _WINDOW)
