"""Real wulf daemons as processes, for the integration and cluster tests.

Tests start the real `wulf server` and `wulf agent` (the installed console scripts of this virtual
environment), talk to them with the real commands, and wait for things by polling with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from users import User
from wulf.agent.jobprocs import tree
from wulf.agent.main import Agent
from wulf.auth import credential
from wulf.auth.key import ClusterKey, load_key
from wulf.client import Client
from wulf.config import AgentConfig, Config

BIN = Path(sys.executable).parent


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_until(what: str, check: Callable[[], Any], timeout: float = 20.0, every: float = 0.05) -> Any:
    """Poll ``check`` until it returns something true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Daemon:
    def __init__(self, argv: list[str], log: Path, env: dict[str, str],
                 popen: Callable[..., subprocess.Popen[bytes]] | None = None) -> None:
        self.argv, self.log, self.env = argv, log, env
        self._popen = popen or subprocess.Popen
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Daemon:
        with open(self.log, "ab") as out:
            self.proc = self._popen(self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=self.env)
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class SignedClient(Client):
    """A client that says it is ``user`` with credentials signed by the cluster key, as the agent of a
    machine would: for tests that act as several users from one process."""

    def __init__(self, url: str, key: ClusterKey, uid: int, gid: int, timeout: float = 30.0) -> None:
        super().__init__(url, timeout)
        self.key, self.as_uid, self.as_gid = key, uid, gid

    def _identity(self, method: str, path: str, data: bytes | None) -> str:
        digest = credential.request_digest(method, path, data or b"")
        cred = credential.encode(self.key, credential.USER, self.as_uid, self.as_gid, "tests", time.time(), digest)
        return f"X-Wulf-Credential: {cred}\r\n"


