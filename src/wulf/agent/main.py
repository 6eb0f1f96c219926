"""The node agent: one WebSocket to the server, reports up, commands down.

Agents are expendable, jobs are not. Every job the agent starts is written to a small journal in the
agent's state directory; a restarted agent reads it, finds its jobs still running (checked by pid and
process start time), watches them again and reports them to the server, which reconciles. Exits are
kept in the journal until the server acknowledges that it has recorded them.

Each job runs in its own cgroup when the machine offers them (see :mod:`wulf.agent.cgroups`), which
measures it whole and holds its memory limit; the enforcer (:mod:`wulf.agent.enforcer`) checks the
jobs that have limits every second and stops those that go over one. A job's limits are in the
journal, so a job taken back after a restart keeps them. An ended job's cgroup (which may serve a
later job: see :mod:`wulf.agent.cgpool`) and its files are dealt with after its exit has gone to the
server, off the path from one job's end to the next one's start.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import os
import resource
import signal
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError
from websockets.asyncio.client import ClientConnection, connect, unix_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from wulf import cycletrace
from wulf.agent import jobprocs, launcher, procfs, purge, readout
from wulf.agent.backoff import Backoff
from wulf.agent.cgpool import CgroupPool
from wulf.agent.cgroups import Cgroups, JobCgroup, group_name
from wulf.agent.enforcer import CHECK_EVERY, Action, Enforcer, Kill, Notices, Term
from wulf.agent.jobmeter import JobMeter
from wulf.agent.journal import Journal
from wulf.agent.limits import Limits, Usage, exit_reason, hms
from wulf.agent.monitor import Monitor
from wulf.agent.owner import CannotRun, owner_of
from wulf.agent.rundir import secure_dir
from wulf.agent.session import SessionServer
from wulf.auth import credential, vouch
from wulf.auth.key import ClusterKey, load_key
from wulf.config import Config, default_state_dir
from wulf.errors import WulfError
from wulf.model.deltas import Deltas
from wulf.protocol import (
    NAME_TAKEN,
    Ack,
    Exited,
    Hello,
    JobExit,
    JobStarted,
    Limit,
    Output,
    Quit,
    ReadOutput,
    Renice,
    Resync,
    RunCommand,
    Session,
    SessionReady,
    Signal,
    Start,
    Started,
    StartJob,
    Welcome,
    server_message,
)

log = logging.getLogger("wulf.agent")

CGROUP_REMOVE_TRIES: Final = 8
"""Tries to remove an ended job's cgroup (its last processes may take a moment to exit), 50 ms apart
and doubling: about 13 s in all. A cgroup left behind is removed at the agent's next start."""


def _proc_start(pid: int) -> int | None:
    """The start time (clock ticks since boot) of a process, to tell it from a later one with its pid."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return procfs.parse_stat(f.read()).starttime
    except (OSError, ValueError):
        return None


@dataclass
class Running:
    id: int
    pid: int
    start_ticks: int | None
    started: float
    rc_file: str
    script_file: str | None
    keep_script: bool
    time_limit: float | None = None
    cputime_limit: float | None = None
    mem_limit_mb: float | None = None
    pidfd: int = -1
    adopted: bool = False  # found again after a restart: not our child, so no wait status
    meter: JobMeter | None = None
    err_file: str | None = None  # what the shell of a job run as its owner said before its output was open
    signalled: int = 0  # the last signal wulf sent the job: an exit status of 128 + it is that signal
    # what it is told before its time limit and when to checkpoint (issue 13 §2, see Notices)
    warn_signal: int | None = None
    warn_before: float = 0.0
    checkpoint_signal: int | None = None
    checkpoint_every: float | None = None
    nodes_file: str | None = None  # a job of several tasks's node file (removed at its end)

    @property
    def limits(self) -> Limits:
        return Limits(self.time_limit, self.cputime_limit, self.mem_limit_mb)

    @property
    def notices(self) -> Notices:
        return Notices(self.warn_signal, self.warn_before, self.checkpoint_signal, self.checkpoint_every)


JOURNAL_KEYS: Final = ("id", "pid", "start_ticks", "started", "rc_file", "script_file", "keep_script",
                       "time_limit", "cputime_limit", "mem_limit_mb", "err_file",
                       "warn_signal", "warn_before", "checkpoint_signal", "checkpoint_every")
"""The fields of a running job written to the journal; the limits, err_file and notices may be missing in
older ones."""


def state_tag(state: Path) -> str:
    """A short tag of an agent's state directory: with the node name, it names this agent on its
    machine (its runtime directory, its cgroups), the same after a restart."""
    return hashlib.sha1(str(state.resolve()).encode()).hexdigest()[:8]


def runtime_dir(config: Config, name: str, state: Path) -> Path:
    """tmpfs for the journal and exit-status files: fast, and gone at reboot like the jobs."""
    if config.agent.runtime_dir:
        return Path(config.agent.runtime_dir)
    tag = state_tag(state)
    base = os.environ.get("XDG_RUNTIME_DIR") or ("/dev/shm" if os.path.isdir("/dev/shm") else str(state))
    return Path(base) / f"wulf-{os.getuid()}" / f"{name}-{tag}"


def make_runtime_dir(config: Config, name: str, state: Path) -> Path:
    """The runtime directory, made (or found) the agent's alone: see :mod:`wulf.agent.rundir`."""
    path = runtime_dir(config, name, state)
    return secure_dir(path, levels=1 if config.agent.runtime_dir else 2)


