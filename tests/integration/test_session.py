"""The agent's session server with the client jr uses, in one process on loopback.

The server runs on an asyncio loop in a background thread; the test thread plays jr with
``wulf.interactive.connect`` and ``Relay`` over pipes and files instead of a terminal.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import secrets
import select
import signal
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from wulf.agent.session import SessionServer, set_winsize
from wulf.interactive import Relay, SessionError, connect, relay
from wulf.protocol import JobExit, Session, StartJob

T = TypeVar("T")
DEADLINE = 20.0


class Harness:
    def __init__(self, **options: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.cond = threading.Condition()
        self.started: dict[int, int] = {}
        self.exited: dict[int, JobExit] = {}
        self.server = SessionServer("node1", self._on_started, self._on_exited, "127.0.0.1:0", **options)
        self.port = self.run(self.server.start())
        self.next_id = 1

    def _on_started(self, job_id: int, pid: int) -> None:
        with self.cond:
            self.started[job_id] = pid
            self.cond.notify_all()

    def _on_exited(self, exit: JobExit) -> None:
        with self.cond:
            self.exited[exit.id] = exit
            self.cond.notify_all()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(DEADLINE)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        async def call() -> T:
            return fn(*args)

        return self.run(call())

    def expect(self, command: str, pty: bool = False, cwd: str = "/tmp", uid: int | None = None,
               env: dict[str, str] | None = None) -> tuple[int, str]:
        job_id, self.next_id = self.next_id, self.next_id + 1
        token = secrets.token_urlsafe(16)
        job = StartJob(id=job_id, name=f"t{job_id}", user="tester", uid=os.getuid() if uid is None else uid,
                       queue="interactive", command=command, script=None, cwd=cwd,
                       env={"PATH": os.environ.get("PATH", os.defpath)} if env is None else env,
                       output="", keep_script=False, cpu=1.0, mem_mb=32.0)
        self.call(self.server.expect, Session(job=job, token=token, pty=pty))
        return job_id, token

    def wait_exit(self, job_id: int) -> JobExit:
        with self.cond:
            assert self.cond.wait_for(lambda: job_id in self.exited, DEADLINE), f"job {job_id} never exited"
            return self.exited[job_id]

    def wait_started(self, job_id: int) -> int:
        with self.cond:
            assert self.cond.wait_for(lambda: job_id in self.started, DEADLINE), f"job {job_id} never started"
            return self.started[job_id]

    def close(self) -> None:
        self.run(self.server.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(DEADLINE)
        self.loop.close()


@pytest.fixture
def harness() -> Iterator[Harness]:
    h = Harness(hangup_grace=2.0, drain_grace=0.5)
    try:
        yield h
    finally:
        h.close()


class Files:
    """stdin from bytes, stdout and stderr into files, as jr's three descriptors."""

    def __init__(self, tmp: Path, stdin: bytes | None = b"") -> None:
        self.tmp = tmp
        self.stdin: int | None = None
        if stdin is not None:
            (tmp / "in").write_bytes(stdin)
            self.stdin = os.open(tmp / "in", os.O_RDONLY)
        self.stdout = os.open(tmp / "out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        self.stderr = os.open(tmp / "err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)

    def out(self) -> bytes:
        return (self.tmp / "out").read_bytes()

    def err(self) -> bytes:
        return (self.tmp / "err").read_bytes()

    def close(self) -> None:
        for fd in (self.stdin, self.stdout, self.stderr):
            if fd is not None:
                os.close(fd)


def attach(h: Harness, token: str, files: Files, pty: bool = False, rows: int = 0, cols: int = 0) -> int:
    with connect("127.0.0.1", h.port, token, rows, cols, "xterm") as sock:
        try:
            return relay(sock, files.stdin, files.stdout, files.stderr, pty)
        finally:
            files.close()