class Cluster:
    """A server on a Unix socket (and TCP if ``listen``), and agents added with :meth:`agent`."""

    def __init__(self, root: Path, listen: str = "", config: str = "") -> None:
        self.root = root
        self.state = root / "server"
        self.state.mkdir(parents=True, exist_ok=True)
        self.socket = self.state / "wulf.sock"
        self.url = f"unix:{self.socket}"
        self.listen = listen
        self.env = dict(os.environ)
        self.env["WULF_SERVER"] = self.url
        # the test runner, and the server and commands it starts, are not outside load on the node
        self.env["WULF_IGNORE_PIDS"] = str(os.getpid())
        self.env.pop("WULF_CONFIG", None)
        if config:
            cfg = root / "wulf.toml"
            cfg.write_text(config)
            self.env["WULF_CONFIG"] = str(cfg)
        self.server: Daemon | None = None
        self.agents: dict[str, Daemon] = {}
        self.work = root / "work"
        self.work.mkdir(exist_ok=True)
        self.work.chmod(0o1777)  # like /tmp: the jobs of every user of a test write their output here

    def start_server(self) -> Daemon:
        argv = [str(BIN / "wulf"), "server", "--state", str(self.state), "--listen", self.listen]
        self.server = Daemon(argv, self.root / "server.log", self.env).start()
        wait_until("the server to answer", lambda: self.try_status() is not None)
        return self.server

    def agent(self, name: str, cpus: float = 2, mem: str = "4G", server: str | None = None,
              popen: Callable[..., subprocess.Popen[bytes]] | None = None, wait: bool = True,
              interval: float = 0.5, extra: Sequence[str] = (), env_extra: dict[str, str] | None = None) -> Daemon:
        state = self.root / f"agent-{name}"
        argv = [str(BIN / "wulf"), "agent", "--server", server or self.url, "--name", name, "--cpus", str(cpus),
                "--mem", mem, "--state", str(state), "--interval", str(interval), "--key", str(self.key_path),
                "--socket", str(self.root / f"agent-{name}.sock"), *extra]
        d = Daemon(argv, self.root / f"agent-{name}.log", {**self.env, **(env_extra or {})}, popen).start()
        self.agents[name] = d
        if wait:
            self.wait_node(name)
        return d

    def wait_node(self, name: str, state: str = "up", timeout: float = 20.0) -> None:
        wait_until(f"node {name} to be {state}",
                   lambda: any(n["name"] == name and n["state"] == state for n in self.status()["nodes"]),
                   timeout)

    def run(self, *argv: str, check: bool = True, input: str | None = None, cwd: Path | None = None,
            timeout: float = 60, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run a wulf command (qr, jstat, ...) as a user would."""
        cmd = [str(BIN / argv[0]), *argv[1:]]
        p = subprocess.run(cmd, capture_output=True, text=True, env={**self.env, **(env_extra or {})}, input=input,
                           cwd=cwd or self.work, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {p.returncode}: {p.stderr.strip()}")
        return p

    def run_as(self, user: User, *argv: str, check: bool = True, input: str | None = None,
               cwd: Path | None = None, timeout: float = 60, env: dict[str, str] | None = None,
               umask: int | None = None) -> subprocess.CompletedProcess[str]:
        """Run a wulf command as ``user`` (see tests/asuser.py), with ``umask`` if given."""
        cmd = user.argv(*argv)
        if umask is not None:
            cmd = ["/bin/sh", "-c", f'umask {umask:04o}; exec "$@"', "sh", *cmd]
        p = subprocess.run(cmd, capture_output=True, text=True, env={**self.env, **(env or {})},
                           input=input, cwd=cwd or self.work, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} as {user.name} exited {p.returncode}: {p.stderr.strip()}")
        return p

    def spawn_as(self, user: User, *argv: str) -> Daemon:
        """Start a wulf daemon as ``user`` (``wulf agent ...``; see tests/asuser.py)."""
        return Daemon(user.argv(*argv), self.root / f"{argv[0]}-{argv[1]}-{user.name}.log", self.env).start()

    key_file: Path | None = None  # the cluster key, when the config names one

    @property
    def key_path(self) -> Path:
        return self.key_file or self.state / "cluster.key"

    def client(self, user: User | None = None) -> Client:
        """A client of the API as ``user`` (root if None: this process)."""
        if user is None:
            return Client(self.url)
        return SignedClient(self.url, load_key(self.key_path), user.uid, user.gid)

    def json(self, *argv: str) -> Any:
        return json.loads(self.run(*argv, "--json").stdout)

    def try_status(self) -> dict[str, Any] | None:
        p = self.run("jstat", "--json", "-a", "--external", check=False)
        return json.loads(p.stdout) if p.returncode == 0 else None

    def status(self) -> dict[str, Any]:
        s = self.try_status()
        assert s is not None, "the server does not answer"
        return s

    def job(self, job_id: int) -> dict[str, Any]:
        for j in self.status()["jobs"]:
            if j["id"] == job_id:
                return dict(j)
        raise AssertionError(f"no job {job_id} in jstat -a")

    def submit(self, *args: str, cwd: Path | None = None) -> list[int]:
        return list(json.loads(self.run("qr", "--json", *args, cwd=cwd).stdout)["jobs"])

    def logs(self) -> str:
        out = []
        for p in sorted(self.root.glob("*.log")):
            out.append(f"----- {p.name}\n{p.read_text(errors='replace')[-4000:]}")
        return "\n".join(out)

    def stop(self) -> None:
        for d in self.agents.values():
            d.kill(signal.SIGTERM)
        if self.server is not None:
            self.server.kill(signal.SIGTERM)
        kill_leftover_jobs(self.root)


def busy_loop_of(user: User, cwd: Path) -> int:
    """A busy loop of ``user``'s, not started by wulf and outside the test's process tree (its shell
    exits: it is adopted), as if they sat down at their workstation and ran something; its pid."""
    loop = "/bin/sh -c 'while :; do :; done' </dev/null >/dev/null 2>&1 & echo $!"
    p = subprocess.run(["/bin/sh", "-c", loop], user=user.uid, group=user.gid, cwd=cwd, capture_output=True,
                       text=True, check=True)
    return int(p.stdout)


def kill_job(supervisor: int) -> None:
    """Kill a job's supervisor and everything below it (the job runs in a session of its own)."""
    for pid in [*tree(supervisor)[1:], supervisor]:
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def kill_leftover_jobs(root: Path) -> None:
    """Jobs outlive their agent by design; a test must not leave any behind (nor their cgroups)."""
    for log in root.glob("agent-*.log"):
        state = root / log.name.removesuffix(".log")  # the agent's --state (it may never have been made)
        tag = hashlib.sha1(str(state.resolve()).encode()).hexdigest()[:8]
        for journal in Path("/dev/shm").glob(f"wulf-{os.getuid()}/*-{tag}/journal.jsonl"):
            for line in journal.read_text().splitlines():
                with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                    kill_job(int(json.loads(line)["pid"]))
            shutil.rmtree(journal.parent, ignore_errors=True)
        for group in Path("/sys/fs/cgroup").glob(f"*/wulf/*-{tag}"):
            for procs in group.glob("*-*/cgroup.procs"):  # job-<id>, and spare-<n> kept for reuse
                with contextlib.suppress(OSError, ValueError):
                    for pid in procs.read_text().split():
                        os.kill(int(pid), signal.SIGKILL)
            deadline = time.monotonic() + 5
            for job in [*group.glob("job-*"), *group.glob("spare-*")]:
                while time.monotonic() < deadline:
                    try:
                        job.rmdir()
                        break
                    except OSError:  # not empty yet: the killed processes are still going
                        time.sleep(0.05)
            with contextlib.suppress(OSError):
                group.rmdir()


@contextlib.contextmanager
def running_cluster(root: Path, **kw: Any) -> Iterator[Cluster]:
    c = Cluster(root, **kw)
    try:
        c.start_server()
        yield c
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.stop()


@contextlib.asynccontextmanager
async def agent_in_process(tmp_path: Path, name: str, cgroups: bool) -> AsyncIterator[Agent]:
    """An agent running in this process's event loop, with no server (its jobs' exits stay in
    ``agent.unacked``); on the way out the jobs it still runs are killed and it stops."""
    config = Config(agent=AgentConfig(state_dir=str(tmp_path / "state"), runtime_dir=str(tmp_path / "run"),
                                      scratch=str(tmp_path)))
    agent = Agent(config, f"unix:{tmp_path / 'no-server.sock'}", name=name, cgroups=cgroups,
                  key=ClusterKey(b"k" * 32), vouch_socket="")
    running = asyncio.create_task(agent.run())
    deadline = time.monotonic() + 10
    while agent.sessions is None and not running.done() and time.monotonic() < deadline:
        await asyncio.sleep(0.005)  # until it has taken back its journal's jobs, as before any start
    try:
        yield agent
    finally:
        for run in list(agent.jobs.values()):
            kill_job(run.pid)
        agent.stop()
        await running