class Agent:
    def __init__(self, config: Config, server: str, name: str | None = None, cpus: float | None = None,
                 mem_mb: float | None = None, cgroups: bool | None = None, key: ClusterKey | None = None,
                 vouch_socket: str | None = None) -> None:
        self.config = config
        # several URLs (comma-separated): a leader and standbys; the agent follows the one that lets it in
        self.servers = [u.strip() for u in server.split(",") if u.strip()] or [server]
        self.server = self.servers[0]
        self.key = key  # signs the hello and the credentials of this machine's users; None: read it at run()
        self.vouch_socket = config.auth.agent_socket if vouch_socket is None else vouch_socket
        self.vouch: vouch.VouchServer | None = None
        self.name = name or socket.gethostname().split(".")[0]
        self.cpus = cpus
        self.mem_mb = mem_mb
        acfg = config.agent
        self.scratch = acfg.scratch
        state = Path(acfg.state_dir) if acfg.state_dir else default_state_dir() / f"agent-{self.name}"
        self.runtime = make_runtime_dir(config, self.name, state)
        self.journal = Journal(self.runtime)
        self._journal_queue: list[dict[str, Any]] = []
        ignore = {os.getpid()}
        for p in os.environ.get("WULF_IGNORE_PIDS", "").split(","):
            if p.strip().isdigit():
                ignore.add(int(p))
        self.monitor = Monitor(self.scratch, ignore, acfg.external_min_cpu, acfg.external_min_mem_mb)
        self.interval = acfg.interval
        self.deltas = Deltas()  # what the server has of the outside work (reports as deltas)
        self.jobs: dict[int, Running] = {}
        self.unacked: dict[int, JobExit] = {}
        self._started: list[JobStarted] = []
        self._exited: list[JobExit] = []
        self._flush_scheduled = False
        self._flush_tasks: set[asyncio.Task[None]] = set()
        self._readers = asyncio.Semaphore(4)  # reads of jobs' output (jtail) at once
        self._ws: ClientConnection | None = None
        self._runs: set[asyncio.Task[None]] = set()  # wulf runall's commands under way
        self._stop = asyncio.Event()
        self.sessions: SessionServer | None = None
        self.enforcer = Enforcer(acfg.kill_grace)  # [agent] kill_grace: seconds between TERM and KILL
        # False: jobs are measured and limited without cgroups; None: as [agent] cgroups says
        self.use_cgroups = acfg.cgroups == "auto" if cgroups is None else cgroups
        self.cgroups: Cgroups | None = None
        self.cgpool: CgroupPool | None = None
        self._task_cgroups: dict[int, JobCgroup] = {}  # job -> the cgroup of its tasks here (its script runs elsewhere)
        self._ended_cgroups: list[tuple[int, JobCgroup, bool]] = []  # (job, its cgroup, quiet): after the flush
        self._ended_files: list[Running] = []  # ended jobs whose files are removed after the flush
        self.refused = ""  # why the server refused this agent for good (its node's name is taken)
        self._removing: dict[int, JobCgroup] = {}  # ended jobs' cgroups waiting for their last processes
        self._cgroup_group = group_name(self.name, state_tag(state))

    # ------------------------------------------------------------------ jobs

    def recover(self) -> None:
        """Take back the jobs of a previous run of this agent from the journal."""
        for entry in self.journal.load():
            try:
                job_id = int(entry["id"])
                if "exit" in entry:
                    self.unacked[job_id] = JobExit.model_validate(entry["exit"])
                    continue
                run = self._from_journal(job_id, entry)
            except (KeyError, TypeError, ValueError, ValidationError) as e:
                log.warning("ignoring a journal entry the agent cannot read (%s): %.200r", e, entry)
                continue
            if run.pid <= 0:  # it died between its intent and its spawn's record: look for the job
                found = _find_supervisor(job_id)
                if not _spawned(run.rc_file, found):
                    # the server, not told of it, places it again
                    log.info("job %d was never started; the server places it again", job_id)
                    self._journal_queue.append({"ack": [job_id]})
                    continue
                if found is None:
                    self._ended_while_away(run)
                    continue
                run.pid, run.start_ticks = found, _proc_start(found)
            cg = self.cgroups.job(job_id) if self.cgroups is not None else None
            if cg is not None:
                cg.limited = run.mem_limit_mb is not None  # the earlier run set its limit
            run.meter = JobMeter(run.pid, cg if cg is not None and cg.exists() else None)
            if not _is_the_job(run) or not self._watch(run):
                self._ended_while_away(run)
            else:
                self.jobs[job_id] = run
                self.enforcer.watch(job_id, run.limits, run.started, run.notices)
                log.info("job %d (pid %d) is still running; watching it again", job_id, run.pid)
        if self.cgroups is not None:
            removed = self.cgroups.remove_stale(self.jobs)
            if removed:
                log.info("removed the empty cgroups of %d jobs this agent no longer runs", len(removed))

    def _from_journal(self, job_id: int, entry: dict[str, Any]) -> Running:
        """A running job as the journal has it. Its files are where this agent puts a job's files,
        whatever the entry says: the agent never acts on a path it did not make."""
        pid = entry.get("pid")
        ticks = entry.get("start_ticks")
        script = launcher.script_path(self.scratch, job_id) if entry.get("script_file") else None
        err = launcher.err_path(str(self.runtime), job_id) if entry.get("err_file") else None
        time_limit, cputime_limit, mem_limit_mb = (None if entry.get(k) is None else float(entry[k])
                                                   for k in ("time_limit", "cputime_limit", "mem_limit_mb"))
        run = Running(job_id, int(pid) if pid is not None else 0, int(ticks) if ticks is not None else None,
                      float(entry["started"]), launcher.rc_path(str(self.runtime), job_id), script,
                      bool(entry.get("keep_script")), time_limit, cputime_limit, mem_limit_mb, err_file=err)
        run.adopted = True
        _notices_from(run, entry)
        return run

    def _ended_while_away(self, run: Running) -> None:
        rc = launcher.read_rc(run.rc_file)
        reason = "" if rc is not None else "lost: it ended while the agent was down and left no exit status"
        self._finish(run, self._exit(run, rc, None, 0.0, 0.0, reason))

    def _watch(self, run: Running) -> bool:
        try:
            run.pidfd = os.pidfd_open(run.pid)
        except ProcessLookupError:
            return False
        asyncio.get_running_loop().add_reader(run.pidfd, self._reap, run)
        return True

    def start_jobs(self, jobs: list[StartJob]) -> None:
        jobs = [job for job in jobs if job.id not in self.jobs and job.id not in self.unacked]  # never twice
        # the intent to start them is in the journal before any starts: an agent that dies while
        # starting them finds each again at its restart (running, or ended), and none is started twice
        self.journal.append([self._intent(job) for job in jobs])
        cycletrace.mark("intent", (job.id for job in jobs))
        for job in jobs:
            try:
                self._start(job)
            except Exception as e:  # whatever one job does, the agent goes on with the rest
                code, reason = _start_failure(e)
                log.warning("job %d: %s", job.id, reason)
                self._finish_exit(JobExit(id=job.id, exit_code=code, time=time.time(), reason=reason))

    def _intent(self, job: StartJob) -> dict[str, Any]:
        """The journal's record of a job about to start: what its running record has, but no pid."""
        try:
            limits = Limits.of(job)
        except ValueError:
            limits = Limits()
        return {"id": job.id, "pid": None, "start_ticks": None, "started": time.time(),
                "rc_file": launcher.rc_path(str(self.runtime), job.id),
                "script_file": None if job.script is None else launcher.script_path(self.scratch, job.id),
                "keep_script": job.keep_script, "time_limit": limits.time, "cputime_limit": limits.cpu,
                "mem_limit_mb": limits.mem_mb, "err_file": None, **_notice_fields(job)}

    def _start(self, job: StartJob) -> None:
        """Start one job; raises whatever stops it from starting (the caller fails the job alone)."""
        owner = owner_of(job, self.name)
        launcher.check_job(job)
        limits = Limits.of(job)
        cycletrace.mark("checked", (job.id,))
        cg = self._new_cgroup(job.id, limits.mem_mb)
        cycletrace.mark("cgroup" if cg is None or cg.reused else "cgroup_new", (job.id,))
        try:
            pid, launch = launcher.spawn(job, self.name, self.scratch, str(self.runtime),
                                         cg.procs_files() if cg is not None else (), owner)
            cycletrace.mark("spawned", (job.id,))
        except BaseException:
            if cg is not None:
                self._ended_cgroups.append((job.id, cg, True))
            raise
        now = time.time()
        run = Running(job.id, pid, None, now, launch.rc_file, launch.script_file, job.keep_script,
                      limits.time, limits.cpu, limits.mem_mb, meter=JobMeter(pid, cg), err_file=launch.err_file,
                      nodes_file=launch.nodes_file, **_notice_fields(job))
        self._journal_queue.append(_record(run))
        self.jobs[job.id] = run
        self.enforcer.watch(job.id, limits, now, run.notices)
        if not self._watch(run):
            self._reap(run)
        self._started.append(JobStarted(id=job.id, pid=pid, time=now))
        self._schedule_flush()

    def _new_cgroup(self, job_id: int, mem_limit_mb: float | None) -> JobCgroup | None:
        """A cgroup for a job (with its memory limit), made for it or a spare; None without cgroups or
        when it cannot be made, and then the job runs without one."""
        if self.cgpool is None:
            return None
        try:
            return self.cgpool.take(job_id, mem_limit_mb)
        except OSError as e:
            log.warning("job %d runs without a cgroup: cannot make one: %s", job_id, e)
            return None

    def _reap(self, run: Running) -> None:
        exit_code: int | None
        sig: int | None = None
        cpu = peak = 0.0
        if run.adopted:
            exit_code = launcher.read_rc(run.rc_file)
        else:
            try:
                pid, status, usage = os.wait4(run.pid, os.WNOHANG)
            except ChildProcessError:
                pid, status, usage = run.pid, 0, None
            if pid == 0:
                return  # spurious wake-up: still running
            code = os.waitstatus_to_exitcode(status)
            exit_code, sig = (code, None) if code >= 0 else (None, -code)
            if usage is not None:
                cpu = usage.ru_utime + usage.ru_stime
                peak = _job_maxrss_mb(usage.ru_maxrss)
        cycletrace.mark("reap", (run.id,))
        if exit_code is not None and run.signalled and exit_code == 128 + run.signalled:
            exit_code, sig = None, run.signalled  # the job died of the signal wulf sent it (as its shell says)
        reason = "" if exit_code is not None or sig is not None else "lost: exit status unknown"
        if sig is not None:
            reason = f"killed by signal {sig} ({signal.Signals(sig).name if sig in signal.valid_signals() else sig})"
        self._finish(run, self._exit(run, exit_code, sig, cpu, peak, reason))

    def _exit(self, run: Running, exit_code: int | None, sig: int | None, cpu: float, peak: float,
              reason: str) -> JobExit:
        """The exit record of a job whose shell has ended: cpu time and peak memory from its cgroup
        when it was in one (else from its wait status and what was measured), and the limit it went
        over as the reason, if one did it."""
        meter = run.meter
        ending = meter.ending(oom_kills=run.limits.mem_mb is not None) if meter is not None else None
        oom_kills = 0
        if meter is not None:
            cpu, peak = max(cpu, meter.cpu_seen), max(peak, meter.peak_mb)
        if ending is not None:
            cpu = ending.cpu if ending.cpu is not None else cpu
            peak = ending.peak_mb if ending.peak_mb is not None else peak
            oom_kills = ending.oom_kills
        succeeded = exit_code == 0 and sig is None
        reason = self.enforcer.reason(run.id) or exit_reason(run.limits, cpu, oom_kills, succeeded) or reason
        if not succeeded and not reason:
            reason = launcher.start_error(run.err_file)
        return JobExit(id=run.id, exit_code=exit_code, signal=sig, time=time.time(), cpu_time=round(cpu, 3),
                       peak_mem_mb=round(peak, 1), reason=reason)

    def _finish(self, run: Running, exit: JobExit) -> None:
        if run.pidfd >= 0:
            asyncio.get_running_loop().remove_reader(run.pidfd)
            os.close(run.pidfd)
            run.pidfd = -1
        self.jobs.pop(run.id, None)
        stopped = self.enforcer.stopping(run.id)
        self.enforcer.forget(run.id)
        if run.meter is not None and run.meter.cgroup is not None:
            self._ended_cgroups.append((run.id, run.meter.cgroup, stopped))  # once its exit is sent
        self._ended_files.append(run)  # its exit-status file and script: once its exit is sent
        if exit.reason and run.limits:
            log.info("job %d: %s", run.id, exit.reason)
        self._finish_exit(exit)

    def _release_cgroups(self) -> None:
        """Remove the files of the jobs that have ended (their exits are in the journal by now), and give
        back their cgroups (kept as spares, or removed)."""
        files, self._ended_files = self._ended_files, []
        for run in files:
            launcher.cleanup(run.rc_file, run.script_file, run.keep_script, run.err_file, run.nodes_file)
        ended, self._ended_cgroups = self._ended_cgroups, []
        for job_id, cg, quiet in ended:
            self._remove_cgroup(job_id, cg, quiet=quiet)

    def _remove_cgroup(self, job_id: int, cg: JobCgroup, tries: int = 0, quiet: bool = False) -> None:
        """Give back an ended job's cgroup; kill what is left in it (a job is over when its shell has
        ended), then remove it, trying again while its last processes exit (``quiet``: they were
        being stopped)."""
        pool = self.cgpool
        assert pool is not None  # a job has a cgroup only from the pool
        self._removing.pop(job_id, None)
        if pool.give_back(cg, time.time()) if tries == 0 else pool.remove(cg):
            return
        left = cg.signal(signal.SIGKILL)
        if left and tries == 0 and not quiet:
            log.info("job %d: killed %d processes left in its cgroup after its end", job_id, left)
        if pool.remove(cg):
            return
        if tries < CGROUP_REMOVE_TRIES:
            self._removing[job_id] = cg
            asyncio.get_running_loop().call_later(0.05 * 2**tries, self._remove_cgroup, job_id, cg, tries + 1,
                                                  True)
        else:
            log.warning("job %d: cannot remove its cgroup %s; it is tried again when the agent starts",
                        job_id, cg.memory_dir)

    def _remove_left_cgroups(self, within: float = 2.0) -> None:
        """The agent stops: remove the cgroups of ended jobs whose last processes were still exiting
        (killed already), waiting for them a little, rather than leave them to the next start."""
        pool, deadline = self.cgpool, time.monotonic() + within
        while self._removing and pool is not None and time.monotonic() < deadline:
            for job_id, cg in list(self._removing.items()):
                cg.signal(signal.SIGKILL)
                if pool.remove(cg):
                    del self._removing[job_id]
            if self._removing:
                time.sleep(0.02)
        for job_id, cg in self._removing.items():
            log.warning("job %d: cannot remove its cgroup %s; it is tried again when the agent starts",
                        job_id, cg.memory_dir)

    def _finish_exit(self, exit: JobExit) -> None:
        self.unacked[exit.id] = exit
        self._journal_queue.append({"id": exit.id, "exit": exit.model_dump()})
        self._exited.append(exit)
        self._schedule_flush()

    def _note_start_ticks(self) -> None:
        """Record when each running job's process started, so a restarted agent can tell it from a
        later process that got the same pid (read here, not at spawn, where it is costly)."""
        for run in self.jobs.values():
            if run.start_ticks is None and not run.adopted:
                run.start_ticks = _proc_start(run.pid)
                if run.start_ticks is not None:
                    self._journal_queue.append(_record(run))
                    self._schedule_flush()

    def _session_started(self, job_id: int, pid: int) -> None:
        self._started.append(JobStarted(id=job_id, pid=pid, time=time.time()))
        self._schedule_flush()

    def signal_jobs(self, ids: list[int], signum: int) -> None:
        for job_id in ids:
            run = self.jobs.get(job_id)
            if self.sessions is not None:  # its tasks here (wulf launch), or it is an interactive job
                self.sessions.signal(job_id, signum)
            tasks = self._task_cgroups.get(job_id)
            if tasks is not None:
                tasks.signal(signum)
            if run is not None and signum == signal.SIGTERM:
                self._apply(self.enforcer.stop(job_id, time.time()))  # KILL follows after the grace
            elif run is not None:
                _signal_job(run, signum)

    def _apply(self, actions: Sequence[Action]) -> None:
        for action in actions:
            run = self.jobs.get(action.job)
            if run is None:
                continue
            if isinstance(action, Term):
                if action.reason:
                    log.info("job %d %s: stopping it", action.job, action.reason)
                _signal_job(run, signal.SIGTERM)
                asyncio.get_running_loop().call_later(self.enforcer.grace, self._grace_over, action.job)
            elif isinstance(action, Kill):
                log.info("job %d is still there %gs after TERM: killing it", action.job, self.enforcer.grace)
                _signal_job(run, signal.SIGKILL)
            else:
                log.info("job %d: sending it %s (%s)", action.job, signal.Signals(action.signal).name, action.why)
                _notify_job(run, action.signal)

    def _grace_over(self, job_id: int) -> None:
        self._apply(self.enforcer.grace_over(job_id))

    def _measure(self, job_id: int, limits: Limits, wall: float) -> Usage:
        run = self.jobs.get(job_id)
        if run is None or run.meter is None:
            return Usage(wall)
        return run.meter.usage(limits, wall)

    async def _enforce_loop(self) -> None:
        """Check the jobs that have limits every second, whether or not the server is there."""
        while True:
            await asyncio.sleep(CHECK_EVERY)
            if not self.enforcer.busy():
                continue
            try:
                self._apply(self.enforcer.tick(time.time(), self._measure))
            except Exception:  # a bug here must not end enforcement for good
                log.exception("checking the jobs' limits failed")

    def job_memory(self, job_id: int, pids: Sequence[int]) -> float | None:
        """A job's memory for the report: see :meth:`JobMeter.memory_mb` (interactive jobs: by PSS)."""
        run = self.jobs.get(job_id)
        if run is None or run.meter is None:
            return jobprocs.pss_mb(pids)
        return run.meter.memory_mb(pids)

    def renice(self, job_id: int, nice: int) -> None:
        run = self.jobs.get(job_id)
        if run is not None:
            pids = jobprocs.tree(run.pid)  # the supervisor and the job, in a session of its own below it
        elif self.sessions is not None and job_id in self.sessions.running():
            pids = _session_members(self.sessions.running()[job_id])
        else:
            return
        for p in pids:
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, p, nice)

    def limit(self, job_id: int, time_limit: float) -> None:
        """A running job's new wall-time limit (jmod --time): checked from the next tick, and in the
        journal, so that an agent restarted meanwhile keeps it."""
        run = self.jobs.get(job_id)
        if run is None:
            return
        run.time_limit = time_limit  # (checked where the message was read: a number within MAX_SECONDS)
        self.enforcer.relimit(job_id, run.limits, run.started)
        self.journal.append([_record(run)])  # (at once, as an ack: before the log says it is taken)
        log.info("job %d: its time limit is now %s", job_id, hms(time_limit))

    # ------------------------------------------------------------------ talking to the server

    def _schedule_flush(self) -> None:
        """Write the journal and send the news once the events at hand are handled (one flush for all
        of them: the flush's task runs after the callbacks already due)."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            task = asyncio.get_running_loop().create_task(self._flush())
            self._flush_tasks.add(task)  # a task nothing refers to may be collected before it is done
            task.add_done_callback(self._flush_tasks.discard)

    async def _flush(self) -> None:
        self._flush_scheduled = False
        records, self._journal_queue = self._journal_queue, []
        self.journal.append(records)  # before the server hears of it
        cycletrace.mark("journal", (e.id for e in self._exited))
        try:
            await self._send_news()
        finally:
            self._release_cgroups()  # after the news is out: the server can place the next jobs meanwhile

    async def _send_news(self) -> None:
        ws = self._ws
        if ws is None:
            return  # sent with the next hello
        started, self._started = self._started, []
        exited, self._exited = self._exited, []
        try:
            if started:
                await ws.send(Started(jobs=started).model_dump_json())
                cycletrace.mark("started_sent", (j.id for j in started))
            if exited:
                await ws.send(Exited(jobs=exited).model_dump_json())
                cycletrace.mark("exit_sent", (e.id for e in exited))
        except ConnectionClosed:
            pass  # exits stay in `unacked` and go with the next hello

    async def _report_loop(self, ws: ClientConnection) -> None:
        while True:
            self._note_start_ticks()
            if self.cgpool is not None:
                self.cgpool.trim(time.time())
            roots = {run.pid: job_id for job_id, run in self.jobs.items()}
            if self.sessions is not None:
                roots.update({pid: job_id for job_id, pid in self.sessions.running().items()})
                roots.update(self.sessions.task_pids())  # (a job's tasks: its use, not outside work)
            sample, uses, clusters = self.monitor.sample(roots, self.job_memory)
            await ws.send(self.deltas.report(sample, uses, clusters).model_dump_json())
            await asyncio.sleep(self.interval)

    async def _handle(self, text: str | bytes) -> None:
        try:
            msg = server_message.validate_json(text)
        except ValidationError as e:
            log.warning("bad message from the server: %s", e.errors()[:1])
            return
        if isinstance(msg, Start):
            cycletrace.mark("start_recv", (j.id for j in msg.jobs))
            self.start_jobs(msg.jobs)
        elif isinstance(msg, Signal):
            self.signal_jobs(msg.ids, msg.signal)
        elif isinstance(msg, Ack):
            acked = [i for i in msg.ids if self.unacked.pop(i, None) is not None]
            self.journal.append([{"ack": acked}] if acked else [])
        elif isinstance(msg, Session):
            await self._prepare_session(msg)
        elif isinstance(msg, Renice | Limit | Welcome | Resync):
            self._settle(msg)
        elif isinstance(msg, ReadOutput):
            self._read_output(msg)
        elif isinstance(msg, Quit):
            log.info("the server asked this agent to quit")
            self._stop.set()
        elif isinstance(msg, RunCommand):
            self._runs.add(task := asyncio.create_task(self._runall(msg)))
            task.add_done_callback(self._runs.discard)

    def _settle(self, msg: Renice | Limit | Welcome | Resync) -> None:
        """The server's messages that change a setting here (a job's, or the reports')."""
        if isinstance(msg, Renice):
            self.renice(msg.id, msg.nice)
        elif isinstance(msg, Limit):
            self.limit(msg.id, msg.time_limit)
        elif isinstance(msg, Welcome):
            self.interval = msg.interval
        else:
            self.deltas.resync()

    async def _runall(self, msg: RunCommand) -> None:
        """``wulf runall``: run the command, send what it did (on the connection of the time: one that
        went away meanwhile has no server waiting for the answer)."""
        from wulf.agent import runall

        log.info("running an administrator's command (wulf runall %d): %s", msg.id, msg.command[:200])
        ws = self._ws
        ran = await runall.run(msg)
        if ws is not None and ws is self._ws:
            with contextlib.suppress(ConnectionClosed):
                await ws.send(ran.model_dump_json())

    def _read_output(self, msg: ReadOutput) -> None:
        """Answer a read of a job's output (jtail) on its own, off the loop: see :mod:`wulf.agent.readout`."""
        task = asyncio.get_running_loop().create_task(self._answer_read(msg))
        self._flush_tasks.add(task)
        task.add_done_callback(self._flush_tasks.discard)

    async def _answer_read(self, msg: ReadOutput) -> None:
        async with self._readers:  # a few at once: each is a process
            try:
                got = await asyncio.to_thread(readout.read_output, msg, self.name)
            except Exception as e:  # a bug of the agent's: the server is told, the agent goes on
                log.exception("reading the output of job %d failed", msg.job)
                got = readout.Read(error=f"the agent failed to read it: {type(e).__name__}")
        reply = Output(req=msg.req, data=base64.b64encode(got.data).decode("ascii"), offset=got.start,
                       size=got.size, error=got.error, missing=got.missing)
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(ConnectionClosed):
                await ws.send(reply.model_dump_json())

    async def _prepare_session(self, msg: Session) -> None:
        error = ""
        try:
            owner_of(msg.job, self.name)  # refused now, rather than when jr comes
            if self.sessions is None:
                error = "this agent takes no interactive jobs"
            else:
                self.sessions.expect(msg, self._task_cgroup(msg.job) if msg.task is not None else ())
        except CannotRun as e:
            error = str(e)
        if self._ws is not None:
            await self._ws.send(SessionReady(id=msg.job.id, error=error, task=msg.task).model_dump_json())

    def _task_cgroup(self, job: StartJob) -> list[str]:
        """The cgroup the tasks of ``job`` (wulf launch) run in here: the job's own on its first node,
        else one made for its tasks, with the job's memory limit, removed once none is left (see
        _task_ended)."""
        job_id = job.id
        run = self.jobs.get(job_id)
        if run is not None:
            cg = run.meter.cgroup if run.meter is not None else None
            return cg.procs_files() if cg is not None else []
        cg = self._task_cgroups.get(job_id)
        if cg is None:
            cg = self._new_cgroup(job_id, job.mem_limit_mb)
            if cg is None:
                return []
            self._task_cgroups[job_id] = cg
        return cg.procs_files()

    def _task_ended(self, job_id: int) -> None:
        """A task of a job whose script runs elsewhere ended: its cgroup goes with the last one."""
        cg = self._task_cgroups.get(job_id)
        if cg is not None and self.sessions is not None and not self.sessions.tasks_of(job_id):
            del self._task_cgroups[job_id]
            cg.signal(signal.SIGKILL)  # (what its tasks left behind)
            self._remove_cgroup(job_id, cg, quiet=True)

    def _hello(self, session_port: int) -> Hello:
        info = self.monitor.node_info(self.name, self.cpus, self.mem_mb, session_port)
        running = [JobStarted(id=r.id, pid=r.pid, time=r.started) for r in self.jobs.values()]
        if self.sessions is not None:
            running += [JobStarted(id=i, pid=p, time=time.time()) for i, p in self.sessions.running().items()]
        assert self.key is not None
        auth = credential.encode(self.key, credential.AGENT, os.geteuid(), os.getegid(), self.name, time.time(),
                                 credential.agent_digest(self.name))
        return Hello(node=info, running=running, finished=list(self.unacked.values()), auth=auth)

    def _connect(self) -> Any:
        opts: dict[str, Any] = {"max_size": 64 * 1024 * 1024, "open_timeout": 10, "ping_interval": 20,
                                "ping_timeout": 60, "compression": None}
        if self.server.startswith("unix:"):
            return unix_connect(self.server[5:], "ws://localhost/api/v1/agent", **opts)
        base = self.server if "//" in self.server else "http://" + self.server
        if base.lower().startswith("https://"):
            from wulf.auth.tls import client_context

            url = "wss://" + base[8:].rstrip("/") + "/api/v1/agent"
            return connect(url, ssl=client_context(self.config.tls.ca), **opts)
        return connect(base.replace("http://", "ws://", 1).rstrip("/") + "/api/v1/agent", **opts)

    async def _session(self, port: int) -> None:
        async with self._connect() as ws:
            await ws.send(self._hello(port).model_dump_json())
            self.deltas.resync()  # (a new connection starts with a full report)
            self._started.clear()
            self._exited.clear()  # they went with the hello
            self._ws = ws
            log.info("connected to %s as node %s", self.server, self.name)
            reporter = asyncio.create_task(self._report_loop(ws))
            try:
                async for text in ws:
                    await self._handle(text)
                    if self._stop.is_set():
                        return
            finally:
                self._ws = None
                reporter.cancel()

    def stop(self) -> None:
        """Make :meth:`run` return (its jobs keep running)."""
        self._stop.set()

    def _vouch(self) -> None:
        """Read the cluster key if not given; vouch for this machine's users (where configured)."""
        if self.key is None:
            self.key = load_key(self.config.key_path())
        if self.vouch_socket:
            self.vouch = vouch.serve(Path(self.vouch_socket), self.key, self.name)

    def _no_connection(self, e: Exception, delay: float) -> float:
        """Say why there is no connection; the pause before the next try (short when there is another
        server to try: it may lead now)."""
        if isinstance(e, ConnectionClosed) and e.rcvd is not None and e.rcvd.code == NAME_TAKEN:
            self.refused = f"the server at {self.server} refused this agent: {e.rcvd.reason}"
            self._stop.set()
        elif isinstance(e, ConnectionClosed) and e.rcvd is not None and e.rcvd.code == 1008:
            # a policy violation: the server refused this agent, and says why
            log.error("the server at %s refused this agent: %s; trying again in %.1fs", self.server,
                      e.rcvd.reason, delay)
        else:
            log.warning("no connection to %s (%s); trying again in %.1fs", self.server, e, delay)
        if len(self.servers) > 1:
            self.server = self.servers[(self.servers.index(self.server) + 1) % len(self.servers)]
            return min(delay, 0.5)
        return delay

    async def run(self) -> None:
        self._vouch()
        if not self.use_cgroups:
            log.info("cgroups are off: jobs are measured from their processes and limited with rlimits")
        self.cgroups = Cgroups.setup(self._cgroup_group) if self.use_cgroups else None
        self.cgpool = CgroupPool(self.cgroups) if self.cgroups is not None else None
        self.recover()
        enforcing = asyncio.create_task(self._enforce_loop())
        # [agent] purge_scratch_hours: old leftovers of jobs go from scratch, never a running job's files
        purging = asyncio.create_task(purge.every(self.scratch, self.config.agent.purge_scratch_hours,
                                                  lambda: list(self.jobs)))
        self.sessions = SessionServer(self.name, self._session_started, self._finish_exit,
                                      listen=self.config.agent.session_listen)
        self.sessions.on_task_ended = self._task_ended
        port = await self.sessions.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        backoff = Backoff(self.config.agent.reconnect_max)
        stopper = asyncio.create_task(self._stop.wait())
        while not self._stop.is_set():
            began = time.monotonic()
            task = asyncio.create_task(self._session(port))
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
                break
            if time.monotonic() - began > 10:
                backoff.reset()  # it had been up for a while: try again soon
            delay = backoff.next()
            try:
                task.result()
            except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError) as e:
                delay = self._no_connection(e, delay)
            except InvalidURI as e:
                log.error("bad server URL %s: %s", self.server, e)
                return
            if self._stop.is_set():
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._stop.wait()), delay)
        stopper.cancel()
        enforcing.cancel()
        purging.cancel()
        await self.sessions.close()
        if self.vouch is not None:
            self.vouch.close()
        self.monitor.close()
        self._release_cgroups()
        self._remove_left_cgroups()
        if self.cgpool is not None:
            self.cgpool.close()
        if self.cgroups is not None:
            self.cgroups.close()
        log.info("agent %s stopped; %d jobs keep running", self.name, len(self.jobs))