class Background:
    """A relay running in a thread with its stdout in a pipe we can watch."""

    def __init__(self, h: Harness, token: str, pty: bool, stdin: int | None = None) -> None:
        self.sock = connect("127.0.0.1", h.port, token, 24, 80, "xterm")
        self.out_r, self.out_w = os.pipe()
        self.relay = Relay(self.sock, stdin, self.out_w, self.out_w, pty)
        self.result: int | BaseException | None = None
        self.output = b""
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.result = self.relay.run()
        except BaseException as e:
            self.result = e

    def wait_for(self, text: bytes) -> None:
        deadline = time.monotonic() + DEADLINE
        while text not in self.output:
            assert time.monotonic() < deadline, f"never saw {text!r} in {self.output!r}"
            self.output += os.read(self.out_r, 4096)

    def join(self) -> int | BaseException | None:
        self.thread.join(DEADLINE)
        assert not self.thread.is_alive()
        self.relay.close()
        self.sock.close()
        os.close(self.out_w)
        while chunk := os.read(self.out_r, 4096):
            self.output += chunk
        os.close(self.out_r)
        return self.result


# ---------------------------------------------------------------- pipe mode


def test_stdout_stderr_and_exit_code(harness: Harness, tmp_path: Path) -> None:
    job_id, token = harness.expect("echo out; echo err >&2; exit 3")
    files = Files(tmp_path)
    assert attach(harness, token, files) == 3
    assert files.out() == b"out\n"
    assert files.err() == b"err\n"
    ended = harness.wait_exit(job_id)
    assert (ended.exit_code, ended.signal, ended.reason) == (3, None, "")
    assert harness.started[job_id] > 0
    assert harness.call(harness.server.running) == {}


