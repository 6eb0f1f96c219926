"""Interactive jobs on this node: the agent's end of ``jr``.

The server tells the agent to expect a session (:class:`wulf.protocol.Session`: a job and a one-use
token). ``jr`` then connects here with TCP and says HELLO with the token (see
:mod:`wulf.interactive` for the frames). The job starts at that moment, under a new pseudo-terminal
or with three pipes, and its input and output are relayed over the connection until it exits; then
an EXIT frame is sent and the connection closed. A session not claimed in time is dropped and
reported as exited. When ``jr`` goes away, the job is hung up (SIGHUP, then SIGKILL).

Children are reaped here through a pidfd, never by a child watcher: the rest of the agent must not
``waitpid(-1)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hmac
import logging
import os
import resource
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from wulf import rlimits
from wulf.agent.launcher import SHELL, job_env
from wulf.agent.owner import CannotRun, Owner, owner_of, umask_of
from wulf.interactive import (
    CHUNK,
    HIGH_WATER,
    VERSION,
    WINDOW,
    Decoder,
    Frame,
    FrameError,
    HelloInfo,
    Kind,
    ack,
    data_frames,
    error_frame,
    exit_frame,
    keepalive,
    parse_hello,
    parse_signal,
    parse_winch,
)
from wulf.protocol import JobExit, Session, StartJob

log = logging.getLogger(__name__)

#: signals a job starts with at their defaults, whatever the agent does with them
_RESET_SIGNALS = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGTSTP,
                  signal.SIGTTIN, signal.SIGTTOU, signal.SIGCHLD, signal.SIGPIPE)


# ---------------------------------------------------------------- starting the process


def parse_listen(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[V6]:PORT``; an empty host means every address) as (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"session_listen {listen!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def command_line(command: str, env: dict[str, str]) -> tuple[str, list[str]]:
    """(program, argv) for a session: ``sh -c COMMAND``, or a login shell when there is no command.

    The login shell is the user's ``$SHELL`` with a ``-`` before its name in argv[0], which is how
    ``login`` and ``sshd`` start one, so it reads the user's profile as ``rsh host`` would.
    """
    if command.strip():
        return SHELL, [SHELL, "-c", command]
    shell = env.get("SHELL") or SHELL
    return shell, ["-" + os.path.basename(shell)]


def session_env(job: StartJob, node: str, term: str) -> dict[str, str]:
    env = job_env(job, node)
    if term:
        env["TERM"] = term
    return env


#: the descriptor a task reads its go-ahead on, once it is in its job's cgroup (one digit: dash's limit)
GATE_FD = 3


def _child_setup(ctty: bool, cwd: str | None, gate: int | None = None) -> Callable[[], None]:
    """Runs in the child between fork and exec (after it became a session leader and changed user)."""

    def setup() -> None:
        if gate is not None:
            os.dup2(gate, GATE_FD)
        for sig in _RESET_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        if cwd is not None:  # as the user, so a directory they may not enter stays closed
            os.chdir(cwd)
        if ctty:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        rlimits.restore_in_child()  # the open-file limit the agent was given, as a login would have

    return setup


def set_winsize(fd: int, rows: int, cols: int) -> None:
    if rows > 0 and cols > 0:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


@dataclass
class _Proc:
    pid: int
    popen: subprocess.Popen[bytes]
    stdin: int  # the pty master, or the write end of the stdin pipe
    outputs: dict[int, Kind]  # fd -> the frame kind its bytes go out as

    def fds(self) -> set[int]:
        return {fd for fd in (self.stdin, *self.outputs) if fd >= 0}


class StartError(Exception):
    """The job could not start; the message is for the user."""


def _stdio(pty: bool, ident: Owner | None, hello: HelloInfo) -> tuple[list[int], list[int], tuple[int, int, int]]:
    """(the agent's ends, the child's ends, the child's stdin, stdout and stderr): a pty or three pipes."""
    if pty:
        master, slave = os.openpty()
        if ident is not None:  # the terminal is its user's, as login makes it
            os.fchown(slave, ident.uid, ident.gid)
        set_winsize(slave, hello.rows, hello.cols)
        return [master], [slave], (slave, slave, slave)
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    return [in_w, out_r, err_r], [in_r, out_w, err_w], (in_r, out_w, err_w)


def spawn(job: StartJob, node: str, hello: HelloInfo, pty: bool, cgroup_procs: Sequence[str] = ()) -> _Proc:
    """Start a session's job, as its owner (see wulf.agent.owner), in its own session and process group;
    with ``cgroup_procs`` (a task of ``wulf launch``), in that cgroup before it runs anything."""
    try:
        ident = owner_of(job, node)
    except CannotRun as e:
        raise StartError(str(e)) from None
    env = session_env(job, node, hello.term)
    if ident is not None:
        env = ident.env(env)
    program, argv = command_line(job.command, env)
    if not os.path.isdir(job.cwd):
        raise StartError(f"the directory {job.cwd} does not exist on {node}")
    gate = os.pipe() if cgroup_procs else None
    if gate is not None:  # it waits until the agent has put it in the cgroup
        program, argv = SHELL, [SHELL, "-c", f'read _ <&{GATE_FD}; exec {GATE_FD}<&-; exec "$@"', "wulf-task", *argv]
    setup = _child_setup(pty, job.cwd if ident is not None else None, gate[0] if gate is not None else None)
    cwd = None if ident is not None else job.cwd
    child_fds: list[int] = [gate[0]] if gate is not None else []
    parent_fds: list[int] = [gate[1]] if gate is not None else []
    try:
        parent, child, stdio = _stdio(pty, ident, hello)
        parent_fds += parent
        child_fds += child
        popen = subprocess.Popen(
            argv, executable=program, stdin=stdio[0], stdout=stdio[1], stderr=stdio[2], cwd=cwd, env=env,
            start_new_session=True, preexec_fn=setup, umask=umask_of(job), pass_fds=(GATE_FD,) if gate else (),
            user=None if ident is None else ident.uid, group=None if ident is None else ident.gid,
            extra_groups=None if ident is None else list(ident.groups),
        )
    except subprocess.SubprocessError:
        _close_all(parent_fds)
        raise StartError(f"cannot start the job in {job.cwd} as uid {job.uid} on {node}") from None
    except OSError as e:
        _close_all(parent_fds)
        raise StartError(f"cannot start the job on {node}: {e.strerror or e}") from None
    except ValueError as e:  # a NUL byte, a bad environment name: refused at submission, and here too
        _close_all(parent_fds)
        raise StartError(f"cannot start the job on {node}: {e}") from None
    finally:
        _close_all(child_fds)
    if gate is not None:
        parent_fds.remove(gate[1])
        _join(popen.pid, cgroup_procs, gate[1])
    for fd in parent_fds:
        os.set_blocking(fd, False)
    if pty:
        return _Proc(popen.pid, popen, parent_fds[0], {parent_fds[0]: Kind.STDOUT})
    return _Proc(popen.pid, popen, parent_fds[0], {parent_fds[1]: Kind.STDOUT, parent_fds[2]: Kind.STDERR})


def _join(pid: int, cgroup_procs: Sequence[str], gate: int) -> None:
    """Put a task in its job's cgroup (as root: the agent), then let it run; it runs without when it
    cannot be put there (logged)."""
    try:
        for path in cgroup_procs:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, str(pid).encode())
            finally:
                os.close(fd)
    except OSError as e:
        log.warning("a task (pid %d) runs outside its job's cgroup: %s", pid, e)
    finally:
        with contextlib.suppress(OSError):
            os.write(gate, b"1\n")
        os.close(gate)


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _killpg(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


# ---------------------------------------------------------------- one running session


class _Running:
    """Relays one started job over its connection and reaps it."""

    def __init__(self, job: StartJob, proc: _Proc, pty: bool, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, decoder: Decoder, early: list[Frame],
                 hangup_grace: float, drain_grace: float) -> None:
        self.job, self.proc, self.pty = job, proc, pty
        self.reader, self.writer, self.decoder, self.early = reader, writer, decoder, early
        self.hangup_grace, self.drain_grace = hangup_grace, drain_grace
        self.loop = asyncio.get_running_loop()
        self.connected = True
        self.reason = ""
        self.status: int | None = None
        self.rusage: resource.struct_rusage | None = None
        self.reaped = asyncio.Event()
        self.outputs_done = asyncio.Event()
        self._open_outputs = set(proc.outputs)
        self._active = False  # output was read since the last look
        self._paused: asyncio.Task[None] | None = None
        self._in_buf = bytearray()
        self._in_eof = False
        self._in_closed = False
        self._in_writing = False
        self._kill_timer: asyncio.TimerHandle | None = None
        self._pidfd = -1

    # -------------------------------------------------------------- life

    async def run(self) -> JobExit:
        self._pidfd = os.pidfd_open(self.proc.pid)
        self.loop.add_reader(self._pidfd, self._on_pidfd)
        for fd, kind in self.proc.outputs.items():
            self.loop.add_reader(fd, self._on_output, fd, kind)
        pump = asyncio.create_task(self._pump_input())
        try:
            await self.reaped.wait()
            if self.connected:
                await self._drain_outputs()
                self._send(exit_frame(*self._exit_fields()))
                with contextlib.suppress(ConnectionError, TimeoutError):
                    await asyncio.wait_for(self.writer.drain(), self.hangup_grace)
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
            self._cleanup()
            await _close_writer(self.writer)
        return self._job_exit()

    async def _drain_outputs(self) -> None:
        """After the exit, relay what is left until the outputs end or stay quiet for a while."""
        while not self.outputs_done.is_set():
            self._active = False
            try:
                await asyncio.wait_for(self.outputs_done.wait(), self.drain_grace)
            except TimeoutError:
                if not self._active and self._paused is None:
                    return  # something the job left behind still holds them open

    def _cleanup(self) -> None:
        if self._kill_timer is not None:
            self._kill_timer.cancel()
        if self._paused is not None:
            self._paused.cancel()
        if self._pidfd >= 0:
            self.loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1
        for fd in self.proc.fds():
            self.loop.remove_reader(fd)
            self.loop.remove_writer(fd)
        _close_all(list(self.proc.fds()))

    def _exit_fields(self) -> tuple[int | None, int | None]:
        if self.status is None:
            return None, None
        if os.WIFSIGNALED(self.status):
            return None, os.WTERMSIG(self.status)
        return os.waitstatus_to_exitcode(self.status), None

    def _job_exit(self) -> JobExit:
        code, sig = self._exit_fields()
        ru = self.rusage
        reason = self.reason
        if not reason and sig is not None:
            name = signal.Signals(sig).name if sig in signal.valid_signals() else str(sig)
            reason = f"killed by signal {sig} ({name})"
        return JobExit(id=self.job.id, exit_code=code, signal=sig, time=time.time(),
                       cpu_time=0.0 if ru is None else round(ru.ru_utime + ru.ru_stime, 3),
                       peak_mem_mb=0.0 if ru is None else round(ru.ru_maxrss / 1024.0, 1), reason=reason)

    def _on_pidfd(self) -> None:
        try:
            pid, status, rusage = os.wait4(self.proc.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status, rusage = self.proc.pid, -1, None
            self.reason = self.reason or "reaped by someone else: exit status unknown"
        if pid == 0:
            return
        self.status = None if status == -1 else status
        self.rusage = rusage
        self.proc.popen.returncode = 0 if status == -1 else os.waitstatus_to_exitcode(status)
        self.loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = -1
        if self._kill_timer is not None:
            self._kill_timer.cancel()
        self.reaped.set()

    # -------------------------------------------------------------- signals

    def kill(self, signum: int) -> bool:
        if self.reaped.is_set():
            return False
        _killpg(self.proc.pid, signum)
        return True

    def hangup(self, reason: str) -> None:
        """End the job as a closed terminal would: SIGHUP (and SIGCONT), SIGKILL a little later."""
        self.connected = False
        if self.reaped.is_set():
            return
        self.reason = self.reason or reason
        self.kill(signal.SIGHUP)
        self.kill(signal.SIGCONT)
        if self._kill_timer is None:
            self._kill_timer = self.loop.call_later(self.hangup_grace, self.kill, signal.SIGKILL)

    # -------------------------------------------------------------- job -> jr

    def _send(self, frame: bytes) -> None:
        if self.connected and not self.writer.is_closing():
            self.writer.write(frame)

    def _on_output(self, fd: int, kind: Kind) -> None:
        try:
            data = os.read(fd, CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # EIO: the last holder of the pty's other side is gone
            data = b""
        if not data:
            self.loop.remove_reader(fd)
            self._open_outputs.discard(fd)
            if not self._open_outputs:
                self.outputs_done.set()
            return
        self._active = True
        if not self.connected:
            return  # read and drop, so the job does not block on a full pipe before it dies
        for frame in data_frames(kind, data):
            self._send(frame)
        transport = self.writer.transport
        if self._paused is None and transport.get_write_buffer_size() > HIGH_WATER:
            for out in self._open_outputs:
                self.loop.remove_reader(out)
            self._paused = asyncio.create_task(self._resume_outputs())

    async def _resume_outputs(self) -> None:
        try:
            await self.writer.drain()
        except ConnectionError:
            self.hangup("jr disconnected")
        self._paused = None
        for fd in self._open_outputs:
            self.loop.add_reader(fd, self._on_output, fd, self.proc.outputs[fd])

    # -------------------------------------------------------------- jr -> job

    async def _pump_input(self) -> None:
        try:
            for frame in self.early:
                self._on_frame(frame)
            while True:
                data = await self.reader.read(CHUNK)
                if not data:
                    break
                for frame in self.decoder.feed(data):
                    self._on_frame(frame)
        except (OSError, FrameError) as e:  # reset, timed out (keepalive), or a broken jr
            log.info("session of job %s: %s", self.job.id, e)
        self.hangup("jr disconnected")

    def _on_frame(self, frame: Frame) -> None:
        if frame.kind is Kind.STDIN:
            if self._in_closed or self._in_eof:
                self._send(ack(len(frame.payload)))  # dropped, as a closed pipe would
            elif len(self._in_buf) + len(frame.payload) > WINDOW:
                raise FrameError("jr sent more input than its window allows")
            else:
                self._in_buf += frame.payload
                self._write_input()
        elif frame.kind is Kind.EOF:
            if not self._in_eof:
                self._in_eof = True
                if self.pty:
                    self._in_buf += b"\x04"  # the terminal's end-of-file character
                self._write_input()
        elif frame.kind is Kind.WINCH:
            if self.pty and not self._in_closed:
                rows, cols = parse_winch(frame)
                with contextlib.suppress(OSError):
                    set_winsize(self.proc.stdin, rows, cols)
        elif frame.kind is Kind.SIGNAL:
            self.kill(parse_signal(frame))
        else:
            log.info("session of job %s: ignored a %s frame", self.job.id, frame.kind.name)

    def _write_input(self) -> None:
        fd = self.proc.stdin
        if self._in_closed:
            return
        try:
            n = os.write(fd, self._in_buf) if self._in_buf else 0
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError:  # the job closed its stdin (EPIPE) or the terminal is gone (EIO)
            self._send(ack(len(self._in_buf)))
            self._in_buf.clear()
            self._close_input()
            return
        if n:
            self._send(ack(n))
        del self._in_buf[:n]
        if self._in_buf and not self._in_writing:
            self.loop.add_writer(fd, self._write_input)
            self._in_writing = True
        elif not self._in_buf and self._in_writing:
            self.loop.remove_writer(fd)
            self._in_writing = False
        if not self._in_buf and self._in_eof and not self.pty:
            self._close_input()

    def _close_input(self) -> None:
        self._in_closed = True
        if self._in_writing:
            self.loop.remove_writer(self.proc.stdin)
            self._in_writing = False
        if not self.pty:  # the pty master is also the output: it stays open
            _close_all([self.proc.stdin])
            self.proc.stdin = -1


async def _close_writer(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()


# ---------------------------------------------------------------- the server


@dataclass
class _Pending:
    session: Session
    timer: asyncio.TimerHandle
    cgroup_procs: Sequence[str] = ()  # a task's: its job's cgroup here


#: a session's key: its job, and its task of ``wulf launch`` (None: an interactive job)
_Key = tuple[int, int | None]


def _key(session: Session) -> _Key:
    return (session.job.id, session.task)


class SessionServer:
    """Where ``jr`` connects to run interactive jobs on this node.

    Every method is called from the event loop's thread; ``on_started`` and ``on_exited`` are called
    there too.
    """

    def __init__(self, node: str, on_started: Callable[[int, int], None],
                 on_exited: Callable[[JobExit], None], listen: str = "0.0.0.0:0", *,
                 claim_timeout: float = 60.0, hello_timeout: float = 10.0, hangup_grace: float = 5.0,
                 drain_grace: float = 1.0) -> None:
        self.node = node
        self.on_started = on_started
        self.on_exited = on_exited
        self.host, self.port = parse_listen(listen)
        self.claim_timeout = claim_timeout
        self.hello_timeout = hello_timeout
        self.hangup_grace = hangup_grace
        self.drain_grace = drain_grace
        self._server: asyncio.Server | None = None
        self._pending: dict[str, _Pending] = {}
        self._running: dict[_Key, _Running] = {}
        self.on_task_ended: Callable[[int], None] | None = None  # told the job when a task of it ends
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        """Listen; returns the port (the one the kernel chose when ``listen`` said 0)."""
        self._server = await asyncio.start_server(self._serve, self.host or None, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    def expect(self, session: Session, cgroup_procs: Sequence[str] = ()) -> None:
        """Hold ``session`` until jr (or ``wulf launch``) claims it with its token, or drop it after
        ``claim_timeout``. A task's session starts its task in ``cgroup_procs``'s cgroup."""
        key = _key(session)
        if key in self._running:
            log.warning("session for job %s: already running, ignored", session.job.id)
            return
        for token, p in list(self._pending.items()):
            if _key(p.session) == key:
                p.timer.cancel()
                del self._pending[token]
        timer = asyncio.get_running_loop().call_later(self.claim_timeout, self._expire, session.token)
        self._pending[session.token] = _Pending(session, timer, cgroup_procs)

    def signal(self, job_id: int, signum: int) -> bool:
        """Send ``signum`` to the process groups of a running interactive job, or of a job's tasks here;
        False if none is running. (A job's tasks not yet claimed are dropped.)"""
        for token, p in list(self._pending.items()):
            if p.session.job.id == job_id and p.session.task is not None:
                p.timer.cancel()
                del self._pending[token]
        sent = [r.kill(signum) for (i, _), r in list(self._running.items()) if i == job_id]
        return any(sent)

    def cancel(self, job_id: int, reason: str = "cancelled") -> bool:
        """Drop a session not yet claimed (reported as exited), or hang up a running one."""
        for token, p in list(self._pending.items()):
            if p.session.job.id == job_id:
                p.timer.cancel()
                del self._pending[token]
                self._report(JobExit(id=job_id, exit_code=None, time=time.time(), reason=reason))
                return True
        r = self._running.get((job_id, None))
        if r is None:
            return False
        r.hangup(reason)
        return True

    def running(self) -> dict[int, int]:
        """The interactive jobs running here: job -> pid."""
        return {job_id: r.proc.pid for (job_id, task), r in self._running.items()
                if task is None and not r.reaped.is_set()}

    def task_pids(self) -> dict[int, int]:
        """The tasks of jobs (wulf launch) running here: pid -> job (their use is their job's, not outside work)."""
        return {r.proc.pid: job_id for (job_id, task), r in self._running.items()
                if task is not None and not r.reaped.is_set()}

    def tasks_of(self, job_id: int) -> int:
        """How many tasks of ``job_id`` run, or wait to be claimed, here."""
        return sum(1 for (i, t) in self._running if i == job_id and t is not None) + sum(
            1 for p in self._pending.values() if p.session.job.id == job_id and p.session.task is not None)

    def pending(self) -> list[int]:
        return [p.session.job.id for p in self._pending.values() if p.session.task is None]

    async def close(self) -> None:
        """Stop listening, drop unclaimed sessions and hang up running ones (they are reported)."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for token, p in list(self._pending.items()):
            if p.session.task is None:
                self.cancel(p.session.job.id, "the agent stopped before jr connected")
            else:
                p.timer.cancel()
                del self._pending[token]
        for r in list(self._running.values()):
            r.hangup("the agent stopped")
            with contextlib.suppress(RuntimeError):
                r.writer.transport.abort()
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=self.hangup_grace + 5.0)

    # -------------------------------------------------------------- internals

    def _expire(self, token: str) -> None:
        p = self._pending.pop(token, None)
        if p is not None and p.session.task is not None:
            log.info("task %s of job %s: wulf launch never connected", p.session.task, p.session.job.id)
            self._task_ended(p.session.job.id)
        elif p is not None:
            log.info("session for job %s: jr never connected", p.session.job.id)
            self._report(JobExit(id=p.session.job.id, exit_code=None, time=time.time(),
                                 reason="jr never connected"))

    def _claim(self, token: str) -> _Pending | None:
        given = token.encode("utf-8", "replace")
        for known in list(self._pending):
            if hmac.compare_digest(known.encode("utf-8", "replace"), given):
                p = self._pending.pop(known)
                p.timer.cancel()
                return p
        return None

    def _task_ended(self, job_id: int) -> None:
        if self.on_task_ended is not None:
            try:
                self.on_task_ended(job_id)
            except Exception:
                log.exception("on_task_ended failed for job %s", job_id)

    def _report(self, exit: JobExit) -> None:
        try:
            self.on_exited(exit)
        except Exception:
            log.exception("on_exited failed for job %s", exit.id)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._session(reader, writer)
        except Exception:
            log.exception("session connection failed")
        finally:
            self._handlers.discard(task)
            await _close_writer(writer)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                keepalive(sock)
        decoder = Decoder()
        try:
            first, early = await asyncio.wait_for(_read_first(reader, decoder), self.hello_timeout)
            hello = parse_hello(first)
        except (OSError, FrameError) as e:  # OSError includes TimeoutError
            log.info("session connection dropped before a valid HELLO: %s", e or type(e).__name__)
            return
        if hello.version != VERSION:
            await _refuse(writer, f"jr speaks session version {hello.version}, this agent {VERSION}: "
                                  "use the same wulf version on both ends")
            return
        claimed = self._claim(hello.token)
        if claimed is None:
            await _refuse(writer, f"no session with this token on {self.node} (unknown, expired or used)")
            return
        session = claimed.session
        job, task = session.job, session.task
        try:
            proc = spawn(job, self.node, hello, session.pty, claimed.cgroup_procs)
        except StartError as e:
            await _refuse(writer, str(e))
            if task is None:
                self._report(JobExit(id=job.id, exit_code=None, time=time.time(), reason=str(e)))
            else:
                self._task_ended(job.id)
            return
        run = _Running(job, proc, session.pty, reader, writer, decoder, early, self.hangup_grace,
                       self.drain_grace)
        key = _key(session)
        self._running[key] = run
        if task is None:
            try:
                self.on_started(job.id, proc.pid)
            except Exception:
                log.exception("on_started failed for job %s", job.id)
        try:
            exit = await run.run()
        finally:
            del self._running[key]
        if task is None:
            self._report(exit)  # (a task's exit went to wulf launch only: the job is not over)
        else:
            self._task_ended(job.id)


async def _read_first(reader: asyncio.StreamReader, decoder: Decoder) -> tuple[Frame, list[Frame]]:
    while True:
        data = await reader.read(CHUNK)
        if not data:
            raise ConnectionError("closed")
        frames = decoder.feed(data)
        if frames:
            return frames[0], frames[1:]


async def _refuse(writer: asyncio.StreamWriter, message: str) -> None:
    writer.write(error_frame(message))
    with contextlib.suppress(ConnectionError, TimeoutError):
        await asyncio.wait_for(writer.drain(), 5.0)