def _record(run: Running) -> dict[str, Any]:
    return {key: getattr(run, key) for key in JOURNAL_KEYS}


def _notice_fields(job: StartJob) -> dict[str, Any]:
    """A job's warning and checkpoint signals, as its running record keeps them."""
    return {"warn_signal": job.warn_signal if job.time_limit else None, "warn_before": job.warn_before or 0.0,
            "checkpoint_signal": job.checkpoint_signal, "checkpoint_every": job.checkpoint_every}


def _notices_from(run: Running, entry: dict[str, Any]) -> None:
    """The warning and checkpoint signals of a journal's entry (none in an older one); ValueError, TypeError
    for one that is not what this agent writes."""
    for key in ("warn_signal", "checkpoint_signal"):
        value = entry.get(key)
        setattr(run, key, None if value is None else int(signal.Signals(int(value))))
    run.warn_before = float(entry.get("warn_before") or 0.0)
    every = entry.get("checkpoint_every")
    run.checkpoint_every = None if every is None else float(every)


def _start_failure(e: Exception) -> tuple[int | None, str]:
    """The exit code and reason of a job that could not start because of ``e``."""
    if isinstance(e, CannotRun):
        return None, str(e)
    if isinstance(e, OSError):
        return 127, f"could not start: {e.strerror or e}" + (f": {e.filename}" if e.filename else "")
    if isinstance(e, ValueError):
        return None, f"could not start: {e}"
    log.error("starting a job failed", exc_info=e)  # a bug of the agent's: its trace goes to the log
    return None, f"could not start: {type(e).__name__}: {e}"


