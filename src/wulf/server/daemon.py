"""The job daemon's state and the loop that feeds the policy and carries out its decisions.

Everything runs on one asyncio loop, so the in-memory state needs no locks. The store is the durable
truth: a submission is answered only after it is committed, and a job is sent to a node only after
its assignment is committed, so that a restarted server never starts a job twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import json
import logging
import os
import secrets
import time
from collections import Counter, defaultdict, deque
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from wulf.auth.identity import Caller
from wulf.config import Config
from wulf.errors import Forbidden, NotFound, Refused, UsageError, WulfError
from wulf.model.job import ACTIVE_STATES, FINAL_STATES, Job, JobState, Origin
from wulf.policy.adapt import penalty_nice
from wulf.policy.constraint import parse_constraint
from wulf.policy.history import History, kind_of
from wulf.policy.limits import occupied_cpu
from wulf.policy.placement import NodePool
from wulf.policy.scheduler import schedule, why_waiting
from wulf.policy.settings import Policy
from wulf.policy.snapshot import QueueView, UserView
from wulf.protocol import (
    Ack,
    Cluster,
    Exited,
    Hello,
    InteractiveReply,
    InteractiveRequest,
    JobExit,
    JobSpec,
    Quit,
    Renice,
    Report,
    Session,
    SessionReady,
    Signal,
    Started,
    StartJob,
    SubmitRequest,
    Welcome,
)
from wulf.server import adaptive, mail
from wulf.server.nodes import AgentLink, Node, NodeState
from wulf.server.queues import DEFAULT_QUEUE, QueueBook, QueueSettings, check_queue_name
from wulf.server.users import groups_of
from wulf.store.base import KEY_TTL, JobStore, Submission

log = logging.getLogger("wulf.server")

#: how many reports in a row an outside process cluster may be missing before its job is over
EXTERNAL_GONE_AFTER = 2
#: how many report intervals (at least SILENT_MIN seconds) an agent may be silent before another agent
#: may take its node's name
SILENT_REPORTS = 4
SILENT_MIN = 15.0
#: a listing of jobs shows this much of each command (the job itself, GET /api/v1/jobs/ID, all of it)
LIST_COMMAND_CHARS = 1000
#: starts for one node go in messages of about this size (an agent takes messages of up to 64 MiB)
START_MESSAGE_BYTES = 16 * 1024 * 1024


def _wire_size(text: str | None) -> int:
    """Bytes ``text`` takes in a JSON message: six at most a character (an escaped control character),
    counted exactly only when that bound is not small enough to tell."""
    return 0 if not text else 6 * len(text)


def _exact_size(text: str | None) -> int:
    return len(json.dumps(text, ensure_ascii=False).encode()) if text else 0


def _by_id(job: Job) -> int:
    return job.id


def start_messages(starts: Sequence[StartJob]) -> Iterator[str]:
    """The Start messages for one node: as few as hold them in about START_MESSAGE_BYTES each (a job
    is at most [limits] job_max_mb, so each message stays under what an agent takes)."""
    head = '{"type":"start","jobs":['
    batch: list[str] = []
    size = 0
    for start in starts:
        text = start.model_dump_json()
        n = len(text) if text.isascii() else len(text.encode())
        if batch and size + n > START_MESSAGE_BYTES:
            yield head + ",".join(batch) + "]}"
            batch, size = [], 0
        batch.append(text)
        size += n + 1
    if batch:
        yield head + ",".join(batch) + "]}"


def program_of(command: str) -> str:
    """What others see of a command line that is not theirs: the program's name, not its arguments."""
    first = command.split(maxsplit=1)[0] if command.strip() else ""
    return first if first.startswith("[") else os.path.basename(first)


def _env_hash(env: dict[str, str]) -> tuple[str, str]:
    text = json.dumps(env, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32], text


class _Waiter:
    def __init__(self, pending: set[int]) -> None:
        self.pending = pending
        self.event = asyncio.Event()


