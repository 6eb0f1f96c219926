"""The node agent: one WebSocket to the server, reports up, commands down.

Agents are expendable, jobs are not. Every job the agent starts is written to a small journal in the
agent's state directory; a restarted agent reads it, finds its jobs still running (checked by pid and
process start time), watches them again and reports them to the server, which reconciles. Exits are
kept in the journal until the server acknowledges that it has recorded them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import signal
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from websockets.asyncio.client import ClientConnection, connect, unix_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from wulf.agent import launcher, procfs
from wulf.agent.monitor import Monitor
from wulf.agent.session import SessionServer
from wulf.config import Config, default_state_dir
from wulf.protocol import (
    Ack,
    Exited,
    Hello,
    JobExit,
    JobStarted,
    Quit,
    Renice,
    Report,
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

KILL_GRACE = 10.0  # seconds between TERM and KILL when a job is cancelled


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
    pidfd: int = -1
    adopted: bool = False  # found again after a restart: not our child, so no wait status


class Journal:
    """What the agent must not forget across its own restarts: jobs running, exits not yet acknowledged.

    An append-only file of JSON lines (``start``, ``exit``, ``ack``), one write per batch of events,
    rewritten with only the live entries when it has grown. It lives in a tmpfs runtime directory:
    jobs do not survive a reboot, and neither need their records.
    """

    COMPACT_AFTER = 20000  # records appended before the file is rewritten

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = root / "journal.jsonl"
        self.live: dict[int, dict[str, Any]] = {}
        self._appended = 0
        self._fd = -1

    def load(self) -> list[dict[str, Any]]:
        """The live entries left by a previous run; then the file is rewritten with just those."""
        self.live.clear()
        try:
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        continue  # a torn last line from a crash
                    self._apply(rec)
        except FileNotFoundError:
            pass
        self._rewrite()
        return list(self.live.values())

    def _apply(self, rec: dict[str, Any]) -> None:
        if "ack" in rec:
            for job_id in rec["ack"]:
                self.live.pop(int(job_id), None)
        else:
            self.live[int(rec["id"])] = rec

    def _rewrite(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        tmp = self.root / "journal.tmp"
        tmp.write_text("".join(json.dumps(r) + "\n" for r in self.live.values()))
        os.replace(tmp, self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        self._appended = 0

    def append(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        for rec in records:
            self._apply(rec)
        if self._fd < 0:
            self._rewrite()
        os.write(self._fd, "".join(json.dumps(r) + "\n" for r in records).encode())
        self._appended += len(records)
        if self._appended > self.COMPACT_AFTER and len(self.live) < self._appended // 4:
            self._rewrite()


def runtime_dir(config: Config, name: str, state: Path) -> Path:
    """tmpfs for the journal and exit-status files: fast, and gone at reboot like the jobs."""
    if config.agent.runtime_dir:
        return Path(config.agent.runtime_dir)
    tag = hashlib.sha1(str(state.resolve()).encode()).hexdigest()[:8]
    base = os.environ.get("XDG_RUNTIME_DIR") or ("/dev/shm" if os.path.isdir("/dev/shm") else str(state))
    return Path(base) / f"wulf-{os.getuid()}" / f"{name}-{tag}"


class Agent:
    def __init__(self, config: Config, server: str, name: str | None = None, cpus: float | None = None,
                 mem_mb: float | None = None) -> None:
        self.config = config
        self.server = server
        self.name = name or socket.gethostname().split(".")[0]
        self.cpus = cpus
        self.mem_mb = mem_mb
        acfg = config.agent
        self.scratch = acfg.scratch
        state = Path(acfg.state_dir) if acfg.state_dir else default_state_dir() / f"agent-{self.name}"
        self.runtime = runtime_dir(config, self.name, state)
        self.journal = Journal(self.runtime)
        self._journal_queue: list[dict[str, Any]] = []
        ignore = {os.getpid()}
        for p in os.environ.get("WULF_IGNORE_PIDS", "").split(","):
            if p.strip().isdigit():
                ignore.add(int(p))
        self.monitor = Monitor(self.scratch, ignore, acfg.external_min_cpu, acfg.external_min_mem_mb)
        self.interval = acfg.interval
        self.jobs: dict[int, Running] = {}
        self.unacked: dict[int, JobExit] = {}
        self._started: list[JobStarted] = []
        self._exited: list[JobExit] = []
        self._flush_scheduled = False
        self._ws: ClientConnection | None = None
        self._stop = asyncio.Event()
        self.sessions: SessionServer | None = None
        self._kill_timers: dict[int, asyncio.TimerHandle] = {}

    # ------------------------------------------------------------------ jobs

    def recover(self) -> None:
        """Take back the jobs of a previous run of this agent from the journal."""
        for entry in self.journal.load():
            job_id = int(entry["id"])
            if "exit" in entry:
                self.unacked[job_id] = JobExit.model_validate(entry["exit"])
                continue
            run = Running(**{k: entry[k] for k in ("id", "pid", "start_ticks", "started", "rc_file",
                                                 "script_file", "keep_script")})
            run.adopted = True
            if not _same_process(run) or not self._watch(run):
                self._ended_while_away(run)
            else:
                self.jobs[job_id] = run
                log.info("job %d (pid %d) is still running; watching it again", job_id, run.pid)

    def _ended_while_away(self, run: Running) -> None:
        rc = launcher.read_rc(run.rc_file)
        reason = "" if rc is not None else "lost: it ended while the agent was down and left no exit status"
        self._finish(run, JobExit(id=run.id, exit_code=rc, time=time.time(), reason=reason))

    def _watch(self, run: Running) -> bool:
        try:
            run.pidfd = os.pidfd_open(run.pid)
        except ProcessLookupError:
            return False
        asyncio.get_running_loop().add_reader(run.pidfd, self._reap, run)
        return True

    def start_jobs(self, jobs: list[StartJob]) -> None:
        for job in jobs:
            if job.id in self.jobs or job.id in self.unacked:
                continue  # already started: nothing is started twice
            try:
                pid, launch = launcher.spawn(job, self.name, self.scratch, str(self.runtime))
            except OSError as e:
                reason = f"could not start: {e.strerror or e}" + (f": {e.filename}" if e.filename else "")
                log.warning("job %d: %s", job.id, reason)
                self._finish_exit(JobExit(id=job.id, exit_code=127, time=time.time(), reason=reason))
                continue
            now = time.time()
            run = Running(job.id, pid, None, now, launch.rc_file, launch.script_file, job.keep_script)
            self._journal_queue.append(_record(run))
            self.jobs[job.id] = run
            if not self._watch(run):
                self._reap(run)
            self._started.append(JobStarted(id=job.id, pid=pid, time=now))
            self._schedule_flush()

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
                peak = usage.ru_maxrss / 1024.0
        reason = "" if exit_code is not None or sig is not None else "lost: exit status unknown"
        if sig is not None:
            reason = f"killed by signal {sig} ({signal.Signals(sig).name if sig in signal.valid_signals() else sig})"
        self._finish(run, JobExit(id=run.id, exit_code=exit_code, signal=sig, time=time.time(),
                                  cpu_time=round(cpu, 3), peak_mem_mb=round(peak, 1), reason=reason))

    def _finish(self, run: Running, exit: JobExit) -> None:
        if run.pidfd >= 0:
            asyncio.get_running_loop().remove_reader(run.pidfd)
            os.close(run.pidfd)
            run.pidfd = -1
        self.jobs.pop(run.id, None)
        timer = self._kill_timers.pop(run.id, None)
        if timer:
            timer.cancel()
        launcher.cleanup(run.rc_file, run.script_file, run.keep_script)
        self._finish_exit(exit)

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
            if run is None:
                if self.sessions is not None:
                    self.sessions.signal(job_id, signum)
                continue
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(run.pid, signum)
            if signum == signal.SIGTERM and job_id not in self._kill_timers:
                loop = asyncio.get_running_loop()
                self._kill_timers[job_id] = loop.call_later(KILL_GRACE, self._kill, job_id)

    def _kill(self, job_id: int) -> None:
        self._kill_timers.pop(job_id, None)
        run = self.jobs.get(job_id)
        if run is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(run.pid, signal.SIGKILL)

    def renice(self, job_id: int, nice: int) -> None:
        pid = self.jobs[job_id].pid if job_id in self.jobs else None
        if pid is None and self.sessions is not None:
            pid = self.sessions.running().get(job_id)
        if pid is None:
            return
        for p in _session_members(pid):
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, p, nice)

    # ------------------------------------------------------------------ talking to the server

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(lambda: asyncio.ensure_future(self._flush()))

    async def _flush(self) -> None:
        self._flush_scheduled = False
        records, self._journal_queue = self._journal_queue, []
        self.journal.append(records)  # before the server hears of it
        ws = self._ws
        if ws is None:
            return  # sent with the next hello
        started, self._started = self._started, []
        exited, self._exited = self._exited, []
        try:
            if started:
                await ws.send(Started(jobs=started).model_dump_json())
            if exited:
                await ws.send(Exited(jobs=exited).model_dump_json())
        except ConnectionClosed:
            pass  # exits stay in `unacked` and go with the next hello

    async def _report_loop(self, ws: ClientConnection) -> None:
        while True:
            self._note_start_ticks()
            roots = {run.pid: job_id for job_id, run in self.jobs.items()}
            if self.sessions is not None:
                roots.update({pid: job_id for job_id, pid in self.sessions.running().items()})
            sample, uses, clusters = self.monitor.sample(roots)
            await ws.send(Report(sample=sample, jobs=uses, clusters=clusters).model_dump_json())
            await asyncio.sleep(self.interval)

    async def _handle(self, text: str | bytes) -> None:
        try:
            msg = server_message.validate_json(text)
        except ValidationError as e:
            log.warning("bad message from the server: %s", e.errors()[:1])
            return
        if isinstance(msg, Start):
            self.start_jobs(msg.jobs)
        elif isinstance(msg, Signal):
            self.signal_jobs(msg.ids, msg.signal)
        elif isinstance(msg, Ack):
            acked = [i for i in msg.ids if self.unacked.pop(i, None) is not None]
            self.journal.append([{"ack": acked}] if acked else [])
        elif isinstance(msg, Session):
            await self._prepare_session(msg)
        elif isinstance(msg, Renice):
            self.renice(msg.id, msg.nice)
        elif isinstance(msg, Welcome):
            self.interval = msg.interval
        elif isinstance(msg, Quit):
            log.info("the server asked this agent to quit")
            self._stop.set()

    async def _prepare_session(self, msg: Session) -> None:
        error = ""
        if self.sessions is None:
            error = "this agent takes no interactive jobs"
        else:
            self.sessions.expect(msg)
        if self._ws is not None:
            await self._ws.send(SessionReady(id=msg.job.id, error=error).model_dump_json())

    def _hello(self, session_port: int) -> Hello:
        info = self.monitor.node_info(self.name, self.cpus, self.mem_mb, session_port)
        running = [JobStarted(id=r.id, pid=r.pid, time=r.started) for r in self.jobs.values()]
        if self.sessions is not None:
            running += [JobStarted(id=i, pid=p, time=time.time()) for i, p in self.sessions.running().items()]
        return Hello(node=info, running=running, finished=list(self.unacked.values()))

    def _connect(self) -> Any:
        opts: dict[str, Any] = {"max_size": 64 * 1024 * 1024, "open_timeout": 10, "ping_interval": 20,
                                "ping_timeout": 60, "compression": None}
        if self.server.startswith("unix:"):
            return unix_connect(self.server[5:], "ws://localhost/api/v1/agent", **opts)
        base = self.server if "//" in self.server else "http://" + self.server
        return connect(base.replace("http://", "ws://", 1).rstrip("/") + "/api/v1/agent", **opts)

    async def _session(self, port: int) -> None:
        async with self._connect() as ws:
            await ws.send(self._hello(port).model_dump_json())
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

    async def run(self) -> None:
        self.recover()
        self.sessions = SessionServer(self.name, self._session_started, self._finish_exit,
                                      listen=self.config.agent.session_listen)
        port = await self.sessions.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        delay = 0.2
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
            try:
                task.result()
            except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError) as e:
                log.warning("no connection to %s (%s); trying again in %.1fs", self.server, e, delay)
            except InvalidURI as e:
                log.error("bad server URL %s: %s", self.server, e)
                return
            if self._stop.is_set():
                break
            if time.monotonic() - began > 10:
                delay = 0.2  # it had been up for a while: try again soon
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._stop.wait()), delay)
            delay = min(delay * 2, self.config.agent.reconnect_max)
        stopper.cancel()
        await self.sessions.close()
        self.monitor.close()
        log.info("agent %s stopped; %d jobs keep running", self.name, len(self.jobs))


def _record(run: Running) -> dict[str, Any]:
    rec = asdict(run)
    del rec["pidfd"], rec["adopted"]
    return rec


def _same_process(run: Running) -> bool:
    """Is the process with the job's pid still the job (and not a later process with the same pid)?"""
    if run.start_ticks is not None:
        return _proc_start(run.pid) == run.start_ticks
    try:  # started too recently to have its start time noted: look for its job id in its environment
        with open(f"/proc/{run.pid}/environ", "rb") as f:
            return f"WULF_JOB_ID={run.id}".encode() in f.read().split(b"\0")
    except OSError:
        return False


def _session_members(sid: int) -> list[int]:
    """Every process in the session led by ``sid`` (a job's processes), from /proc."""
    return [p.pid for p in procfs.scan_processes() if p.sid == sid]


def run(config: Config, server: str, name: str | None, cpus: float | None, mem_mb: float | None) -> None:
    import uvloop

    agent = Agent(config, server, name, cpus, mem_mb)
    uvloop.run(agent.run())