_own_peak_kb = 0  # the agent's peak resident size (KB) when last looked at


def _job_maxrss_mb(maxrss_kb: int) -> float:
    """A job's peak resident size from its wait status, 0 when that may be the agent's own.

    The kernel keeps a process's high-water mark across exec, and a job is spawned with vfork
    semantics, sharing the agent's memory until its exec: a job that stayed smaller than the agent
    reports the agent's peak. Only a value above the agent's own peak is the job's.
    """
    global _own_peak_kb
    if maxrss_kb > _own_peak_kb:  # perhaps above the agent's peak: look at it again (it only grows)
        _own_peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss_kb / 1024.0 if maxrss_kb > _own_peak_kb else 0.0


def _signal_job(run: Running, signum: int) -> None:
    """Signal every process of a job: everything in its cgroup (or, without one, below its supervisor),
    which also reaches processes that left the job's session, but not the supervisor (``run.pid``),
    which waits to write the job's exit status; SIGKILL ends the supervisor too."""
    run.signalled = signum
    spare = None if signum == signal.SIGKILL else run.pid
    below = jobprocs.tree(run.pid)[1:]
    for pid in below[:1]:  # the job's own session leader first: its whole process group
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signum)
    cg = run.meter.joined() if run.meter is not None else None
    if cg is not None:
        cg.signal(signum, spare=spare)
    else:
        for pid in below:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signum)
    if spare is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(run.pid, signum)