def test_stdin_is_relayed_with_flow_control(harness: Harness, tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    job_id, token = harness.expect("cat; echo done >&2")
    files = Files(tmp_path, stdin=data)
    assert attach(harness, token, files) == 0
    assert files.out() == data
    assert files.err() == b"done\n"


def test_no_stdin_means_eof(harness: Harness, tmp_path: Path) -> None:
    _, token = harness.expect("wc -c")
    files = Files(tmp_path, stdin=None)
    assert attach(harness, token, files) == 0
    assert files.out().strip() == b"0"


def test_environment_and_directory(harness: Harness, tmp_path: Path) -> None:
    job_id, token = harness.expect('echo "$WULF_JOB_ID $WULF_NODE $TERM"; pwd', cwd=str(tmp_path))
    files = Files(tmp_path)
    assert attach(harness, token, files) == 0
    assert files.out().decode().splitlines() == [f"{job_id} node1 xterm", str(tmp_path)]


def test_login_shell_when_no_command(harness: Harness, tmp_path: Path) -> None:
    _, token = harness.expect("", env={"PATH": os.defpath, "SHELL": "/bin/sh", "HOME": str(tmp_path)})
    files = Files(tmp_path, stdin=b'echo "$0"; exit 4\n')
    assert attach(harness, token, files) == 4
    assert files.out().strip() == b"-sh"


def test_signal_frame_kills_a_pipe_job(harness: Harness) -> None:
    job_id, token = harness.expect("echo ready; sleep 30")
    bg = Background(harness, token, pty=False)
    bg.wait_for(b"ready")
    bg.relay.send_signal(signal.SIGTERM)
    assert bg.join() == 128 + signal.SIGTERM
    ended = harness.wait_exit(job_id)
    assert (ended.exit_code, ended.signal, ended.reason) == (None, signal.SIGTERM, "killed by signal 15 (SIGTERM)")
    assert ended.cpu_time >= 0.0 and ended.peak_mem_mb > 0.0


def test_jkill_through_the_server(harness: Harness) -> None:
    job_id, token = harness.expect("echo ready; sleep 30")
    bg = Background(harness, token, pty=False)
    bg.wait_for(b"ready")
    assert harness.call(harness.server.running) == {job_id: harness.wait_started(job_id)}
    assert harness.call(harness.server.signal, job_id, signal.SIGKILL)
    assert bg.join() == 128 + signal.SIGKILL
    assert not harness.call(harness.server.signal, job_id, signal.SIGKILL)


def test_disconnect_hangs_up_the_job(harness: Harness) -> None:
    job_id, token = harness.expect("echo ready; sleep 30")
    sock = connect("127.0.0.1", harness.port, token)
    data = b""
    while b"ready" not in data:
        data += sock.recv(100)
    sock.close()
    ended = harness.wait_exit(job_id)
    assert ended.signal == signal.SIGHUP
    assert ended.reason == "jr disconnected"


def test_hangup_escalates_to_sigkill() -> None:
    h = Harness(hangup_grace=0.3)
    try:
        job_id, token = h.expect("trap '' HUP; echo ready; sleep 30")
        sock = connect("127.0.0.1", h.port, token)
        data = b""
        while b"ready" not in data:
            data += sock.recv(100)
        sock.close()
        assert h.wait_exit(job_id).signal == signal.SIGKILL
    finally:
        h.close()


# ---------------------------------------------------------------- pty mode


def test_pty_job_has_a_terminal_of_the_given_size(harness: Harness, tmp_path: Path) -> None:
    _, token = harness.expect("test -t 0 && test -t 1 && echo tty; stty size; tty >/dev/null && echo ctty",
                              pty=True)
    files = Files(tmp_path, stdin=None)
    assert attach(harness, token, files, pty=True, rows=41, cols=103) == 0
    assert files.out().split(b"\r\n")[:3] == [b"tty", b"41 103", b"ctty"]
    assert files.err() == b""


def test_pty_controlling_terminal_delivers_sigint(harness: Harness) -> None:
    """^C as a byte becomes SIGINT for the job: the pty is its controlling terminal."""
    job_id, token = harness.expect("echo ready; exec sleep 30", pty=True)
    stdin_r, stdin_w = os.pipe()
    bg = Background(harness, token, pty=True, stdin=stdin_r)
    bg.wait_for(b"ready")
    harness.wait_started(job_id)
    os.write(stdin_w, b"\x03")
    try:
        assert bg.join() == 128 + signal.SIGINT
    finally:
        os.close(stdin_r)
        os.close(stdin_w)


def test_pty_input_and_eof(harness: Harness, tmp_path: Path) -> None:
    _, token = harness.expect("cat", pty=True)
    files = Files(tmp_path, stdin=b"hello\n")
    assert attach(harness, token, files, pty=True) == 0
    assert files.out().count(b"hello\r\n") == 2  # the terminal's echo, then cat


def test_window_change_reaches_the_job(harness: Harness) -> None:
    _, token = harness.expect("trap 'stty size; exit 0' WINCH; echo ready; while :; do sleep 0.05; done",
                              pty=True)
    bg = Background(harness, token, pty=True)
    bg.wait_for(b"ready")
    bg.relay.resize(50, 132)
    assert bg.join() == 0
    assert b"50 132" in bg.output


# ---------------------------------------------------------------- refusals and the life of a session


def test_wrong_token_is_refused(harness: Harness, tmp_path: Path) -> None:
    job_id, _ = harness.expect("echo no")
    with pytest.raises(SessionError, match="no session with this token"):
        attach(harness, "not-the-token", Files(tmp_path))
    assert harness.call(harness.server.pending) == [job_id]


def test_a_session_is_single_use(harness: Harness, tmp_path: Path) -> None:
    _, token = harness.expect("exit 0")
    assert attach(harness, token, Files(tmp_path)) == 0
    with pytest.raises(SessionError, match="no session with this token"):
        attach(harness, token, Files(tmp_path))


def test_unclaimed_session_expires() -> None:
    h = Harness(claim_timeout=0.2)
    try:
        job_id, token = h.expect("echo never")
        ended = h.wait_exit(job_id)
        assert (ended.exit_code, ended.reason) == (None, "jr never connected")
        assert job_id not in h.started
        with pytest.raises(SessionError):
            with connect("127.0.0.1", h.port, token) as sock:
                relay(sock, None, 1, 2, False)
    finally:
        h.close()


def test_missing_directory_is_an_error(harness: Harness, tmp_path: Path) -> None:
    job_id, token = harness.expect("true", cwd=str(tmp_path / "gone"))
    with pytest.raises(SessionError, match="does not exist"):
        attach(harness, token, Files(tmp_path))
    assert "does not exist" in harness.wait_exit(job_id).reason


def test_garbage_instead_of_hello_is_dropped(harness: Harness) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", harness.port), timeout=DEADLINE) as s:
        s.sendall(b"\xff" * 16)
        assert s.recv(100) == b""


def test_close_hangs_up_running_jobs_and_drops_pending_ones() -> None:
    h = Harness(hangup_grace=2.0)
    closed = False
    try:
        pending_id, _ = h.expect("true")
        job_id, token = h.expect("echo ready; sleep 30")
        bg = Background(h, token, pty=False)
        bg.wait_for(b"ready")
        h.run(h.server.close())
        closed = True
        assert h.exited[pending_id].reason == "the agent stopped before jr connected"
        assert h.exited[job_id].reason == "the agent stopped"
        assert isinstance(bg.join(), SessionError)
    finally:
        if not closed:
            h.close()
        else:
            h.loop.call_soon_threadsafe(h.loop.stop)
            h.thread.join(DEADLINE)
            h.loop.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="changing user needs root")
