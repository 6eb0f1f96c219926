"""The job daemon: the asyncio shell around the server's state machine (wulf.server.state).

It turns API calls and agents' messages into events, and carries out the instructions the state
machine returns, in their order, against the store and the agents; it keeps what is really I/O (the
store, the agents' connections, waiters, mail, timers). Everything runs on one asyncio loop, so the
in-memory state needs no locks. The store is the durable truth: a submission is answered only after
it is committed, and a job is sent to a node only after its assignment is committed, so that a
restarted server never starts a job twice.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from wulf import cycletrace
from wulf.auth.identity import Caller
from wulf.config import Config
from wulf.errors import Forbidden, NotFound, Refused, UsageError, WulfError
from wulf.model import checkpoint, depend
from wulf.model.array import ArraySpec, parse_array
from wulf.model.job import FINAL_STATES, WAITING_STATES, Job, JobState, Origin
from wulf.policy.adapt import penalty_nice
from wulf.policy.history import History
from wulf.policy.settings import Policy
from wulf.protocol import (
    Exited,
    Hello,
    InteractiveReply,
    InteractiveRequest,
    JobExit,
    JobSpec,
    LaunchedTask,
    LaunchReply,
    LaunchRequest,
    Output,
    Quit,
    Ran,
    ReadOutput,
    Report,
    RunAllRequest,
    Session,
    SessionReady,
    Signal,
    Started,
    StartJob,
    SubmitRequest,
    Welcome,
)
from wulf.server import accounting, intake, jobmail, launch, mail, output, runall, views
from wulf.server.events import (
    CancelRequested,
    Drained,
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
from wulf.server.metrics import Metrics
from wulf.server.modify import WAITING_ONLY
from wulf.server.nodes import AgentLink, Node, NodeState
from wulf.server.queues import QueueBook, check_queue_name
from wulf.server.state import ServerState
from wulf.server.users import groups_of
from wulf.store.base import KEY_TTL, ArrayRow, JobStore, Submission

log = logging.getLogger("wulf.server")

#: how many report intervals (at least SILENT_MIN seconds) an agent may be silent before another agent
#: may take its node's name
SILENT_REPORTS = 4
SILENT_MIN = 15.0
#: starts for one node go in messages of about this size (an agent takes messages of up to 64 MiB)
START_MESSAGE_BYTES = 16 * 1024 * 1024
STALL_RETRY = 1.0  # seconds between attempts to write what waits for a store that could not write


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


class _Waiter:
    def __init__(self, pending: set[int]) -> None:
        self.pending = pending
        self.event = asyncio.Event()


class Daemon:
    def __init__(self, config: Config, store: JobStore) -> None:
        self.config = config
        self.store = store
        self.state = ServerState(config, groups_of)
        self.envs: dict[str, dict[str, str]] = {}
        self.started_at = time.time()
        self.leader: dict[str, Any] | None = None  # this server, when it leads others that stand by (PostgreSQL)
        self._wake = asyncio.Event()
        self._sessions: dict[int, asyncio.Future[str]] = {}
        self._task_sessions: dict[tuple[int, int], asyncio.Future[str]] = {}  # (job, session) -> its agent's answer
        self._task_serial = itertools.count(1)  # each task's session: concurrent launches (wulf-rsh) never clash
        #: derives each job's launch key (see wulf.server.launch); the server's main gives the cluster key's
        self.launch_secret = secrets.token_bytes(32)
        self._dirty: dict[int, Job] = {}  # changed in memory, not yet handed to the store
        self._flush_timer: asyncio.TimerHandle | None = None
        self._runs = runall.RunAll(self._send_text)
        self.metrics = Metrics(self.state)
        self._stalled: list[list[Instruction]] = []  # instructions waiting for the store to write again
        self._unstaller: asyncio.Task[None] | None = None
        self._waiters: list[_Waiter] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._scheduler: asyncio.Task[None] | None = None
        self._window_timer: asyncio.TimerHandle | None = None
        self.keys: dict[tuple[int, str], tuple[float, list[int]]] = {}  # (uid, key) -> (expires, ids)
        self._submitting: dict[tuple[int, str], asyncio.Event] = {}  # keys whose submission is under way
        self._lost_watch: asyncio.Task[None] | None = None
        self._pruner: asyncio.Task[None] | None = None
        self._mailbox: dict[str, list[dict[str, Any]]] = {}  # address -> jobs ended since its last mail
        self._reads = output.OutputReads()  # reads of jobs' output (jtail) waiting for their agents
        self._mailing = asyncio.Semaphore(4)  # jobs' own mails being sent (see _mail_job)

    # what the state machine keeps, as the API and the tests read it
    @property
    def jobs(self) -> dict[int, Job]:
        return self.state.jobs

    @property
    def nodes(self) -> dict[str, Node]:
        return self.state.nodes

    @property
    def book(self) -> QueueBook:
        return self.state.book

    @property
    def policy(self) -> Policy:
        return self.state.policy

    @property
    def kinds(self) -> History | None:
        return self.state.kinds

    @property
    def next_id(self) -> int:
        return self.state.next_id

    def reload(self, config: Config) -> None:
        """Take a new configuration (checked first: a bad one raises ConfigError and changes nothing)."""
        self.state.reload(config)
        self.config = config
        groups_of.cache_clear()
        self.wake()

    # ------------------------------------------------------------------ start and stop

    def load(self) -> None:
        jobs, next_id = self.store.load(self.config.server.history)
        jobs += self._named_ended(jobs)
        self.state.restore(jobs, next_id, self.store.node_states(), self.store.queues(), self.started_at,
                           self.store.arrays())
        self.keys = self.store.submissions(time.time())
        log.info("loaded %d jobs from the store; next id %d", len(jobs), next_id)

    def _named_ended(self, jobs: list[Job]) -> list[Job]:
        """The ended jobs that waiting dependents name and that the store did not load (older than the
        history kept in memory): their dependents are decided from them (see ServerState.settle)."""
        have = {j.id for j in jobs}
        named = {i for j in jobs if j.depend and not j.final for i in depend.ids_of(depend.parse(j.depend))}
        return list(self._read(sorted(named - have)).values())

    def start(self) -> None:
        settled = self.state.settle(time.time())
        if settled:
            self._spawn(self._apply_unwaited(settled))
        self._scheduler = asyncio.create_task(self._schedule_loop(), name="wulf-scheduler")
        self._lost_watch = asyncio.create_task(self._watch_lost(), name="wulf-lost-nodes")
        self._pruner = asyncio.create_task(accounting.keep_pruning(self.store, lambda: self.config),
                                           name="wulf-prune-ended")  # [server] keep_days
        self.wake()

    async def stop(self) -> None:
        if self._scheduler:
            self._scheduler.cancel()
        if self._lost_watch:
            self._lost_watch.cancel()
        if self._pruner:
            self._pruner.cancel()
        for node in self.nodes.values():
            if node.link:
                await node.link.close()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def wake(self) -> None:
        """Ask for a scheduling pass soon (many calls before it runs make one pass)."""
        self._wake.set()

    # ------------------------------------------------------------------ carrying out instructions

    async def _apply(self, todo: Iterable[Instruction]) -> None:
        """Carry out the state machine's instructions in their order, each awaited before the next (a
        commit is durable before the starts and acknowledgements that follow it).

        When the store cannot write for now (its disk is full), the commit and everything after it wait,
        in order, and are tried again until the store writes (see :meth:`_retry_stalled`): what the
        state machine decided in memory is neither lost nor carried out before it is recorded. The
        caller still gets the error (a client is told the disk is full)."""
        rest, error = await self._carry_out(list(todo))
        if error is not None:
            self._stall(rest)
            raise error

    async def _carry_out(self, todo: list[Instruction]) -> tuple[list[Instruction], WulfError | None]:
        """Carry out ``todo``; on a commit the store cannot make for now, return it with what follows it
        (not done) and the error."""
        for i, ins in enumerate(todo):
            if type(ins) is JobEnded:  # the most frequent (one a job)
                self._ended(ins.job)
            elif isinstance(ins, Commit):
                step = ins
                try:
                    if ins.new:
                        await self.store.insert(ins.new, {})
                        step = Commit(ins.jobs, arrays=ins.arrays)  # inserted: what is left to do
                    if ins.jobs or ins.arrays:
                        await self._commit(list(ins.jobs), ins.arrays)
                        cycletrace.mark("committed", (j.id for j in ins.jobs))
                except WulfError as e:
                    if not e.retryable:
                        raise
                    return [step, *todo[i + 1:]], e
            elif isinstance(ins, StartJobs):
                await self._dispatch(ins)
            elif isinstance(ins, Send):
                await self._send(ins.node, ins.msg)
            elif isinstance(ins, RecordExits):
                await self._exited(ins.node, ins.exits)
            elif isinstance(ins, Requeue):  # after the ack of the exit that failed them
                await self._apply(self.state.handle(Requeued(ins.jobs)))
            else:
                self._note(ins)
        return [], None

    def _stall(self, todo: list[Instruction]) -> None:
        self._stalled.append(todo)
        if self._unstaller is None:
            self._unstaller = asyncio.create_task(self._retry_stalled(), name="wulf-stalled")
            log.error("the store cannot write: jobs placed, ended or changed are kept in memory and "
                      "recorded (then started) once it can")

    async def _retry_stalled(self) -> None:
        """Try the stalled instructions again, oldest first, every ``STALL_RETRY`` seconds, until all
        are done."""
        try:
            while self._stalled:
                await asyncio.sleep(STALL_RETRY)
                while self._stalled:
                    try:
                        rest, error = await self._carry_out(self._stalled[0])
                    except WulfError as e:  # not for now: this write can never be made (said once, dropped)
                        log.error("dropped what waited for the store: %s", e.message)
                        self._stalled.pop(0)
                        continue
                    if error is not None:
                        self._stalled[0] = rest
                        break
                    self._stalled.pop(0)
            log.info("the store writes again: what waited is recorded and carried out")
        finally:
            self._unstaller = None

    async def _apply_unwaited(self, todo: list[Instruction]) -> None:
        """:meth:`_apply` in a task nobody awaits: a store that cannot write for now has kept what is left
        (see _stall), and says so in the log once; nothing more to tell anyone."""
        try:
            await self._apply(todo)
        except WulfError as e:
            if not e.retryable:
                log.error("%s", e.message)

    def _apply_soon(self, todo: Iterable[Instruction]) -> None:
        """Carry out instructions without waiting for them (a node's reports: the store applies writes
        in the order they are handed to it; sends go on their own)."""
        for ins in todo:
            if isinstance(ins, Commit):
                if ins.new:
                    self.store.insert(ins.new, {})
                if ins.jobs or ins.arrays:
                    self._commit(list(ins.jobs), ins.arrays)
            elif isinstance(ins, Send):
                self._spawn(self._send(ins.node, ins.msg))
            elif isinstance(ins, StartJobs | RecordExits | Requeue):
                self._spawn(self._apply_unwaited([ins]))
            else:
                self._note(ins)

    def _note(self, ins: Instruction) -> None:
        """The instructions done at once, in memory or by a timer."""
        if isinstance(ins, JobEnded):
            self._ended(ins.job)
        elif isinstance(ins, Wake):
            self.wake()
        elif isinstance(ins, CommitSoon):
            for job in ins.jobs:
                self._dirty[job.id] = job
            if self._flush_timer is None:
                self._flush_timer = asyncio.get_running_loop().call_later(0.05, self._lazy_flush)
        elif isinstance(ins, Mail):
            if ins.kind == "queue":
                self._post(ins.to, ins.job)
            else:
                self._spawn(self._mail_job(ins))
        elif isinstance(ins, WakeAt):
            self._wake_at(ins.at)
        elif isinstance(ins, Log):
            log.log(ins.level, "%s", ins.text)

    def _ended(self, job: Job) -> None:
        """A job has reached a final state: count it; tell the waiters that wait for it."""
        self.metrics.ended_one(job.state, job.origin)
        if not self._waiters:
            return
        for w in self._waiters:
            if job.id in w.pending:
                w.pending.discard(job.id)
                if not w.pending:
                    w.event.set()

    def _wake_at(self, at: float | None) -> None:
        """Wake up when the window of a waiting queue next opens or closes."""
        if self._window_timer is not None:
            self._window_timer.cancel()
            self._window_timer = None
        if at is not None:
            delay = max(0.0, at - time.time()) + 0.01
            self._window_timer = asyncio.get_running_loop().call_later(delay, self.wake)

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

    async def _mail_job(self, ins: Mail) -> None:
        """The mail a job's owner asked for about it (see wulf.server.jobmail), on its own."""
        m = self.config.mail
        msg = jobmail.message(ins.kind, ins.job.public(time.time()), ins.to, m.sender, self.config.server.listen)
        try:
            async with self._mailing:  # a few at once: a burst of ends must not take every worker thread
                await mail.send(m.smtp, msg)
            log.info("mailed %s: job %d %s", ins.to, ins.job.id, ins.kind)
        except WulfError as e:
            log.warning("could not mail %s about job %d (%s): %s", ins.to, ins.job.id, ins.kind, e)

    # ------------------------------------------------------------------ jobs from clients

    def _new_job(self, spec: JobSpec, caller: Caller, env_hash: str, origin: Origin, now: float,
                 umask: int | None = None, env: dict[str, str] | None = None) -> Job:
        return intake.new_job(self.state.new_id(), spec, caller, env_hash, origin, now, self.config, self.policy,
                              umask, env)

    def _env_rows(self, env: dict[str, str]) -> tuple[str, dict[str, str]]:
        """The environment's hash, and its row for the store unless it is known to be stored already.
        It is known (cached in ``envs``) only once an insert with it has committed: see _remember_env."""
        h, text = intake.env_hash(env)
        return h, ({} if h in self.envs else {h: text})

    def _remember_env(self, h: str, env: dict[str, str]) -> None:
        """Cache an environment whose row is committed (after its insert, never before: an insert that
        failed would leave later jobs with the same environment stored without it)."""
        self.envs[h] = env

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
        """Queue the jobs; a job with an array spec is an array (its tasks are jobs: see intake.new_tasks),
        answered by its id."""
        intake.check_sizes(req.jobs, req.env, self.config.limits.job_max_mb)
        specs = [parse_array(spec.array) if spec.array else None for spec in req.jobs]  # all checked first
        more = sum(1 if a is None else a.count for a in specs)
        intake.check_queued(self.jobs.values(), caller, more, self.config.limits.max_queued_per_user)
        known = await self._named_in(req.jobs)  # (before ids are taken: reading the store lets others run)
        now = time.time()
        h, fresh = self._env_rows(req.env)
        first = self.state.next_id
        jobs: list[Job] = []  # what is stored (of an array, its first task)
        arrays: list[tuple[Job, ArraySpec]] = []
        rows: list[ArrayRow] = []
        try:
            for spec, array in zip(req.jobs, specs, strict=True):
                job = self._new_job(spec, caller, h, Origin.BATCH, now, req.umask, req.env)
                jobs.append(job)
                if array is not None:
                    self.state.next_id = job.id + array.count
                    job.array_id, job.array_index = job.id, array.first
                    arrays.append((job, array))
                    rows.append(ArrayRow(job.id, array.text(), job.script, array.indices[1:]))
            self._check_dependencies(jobs, known)
        except WulfError:
            self.state.next_id = first  # nothing of a bad batch is kept
            raise
        written = self.store.insert(jobs, fresh, submission, rows)
        # the other tasks are made while the store writes them (its thread copies the first's row)
        tasks = {job.id: intake.new_tasks(job, array) for job, array in arrays}
        await written
        self._remember_env(h, req.env)
        queued = [t for j in jobs for t in tasks.get(j.id, (j,))]
        self.metrics.submitted.inc(len(queued))
        await self._apply(self.state.handle(Submitted(tuple(queued), tuple((j.id, a) for j, a in arrays), known)))
        return [j.id for j in jobs]

    async def _named_in(self, specs: Sequence[JobSpec]) -> dict[int, Job]:
        """The jobs the specs' dependencies name that are no longer in memory, read from the store off the
        loop (a dependency that cannot be read is refused by _check_dependencies)."""
        named: set[int] = set()
        for spec in specs:
            if spec.depend:
                try:
                    named.update(depend.ids_of(depend.parse(spec.depend)))
                except WulfError:
                    continue  # said when the jobs are checked
        missing = [i for i in named if i not in self.jobs]
        return await asyncio.to_thread(self._read, missing) if missing else {}

    def _check_dependencies(self, jobs: Sequence[Job], known: dict[int, Job]) -> None:
        """UsageError for unknown jobs and cycles (the cycles first), nothing queued."""
        if any(j.depend for j in jobs):
            intake.check_dependencies(jobs, lambda i: i in self.jobs or i in known)

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

    def resolve(self, refs: Sequence[int | str]) -> list[int]:
        """The ids of the jobs that ``refs`` name: an array's id names all its tasks, ``"ID[i]"`` one
        (UsageError: no such task)."""
        if not self.state.arrays.arrays and all(isinstance(r, int) for r in refs):
            return [r for r in refs if isinstance(r, int)]
        return list(self.state.arrays.resolve(refs))

    def _whole_arrays(self, refs: Sequence[int | str]) -> set[int]:
        """The ids of the tasks that ``refs`` name through their array's id (all of them)."""
        out: set[int] = set()
        for ref in refs:
            if isinstance(ref, str) and not ref.isdigit():
                continue
            rec = self.state.arrays.arrays.get(int(ref))
            if rec is not None:
                out.update(rec.task_ids())
        return out

    async def _owned(self, ids: Sequence[int | str], caller: Caller, what: str = "") -> list[Job]:
        """The jobs named (see :meth:`resolve`), checked first (all or nothing): they exist and ``caller``
        may act on them (their own; administrators: all)."""
        jobs = await self.fetch(self.resolve(ids))
        self._may_act(jobs, caller, what)
        return jobs

    @staticmethod
    def _may_act(jobs: Sequence[Job], caller: Caller, what: str) -> None:
        """Forbidden unless ``caller`` owns the jobs (or is an administrator); Refused for outside work."""
        for job in jobs:
            if job.uid != caller.uid and not caller.admin:
                raise Forbidden(f"job {job.id} belongs to {job.user}, not to {caller.user}: only its owner "
                                f"or an administrator may {what or 'change'} it")
            if what and job.origin is Origin.EXTERNAL and not job.final:
                raise Refused(f"job {job.id} was not started by wulf, so wulf cannot {what} it "
                              f"(it is process {job.pid} on {job.node})")

    async def cancel(self, ids: Sequence[int | str], caller: Caller) -> dict[str, list[int]]:
        jobs = await self._owned(ids, caller, "cancel")
        cancelled: dict[int, None] = {}
        ended = []
        for job in jobs:
            if job.final or job.id in cancelled:
                ended.append(job.id)
            else:
                cancelled[job.id] = None
        await self._apply(self.state.handle(CancelRequested(tuple(jobs), caller.user, time.time())))
        return {"cancelled": list(cancelled), "already_ended": ended}

    async def signal(self, ids: Sequence[int | str], signum: int, caller: Caller) -> dict[str, list[int]]:
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

    async def renice(self, ids: Sequence[int | str], nice: int, caller: Caller) -> dict[str, list[int]]:
        """Renice running jobs (all or none: lowering a job's niceness is for administrators)."""
        jobs = await self._owned(ids, caller, "renice")
        done, not_running = [], []
        for job in jobs:
            if job.state is not JobState.RUNNING:
                not_running.append(job.id)
                continue
            if nice < job.nice and not caller.admin:
                raise Forbidden(f"job {job.id} is at nice {job.nice}; only an administrator may lower it")
            done.append(job.id)
        await self._apply(self.state.handle(ReniceRequested(tuple(jobs), nice)))
        return {"reniced": done, "not_running": not_running}

    async def hold(self, ids: Sequence[int | str], caller: Caller) -> dict[str, list[int]]:
        """Keep queued jobs from starting until they are released (qhold)."""
        jobs = await self._owned(ids, caller, "hold")
        held = list(dict.fromkeys(j.id for j in jobs if j.state is JobState.QUEUED))
        whole = self._whole_arrays(ids)  # an array's tasks that run or ended are not worth a word
        other = [j.id for j in jobs if j.state is not JobState.QUEUED and j.state is not JobState.HELD
                 and j.id not in whole]
        await self._apply(self.state.handle(HoldRequested(tuple(jobs), caller.user)))
        return {"held": held, "not_queued": other}

    async def release(self, ids: Sequence[int | str], caller: Caller) -> dict[str, list[int]]:
        """Let held jobs go back in line, in their old places (qrls)."""
        jobs = await self._owned(ids, caller, "release")
        released: dict[int, None] = {}
        other = []
        whole = self._whole_arrays(ids)
        for job in jobs:
            if job.state is JobState.HELD and job.id not in released:
                released[job.id] = None
            elif job.id not in whole:
                other.append(job.id)
        await self._apply(self.state.handle(ReleaseRequested(tuple(jobs))))
        return {"released": list(released), "not_held": other}

    async def modify(self, ids: Sequence[int | str], changes: JobChanges, caller: Caller) -> dict[str, Any]:
        """jmod: change jobs (all or none; see wulf.server.modify), committed before the answer:
        ``changed`` (ids), ``arrays`` (whose throttle changed), ``not_waiting`` (tasks of arrays named
        whole that run or ended, so took none of the changes only a waiting job takes)."""
        jobs = await self._owned(ids, caller, "change")
        arrays = frozenset(int(r) for r in ids if (isinstance(r, int) or r.isdigit())
                           and int(r) in self.state.arrays.arrays)
        known: dict[int, Job] = {}
        if changes.depend:
            missing = [i for i in depend.ids_of(depend.parse(changes.depend)) if i not in self.jobs]
            known = await asyncio.to_thread(self._read, missing) if missing else {}
        asked_waiting = any(getattr(changes, k) is not None for k in WAITING_ONLY)
        not_waiting = sorted({j.id for j in jobs if asked_waiting and j.state not in WAITING_STATES})
        todo = self.state.handle(ModifyRequested(tuple(jobs), changes, caller.user, caller.admin, time.time(),
                                                 arrays, known))
        commit = next(i for i in todo if isinstance(i, Commit))
        await self._apply(todo)
        return {"changed": [j.id for j in commit.jobs], "arrays": [a for a, _ in commit.arrays],
                "not_waiting": not_waiting}

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
        todo = self.state.handle(QueueChanged(owner, name, changes))
        settings = self.book.settings(owner, name)
        await self.store.set_queue(settings.public())
        await self._apply(todo)
        return views.queue_public(self.state, settings, time.time())

    def queues(self, user: str = "", viewer: Caller | None = None) -> list[dict[str, Any]]:
        """The queues (of ``user``); ``viewer`` sees the mail address of their own only (administrators: all)."""
        return views.queues(self.state, time.time(), user, viewer)

    # ------------------------------------------------------------------ interactive jobs (jr)

    def place_now(self, user: str) -> Node:
        """The node a job of ``user`` is to run on now (jr), room or not."""
        return self.state.place_now(user)

    async def interactive(self, req: InteractiveRequest, caller: Caller) -> InteractiveReply:
        if req.job.array:
            raise UsageError("an interactive job runs once: arrays are queued with qr --array")
        intake.check_sizes([req.job], req.env, self.config.limits.job_max_mb)
        if req.job.depend.strip() or req.job.retries or req.job.hold:
            raise UsageError("an interactive job starts now: it cannot be held, wait for other jobs nor be retried "
                             "(use qr)")
        node = self.place_now(caller.user)
        assert node.link is not None
        h, fresh = self._env_rows(req.env)
        now = time.time()
        job = self._new_job(req.job, caller, h, Origin.INTERACTIVE, now, req.umask)
        job.set_state(JobState.RUNNING)
        job.node = node.name
        await self.store.insert([job], fresh)
        self.metrics.submitted.inc()
        self._remember_env(h, req.env)
        await self._apply(self.state.handle(Submitted((job,))))
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
            await self._apply(self.state.handle(SessionFailed(job.id, error, time.time())))
            raise Refused(f"could not start the job on {node.name}: {error}")
        port = node.info.session_port if node.info else 0
        return InteractiveReply(id=job.id, node=node.name, host=node.address, port=port, token=token)

    # ------------------------------------------------------------------ tasks of a job (wulf launch, wulf-rsh)

    async def launch(self, req: LaunchRequest, caller: Caller) -> LaunchReply:
        """Ready the tasks ``wulf launch`` (or ``wulf-rsh``) asks for on the nodes of its job's allocation:
        each agent expects its tasks' sessions; the caller connects to each with its token."""
        job = launch.check(self.state.jobs.get(req.job), req.job, caller.uid, req.secret, self.launch_secret)
        if req.nodes is not None:
            names = {n: node.info.hostname for n, node in self.nodes.items() if node.info is not None}
            placed = launch.on_hosts(job, req.nodes, names)
        else:
            placed = launch.place_tasks(job, req.ntasks)
        base = await asyncio.to_thread(self._start_job, job)
        loop = asyncio.get_running_loop()
        out: list[LaunchedTask] = []
        waits: list[tuple[str, int, int, asyncio.Future[str]]] = []  # (node, task, its session, its answer)
        try:
            for name, task, local in placed:
                node = self.nodes.get(name)
                if node is None or node.link is None or node.info is None:
                    raise Refused(f"node {name} of job {job.id} is down: its tasks cannot start")
                start = base.model_copy(update={
                    "command": req.command, "script": None, "cwd": req.cwd, "keep_script": False,
                    "env": launch.task_env(req.env, task, local, len(placed), name)})
                token = secrets.token_urlsafe(24)
                serial = next(self._task_serial)
                fut = self._task_sessions[(job.id, serial)] = loop.create_future()
                waits.append((name, task, serial, fut))
                await self._send(name, Session(job=start, token=token, pty=False, task=serial))
                out.append(LaunchedTask(task=task, node=name, host=node.address, port=node.info.session_port,
                                        token=token))
            for name, task, _, fut in waits:
                try:
                    error = await asyncio.wait_for(fut, 10.0)
                except TimeoutError:
                    error = "the node did not answer in time"
                if error:
                    raise Refused(f"could not start task {task} of job {job.id} on {name}: {error}")
        finally:
            for _, _, serial, _ in waits:
                self._task_sessions.pop((job.id, serial), None)
        return LaunchReply(tasks=out)

    # ------------------------------------------------------------------ output (jtail; see wulf.server.output)

    async def output(self, job_id: int, caller: Caller, offset: int, limit: int) -> dict[str, Any]:
        """Up to ``limit`` bytes of a job's output from ``offset`` (from its end when negative), read by
        its node's agent as its owner; only its owner and administrators may read it."""
        [job] = await self.fetch([job_id])  # this job: an array's id is also its first task's
        self._may_act([job], caller, "read the output of")
        output.check_readable(job)
        if output.waiting(job):
            return output.nothing_yet(job, offset)
        ended_before = job.final  # noted before the read: then the file holds all it will
        node = self.nodes.get(job.node)
        if node is None or node.link is None:
            raise Refused(f"node {job.node} is down: job {job.id}'s output cannot be read now")
        start = await asyncio.to_thread(self._start_job, job)  # (its environment may be read from the store)
        path = output.path_of(start, job.node)
        req, fut = self._reads.new(job.node)
        try:
            try:
                await node.link.send(ReadOutput(req=req, job=job.id, uid=job.uid, gid=job.gid, path=path,
                                                offset=offset, limit=limit).model_dump_json())
            except Exception as e:  # its connection is going away (as in _send_text)
                raise Refused(f"node {job.node} went down: job {job.id}'s output cannot be read now") from e
            got = await asyncio.wait_for(fut, output.ANSWER_TIMEOUT)
        except TimeoutError:
            raise Refused(f"the agent of {job.node} did not answer a read of job {job.id}'s output "
                          "(it may run an older wulf)") from None
        finally:
            self._reads.drop(req)
        return output.answered(job, ended_before, got, offset)

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
            except WulfError as e:  # the store could not write: the placements wait (see _apply)
                log.error("scheduling pass: %s", e.message)
            except Exception:  # a bug must not stop scheduling for good
                log.exception("scheduling pass failed")

    async def _pass(self) -> None:
        t0 = time.perf_counter()
        todo = self.state.handle(SchedulePass(time.time()))
        self.metrics.passes.observe(time.perf_counter() - t0)
        await self._apply(todo)

    async def _dispatch(self, starts: StartJobs) -> None:
        missing = {j.env_hash for j in starts.jobs if j.env_hash not in self.envs}
        if missing:  # (environments not read since this server started: from the store, off the event loop)
            self.envs.update(await asyncio.to_thread(self._read_envs, missing))
        jobs = [self._start_job(j) for j in starts.jobs if j.state is JobState.RUNNING]  # not cancelled meanwhile
        self.metrics.started.inc(len(jobs))
        for text in start_messages(jobs):
            await self._send_text(starts.node, text)
        cycletrace.mark("start_sent", (j.id for j in jobs))

    def _read_envs(self, hashes: Iterable[str]) -> dict[str, dict[str, str]]:
        """The environments of these hashes, from the store (run in a thread: a store that is slow or
        reconnecting must not hold the event loop)."""
        return {h: self.store.env(h) for h in hashes}

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
            **self._array_fields(job),
            restarts=job.restarts,
            **checkpoint.start_fields(job.warn_signal, job.checkpoint, job.checkpoint_exit, job.checkpoints),
            alloc=job.alloc, ntasks=job.ntasks,
            launch_key=launch.launch_key(self.launch_secret, job) if job.alloc else "",
        )

    def _array_fields(self, job: Job) -> dict[str, Any]:
        """What a task of an array is told of it (its WULF_ARRAY_* variables)."""
        if job.array_id is None or job.array_index is None:
            return {}
        rec = self.state.arrays.arrays.get(job.array_id)
        if rec is None:
            return {"array_id": job.array_id, "array_index": job.array_index}
        spec = rec.spec
        return {"array_id": job.array_id, "array_index": job.array_index, "array_count": spec.count,
                "array_min": spec.first, "array_max": spec.last,
                "array_step": spec.indices.step if isinstance(spec.indices, range) else 1}

    async def _send(self, node_name: str, msg: Any) -> None:
        await self._send_text(node_name, msg.model_dump_json())

    async def _send_text(self, node_name: str, text: str) -> bool:
        """Send to a node's agent; whether it went (a node down, or a connection going away, drops it:
        the agent reconciles when it is back)."""
        node = self.nodes.get(node_name)
        if node is None or node.link is None:
            return False
        try:
            await node.link.send(text)
        except Exception as e:
            log.info("could not send to %s: %s", node_name, e)
            return False
        return True

    async def runall(self, req: RunAllRequest) -> list[dict[str, Any]]:
        """``wulf runall``: the command on the nodes chosen, through their agents (see wulf.server.runall)."""
        features = self.policy.features
        nodes = runall.choose(self.nodes, req.nodes, req.features, lambda n: features.get(n, frozenset()))
        return await self._runs.run(req, nodes)

    # ------------------------------------------------------------------ agents

    async def agent_hello(self, hello: Hello, link: AgentLink) -> Node:
        """A (re)connected agent. Refused (Refused) while another agent is connected under its name and
        still heard from: two agents with one name would take each other's jobs for lost."""
        node = self.state.node(hello.node.name)
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
            self.state.handle(NodeDown(node.name, time.time()))
            await old.close()
        # what the node is to run is settled before anything can be sent to it on the new connection
        # (no await between): a job placed there from now on is sent on it, so it is the agent's
        todo = self.state.handle(NodeUp(hello.node, link.host, link.uid, tuple(hello.running),
                                        tuple(hello.finished), time.time()))
        node.link = link
        node.last_seen = time.time()
        log.info("node %s is up (%s, %g cpus, %.0f MB)", node.name, link.host, hello.node.cpus, hello.node.mem_mb)
        await link.send(Welcome(interval=self.config.agent.interval, known=list(node.jobs)).model_dump_json())
        await self._apply(todo)
        return node

    async def agent_gone(self, node: Node, link: AgentLink) -> None:
        if node.link is link:
            node.link = None
            self.state.handle(NodeDown(node.name, time.time()))
            log.warning("node %s is down (its agent disconnected)", node.name)
            self._runs.gone(node.name)

    async def _watch_lost(self) -> None:
        """Time passes for the state machine: the jobs of nodes down longer than ``[server] node_lost_after``
        end (see wulf.server.state)."""
        while True:
            after = self.config.server.node_lost_after
            await asyncio.sleep(min(15.0, max(0.5, after / 4)) if after > 0 else 15.0)
            try:
                await self._apply(self.state.handle(Tick(time.time())))
            except WulfError as e:  # the store failed
                log.error("could not record the jobs of lost nodes: %s", e.message)

    async def agent_message(self, node: Node, msg: Any) -> None:
        node.last_seen = time.time()
        if isinstance(msg, Report):
            self._apply_soon(self.state.handle(Reported(node.name, msg)))
        elif isinstance(msg, Started):
            self._apply_soon(self.state.handle(JobsStarted(node.name, tuple(msg.jobs))))
        elif isinstance(msg, Exited):
            cycletrace.mark("exit_recv", (e.id for e in msg.jobs))
            await self._exited(node.name, msg.jobs)
        elif isinstance(msg, Ran):
            self._runs.answered(node.name, msg)
        elif isinstance(msg, SessionReady):
            fut = self._sessions.get(msg.id) if msg.task is None else self._task_sessions.get((msg.id, msg.task))
            if fut is not None and not fut.done():
                fut.set_result(msg.error)
        elif isinstance(msg, Output):
            self._reads.answer(node.name, msg)
        else:
            log.warning("unexpected message from %s: %s", node.name, type(msg).__name__)

    def _lazy_flush(self) -> None:
        self._flush_timer = None
        if self._dirty:
            self._commit([])

    def _commit(self, jobs: list[Job], arrays: Sequence[tuple[int, str]] = ()) -> asyncio.Future[None]:
        """Write these jobs, and whatever changed in passing (pids, start times), in one transaction (with
        the new specs of ``arrays``, if any)."""
        if self._dirty:
            extra = [j for j in self._dirty.values() if j not in jobs]
            self._dirty.clear()
            jobs = jobs + extra
        written = self.store.update(jobs, arrays) if arrays else self.store.update(jobs)
        written.add_done_callback(lambda fut: self._written(fut, jobs))
        written.add_done_callback(self.metrics.commit_timer())
        return written

    def _written(self, fut: asyncio.Future[None], jobs: list[Job]) -> None:
        """A write failed for now (a full disk): the jobs are written again with the next commit or by a
        retry, so that what the store holds catches up with memory (callers that wait are told)."""
        error = None if fut.cancelled() else fut.exception()
        if not isinstance(error, WulfError) or not error.retryable:
            return
        for job in jobs:
            self._dirty.setdefault(job.id, job)
        if self._flush_timer is None:
            self._flush_timer = asyncio.get_running_loop().call_later(STALL_RETRY, self._lazy_flush)

    async def _exited(self, node: str, exits: Sequence[JobExit]) -> None:
        """Record exits (the jobs no longer in memory read from the store, off the loop), and place jobs
        in the room they leave: one commit for both, then the starts, then the agent's ack."""
        missing = [e.id for e in exits if e.id not in self.jobs]
        stored = await asyncio.to_thread(self._read, missing) if missing else {}
        todo = self.state.handle(JobsExited(node, tuple(exits), time.time(), stored))
        if cycletrace.ON:
            placed = [j.id for ins in todo if isinstance(ins, StartJobs) for j in ins.jobs]
            cycletrace.mark("placed", (e.id for e in exits))
            cycletrace.link((e.id for e in exits), placed)
        await self._apply(todo)

    # ------------------------------------------------------------------ queries (see wulf.server.views)

    def status(self, user: str = "", queue: str = "", all_jobs: bool = False, brief: bool = False,
               viewer: Caller | None = None, after: int = 0, limit: int = 0, external: bool = False) -> dict[str, Any]:
        """Nodes and one page of jobs as the API shows them (see views.status)."""
        reply = views.status(self.state, time.time(), self.started_at, user, queue, all_jobs, brief, viewer, after,
                             limit, external)
        if self.leader is not None:
            reply["leader"] = self.leader
        return reply

    def shown(self, job: Job, viewer: Caller | None) -> dict[str, Any]:
        return views.shown(job, viewer, time.time(), self.state)

    def nodes_public(self) -> list[dict[str, Any]]:
        return views.nodes_public(self.state)

    def page_view(self, max_waiting: int, viewer: Caller | None = None) -> dict[str, Any]:
        return views.page_view(self.state, time.time(), max_waiting, viewer)

    async def _wait_set(self, ids: Sequence[int | str], queues: Sequence[str], user: str) -> list[Job]:
        jobs = await self.fetch(self.resolve(ids))
        for q in queues:
            owner, _, name = q.rpartition(":")
            jobs.extend(views.select(self.state, owner or user, name))
        if not ids and not queues:
            jobs = [j for j in views.select(self.state, user) if j.origin is Origin.BATCH]
        return jobs

    async def wait(self, ids: Sequence[int | str], queues: Sequence[str], user: str, timeout: float) -> dict[str, Any]:
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
        if name not in self.nodes:
            raise NotFound(f"no node {name}")
        todo = self.state.handle(Drained(name, drained))
        await self.store.set_node_state(name, NodeState.DRAIN if drained else NodeState.UP)
        await self._apply(todo)

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