def _notify_job(run: Running, signum: int) -> None:
    """Send every process of a job (not its supervisor) ``signum`` once: a warning or a checkpoint
    signal that a process handles must not come twice (:func:`_signal_job` reaches the job's process
    group and then its cgroup, which is no matter for TERM)."""
    run.signalled = signum  # (a job that dies of it, as its shell says, died of that signal)
    cg = run.meter.joined() if run.meter is not None else None
    if cg is not None:
        cg.signal(signum, spare=run.pid)
        return
    for pid in jobprocs.tree(run.pid)[1:]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def _is_the_job(run: Running) -> bool:
    """Is the process with the job's pid still the job's supervisor: the same process (by its start
    time, when noted), started for this job (by the job id in its environment), leading its session?"""
    if run.start_ticks is not None and _proc_start(run.pid) != run.start_ticks:
        return False
    if procfs.job_id_of(run.pid) != run.id:
        return False
    with contextlib.suppress(OSError):
        return os.getsid(run.pid) == run.pid
    return False


def _spawned(rc_file: str, supervisor: int | None) -> bool:
    """Whether the job of a journaled intent was started, by its status file (see launcher.pending_rc)
    and its supervisor, if one was found; the file gets its final name meanwhile."""
    pending = launcher.pending_rc(rc_file)
    if os.path.lexists(pending):
        if supervisor is None and launcher.read_rc(pending) is None:  # made, and no spawn followed
            with contextlib.suppress(OSError):
                os.unlink(pending)
            return False
        os.replace(pending, rc_file)  # spawned (it runs, or ran and said how it ended)
        return True
    return supervisor is not None or os.path.lexists(rc_file)