def test_job_runs_as_its_owner(harness: Harness, tmp_path: Path) -> None:
    _, token = harness.expect("id -u; id -G", uid=65534)
    files = Files(tmp_path)
    assert attach(harness, token, files) == 0
    uid, groups = files.out().decode().splitlines()
    assert uid == "65534"
    assert "0" not in groups.split()


# ---------------------------------------------------------------- the jr command, end to end


class StubServer:
    """Just enough of the wulf server for jr: /api/v1/interactive and /api/v1/place."""

    def __init__(self, h: Harness, agent_port: int | None = None) -> None:
        import http.server
        import json

        stub = self
        self.requests: list[dict[str, Any]] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                stub.requests.append({"path": self.path})
                self._reply({"node": "node1", "host": "node1.example"})

            def do_POST(self) -> None:
                req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append(req)
                spec = req["job"]
                job_id, token = h.expect(spec["command"], pty=req["pty"], cwd=spec["cwd"], env=req["env"])
                port = h.port if agent_port is None else agent_port
                self._reply({"id": job_id, "node": "node1", "host": "127.0.0.1", "port": port, "token": token})

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(DEADLINE)


def jr_env(stub: StubServer) -> dict[str, str]:
    src = str(Path(__file__).resolve().parents[2] / "src")
    return {**os.environ, "WULF_SERVER": stub.url, "PYTHONPATH": src, "TERM": "vt100"}


def run_jr(stub: StubServer, *args: str, stdin: bytes = b"", cwd: str = "/tmp") -> tuple[int, str, str]:
    p = subprocess.run([sys.executable, "-m", "wulf.cli.jr", *args], input=stdin, capture_output=True,
                       env=jr_env(stub), cwd=cwd, timeout=DEADLINE)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


@pytest.fixture
def stub(harness: Harness) -> Iterator[StubServer]:
    s = StubServer(harness)
    try:
        yield s
    finally:
        s.close()


def test_jr_with_pipes(stub: StubServer, tmp_path: Path) -> None:
    code, out, err = run_jr(stub, "--mem", "1G", "--cpu", "2", "sh", "-c", "cat; echo oops >&2; exit 7",
                            stdin=b"piped\n", cwd=str(tmp_path))
    assert (code, out, err) == (7, "piped\n", "oops\n")
    req = stub.requests[-1]
    assert req["pty"] is False
    assert req["job"] == {"command": "sh -c 'cat; echo oops >&2; exit 7'", "cwd": str(tmp_path), "name": "sh",
                          "cpu": 2.0, "mem_mb": 1024.0}
    assert req["env"]["WULF_SERVER"] == stub.url


