"""The discrete-event simulation: a cluster on a virtual clock, run by the server's own state machine.

The simulator is a shell of :class:`~wulf.server.state.ServerState`, as the daemon is: it hands the
state machine the events a real cluster would (jobs submitted, placed jobs started, exits, agents'
reports, a window opening) and carries out what it is told (start these jobs there, renice that one,
run a pass now or at the window's next change). Everything the server decides and keeps (the queues,
fair share and limits, the scheduling passes and the room kept for large jobs, adaptive allocation, what
jobs of a kind taught, retries) is the server's code; the simulator keeps only the physics of the
cluster and what it measures:

- **Jobs arrive** in their user's queue (a :class:`~wulf.server.events.Submitted` per virtual moment).
  A scheduling pass follows every batch of events at one moment that asks for one (an arrival, a
  report while jobs wait, a window opening), and the server places in the room an exit leaves as it
  records the exit, as it does for real.
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
  The server sees it as a real agent reports it: in the node's measured use.
- **Memory is not shared like cpu.** When what a node's processes use (jobs, at what they really use,
  and the outside load) passes its memory, the kernel's out-of-memory killer ends the process that uses
  the most, as Linux does, until the rest fit. A job killed so fails (signal 9); the workload's jobs are
  submitted with ``--retries`` :data:`MAX_RESUBMITS`, so wulf queues it again (its wait counts to the
  start of the run that finishes) once its node has acknowledged the exit, which the simulator does
  :data:`RESUBMIT_AFTER` seconds later (see there); an outside computation killed so goes off (its user
  starts over later).
- **Agents report** every ``interval`` seconds (nodes spread over the interval): a report carries what
  each job uses and what the node uses in all (jobs and outside load), as a real agent measures it; the
  server takes it as it takes a real one (adaptive allocation and renicing included). A report of a node
  where nothing changed, whose jobs' allocations the last one left as they were and none of which
  reaches its settling time, changes nothing and is not simulated.
- **A job of several nodes** (``qr --nodes N --ntasks-per-node M``) is placed by the server, all its
  slots at once, as any; the simulator starts its tasks on every node of the allocation the server
  gave it, where each wants its cpu and memory like a job. Its tasks run in step, as an MPI program's
  ranks wait for each other at every exchange: it goes at the speed of its slowest node (where the
  others wait, spinning: they still want their cpu), and all its tasks end together, leaving their
  nodes' room at once. The first node's agent reports the exit; the other nodes report what its tasks
  there use, as a real agent does (Node.shares). When the out-of-memory killer takes one of its tasks,
  the whole job fails (its other tasks are ended, the work of all of them lost) and is retried.
- **Exits** reach the server at once (agents send them when they happen).
- **Night and weekend windows** open and close on the virtual clock (day 0 is a Monday, 08:00 in the
  configured time zone's UTC offset at the epoch below): the server says when (``WakeAt``).
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import random
import time
from collections.abc import Iterable

from wulf.config import Config
from wulf.model.job import Job, JobState, Origin
from wulf.model.tasks import parse_alloc
from wulf.policy.settings import Policy
from wulf.protocol import JobExit, JobStarted, JobUse, NodeInfo, NodeSample, Renice, Report
from wulf.server.events import (
    CancelRequested,
    JobsExited,
    JobsStarted,
    Reported,
    Requeued,
    SchedulePass,
    Submitted,
)
from wulf.server.instructions import CommitSoon, Instruction, Requeue, Send, StartJobs, Wake, WakeAt
from wulf.server.nodes import Node
from wulf.server.state import ServerState
from wulf.sim.metrics import Recorder, Summary
from wulf.sim.workload import SimJob, SimNode, Workload

#: the virtual clock's zero: Monday 2025-01-06 08:00 UTC (for night and weekend windows)
EPOCH = 1736150400.0
#: jobs whose work ends within this many (work-clock) seconds of each other end together
_EPS = 1e-6
#: report phases: the nodes report in this many groups spread over the interval
_PHASES = 5

#: the workload's jobs are submitted with this many retries: a job the out-of-memory killer ends runs
#: again this many times, then it has failed
MAX_RESUBMITS = 3

#: seconds after a job was killed that it is back in line. wulf queues a failed job with retries left
#: again as soon as its node has the acknowledgement of the exit (see wulf.server.instructions.Requeue);
#: the simulator lets a minute pass, for the memory the kill freed to show in the node's next reports
#: (the server knows of the kill at once, of the use that caused it only from the next report: without
#: the pause a job is put back where it was just killed, and killed again, before any report is in)
RESUBMIT_AFTER = 60.0

# event kinds, in the order events at the same moment are handled
_END, _GANG, _OUTSIDE, _REPORT, _WINDOW, _RESUBMIT = range(6)


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
    """A running job and its progress."""

    __slots__ = ("job", "rate", "start", "use", "vend")

    def __init__(self, job: SimJob, start: float, vend: float) -> None:
        self.job = job
        self.start = start
        self.vend = vend  # the node's work-clock time it finishes at
        self.use: JobUse | None = None  # what its agent reports of it, at the node's speed ``rate``
        self.rate = 0.0


class _Gang:
    """A running job of several nodes: its tasks progress together, at the slowest of its nodes' speeds."""

    __slots__ = ("id", "job", "left", "nodes", "rate", "stamp", "start", "version")

    def __init__(self, job_id: int, job: SimJob, start: float, nodes: list[tuple[_Node, int]]) -> None:
        self.id = job_id
        self.job = job
        self.start = start
        self.nodes = nodes  # (node, its tasks there), the first node (its script's) first
        self.left = job.duration  # seconds of work left, at full speed
        self.stamp = start  # the virtual time ``left`` was last brought to
        self.rate = 0.0
        self.version = 0  # of its end event in the queue