class Daemon:
    def __init__(self, config: Config, store: JobStore) -> None:
        self.config = config
        self.policy = Policy.from_config(config)
        self.store = store
        self.jobs: dict[int, Job] = {}
        self.book = QueueBook()  # users' queues and their waiting jobs
        self.running: Counter[str] = Counter()  # user -> running batch jobs (fair share counts these)
        self.reasons: dict[tuple[str, str], str] = {}  # (user, queue) -> why its next job waits
        self.impossible: dict[int, str] = {}  # job -> why no node can ever run it
        self.held_room: dict[int, str] = {}  # job -> the node where room is kept for it (see policy.scheduler)
        self.nodes: dict[str, Node] = {}
        self.envs: dict[str, dict[str, str]] = {}
        self.history: deque[int] = deque()
        self.kinds: History | None = self.policy.history()  # what ended jobs taught the next of their kind
        self.next_id = 1
        self.started_at = time.time()
        self._wake = asyncio.Event()
        self._sessions: dict[int, asyncio.Future[str]] = {}
        self._dirty: dict[int, Job] = {}  # changed in memory, not yet handed to the store
        self._flush_timer: asyncio.TimerHandle | None = None
        self._waiters: list[_Waiter] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._scheduler: asyncio.Task[None] | None = None
        self._window_timer: asyncio.TimerHandle | None = None
        self._nodes_pool: NodePool | None = None  # kept between passes; nodes in _stale are updated first
        self._stale: set[str] = set()
        self.keys: dict[tuple[int, str], tuple[float, list[int]]] = {}  # (uid, key) -> (expires, ids)
        self._submitting: dict[tuple[int, str], asyncio.Event] = {}  # keys whose submission is under way
        self.down_since: dict[str, float] = {}  # node -> when its agent went away (see _watch_lost)
        self._lost_watch: asyncio.Task[None] | None = None
        self._mailbox: dict[str, list[dict[str, Any]]] = {}  # address -> jobs ended since its last mail

    def reload(self, config: Config) -> None:
        """Take a new configuration (checked first: a bad one raises ConfigError and changes nothing)."""
        policy = Policy.from_config(config)
        old, self.config, self.policy = self.policy, config, policy
        if (old.history_jobs, old.history_min_seconds, old.adaptive) != (
                policy.history_jobs, policy.history_min_seconds, policy.adaptive):
            self.kinds = policy.history()
            self._teach_from_kept()
        self._nodes_pool = None  # rank, features and the observe flag may have changed
        groups_of.cache_clear()
        self.wake()

    # ------------------------------------------------------------------ start and stop

    def load(self) -> None:
        jobs, self.next_id = self.store.load(self.config.server.history)
        for name, state in self.store.node_states().items():
            self._node(name).drained = state == NodeState.DRAIN
        self.book.load(self.store.queues())
        for job in jobs:
            self.jobs[job.id] = job
            if job.state is JobState.QUEUED:
                self.book.add(job)
            elif job.state is JobState.RUNNING:
                node = self._node(job.node)
                node.jobs[job.id] = job
                if job.origin is Origin.EXTERNAL:
                    node.external[job.ext_key] = job.id
                elif job.origin is Origin.BATCH:
                    self.running[job.user] += 1
            elif job.final:
                self.history.append(job.id)
        self._teach_from_kept()
        now = time.time()
        self.keys = self.store.submissions(now)
        for node in self.nodes.values():  # nobody is connected yet
            self.down_since[node.name] = self.started_at
        log.info("loaded %d jobs from the store; next id %d", len(jobs), self.next_id)

    def _teach_from_kept(self) -> None:
        """Let the finished jobs kept in memory teach their kinds, in the order they ended (at the start,
        and when the history's settings change)."""
        if self.kinds is not None:
            ended = [self.jobs[i] for i in self.history if i in self.jobs]
            for job in sorted(ended, key=lambda j: j.ended or 0.0):
                self._taught(job)

    def _taught(self, job: Job) -> None:
        """An ended batch job teaches its kind what it used (see wulf.policy.history)."""
        if self.kinds is None or job.origin is not Origin.BATCH or job.started is None or job.ended is None:
            return
        self.kinds.teach(kind_of(job.user, job.name, job.cpu_req, job.mem_req), job.state is JobState.DONE,
                         job.ended - job.started, job.cpu_time, job.peak_mem_mb)

    def start(self) -> None:
        self._scheduler = asyncio.create_task(self._schedule_loop(), name="wulf-scheduler")
        self._lost_watch = asyncio.create_task(self._watch_lost(), name="wulf-lost-nodes")
        self.wake()

    async def stop(self) -> None:
        if self._scheduler:
            self._scheduler.cancel()
        if self._lost_watch:
            self._lost_watch.cancel()
        for node in self.nodes.values():
            if node.link:
                await node.link.close()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _node(self, name: str) -> Node:
        node = self.nodes.get(name)
        if node is None:
            node = self.nodes[name] = Node(name)
        self._touch(name)
        return node

    def wake(self) -> None:
        """Ask for a scheduling pass soon (many calls before it runs make one pass)."""
        self._wake.set()

    def _ended(self, job_id: int) -> None:
        """A job has reached a final state: tell the waiters that wait for it, and mail if asked."""
        job = self.jobs.get(job_id)
        if job is not None and job.origin is Origin.BATCH:
            self.impossible.pop(job_id, None)
            to = self.book.settings(job.user, job.queue).mail
            if to:
                self._post(to, job)
        for w in self._waiters:
            if job_id in w.pending:
                w.pending.discard(job_id)
                if not w.pending:
                    w.event.set()

    def _post(self, to: str, job: Job) -> None:
        """Mail ``to`` about ``job``, with the others of theirs that end within [mail] digest_seconds."""
        box = self._mailbox.setdefault(to, [])
        box.append(job.public(time.time()))
        if len(box) == 1:
            asyncio.get_running_loop().call_later(self.config.mail.digest_seconds,
                                                  lambda: self._spawn(self._mail(to)))

    async def _mail(self, to: str) -> None:
        jobs = self._mailbox.pop(to, [])
        if not jobs:
            return
        m = self.config.mail
        msg = mail.digest_message(jobs, to, m.sender, self.config.server.listen)
        what = f"job {jobs[0]['id']}" if len(jobs) == 1 else f"{len(jobs)} jobs"
        try:
            await mail.send(m.smtp, msg)
            log.info("mailed %s about %s", to, what)
        except WulfError as e:
            log.warning("could not mail %s about %s: %s", to, what, e)

    # ------------------------------------------------------------------ jobs from clients

    def _new_job(self, spec: JobSpec, caller: Caller, env_hash: str, origin: Origin, now: float,
                 umask: int | None = None) -> Job:
        sched = self.config.scheduler
        cpu = spec.cpu if spec.cpu is not None else sched.default_cpu
        mem = spec.mem_mb if spec.mem_mb is not None else sched.default_mem_mb
        if not spec.cwd.startswith("/"):
            raise UsageError(f"the working directory must be an absolute path, not {spec.cwd!r}")
        if spec.script is None and not spec.command.strip():
            raise UsageError("a job needs a command or a script")
        if spec.script is not None and not spec.script.strip():
            raise UsageError("the script is empty")
        if not (cpu > 0 and mem > 0):
            raise UsageError("cpu and memory requests must be more than zero")
        queue = check_queue_name(spec.queue or DEFAULT_QUEUE)
        constraint = str(parse_constraint(spec.constraint)) if spec.constraint.strip() else ""
        policy = self.policy
        nice = policy.start_nice(spec.nice, origin is Origin.BATCH, caller.admin)
        job = Job(
            id=self.next_id,
            user=caller.user,
            uid=caller.uid,
            gid=caller.gid,
            umask=umask,
            origin=origin,
            state=JobState.QUEUED,
            command=spec.command if spec.script is None else (spec.command or spec.name or "(script)"),
            cwd=spec.cwd,
            name=spec.name,
            queue=queue,
            script=spec.script,
            env_hash=env_hash,
            output=spec.output,
            keep_script=spec.keep_script,
            cpu_req=cpu,
            mem_req=mem,
            cpu=cpu,
            mem_mb=mem,
            submitted=now,
            constraint=constraint,
            time_limit=policy.time.resolve(spec.time_limit),
            cputime_limit=policy.cputime.resolve(spec.cputime_limit),
            mem_limit_mb=policy.mem_limit.resolve(spec.mem_limit_mb),
            nice=nice,
            dialect=spec.dialect,
        )
        self.next_id += 1
        return job

    def _env_rows(self, env: dict[str, str]) -> tuple[str, dict[str, str]]:
        """The environment's hash, and its row for the store unless it is known to be stored already.
        It is known (cached in ``envs``) only once an insert with it has committed: see _remember_env."""
        h, text = _env_hash(env)
        return h, ({} if h in self.envs else {h: text})

    def _remember_env(self, h: str, env: dict[str, str]) -> None:
        """Cache an environment whose row is committed (after its insert, never before: an insert that
        failed would leave later jobs with the same environment stored without it)."""
        self.envs[h] = env

    def _check_sizes(self, jobs: Sequence[JobSpec], env: dict[str, str]) -> None:
        """Refuse a job larger than [limits] job_max_mb as sent to its node (UsageError): what an agent
        cannot take in one message would stall its node."""
        limit_mb = self.config.limits.job_max_mb
        limit = int(limit_mb * 1024 * 1024)
        env_size = sum(_wire_size(k) + _wire_size(v) for k, v in env.items())
        exact_env: int | None = None
        for n, spec in enumerate(jobs, 1):
            texts = (spec.command, spec.script, spec.cwd, spec.output, spec.name)
            if env_size + sum(map(_wire_size, texts)) <= limit:
                continue
            if exact_env is None:
                exact_env = sum(_exact_size(k) + _exact_size(v) for k, v in env.items())
            size = exact_env + sum(map(_exact_size, texts))
            if size > limit:
                which = f"job {n} of {len(jobs)}" if len(jobs) > 1 else "the job"
                raise UsageError(f"{which} takes {size / 1048576:.1f} MB (script, command, environment and paths), "
                                 f"more than the {limit_mb:g} MB this site allows ([limits] job_max_mb): "
                                 f"keep big data in files the job reads")

    def _check_queued(self, caller: Caller, more: int) -> None:
        """Refuse jobs past [limits] max_queued_per_user waiting (queued or held) for one user (root: no limit)."""
        cap = self.config.limits.max_queued_per_user
        if not cap or caller.uid == 0:
            return
        waiting = sum(1 for j in self.jobs.values()
                      if j.uid == caller.uid and (j.state is JobState.QUEUED or j.state is JobState.HELD))
        if waiting + more > cap:
            raise Refused(f"{caller.user} has {waiting} jobs waiting: {more} more would be over the {cap} jobs one "
                          f"user may have waiting ([limits] max_queued_per_user); wait for some to start")

    async def submit(self, req: SubmitRequest, caller: Caller) -> list[int]:
        """Queue the jobs; with an idempotency key, a submission tried again (the same caller and key,
        within KEY_TTL) answers the ids of the first and queues nothing."""
        if not req.key:
            return await self._submit(req, caller, None)
        k = (caller.uid, req.key)
        while (busy := self._submitting.get(k)) is not None:  # the same submission is under way
            await busy.wait()
        now = time.time()
        self._forget_keys(now)
        known = self.keys.get(k)
        if known is not None:
            log.info("submission %r of %s tried again: jobs %s", req.key, caller.user, known[1][:5])
            return list(known[1])
        busy = self._submitting[k] = asyncio.Event()
        try:
            ids = await self._submit(req, caller, Submission(caller.uid, req.key, now + KEY_TTL))
            self.keys[k] = (now + KEY_TTL, ids)
            return ids
        finally:
            del self._submitting[k]
            busy.set()

    def _forget_keys(self, now: float) -> None:
        """Drop expired keys (they were added in the order they expire)."""
        while self.keys:
            k, (expires, _) = next(iter(self.keys.items()))
            if expires >= now:
                break
            del self.keys[k]

    async def _submit(self, req: SubmitRequest, caller: Caller, submission: Submission | None) -> list[int]:
        self._check_sizes(req.jobs, req.env)
        self._check_queued(caller, len(req.jobs))
        now = time.time()
        h, fresh = self._env_rows(req.env)
        first = self.next_id
        try:
            jobs = [self._new_job(spec, caller, h, Origin.BATCH, now, req.umask) for spec in req.jobs]
        except WulfError:
            self.next_id = first  # nothing of a bad batch is kept
            raise
        await self.store.insert(jobs, fresh, submission)
        self._remember_env(h, req.env)
        for job in jobs:
            self.jobs[job.id] = job
            self.book.add(job)
        self.wake()
        return [j.id for j in jobs]

    def get(self, job_id: int) -> Job:
        """One job, from memory or else the store (a read on the caller's thread: see :meth:`fetch`)."""
        job = self.jobs.get(job_id) or self.store.get(job_id)
        if job is None:
            raise NotFound(f"no job {job_id}")
        return job

    async def fetch(self, ids: Sequence[int]) -> list[Job]:
        """The jobs named, in order; those no longer kept in memory are read from the store in a thread,
        all at once, never on the event loop. NotFound names the first that does not exist."""
        missing = [i for i in ids if i not in self.jobs]
        found: dict[int, Job] = {}
        if missing:
            found = await asyncio.to_thread(self._read, missing)
        jobs = []
        for i in ids:
            job = self.jobs.get(i) or found.get(i)
            if job is None:
                raise NotFound(f"no job {i}")
            jobs.append(job)
        return jobs

    def _read(self, ids: Iterable[int]) -> dict[int, Job]:
        """The jobs of these ids that the store has (run in a thread: see :meth:`fetch`)."""
        out = {}
        for i in dict.fromkeys(ids):
            job = self.store.get(i)
            if job is not None:
                out[i] = job
        return out

    async def _owned(self, ids: Sequence[int], caller: Caller, what: str = "") -> list[Job]:
        """The jobs named, checked first (all or nothing): they exist and ``caller`` may act on them
        (their own; administrators: all)."""
        jobs = await self.fetch(ids)
        for job in jobs:
            if job.uid != caller.uid and not caller.admin:
                raise Forbidden(f"job {job.id} belongs to {job.user}, not to {caller.user}: only its owner "
                                f"or an administrator may {what or 'change'} it")
            if what and job.origin is Origin.EXTERNAL and not job.final:
                raise Refused(f"job {job.id} was not started by wulf, so wulf cannot {what} it "
                              f"(it is process {job.pid} on {job.node})")
        return jobs

    async def cancel(self, ids: Sequence[int], caller: Caller) -> dict[str, list[int]]:
        jobs = await self._owned(ids, caller, "cancel")
        cancelled, ended = [], []
        changed: list[Job] = []
        now = time.time()
        signals: dict[str, list[int]] = {}
        for job in jobs:
            if job.final:
                ended.append(job.id)
                continue
            if job.state is JobState.RUNNING:
                signals.setdefault(job.node, []).append(job.id)
                self._detach(job)
            else:
                self.book.remove(job)
            job.set_state(JobState.CANCELLED)
            job.ended = now
            job.reason = f"cancelled by {caller.user}"
            self.history.append(job.id)
            self._ended(job.id)
            changed.append(job)
            cancelled.append(job.id)
        if changed:
            await self._commit(changed)
        for node_name, job_ids in signals.items():
            await self._send(node_name, Signal(ids=job_ids, signal=15))
        if changed:
            self.wake()
        return {"cancelled": cancelled, "already_ended": ended}

    async def signal(self, ids: Sequence[int], signum: int, caller: Caller) -> dict[str, list[int]]:
        jobs = await self._owned(ids, caller, "signal")
        sent, not_running = [], []
        by_node: dict[str, list[int]] = {}
        for job in jobs:
            if job.state is JobState.RUNNING and self.nodes.get(job.node) and self.nodes[job.node].link:
                by_node.setdefault(job.node, []).append(job.id)
                sent.append(job.id)
            else:
                not_running.append(job.id)
        for node, job_ids in by_node.items():
            await self._send(node, Signal(ids=job_ids, signal=signum))
        return {"signalled": sent, "not_running": not_running}

    async def renice(self, ids: Sequence[int], nice: int, caller: Caller) -> dict[str, list[int]]:
        jobs = await self._owned(ids, caller, "renice")
        done, not_running = [], []
        for job in jobs:
            if job.state is not JobState.RUNNING:
                not_running.append(job.id)
                continue
            if nice < job.nice and not caller.admin:
                raise Forbidden(f"job {job.id} is at nice {job.nice}; only an administrator may lower it")
            job.nice = nice
            await self._send(job.node, Renice(id=job.id, nice=penalty_nice(nice, job.penalized, self.policy.adapt)))
            done.append(job.id)
        if done:
            await self._commit([self.jobs[i] for i in done])
        return {"reniced": done, "not_running": not_running}

    async def hold(self, ids: Sequence[int], caller: Caller) -> dict[str, list[int]]:
        """Keep queued jobs from starting until they are released (qhold)."""
        jobs = await self._owned(ids, caller, "hold")
        held, other = [], []
        for job in jobs:
            if job.state is JobState.QUEUED:
                self.book.remove(job)
                job.set_state(JobState.HELD)
                job.reason = f"held by {caller.user} (qrls {job.id} releases it)"
                held.append(job)
            elif job.state is not JobState.HELD:
                other.append(job.id)
        if held:
            await self._commit(held)
        return {"held": [j.id for j in held], "not_queued": other}

    async def release(self, ids: Sequence[int], caller: Caller) -> dict[str, list[int]]:
        """Let held jobs go back in line, in their old places (qrls)."""
        jobs = await self._owned(ids, caller, "release")
        released, other = [], []
        for job in jobs:
            if job.state is JobState.HELD:
                job.set_state(JobState.QUEUED)
                job.reason = ""
                self.book.add(job)
                released.append(job)
            else:
                other.append(job.id)
        if released:
            await self._commit(released)
            self.wake()
        return {"released": [j.id for j in released], "not_held": other}

    def _queue_owner(self, spec: str, caller: Caller) -> tuple[str, str]:
        """(owner, name) of ``QUEUE`` (the caller's own) or ``USER:QUEUE`` (another's: administrators)."""
        owner, _, name = spec.rpartition(":")
        owner = owner or caller.user
        if owner != caller.user and not caller.admin:
            raise Forbidden(f"queue {owner}:{name} belongs to {owner}, not to {caller.user}: only its owner "
                            f"or an administrator may change it")
        return owner, check_queue_name(name)

    async def set_queue(self, spec: str, caller: Caller, **changes: Any) -> dict[str, Any]:
        owner, name = self._queue_owner(spec, caller)
        if changes.get("mail"):
            changes["mail"] = mail.check_domain(mail.validate_address(changes["mail"]), self.config.mail.allowed_domains)
        settings = self.book.change(owner, name, **changes)
        await self.store.set_queue(settings.public())
        self.wake()
        return self._queue_public(settings)

    def _queue_public(self, st: QueueSettings, viewer: Caller | None = None) -> dict[str, Any]:
        d = st.public()
        if viewer is not None and viewer.user != st.user and not viewer.admin:
            d["mail"] = ""  # where its owner gets mail is theirs to know
        q = self.book.queues.get((st.user, st.name))
        d["queued"] = len(q.jobs) if q else 0
        d["running"] = sum(1 for n in self.nodes.values() for j in n.jobs.values()
                           if j.user == st.user and j.queue == st.name and j.origin is Origin.BATCH)
        d["window_open"] = self.policy.windows.open(st.window, time.time())
        d["reason"] = self.reasons.get((st.user, st.name), "")
        return d

    def queues(self, user: str = "", viewer: Caller | None = None) -> list[dict[str, Any]]:
        """The queues (of ``user``); ``viewer`` sees the mail address of their own only (administrators: all)."""
        return [self._queue_public(q.settings, viewer) for (u, _), q in sorted(self.book.queues.items())
                if not user or u == user]

    # ------------------------------------------------------------------ interactive jobs (jr)

    def _touch(self, node: str) -> None:
        """Something of ``node`` changed (jobs, sample, state): the pool must see it anew."""
        self._stale.add(node)

    def _pool(self) -> NodePool:
        """The nodes' room and rank, kept between passes: only the nodes that changed are looked at."""
        features = self.policy.features
        pool = self._nodes_pool
        if pool is None:
            views = (n.view(features.get(n.name, frozenset())) for n in self.nodes.values())
            pool = self._nodes_pool = NodePool(views, self.policy.rank, self.policy.observe, self.policy.rank_adjust())
        else:
            for name in self._stale:
                node = self.nodes.get(name)
                if node is not None:
                    pool.update(node.view(features.get(name, frozenset())))
        self._stale.clear()
        return pool

    def place_now(self, user: str) -> Node:
        """The node a job of ``user`` is to run on now (jr), room or not."""
        pool = self._pool()
        name = pool.best(user)
        if name is None:
            why = pool.possible(0, 0, "", user) if pool.best() is not None else ""
            raise Refused(why or "no node is up to take the job (see `jstat --nodes`)")
        return self.nodes[name]

    async def interactive(self, req: InteractiveRequest, caller: Caller) -> InteractiveReply:
        self._check_sizes([req.job], req.env)
        node = self.place_now(caller.user)
        assert node.link is not None
        h, fresh = self._env_rows(req.env)
        now = time.time()
        job = self._new_job(req.job, caller, h, Origin.INTERACTIVE, now, req.umask)
        job.set_state(JobState.RUNNING)
        job.node = node.name
        await self.store.insert([job], fresh)
        self._remember_env(h, req.env)
        self.jobs[job.id] = job
        node.jobs[job.id] = job
        self._touch(node.name)
        token = secrets.token_urlsafe(24)
        ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._sessions[job.id] = ready
        try:
            await self._send(node.name, Session(job=self._start_job(job), token=token, pty=req.pty))
            error = await asyncio.wait_for(ready, 10.0)
        except TimeoutError:
            error = "the node did not answer in time"
        finally:
            self._sessions.pop(job.id, None)
        if error:
            await self._end(job, JobExit(id=job.id, exit_code=None, time=time.time(), reason=error))
            raise Refused(f"could not start the job on {node.name}: {error}")
        port = node.info.session_port if node.info else 0
        return InteractiveReply(id=job.id, node=node.name, host=node.address, port=port, token=token)

    # ------------------------------------------------------------------ scheduling

    async def _schedule_loop(self) -> None:
        grace = self.config.server.start_grace
        if grace > 0:
            await asyncio.sleep(grace)
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._pass()
            except Exception:  # a bug must not stop scheduling for good
                log.exception("scheduling pass failed")

    async def _pass(self) -> None:
        placed = self._place()
        if placed:
            await self._commit(placed)  # the assignment is durable before any node hears of it
            await self._dispatch(placed)

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
            groups = groups_of(name) if policy.needs_groups else ()
            out[name] = UserView(name, self.running.get(name, 0), occupied[name], policy.user_limit(name, groups),
                                 policy.user_share(name, groups))
        return out

    def _place(self) -> list[Job]:
        """Run the policy and apply its placements in memory (the caller commits, then dispatches)."""
        if not self.book.any_waiting():
            self.reasons.clear()
            if self.held_room:  # give back room kept for jobs that are gone
                self.held_room = {}
                self._nodes_pool = None
            return []
        now = time.time()
        queues = []
        sized = self.kinds.sized if self.kinds is not None else None
        for q in self.book.waiting():
            st = q.settings
            waiting = q.jobs.values()
            queues.append(QueueView(st.user, st.name, waiting if sized is None else map(sized, waiting),
                                    st.priority, st.stopped, st.window))
        users = self._users({q.user for q in queues})
        windows = self.policy.windows
        result = schedule(queues, users, self._pool(), lambda kind: windows.open(kind, now), self.policy.plugin,
                          self.held_room)
        self.reasons = result.reasons
        self.impossible = result.impossible
        self.held_room = result.held
        self._watch_windows(queues, now)
        jobs = []
        for p in result.placements:
            job = self.jobs[p.job_id]
            self.book.remove(job)
            job.set_state(JobState.RUNNING)
            job.node = p.node
            job.cpu, job.mem_mb = p.cpu, p.mem_mb  # what it asked for, or what its kind taught
            job.reason = ""
            self.nodes[p.node].jobs[job.id] = job
            self._touch(p.node)
            self.running[job.user] += 1
            jobs.append(job)
        return jobs

    def _watch_windows(self, queues: list[QueueView], now: float) -> None:
        """Wake up when the window of a waiting queue next opens or closes."""
        kinds = {q.window for q in queues if q.window != "always" and not q.stopped}
        changes = [c for c in (self.policy.windows.next_change(k, now) for k in kinds) if c is not None]
        if self._window_timer is not None:
            self._window_timer.cancel()
            self._window_timer = None
        if changes:
            loop = asyncio.get_running_loop()
            delay = max(0.0, min(changes) - now) + 0.01
            self._window_timer = loop.call_later(delay, self.wake)

    async def _dispatch(self, jobs: list[Job]) -> None:
        by_node: dict[str, list[StartJob]] = {}
        for job in jobs:
            if job.state is JobState.RUNNING:  # not cancelled meanwhile
                by_node.setdefault(job.node, []).append(self._start_job(job))
        for node_name, starts in by_node.items():
            for text in start_messages(starts):
                await self._send_text(node_name, text)

    def _start_job(self, job: Job) -> StartJob:
        env = self.envs.get(job.env_hash)
        if env is None:
            env = self.envs[job.env_hash] = self.store.env(job.env_hash)
        return StartJob(
            id=job.id, name=job.name, user=job.user, uid=job.uid, gid=job.gid, umask=job.umask, queue=job.queue,
            command=job.command, script=job.script, cwd=job.cwd, env=env, output=job.output,
            keep_script=job.keep_script, cpu=job.cpu, mem_mb=job.mem_mb, time_limit=job.time_limit,
            cputime_limit=job.cputime_limit, mem_limit_mb=job.mem_limit_mb,
            nice=penalty_nice(job.nice, job.penalized, self.policy.adapt), dialect=job.dialect,
        )

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
            self._touch(node.name)
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

    async def _send(self, node_name: str, msg: Any) -> None:
        await self._send_text(node_name, msg.model_dump_json())

    async def _send_text(self, node_name: str, text: str) -> None:
        node = self.nodes.get(node_name)
        if node is None or node.link is None:
            return
        try:
            await node.link.send(text)
        except Exception as e:  # the connection is going away; the agent reconciles when it is back
            log.info("could not send to %s: %s", node_name, e)

    # ------------------------------------------------------------------ agents

    async def agent_hello(self, hello: Hello, link: AgentLink) -> Node:
        """A (re)connected agent. Refused (Refused) while another agent is connected under its name and
        still heard from: two agents with one name would take each other's jobs for lost."""
        node = self._node(hello.node.name)
        if node.link is not None:
            silent = time.time() - node.last_seen
            if silent < max(SILENT_MIN, SILENT_REPORTS * self.config.agent.interval):
                log.warning("refused an agent from %s as node %s: another agent is connected as node %s "
                            "(from %s, heard from %.0fs ago)", link.host, node.name, node.name, node.link.host,
                            silent)
                raise Refused(f"another agent is connected as node {node.name[:40]} (from {node.link.host}): "
                              "stop it, or give this one another --name")
            log.warning("node %s connected again; its old connection was silent for %.0fs: dropping it",
                        node.name, silent)
            old, node.link = node.link, None
            await old.close()
        # what the node is to run is settled before anything can be sent to it on the new connection:
        # a job placed there from now on is sent on it, so it is the agent's
        changed, stray, finished = self._reconcile(node, hello)
        node.info = hello.node
        node.link = link
        node.last_seen = time.time()
        self.down_since.pop(node.name, None)
        log.info("node %s is up (%s, %g cpus, %.0f MB)", node.name, link.host, node.info.cpus, node.info.mem_mb)
        await link.send(Welcome(interval=self.config.agent.interval, known=list(node.jobs)).model_dump_json())
        if changed:
            await self._commit(changed)
        if finished:
            await self._exited(node, finished)
        if stray:
            await self._send(node.name, Signal(ids=stray, signal=9))
        self.wake()
        return node

    def _reconcile(self, node: Node, hello: Hello) -> tuple[list[Job], list[int], list[JobExit]]:
        """Agree with a (re)connected agent on what runs there, in memory and at once (no await), so that
        each job is either the agent's (running, or ended, as it reports) or back in line, never both.
        Returns the jobs changed (to commit), the strays to kill and the exits to record."""
        reported = {r.id: r for r in hello.running}
        changed: dict[int, Job] = {}
        stray: list[int] = []
        for r in hello.running:
            job = self.jobs.get(r.id)
            if job is not None and self._adopt(node, job):
                changed[job.id] = job
            if job is None or job.final or job.node != node.name:
                stray.append(r.id)  # cancelled or lost while the agent was away, or not ours any more
            elif job.pid != r.pid:
                job.pid, job.started = r.pid, job.started or r.time
                changed[job.id] = job
        finished: list[JobExit] = []
        for e in hello.finished:
            job = self.jobs.get(e.id)
            if job is not None:
                self._adopt(node, job)
                if job.state is JobState.RUNNING and job.node != node.name:
                    continue  # it runs elsewhere now; this stale exit is not its end
            finished.append(e)
        done = {e.id for e in hello.finished}
        for job in list(node.jobs.values()):
            if job.id in reported or job.id in done or job.origin is Origin.EXTERNAL:
                continue
            if job.started or job.origin is Origin.INTERACTIVE:  # an interactive job cannot wait
                self._record_exit(job, JobExit(id=job.id, exit_code=None, time=time.time(),
                                               reason=f"lost: {node.name} no longer knows this job"))
            else:  # a batch job the node never got goes back in line
                self._detach(job)
                job.set_state(JobState.QUEUED)
                job.node = ""
                job.cpu, job.mem_mb = job.cpu_req, job.mem_req  # a waiting job holds nothing: it asks again
                self.book.add(job)
            changed[job.id] = job
        return list(changed.values()), stray, finished

    def _adopt(self, node: Node, job: Job) -> bool:
        """A waiting batch job that the agent runs (or ran) after all is the agent's: it runs there."""
        if job.state is not JobState.QUEUED or job.origin is not Origin.BATCH:
            return False
        log.warning("job %d, waiting, is run by node %s: it is that node's", job.id, node.name)
        self.book.remove(job)
        job.set_state(JobState.RUNNING)
        job.node = node.name
        node.jobs[job.id] = job
        self._touch(node.name)
        self.running[job.user] += 1
        return True

    async def agent_gone(self, node: Node, link: AgentLink) -> None:
        if node.link is link:
            node.link = None
            self.down_since[node.name] = time.time()
            self._touch(node.name)
            log.warning("node %s is down (its agent disconnected)", node.name)

    # ------------------------------------------------------------------ nodes that do not come back

    async def _watch_lost(self) -> None:
        """End the running jobs of nodes down longer than ``[server] node_lost_after`` (0: never)."""
        while True:
            after = self.config.server.node_lost_after
            await asyncio.sleep(min(15.0, max(0.5, after / 4)) if after > 0 else 15.0)
            if after <= 0:
                continue
            now = time.time()
            for name, since in list(self.down_since.items()):
                node = self.nodes.get(name)
                if node is not None and node.link is None and now - since >= after and node.jobs:
                    try:
                        await self._lose_node(node, since)
                    except WulfError as e:  # the store failed: try again on the next round
                        log.error("could not record the jobs of node %s as lost: %s", name, e.message)

    async def _lose_node(self, node: Node, since: float) -> None:
        """The node has been down too long: its jobs end (failed, lost). Should its agent come back still
        running one, that job is killed (see _reconcile: it is a stray) and its record stays as is."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since))
        reason = f"lost: node {node.name} down since {stamp}"
        changed = []
        now = time.time()
        for job in list(node.jobs.values()):
            if job.origin is Origin.EXTERNAL:
                node.external.pop(job.ext_key, None)
                self._detach(job)
                job.set_state(JobState.DONE)
                job.ended = now
                self.history.append(job.id)
                self._ended(job.id)
            elif job.state is JobState.RUNNING:
                self._record_exit(job, JobExit(id=job.id, exit_code=None, time=now, reason=reason))
            changed.append(job)
        log.warning("node %s has been down since %s: %d jobs there are lost", node.name, stamp, len(changed))
        if changed:
            await self._commit(changed)
        self.wake()

    async def agent_message(self, node: Node, msg: Any) -> None:
        node.last_seen = time.time()
        if isinstance(msg, Report):
            self._report(node, msg)
        elif isinstance(msg, Started):
            self._started(node, msg)
        elif isinstance(msg, Exited):
            await self._exited(node, msg.jobs)
        elif isinstance(msg, SessionReady):
            fut = self._sessions.get(msg.id)
            if fut is not None and not fut.done():
                fut.set_result(msg.error)
        else:
            log.warning("unexpected message from %s: %s", node.name, type(msg).__name__)

    def _started(self, node: Node, msg: Started) -> None:
        """Note pids and start times; they are committed with the next write (soon: see _lazy_flush)."""
        for s in msg.jobs:
            job = self.jobs.get(s.id)
            if job is not None and job.state is JobState.RUNNING:
                job.pid = s.pid
                job.started = s.time
                self._dirty[job.id] = job
        if self._dirty and self._flush_timer is None:
            self._flush_timer = asyncio.get_running_loop().call_later(0.05, self._lazy_flush)

    def _lazy_flush(self) -> None:
        self._flush_timer = None
        if self._dirty:
            self._commit([])

    def _commit(self, jobs: list[Job]) -> asyncio.Future[None]:
        """Write these jobs, and whatever changed in passing (pids, start times), in one transaction."""
        if self._dirty:
            extra = [j for j in self._dirty.values() if j not in jobs]
            self._dirty.clear()
            jobs = jobs + extra
        return self.store.update(jobs)

    async def _exited(self, node: Node, exits: Sequence[JobExit]) -> None:
        """Record exits, and place jobs in the room they leave: one commit for both."""
        ended = []
        missing = [e.id for e in exits if e.id not in self.jobs]
        stored = await asyncio.to_thread(self._read, missing) if missing else {}
        for e in exits:
            job = self.jobs.get(e.id) or stored.get(e.id)
            if job is None:
                continue
            self._record_exit(job, e)
            ended.append(job)
        placed = self._place()
        if ended or placed:
            await self._commit(ended + placed)
        if placed:  # the next jobs first: the agent starts them before it takes the ack
            await self._dispatch(placed)
        await self._send(node.name, Ack(ids=[e.id for e in exits]))
        self._forget_old()

    def _record_exit(self, job: Job, e: JobExit) -> None:
        ran = job.state is JobState.RUNNING
        if ran:
            self._detach(job)
            if e.exit_code == 0 and e.signal is None and not e.reason:
                job.set_state(JobState.DONE)
            else:
                job.set_state(JobState.FAILED)
            job.reason = e.reason
            self.history.append(job.id)
            self._ended(job.id)
        job.ended = job.ended or e.time
        job.exit_code = e.exit_code
        job.signal = e.signal
        job.cpu_time = e.cpu_time
        job.peak_mem_mb = e.peak_mem_mb
        job.started = job.started or e.time
        if ran:
            self._taught(job)

    async def _end(self, job: Job, e: JobExit) -> None:
        self._record_exit(job, e)
        await self._commit([job])
        self.wake()

    def _report(self, node: Node, report: Report) -> None:
        node.sample = report.sample
        self._touch(node.name)
        for use in report.jobs:
            job = node.jobs.get(use.id)
            if job is not None:
                job.cpu_used, job.mem_used = use.cpu, use.mem_mb
        self._external(node, report.clusters, report.sample.time)
        self._adapt(node, report.sample.time)
        if self.book.any_waiting():
            self.wake()

    def _adapt(self, node: Node, now: float) -> None:
        """Adaptive allocation of the node's batch jobs; renice those that take others' room."""
        features = self.policy.features.get(node.name, frozenset())
        changed, renice = adaptive.adapt_node(node, node.view(features), now, self.policy)
        for job in changed:
            self._dirty[job.id] = job
        for job_id, nice in renice:
            self._spawn(self._send(node.name, Renice(id=job_id, nice=nice)))
        if changed and self._flush_timer is None:
            self._flush_timer = asyncio.get_running_loop().call_later(0.05, self._lazy_flush)

    def _external(self, node: Node, clusters: Sequence[Cluster], now: float) -> None:
        """Outside work becomes jobs of origin external while it lasts, so it counts and shows."""
        new: list[Job] = []
        changed: list[Job] = []
        seen = set()
        for c in clusters:
            seen.add(c.key)
            job_id = node.external.get(c.key)
            job = self.jobs.get(job_id) if job_id is not None else None
            if job is None:
                job = Job(id=self.next_id, user=c.user, uid=c.uid, origin=Origin.EXTERNAL,
                          state=JobState.RUNNING, command=c.command, node=node.name, pid=c.pid,
                          submitted=c.started, started=c.started, cpu_req=0.0, mem_req=0.0,
                          ext_key=c.key)
                self.next_id += 1
                self.jobs[job.id] = job
                node.external[c.key] = job.id
                node.jobs[job.id] = job
                new.append(job)
            node.missing.pop(c.key, None)
            job.cpu = job.cpu_used = c.cpu
            job.mem_mb = job.mem_used = c.mem_mb
        for key in list(node.external):
            if key in seen:
                continue
            node.missing[key] = node.missing.get(key, 0) + 1
            if node.missing[key] >= EXTERNAL_GONE_AFTER:
                del node.missing[key]
                job = self.jobs.get(node.external.pop(key))
                if job is not None and job.state is JobState.RUNNING:
                    self._detach(job)
                    job.set_state(JobState.DONE)
                    job.ended = now
                    job.cpu_used = job.mem_used = 0.0
                    self.history.append(job.id)
                    self._ended(job.id)
                    changed.append(job)
        if new:
            self.store.insert(new, {})
        if changed:
            self._commit(changed)

    # ------------------------------------------------------------------ queries

    def _select(self, user: str = "", queue: str = "", all_jobs: bool = False) -> list[Job]:
        qu, _, qn = queue.rpartition(":") if ":" in queue else ("", "", queue)
        out = []
        for job in self.jobs.values():
            if not all_jobs and job.state not in ACTIVE_STATES:
                continue
            if user and job.user != user:
                continue
            if qn and (job.queue != qn or (qu and job.user != qu)):
                continue
            out.append(job)
        return out

    def status(self, user: str = "", queue: str = "", all_jobs: bool = False, brief: bool = False,
               viewer: Caller | None = None, after: int = 0, limit: int = 0) -> dict[str, Any]:
        """Nodes and one page of jobs as the API shows them, by id: the first ``limit`` (at most [server]
        jobs_per_page) after the id ``after``; ``next`` is the ``after`` of the next page, None at the
        end. ``brief``: the jobs' listing fields only (see Job.brief). Commands are cut to
        LIST_COMMAND_CHARS, and ``viewer`` sees only the program of others' outside work."""
        now = time.time()
        page = self.config.server.jobs_per_page
        limit = min(limit, page) if limit > 0 else page
        chosen = [j for j in self._select(user, queue, all_jobs) if j.id > after]
        more = len(chosen) > limit
        chosen = heapq.nsmallest(limit, chosen, key=_by_id) if more else sorted(chosen, key=_by_id)
        up = any(n.state is NodeState.UP for n in self.nodes.values())
        jobs = []
        for job in chosen:
            d = self._listed(job, job.brief(now) if brief else job.public(now), viewer)
            if job.state is JobState.QUEUED:
                d["reason"] = self._why_waiting(job, up)
            jobs.append(d)
        return {
            "server": {"time": now, "started": self.started_at, "next_id": self.next_id},
            "nodes": self.nodes_public(),
            "jobs": jobs,
            "next": chosen[-1].id if more else None,
        }

    def shown(self, job: Job, viewer: Caller | None) -> dict[str, Any]:
        """One job as ``viewer`` may see it (GET /api/v1/jobs/ID): all of it, but only the program of
        another user's outside work (its command line may hold what is not for everyone)."""
        d = job.public(time.time())
        if viewer is not None and job.origin is Origin.EXTERNAL and job.uid != viewer.uid and not viewer.admin:
            d["command"] = program_of(job.command)
        return d

    @staticmethod
    def _listed(job: Job, d: dict[str, Any], viewer: Caller | None) -> dict[str, Any]:
        command = job.command
        if viewer is not None and job.origin is Origin.EXTERNAL and job.uid != viewer.uid and not viewer.admin:
            command = program_of(command)
        d["command"] = command if len(command) <= LIST_COMMAND_CHARS else command[:LIST_COMMAND_CHARS] + "…"
        return d

    def nodes_public(self) -> list[dict[str, Any]]:
        """The nodes as the API shows them, by name."""
        return [n.public(self.policy.features.get(n.name, frozenset()))
                for n in sorted(self.nodes.values(), key=lambda n: n.name)]

    def page_view(self, max_waiting: int, viewer: Caller | None = None) -> dict[str, Any]:
        """What the web page shows, in one pass over the jobs: the nodes; the running jobs and the first
        ``max_waiting`` waiting ones (earliest first; ``waiting_not_listed`` counts the rest), as
        listed (Job.brief); and per user, jobs running and the cpus they hold, jobs queued and held."""
        now = time.time()
        up = any(n.state is NodeState.UP for n in self.nodes.values())
        jobs = []
        users: dict[str, dict[str, Any]] = {}
        waiting = 0
        for job in self.jobs.values():
            state = job.state
            if state not in ACTIVE_STATES:
                continue
            u = users.get(job.user)
            if u is None:
                u = users[job.user] = {"user": job.user, "running": 0, "cpus": 0.0, "queued": 0, "held": 0}
            if state is JobState.RUNNING:
                u["running"] += 1
                u["cpus"] += job.cpu
            else:
                u["queued" if state is JobState.QUEUED else "held"] += 1
                waiting += 1
                if waiting > max_waiting:
                    continue
            d = self._listed(job, job.brief(now), viewer)
            if state is JobState.QUEUED:
                d["reason"] = self._why_waiting(job, up)
            jobs.append(d)
        return {"server": {"time": now}, "nodes": self.nodes_public(), "jobs": jobs,
                "waiting_not_listed": max(0, waiting - max_waiting), "users": [users[n] for n in sorted(users)]}

    def _why_waiting(self, job: Job, up: bool) -> str:
        q = self.book.queues.get((job.user, job.queue))
        kept = self.held_room.get(job.id)
        # (what it needs shows only where room is kept for it: only then is it looked up)
        waiting = self.kinds.sized(job) if kept and self.kinds is not None else job
        return why_waiting(waiting, self.reasons.get((job.user, job.queue), ""), kept, self.impossible.get(job.id),
                           next(iter(q.jobs), None) if q is not None else None, up)

    async def _wait_set(self, ids: Sequence[int], queues: Sequence[str], user: str) -> list[Job]:
        jobs = await self.fetch(ids)
        for q in queues:
            owner, _, name = q.rpartition(":")
            jobs.extend(self._select(owner or user, name))
        if not ids and not queues:
            jobs = [j for j in self._select(user) if j.origin is Origin.BATCH]
        return jobs

    async def wait(self, ids: Sequence[int], queues: Sequence[str], user: str, timeout: float) -> dict[str, Any]:
        """Answer when every job in the set has ended, or when ``timeout`` has passed."""
        jobs = await self._wait_set(ids, queues, user)
        waiter = _Waiter({j.id for j in jobs if j.state not in FINAL_STATES})
        if waiter.pending and timeout > 0:
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter.event.wait(), timeout)
            except TimeoutError:
                pass
            finally:
                self._waiters.remove(waiter)
        jobs = [self.jobs.get(j.id, j) for j in jobs]
        counts = Counter(str(j.state) for j in jobs)
        return {
            "done": not waiter.pending,
            "jobs": [{"id": j.id, "state": str(j.state), "exit_code": j.exit_code} for j in jobs],
            "counts": dict(counts),
        }

    # ------------------------------------------------------------------ administration

    async def drain(self, name: str, drained: bool) -> None:
        node = self.nodes.get(name)
        if node is None:
            raise NotFound(f"no node {name}")
        node.drained = drained
        self._touch(name)
        await self.store.set_node_state(name, NodeState.DRAIN if drained else NodeState.UP)
        self.wake()

    async def quit_node(self, name: str) -> None:
        node = self.nodes.get(name)
        if node is None:
            raise NotFound(f"no node {name}")
        if node.link is None:
            raise Refused(f"node {name} is already down")
        await self._send(name, Quit())

    async def quit_all(self) -> None:
        for name in list(self.nodes):
            await self._send(name, Quit())