def _find_supervisor(job_id: int) -> int | None:
    """The supervisor of a job whose spawn the journal did not record (the agent died meanwhile): the
    session leader started for the job whose parent was not (the job itself leads a session too)."""
    leaders = {p.pid: p for p in procfs.scan_processes() if p.pid == p.sid}
    found = {pid for pid in leaders if procfs.job_id_of(pid) == job_id}
    tops = [pid for pid in found if leaders[pid].ppid not in found]
    return tops[0] if len(tops) == 1 else None


def _session_members(sid: int) -> list[int]:
    """Every process in the session led by ``sid`` (a job's processes), from /proc."""
    return [p.pid for p in procfs.scan_processes() if p.sid == sid]


def key_path(config: Config, server: str) -> Path:
    """Where the agent finds the cluster key: ``[auth] key_file``; else, for a server on this machine
    (``unix:PATH``), the key beside its socket, where the server made it; else the default."""
    if not config.auth.key_file and server.startswith("unix:"):
        beside = Path(server[5:]).parent / "cluster.key"
        if beside.exists():
            return beside
    return config.key_path()


def run(config: Config, server: str, name: str | None, cpus: float | None, mem_mb: float | None,
        vouch_socket: str | None = None) -> None:
    import uvloop

    from wulf.rlimits import raise_open_files

    raise_open_files()  # a few files per running job; the jobs get the limit the agent was given
    agent = Agent(config, server, name, cpus, mem_mb, key=load_key(key_path(config, server)), vouch_socket=vouch_socket)
    uvloop.run(agent.run())
    if agent.refused:
        raise WulfError(agent.refused)