class _ServerNode(Node):
    """The server's record of a simulated node: a real agent's node describes itself by its hello (arch,
    os, ...); a workload's node has the attributes its file gives."""

    def __init__(self, name: str, attrs: dict[str, str]) -> None:
        super().__init__(name)
        self._attrs = attrs

    def attrs(self) -> dict[str, str]:
        return self._attrs


class _Node:
    __slots__ = ("busy", "demand", "ends", "gangs", "index", "mem_demand", "out_busy", "out_on", "out_rate", "out_rng",
                 "out_vend", "out_version", "out_vtime", "out_want", "phase", "rate", "report_at", "runs",
                 "spec", "version", "vstamp", "vtime")

    def __init__(self, spec: SimNode, index: int, phase: float, seed: int) -> None:
        self.spec = spec
        self.index = index
        self.phase = phase
        self.runs: dict[int, _Run] = {}  # by the server's job id
        self.gangs: dict[int, tuple[_Gang, int]] = {}  # jobs of several nodes with tasks here: (job, tasks here)
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
        self.report_at: float | None = None
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


@dataclasses.dataclass
class _User:
    """What the recorder follows of a user: jobs running and waiting now, and the share."""

    name: str
    index: int
    share: float
    running: int = 0
    queued: int = 0


class Engine:
    """One simulation of ``workload`` under ``policy`` (``config``: the rest of the server's settings);
    :meth:`run` it once."""

    def __init__(self, workload: Workload, policy: Policy, seed: int = 1, interval: float = 5.0,
                 record_every: float | None = None, config: Config | None = None) -> None:
        if not workload.nodes:
            raise ValueError("a workload to simulate needs nodes")
        self.w = workload
        features = {n.name: n.features for n in workload.nodes if n.features}
        self.policy = policy = dataclasses.replace(policy, features=features)
        self.state = ServerState(config or Config(), policy=policy)
        self.state.on_pass = self._passed
        self.job_weight = cfs_weight(policy.job_nice) / cfs_weight(0)
        self.interval = interval
        self.now = 0.0
        self.nodes = [_Node(n, i, (i % _PHASES) * interval / _PHASES, seed) for i, n in enumerate(workload.nodes)]
        self.by_name = {n.spec.name: n for n in self.nodes}
        self.events: list[tuple[float, int, int, int, int]] = []  # (time, kind, seq, node index or job, version)
        self.seq = 0
        self.next_arrival = 0
        names = sorted({j.user for j in workload.jobs} | {q.user for q in workload.queues})
        self.users = {u: _User(u, i, policy.user_share(u, ())) for i, u in enumerate(names)}
        self.windows_at: set[float] = set()
        self.need_pass = False
        self.done = 0  # jobs that ended or can never start
        self.rejected: set[int] = set()
        self.gangs: dict[int, _Gang] = {}  # running jobs of several nodes, by the server's job id
        self.rec = Recorder(workload, [u for u in self.users], sum(n.cpus for n in workload.nodes),
                            record_every or max(interval, 1.0))
        self.update_seconds = 0.0

    @staticmethod
    def _id(job: SimJob) -> int:
        """The server's id of a workload's job (the server counts from 1)."""
        return job.id + 1

    # ------------------------------------------------------------------ the loop

    def run(self) -> Summary:
        wall = time.perf_counter()
        self._start_server()
        for node in self.nodes:
            o = node.spec.outside
            if o is not None and o.off:
                self._outside_turns(node, 0.0)
            self._set_rate(node, 0.0)
            self._report(node, 0.0)  # the agents reported before the first job came
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
                self._do(self.state.handle(SchedulePass(EPOCH + t)), t)
        self.rec.advance(self.now, self)
        return self.rec.summary(self, time.perf_counter() - wall)

    def _start_server(self) -> None:
        """The server learns the users' queues; every node's agent says hello."""
        state = self.state
        state.book.load({"user": q.user, "name": q.name, "priority": q.priority, "stopped": q.stopped,
                         "window": q.window, "mail": ""} for q in self.w.queues)
        state.next_id = len(self.w.jobs) + 1
        for node in self.nodes:
            s = node.spec
            server_node = state.nodes[s.name] = _ServerNode(s.name, dict(s.attrs))
            server_node.info = NodeInfo(name=s.name, hostname=s.name, cpus=s.cpus, mem_mb=s.mem_mb)
            server_node.up = True
            state.touch(s.name)

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
        arrivals_done = False
        while True:
            if not arrivals_done and (not events or events[0][0] > t or events[0][1] >= _REPORT):
                self._arrivals(t)
                arrivals_done = True
            if not events or events[0][0] > t:
                break
            _, kind, _, index, version = heapq.heappop(events)
            if kind == _RESUBMIT:
                self._requeue(index, t)
                continue
            if kind == _GANG:
                self._gang_end(index, version, t)
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

    # ------------------------------------------------------------------ the server's instructions

    def _do(self, instructions: Iterable[Instruction], t: float) -> None:
        """Carry out what the server says (committing is nothing here: the simulator does not stop)."""
        started: list[_Node] = []
        for ins in instructions:
            if isinstance(ins, StartJobs):
                started += self._start(ins, t)
            elif isinstance(ins, Wake):
                self.need_pass = True
            elif isinstance(ins, WakeAt):
                self._window_at(ins.at)
            elif isinstance(ins, Send):
                if isinstance(ins.msg, Renice):
                    self.rec.renices += 1
            elif isinstance(ins, Requeue):
                for job in ins.jobs:
                    self._push(t + RESUBMIT_AFTER, _RESUBMIT, job.id)
        if self.state.impossible:
            self._reject(t)
        for node in started:  # once all are placed: what they use may not fit beside what is there
            self._out_of_memory(node, t)

    def _passed(self, seconds: float, placed: int, updating: float) -> None:
        self.rec.passed(seconds, placed)
        self.update_seconds += updating

    def _reject(self, t: float) -> None:
        """Jobs no node can ever run: their users give up on them (the cluster does not change)."""
        state = self.state
        jobs = [state.jobs[i] for i in state.impossible if i not in self.rejected]
        if not jobs:
            return
        for job in jobs:
            self.rejected.add(job.id)
            sim = self.w.jobs[job.id - 1]
            self.rec.rejected(sim, state.impossible[job.id])
            self.users[sim.user].queued -= 1
            self.rec.queued -= 1
            self.done += 1
        self._do(state.handle(CancelRequested(tuple(jobs), "sim", EPOCH + t)), t)

    def _window_at(self, at: float | None) -> None:
        if at is not None and at - EPOCH not in self.windows_at:
            self.windows_at.add(at - EPOCH)
            self._push(at - EPOCH, _WINDOW)

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
        if node.gangs:
            for g, _ in node.gangs.values():
                self._pace(g, t)

    def _pace(self, g: _Gang, t: float) -> None:
        """A node of the job of several nodes ``g`` changed speed at ``t``: it goes at its slowest node's."""
        g.left -= (t - g.stamp) * g.rate
        g.stamp = t
        rate = min(n.rate for n, _ in g.nodes)
        if rate != g.rate:
            g.rate = rate
            g.version += 1
            self._push(t + max(0.0, g.left) / rate, _GANG, g.id, g.version)

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

    def _arrivals(self, t: float) -> None:
        """The jobs that arrive at ``t``, submitted together."""
        jobs = self.w.jobs
        new = []
        while self.next_arrival < len(jobs) and jobs[self.next_arrival].arrival <= t:
            sim = jobs[self.next_arrival]
            self.next_arrival += 1
            new.append(Job(id=self._id(sim), user=sim.user, uid=0, origin=Origin.BATCH, state=JobState.QUEUED,
                           command="", name=sim.name, queue=sim.queue, cpu_req=sim.cpu, mem_req=sim.mem_mb,
                           cpu=sim.cpu, mem_mb=sim.mem_mb, submitted=EPOCH + sim.arrival,
                           constraint=sim.constraint, retries=MAX_RESUBMITS, ntasks=sim.tasks,
                           nodes_req=sim.nodes if sim.multinode else 0,
                           tasks_per_node=sim.per_node if sim.multinode else 0))
            self.users[sim.user].queued += 1
        if new:
            self.rec.queued += len(new)
            self._do(self.state.handle(Submitted(tuple(new))), t)

    def _start(self, ins: StartJobs, t: float) -> list[_Node]:
        """The node's agent starts the placed jobs (holding what they were given: what they asked for, or
        what their kind taught) and tells the server; the nodes where jobs started."""
        node = self.by_name[ins.node]
        self._advance(node, t)
        sims = self.w.jobs
        started = []
        others: list[_Node] = []
        for job in ins.jobs:
            sim = sims[job.id - 1]
            if job.alloc:
                others += self._start_gang(job.id, sim, job.alloc, t)
            else:
                run = _Run(sim, t, node.vtime + sim.duration)
                node.runs[job.id] = run
                heapq.heappush(node.ends, (run.vend, job.id))
                node.demand += sim.used_cpu
                node.mem_demand += sim.used_mem_mb
            if (job.cpu, job.mem_mb) != (job.cpu_req, job.mem_req):
                self.rec.sized += 1
            user = self.users[sim.user]
            user.running += 1
            user.queued -= 1
            self.rec.started(sim, t)
            started.append(JobStarted(id=job.id, pid=job.id, time=EPOCH + t))
        self.rec.queued -= len(started)
        self._set_rate(node, t)
        self._want_report(node, t)
        for other in others:
            self._set_rate(other, t)
            self._want_report(other, t)
        self._do(self.state.handle(JobsStarted(ins.node, tuple(started))), t)
        return [node, *others]

    def _start_gang(self, job_id: int, sim: SimJob, alloc: str, t: float) -> list[_Node]:
        """A job of several nodes starts its tasks on each node of its allocation (``alloc``, as the server
        wrote it: its first node, where its script runs, first); its nodes other than the first."""
        nodes = [(self.by_name[name], k) for name, k in parse_alloc(alloc)]
        g = self.gangs[job_id] = _Gang(job_id, sim, t, nodes)
        for n, k in nodes:
            self._advance(n, t)
            n.gangs[job_id] = (g, k)
            n.demand += sim.used_cpu * k
            n.mem_demand += sim.used_mem_mb * k
        return [n for n, _ in nodes[1:]]

    def _gang_end(self, job_id: int, version: int, t: float) -> None:
        """A job of several nodes has done its work: all its tasks end."""
        g = self.gangs.get(job_id)
        if g is None or g.version != version:
            return
        sim = g.job
        self.rec.ended(sim, t)
        self.done += 1
        self._leave(g, t, JobExit(id=job_id, exit_code=0, time=EPOCH + t, cpu_time=sim.work,
                                  peak_mem_mb=sim.used_mem_mb * g.nodes[0][1]))

    def _leave(self, g: _Gang, t: float, exit: JobExit | None, skip: _Node | None = None) -> None:
        """The tasks of ``g`` leave all its nodes at once; its first node's agent tells the server of
        ``exit`` (``skip``: a node whose change the caller carries on with)."""
        del self.gangs[g.id]
        self.users[g.job.user].running -= 1
        for n, _ in g.nodes:
            self._advance(n, t)
            del n.gangs[g.id]
        for i, (n, _) in enumerate(g.nodes):
            if n is not skip:
                self._after_exits(n, t, [exit] if i == 0 and exit is not None else [])

    def _end(self, node: _Node, t: float) -> None:
        self._advance(node, t)
        ends = node.ends
        exits = []
        while ends and ends[0][0] <= node.vtime + _EPS:
            _, job_id = heapq.heappop(ends)
            sim = self._gone(node, node.runs.pop(job_id)).job
            self.rec.ended(sim, t)
            exits.append(JobExit(id=job_id, exit_code=0, time=EPOCH + t, cpu_time=sim.work,
                                                 peak_mem_mb=sim.used_mem_mb))
            self.done += 1
        self._after_exits(node, t, exits)

    def _gone(self, node: _Node, run: _Run) -> _Run:
        """A job has left ``node`` (it ended, or was killed)."""
        self.users[run.job.user].running -= 1
        return run

    def _after_exits(self, node: _Node, t: float, exits: list[JobExit]) -> None:
        """The node's speed changes; its agent tells the server of the exits at once."""
        node.demand = sum(r.job.used_cpu for r in node.runs.values())
        node.mem_demand = sum(r.job.used_mem_mb for r in node.runs.values())
        if node.gangs:
            node.demand += sum(g.job.used_cpu * k for g, k in node.gangs.values())
            node.mem_demand += sum(g.job.used_mem_mb * k for g, k in node.gangs.values())
        self._set_rate(node, t)
        self._want_report(node, t)
        if exits:
            # (the pass comes once this moment's other exits are in: a pass for each node's would mostly
            # place nothing in room that the next node's exits are about to give)
            self._do(self.state.handle(JobsExited(node.spec.name, tuple(exits), EPOCH + t, place=False)), t)

    def _out_of_memory(self, node: _Node, t: float) -> None:
        """While the node's processes use more memory than it has, the one that uses the most is killed."""
        if node.mem_demand + node.outside_mem() <= node.spec.mem_mb + _EPS:
            return
        self._advance(node, t)
        killed: list[int] = []
        while node.mem_demand + node.outside_mem() > node.spec.mem_mb + _EPS:
            # (of equals, the newest: the one whose coming did not fit)
            job_id, run = max(node.runs.items(), key=lambda r: (r[1].job.used_mem_mb, r[1].start, r[0]),
                              default=(0, None))
            gang = self._largest_task(node)
            if gang is not None and (run is None or (gang.job.used_mem_mb, gang.start, gang.id) >
                                     (run.job.used_mem_mb, run.start, job_id)):
                biggest = gang.job.used_mem_mb
            else:
                gang, biggest = None, run.job.used_mem_mb if run is not None else 0.0
            if node.outside_mem() and node.outside_mem() >= biggest:
                node.out_on = False
                self._outside_turns(node, t)
                self.rec.outside_killed += 1
                continue
            if gang is not None:  # one of its tasks: the whole job fails
                node.mem_demand -= gang.job.used_mem_mb * node.gangs[gang.id][1]
                first = gang.nodes[0][0]
                if first is node:
                    killed.append(gang.id)
                self._leave(gang, t, None if first is node else JobExit(id=gang.id, exit_code=None, signal=9,
                                                                          time=EPOCH + t), skip=node)
                if self.rec.killed(gang.job, t - gang.start) > MAX_RESUBMITS:
                    self.done += 1
                continue
            assert run is not None
            self._gone(node, node.runs.pop(job_id))
            node.mem_demand -= run.job.used_mem_mb
            killed.append(job_id)
            if self.rec.killed(run.job, t - run.start) > MAX_RESUBMITS:
                self.done += 1  # its last try: it has failed
        if killed:
            node.ends = [e for e in node.ends if e[1] in node.runs]
            heapq.heapify(node.ends)
        self._after_exits(node, t, [JobExit(id=i, exit_code=None, signal=9, time=EPOCH + t)
                                    for i in killed])

    @staticmethod
    def _largest_task(node: _Node) -> _Gang | None:
        """The job of several nodes whose task here uses the most memory (of equals, the newest)."""
        if not node.gangs:
            return None
        return max((g for g, _ in node.gangs.values()), key=lambda g: (g.job.used_mem_mb, g.start, g.id))

    def _requeue(self, job_id: int, t: float) -> None:
        """A killed job's node has acknowledged its exit: wulf puts it back in line."""
        job = self.state.jobs.get(job_id)
        if job is not None and job.state is JobState.QUEUED:
            self.users[job.user].queued += 1
            self.rec.queued += 1
            self._do(self.state.handle(Requeued((job,))), t)

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
        self._want_report(node, t)
        if node.out_on:
            self._out_of_memory(node, t)

    def _report(self, node: _Node, t: float) -> None:
        """The node's agent reports what it measures now: the server takes it as a real agent's (and
        adapts the jobs' allocations)."""
        node.report_at = None
        name = node.spec.name
        server_node = self.state.nodes[name]
        rate = node.rate
        uses = [run.use if run.use is not None and run.rate == rate else self._use(job_id, run, rate)
                for job_id, run in node.runs.items()]
        if node.gangs:  # the tasks of jobs of several nodes here (spinning where they wait: at the node's speed)
            uses += [JobUse(id=i, cpu=g.job.used_cpu * k * rate, mem_mb=g.job.used_mem_mb * k, nprocs=k)
                     for i, (g, k) in node.gangs.items()]
        s = node.spec
        cpu, mem = node.demand * rate + node.outside_cpu() * node.out_rate, node.mem_demand + node.outside_mem()
        sample = NodeSample(
            time=EPOCH + t, load1=node.demand + node.outside_cpu(), cpu_user=cpu / s.cpus,
            cpu_idle=max(0.0, 1 - cpu / s.cpus), cpu_system=0.0, mem_total_mb=s.mem_mb,
            mem_available_mb=max(0.0, s.mem_mb - mem), nprocs=len(uses), used_cpu=cpu, used_mem_mb=mem)
        told = self.state.handle(Reported(name, Report(sample=sample, jobs=uses, clusters=[])))
        self._do(told, t)
        if not self.policy.adaptive:
            return
        # the next report changes something only if this one did (an allocation, a penalty), or while a
        # job's low reports are being counted: then it comes at the next interval
        if any(isinstance(i, CommitSoon) or isinstance(i, Send) and isinstance(i.msg, Renice) for i in told) or \
                any(j.low_samples for j in server_node.jobs.values()):
            self._want_report(node, t, strictly=True)
            return
        settle = self.policy.adapt.settle_seconds
        unsettled = [r.start + settle for i, r in node.runs.items()
                     if (j := server_node.jobs.get(i)) is not None and not j.settled]
        if unsettled:
            self._want_report(node, max(min(unsettled), t), strictly=min(unsettled) <= t)

    @staticmethod
    def _use(job_id: int, run: _Run, rate: float) -> JobUse:
        use = run.use = JobUse(id=job_id, cpu=run.job.used_cpu * rate, mem_mb=run.job.used_mem_mb,
                                               nprocs=1)
        run.rate = rate
        return use