class Terminal:
    """jr started under a new pseudo-terminal of ours, as a user would start it."""

    def __init__(self, stub: StubServer, cwd: Path, *args: str) -> None:
        self.master, self.slave = os.openpty()
        set_winsize(self.slave, 30, 90)
        self.before = termios.tcgetattr(self.slave)
        self.output = b""

        def ctty() -> None:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen([sys.executable, "-m", "wulf.cli.jr", *args], stdin=self.slave,
                                     stdout=self.slave, stderr=self.slave, env=jr_env(stub), cwd=str(cwd),
                                     start_new_session=True, preexec_fn=ctty)

    def wait_for(self, text: bytes) -> None:
        deadline = time.monotonic() + DEADLINE
        while text not in self.output:
            assert time.monotonic() < deadline, f"never saw {text!r} in {self.output!r}"
            if select.select([self.master], [], [], 0.1)[0]:
                self.output += os.read(self.master, 4096)

    def wait(self) -> int:
        code = self.proc.wait(DEADLINE)
        while select.select([self.master], [], [], 0)[0]:
            self.output += os.read(self.master, 4096)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)
        os.close(self.slave)


def test_jr_in_a_terminal(stub: StubServer, tmp_path: Path) -> None:
    t = Terminal(stub, tmp_path, "stty size; test -t 0 && echo remote-tty; exit 5")
    try:
        assert t.wait() == 5, t.output
        assert b"30 90\r\n" in t.output
        assert b"remote-tty\r\n" in t.output
        assert stub.requests[-1]["pty"] is True
        assert termios.tcgetattr(t.slave) == t.before  # the terminal is as jr found it
    finally:
        t.close()


def test_jr_passes_window_changes_and_ctrl_c(stub: StubServer, tmp_path: Path) -> None:
    t = Terminal(stub, tmp_path, "trap 'stty size' WINCH; echo ready; while :; do sleep 0.05; done")
    try:
        t.wait_for(b"ready")
        set_winsize(t.master, 33, 99)  # jr gets SIGWINCH from its terminal, the job from its own
        t.wait_for(b"33 99")
        os.write(t.master, b"\x03")
        assert t.wait() == 128 + signal.SIGINT, t.output
        assert termios.tcgetattr(t.slave) == t.before
    finally:
        t.close()


def test_jr_says_which_agent_it_could_not_reach(harness: Harness) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    stub = StubServer(harness, agent_port=closed_port)
    try:
        code, out, err = run_jr(stub, "true")
    finally:
        stub.close()
    assert code == 3
    assert f"cannot connect to the wulf agent on node1 at 127.0.0.1:{closed_port}" in err
    assert "Traceback" not in err


def test_jr_rsh_runs_the_remote_shell(stub: StubServer) -> None:
    code, out, err = run_jr(stub, "--rsh", "echo", "--cpu", "2", "ls", "-l", cwd="/tmp")
    assert (code, err) == (0, "")
    assert out == "node1.example cd /tmp && ls -l\n"
    assert stub.requests[-1] == {"path": "/api/v1/place?cpu=2.0"}


def test_a_signal_overtakes_input_the_job_does_not_read(harness: Harness, tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b"x" * (8 << 20))
    job_id, token = harness.expect("echo ready; sleep 30")
    stdin = os.open(tmp_path / "big", os.O_RDONLY)
    try:
        bg = Background(harness, token, pty=False, stdin=stdin)
        bg.wait_for(b"ready")
        bg.relay.send_signal(signal.SIGTERM)
        assert bg.join() == 128 + signal.SIGTERM
    finally:
        os.close(stdin)


@pytest.mark.parametrize("pty", [False, True])
def test_much_output_arrives_whole(harness: Harness, tmp_path: Path, pty: bool) -> None:
    _, token = harness.expect("seq 1 300000", pty=pty)
    files = Files(tmp_path, stdin=None)
    assert attach(harness, token, files, pty=pty) == 0
    lines = files.out().replace(b"\r\n", b"\n").splitlines()
    assert lines[0] == b"1"
    assert lines[-1] == b"300000"
    assert len(lines) == 300000


def test_jr_without_a_command_gives_a_login_shell(stub: StubServer, tmp_path: Path) -> None:
    t = Terminal(stub, tmp_path)
    try:
        os.write(t.master, b'echo "shell=$0 in $PWD" $((6*7)); exit 6\r')
        assert t.wait() == 6, t.output
        assert f"in {tmp_path} 42".encode() in t.output
        assert b"shell=-" in t.output
        assert stub.requests[-1]["job"]["command"] == ""
    finally:
        t.close()
