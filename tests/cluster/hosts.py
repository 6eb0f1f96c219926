"""Test hosts made with Linux namespaces, for wulf's multi-node tests.

A :class:`TestNetwork` is a Linux bridge in the root network namespace plus N
:class:`Host` objects.  Each host has

* its own network namespace (``ip netns``) with a veth pair whose outer end is a
  port of the bridge, its own IPv4 address in 198.18.0.0/15 (RFC 2544, never
  routed) and loopback up; the bridge holds the gateway address, so processes in
  the root namespace (the wulf server in tests) reach every host and the hosts
  reach each other.  There is no default route, no NAT and IPv4 forwarding is
  switched off on the bridge: traffic never leaves the machine;
* its own PID, UTS, IPC and mount namespace (with its own ``/proc``), kept alive
  by a tiny *keeper* process that is PID 1 there.  Every program started with
  :meth:`Host.popen` / :meth:`Host.run` enters the keeper's namespaces, so all
  programs of one host see each other and nothing else.  When the keeper dies
  the kernel kills everything in the host's PID namespace.

Programs are started through a small Python *entry* process (the returned
``Popen``; it does what ``nsenter --target <keeper> --ipc --uts --net --pid --mount``
does, plus signal forwarding) that joins the namespaces, forks the program into
the host's PID namespace, forwards SIGTERM/SIGINT/SIGHUP/SIGQUIT/SIGUSR1/SIGUSR2/
SIGWINCH to it, exits with its status (``-signal`` if a signal ended it) and takes
it along when killed itself (``PR_SET_PDEATHSIG``).  So ``proc.terminate()`` and
``proc.kill()`` on the returned ``Popen`` act on the program, like for a local
subprocess.  The program runs in its own session (setsid), as a daemon would.

    with TestNetwork(3) as net:                      # or the test_network fixture
        agent = net["node1"].popen(["wulf", "agent", "--server", net.gateway])
        net["node2"].run(["hostname"], capture_output=True, text=True).stdout  # "node2\n"
        agent.terminate(); agent.wait()              # SIGTERM reaches the agent

Needs root, ``ip`` (iproute2) and ``unshare`` (util-linux).  If the test process
dies without cleaning up, the keepers notice (their stdin pipe closes) and end
their hosts; :func:`cleanup_stale` removes leftover namespaces and interfaces of
dead owners.

This module must not import pytest at module level (it is loaded by tools, too).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import random
import re
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, NoReturn

__all__ = [
    "DEFAULT_PREFIX",
    "TEST_RANGE",
    "Host",
    "HostPopen",
    "HostProcess",
    "TestNetwork",
    "TestNetworkError",
    "ci_mode",
    "cleanup_stale",
    "leftovers",
    "skip_or_fail",
    "unavailable_reason",
]

#: Prefix of every interface and network namespace made here.
DEFAULT_PREFIX = "wt"
#: RFC 2544 benchmarking range; each TestNetwork takes one /24 of it.
TEST_RANGE = ipaddress.IPv4Network("198.18.0.0/15")
#: Last octet of the first host's address (the bridge/gateway is .1).
FIRST_HOST_OCTET = 11
MAX_HOSTS = 254 - FIRST_HOST_OCTET + 1

_ALIAS_TAG = "wulf-testnet:owner="
_NETNS_DIR = Path("/run/netns")
_ETC_NETNS = Path("/etc/netns")
_SYS_NET = Path("/sys/class/net")
_HOSTNAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")
_READY_TIMEOUT = 10.0

# The keeper and the entry process are a short Python program, written once to
# _RUN_DIR/host-helper-<hash>.py and run as ``python -I -S <file> keeper|enter ...``:
# it starts fast (imports only os, sys, signal, ctypes) and reads well in ps.
_HELPER = r"""# wulf test host helper (written by tests/cluster/hosts.py)
import ctypes, os, signal, sys

# Signals the entry process passes on to its program.
FORWARDED = [signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
             signal.SIGTERM, signal.SIGWINCH]
MODE = sys.argv[1]
libc = ctypes.CDLL(None, use_errno=True)


def die(msg, code=125):
    os.write(2, ("wulf test host: %s\n" % msg).encode())
    os._exit(code)


def reap(*_):
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def keeper(hostname):
    # PID 1 of the host: set the hostname, reap orphans, live until stdin closes.
    name = hostname.encode()
    if libc.sethostname(name, len(name)) != 0:
        die("sethostname: " + os.strerror(ctypes.get_errno()))
    signal.signal(signal.SIGCHLD, reap)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: os._exit(0))
    os.write(1, b"ready\n")
    os.close(1)
    reap()
    while os.read(0, 65536):
        pass
    os._exit(0)


def enter(keeper_pid, pidns_ino, argv):
    cwd = os.getcwd()
    fds = []
    for ns in ("ipc", "uts", "net", "pid", "mnt"):  # the order nsenter uses
        try:
            fds.append(os.open("/proc/%s/ns/%s" % (keeper_pid, ns), os.O_RDONLY | os.O_CLOEXEC))
        except OSError as e:
            die("host is not running (keeper %s: %s)" % (keeper_pid, e))
        if ns == "pid" and os.fstat(fds[-1]).st_ino != int(pidns_ino):
            die("host is not running (keeper %s is gone)" % keeper_pid)
    for fd in fds:
        if libc.setns(fd, 0) != 0:
            die("setns: " + os.strerror(ctypes.get_errno()))
        os.close(fd)
    try:
        os.chdir(cwd)
    except OSError:
        os.chdir("/")
    child = [0]

    def forward(sig, _frame):
        if child[0]:
            try:
                os.kill(child[0], sig)
            except OSError:
                pass

    for sig in FORWARDED:
        signal.signal(sig, forward)
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
    alive_r, alive_w = os.pipe()  # EOF on alive_r: this entry process is gone
    try:
        pid = os.fork()
    except OSError as e:
        die("cannot start a process in the host (is it stopped?): %s" % e)
    if pid == 0:
        os.close(alive_w)
        for sig in FORWARDED + [signal.SIGPIPE, signal.SIGXFSZ]:
            signal.signal(sig, signal.SIG_DFL)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the entry process
        os.set_blocking(alive_r, False)
        try:
            os.read(alive_r, 1)
            os._exit(137)  # EOF: the entry process died before prctl
        except BlockingIOError:
            os.close(alive_r)
        os.setsid()  # like a daemon on another machine: not in the test's session
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
        try:
            os.execvp(argv[0], argv)
        except OSError as e:
            os.write(2, ("wulf test host: %s: %s\n" % (argv[0], e.strerror)).encode())
            os._exit(127 if isinstance(e, FileNotFoundError) else 126)
    child[0] = pid
    os.close(alive_r)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # let only the program hold the caller's pipes
        os.dup2(devnull, fd)
    _pid, status = os.waitpid(pid, 0)
    if os.WIFEXITED(status):
        os._exit(os.WEXITSTATUS(status))
    sig = os.WTERMSIG(status)
    import resource
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if sig != signal.SIGKILL:
        signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
    os.kill(os.getpid(), sig)  # die the same way, so that Popen.returncode is -sig
    os._exit(128 + sig)


if MODE == "keeper":
    keeper(sys.argv[2])
elif MODE == "enter":
    enter(sys.argv[2], sys.argv[3], sys.argv[5:])
else:
    die("unknown mode " + MODE)
"""
compile(_HELPER, "<wulf test host helper>", "exec")  # fail at import time, not in a host


class TestNetworkError(RuntimeError):
    """Building or using a test network failed."""

    __test__ = False  # not a pytest test class


class HostProcess(NamedTuple):
    """A process inside a host."""

    pid: int  # as seen from the root PID namespace (use with os.kill)
    ns_pid: int  # as seen inside the host
    argv: list[str]


class HostPopen(subprocess.Popen[Any]):
    """The ``Popen`` of a program started in a host.

    ``pid`` is the entry process in the root namespaces; signals sent with
    ``send_signal``/``terminate`` are forwarded to the program, ``kill`` kills the
    program, and ``returncode`` is the program's (``-signal`` if a signal ended it).
    """

    host: Host

    def program_pid(self, timeout: float = 5.0) -> int | None:
        """The program's pid as seen from outside (None once it has ended)."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        deadline = time.monotonic() + timeout
        while True:
            if self.poll() is not None:
                return None
            with contextlib.suppress(OSError):
                pids = children.read_text().split()
                if pids:
                    return int(pids[0])
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.002)

    def kill(self) -> None:
        """SIGKILL the program; the entry process then ends with -SIGKILL.

        (Killing the entry process itself would kill the program too, via
        PR_SET_PDEATHSIG, but leave it to the machine's init to reap.)
        """
        if self.returncode is None:
            pid = self.program_pid(timeout=0)
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                return
        super().kill()

    def ns_pid(self, timeout: float = 5.0) -> int | None:
        """The program's pid as seen inside the host."""
        pid = self.program_pid(timeout)
        return None if pid is None else _ns_pid(pid)


class Host:
    """One test host: network, PID, UTS, IPC and mount namespace.  Made by TestNetwork."""

    def __init__(self, network: TestNetwork, index: int, name: str, address: str) -> None:
        self.network = network
        self.index = index
        #: hostname inside the host
        self.name = name
        #: IPv4 address (without prefix length)
        self.address = address
        #: name of the network namespace (``ip netns``)
        self.netns = f"{network.prefix}{network.suffix}-{name}-p{os.getpid()}"
        #: root-namespace end of the veth pair (a port of the bridge); "eth0" inside
        self.veth = f"{network.prefix}{network.suffix}h{index + 1}"
        self.interface = "eth0"
        self._keeper: subprocess.Popen[bytes] | None = None
        self._keeper_pid = 0
        self._pidns_ino = 0
        self._procs: list[HostPopen] = []

    def __repr__(self) -> str:
        return f"<Host {self.name} {self.address} netns={self.netns} keeper={self._keeper_pid or None}>"

    # -- keeper ---------------------------------------------------------------------------------

    @property
    def keeper_pid(self) -> int:
        """Pid (seen from outside) of the host's PID 1."""
        if not self._keeper_pid:
            raise TestNetworkError(f"host {self.name} is not running")
        return self._keeper_pid

    @property
    def running(self) -> bool:
        return self._keeper is not None and self._keeper.poll() is None

    def start(self) -> None:
        """Start the host's keeper (done by TestNetwork.start; again after stop())."""
        self._spawn_keeper()
        self._await_keeper()

    def _spawn_keeper(self) -> None:
        if self.running:
            raise TestNetworkError(f"host {self.name} is already running")
        cmd = [
            "ip", "netns", "exec", self.netns,
            "unshare", "--pid", "--uts", "--ipc", "--mount", "--fork", "--mount-proc", "--kill-child",
            "--", *_helper_argv("keeper", self.name),
        ]  # fmt: skip
        self._keeper = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd="/",
            start_new_session=True,  # Ctrl-C on the test run must not kill hosts before teardown
        )

    def _await_keeper(self, timeout: float = _READY_TIMEOUT) -> None:
        keeper = self._keeper
        assert keeper is not None and keeper.stdout is not None and keeper.stderr is not None
        ready, _, _ = select.select([keeper.stdout], [], [], timeout)
        line = keeper.stdout.readline() if ready else b""
        if line != b"ready\n":
            self._kill_keeper()
            err = keeper.stderr.read().decode(errors="replace").strip()
            raise TestNetworkError(
                f"host {self.name}: keeper did not start ({'timeout' if not ready else err or 'no output'})"
            )
        keeper.stdout.close()
        keeper.stderr.close()
        pid = _keeper_child(keeper.pid)
        if pid is None:
            self._kill_keeper()
            raise TestNetworkError(f"host {self.name}: cannot find the keeper process")
        self._keeper_pid = pid
        self._pidns_ino = os.stat(f"/proc/{pid}/ns/pid").st_ino

    def stop(self, grace: float = 2.0) -> None:
        """Stop everything in the host (SIGTERM to its programs, then the keeper).

        The network stays; start() brings the host back (an empty process table).
        """
        _terminate(self._procs, grace)
        self._procs.clear()
        self._stop_keeper()

    def _stop_keeper(self, timeout: float = 5.0) -> None:
        keeper = self._keeper
        if keeper is None:
            return
        if keeper.stdin is not None:
            with contextlib.suppress(OSError):
                keeper.stdin.close()
        try:
            keeper.wait(timeout)
        except subprocess.TimeoutExpired:
            self._kill_keeper()
        _close_pipes(keeper)
        self._keeper = None
        self._keeper_pid = 0

    def _kill_keeper(self) -> None:
        keeper = self._keeper
        if keeper is None:
            return
        with contextlib.suppress(OSError):
            keeper.kill()  # unshare --kill-child passes SIGKILL to the keeper: the namespace dies
        keeper.wait()

    # -- programs -------------------------------------------------------------------------------

    def command(self, argv: Sequence[str | os.PathLike[str]]) -> list[str]:
        """The command line that runs argv inside the host (for your own subprocess calls).

        Processes started this way are not tracked by stop(), but die with the host.
        """
        if isinstance(argv, str | bytes):
            raise TypeError("argv must be a sequence of arguments, not a string")
        args = [os.fspath(a) for a in argv]
        if not args:
            raise ValueError("empty argv")
        return [*_helper_argv("enter", str(self.keeper_pid), str(self._pidns_ino), "--"), *args]

    def popen(self, argv: Sequence[str | os.PathLike[str]], **kwargs: Any) -> HostPopen:
        """Start argv in the host; takes subprocess.Popen's keyword arguments.

        The program runs in its own session inside the host; signals sent to the
        returned Popen are forwarded to it, killing the Popen kills the program.
        """
        cmd = self.command(argv)
        _check_program(cmd[cmd.index("--") + 1], kwargs.get("env"))
        proc = HostPopen(cmd, **kwargs)
        proc.host = self
        self._procs.append(proc)
        return proc

    def run(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        input: Any = None,
        capture_output: bool = False,
        timeout: float | None = None,
        check: bool = False,
        **kwargs: Any,
    ) -> subprocess.CompletedProcess[Any]:
        """Run argv in the host to completion, like subprocess.run (same arguments).

        On timeout the program is killed (SIGKILL) and TimeoutExpired raised.
        """
        if input is not None:
            if kwargs.get("stdin") is not None:
                raise ValueError("stdin and input arguments may not both be used")
            kwargs["stdin"] = subprocess.PIPE
        if capture_output:
            if kwargs.get("stdout") is not None or kwargs.get("stderr") is not None:
                raise ValueError("stdout and stderr arguments may not be used with capture_output")
            kwargs["stdout"] = kwargs["stderr"] = subprocess.PIPE
        args = [os.fspath(a) for a in argv]
        with self.popen(args, **kwargs) as proc:
            try:
                stdout, stderr = proc.communicate(input, timeout=timeout)
            except subprocess.TimeoutExpired as exc:
                proc.kill()
                exc.stdout, exc.stderr = proc.communicate()
                exc.cmd = args
                raise
            except BaseException:
                proc.kill()
                raise
            code = proc.poll()
            assert code is not None
        if check and code:
            raise subprocess.CalledProcessError(code, args, output=stdout, stderr=stderr)
        return subprocess.CompletedProcess(args, code, stdout, stderr)

    def processes(self) -> list[HostProcess]:
        """All live processes in the host's PID namespace, the keeper (ns_pid 1) included.

        Zombies are left out: a program whose entry process was SIGKILLed dies at once
        but is reaped by the machine's init (its parent is outside the host).
        """
        ino = self._pidns_ino
        if not self.running or not ino:
            return []
        found = []
        for pid in _all_pids():
            try:
                if os.stat(f"/proc/{pid}/ns/pid").st_ino != ino or _zombie(pid):
                    continue
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
                ns_pid = _ns_pid(pid)
            except OSError:
                continue  # ended meanwhile
            if ns_pid is not None:
                found.append(HostProcess(pid, ns_pid, argv))
        return sorted(found, key=lambda p: p.ns_pid)

    def pids(self) -> list[int]:
        """Pids (seen from outside) of all processes in the host, the keeper included."""
        return [p.pid for p in self.processes()]

    def kill_all(self, sig: int = signal.SIGKILL) -> None:
        """Send sig to every process in the host except the keeper."""
        for proc in self.processes():
            if proc.ns_pid != 1:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, sig)

    # -- network --------------------------------------------------------------------------------

    def disconnect(self) -> None:
        """Unplug the host's cable (its bridge port goes down); processes keep running."""
        _ip_batch([f"link set dev {self.veth} down"])

    def reconnect(self) -> None:
        _ip_batch([f"link set dev {self.veth} up"])


class TestNetwork:
    """A bridge with N namespaced hosts.  Use as a context manager (or start()/close()).

    ``hosts`` is a count (hosts named node1, node2, ...) or a list of host names.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        hosts: int | Sequence[str] = 3,
        *,
        prefix: str = DEFAULT_PREFIX,
        hosts_file: bool = True,
        stop_grace: float = 2.0,
    ) -> None:
        names = [f"node{i + 1}" for i in range(hosts)] if isinstance(hosts, int) else list(hosts)
        if not 1 <= len(names) <= MAX_HOSTS:
            raise ValueError(f"a test network has 1 to {MAX_HOSTS} hosts")
        for name in names:
            if not _HOSTNAME_RE.match(name):
                raise ValueError(f"bad host name {name!r} (lower case letters, digits, '-')")
        if len(set(names)) != len(names):
            raise ValueError("host names must be unique")
        if not re.fullmatch(r"[a-z]{1,4}", prefix):
            raise ValueError("prefix: 1 to 4 lower case letters")
        self.prefix = prefix
        self.names = names
        self.hosts_file = hosts_file
        self.stop_grace = stop_grace
        self.suffix = ""
        self.bridge = ""
        #: the /24 of this network, its gateway (bridge) address and prefix length
        self.subnet: ipaddress.IPv4Network | None = None
        self.gateway = ""
        self.hosts: list[Host] = []
        self._started = False
        self._closed = False

    def __repr__(self) -> str:
        return f"<TestNetwork {self.bridge or '(not started)'} {self.subnet} hosts={[h.name for h in self.hosts]}>"

    def __enter__(self) -> TestNetwork:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __iter__(self) -> Iterator[Host]:
        return iter(self.hosts)

    def __len__(self) -> int:
        return len(self.hosts)

    def __getitem__(self, key: int | str) -> Host:
        if isinstance(key, int):
            return self.hosts[key]
        for host in self.hosts:
            if host.name == key:
                return host
        raise KeyError(key)

    @property
    def addresses(self) -> dict[str, str]:
        return {h.name: h.address for h in self.hosts}

    def start(self) -> None:
        if self._started:
            raise TestNetworkError("a TestNetwork can be started once")
        self._started = True
        _OPEN.add(self)
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self) -> None:
        owner = os.getpid()
        with _global_lock():
            self.suffix = _free_suffix(self.prefix)
            self.bridge = f"{self.prefix}{self.suffix}br"
            self.subnet = _free_subnet()
            self.gateway = str(self.subnet.network_address + 1)
            base = self.subnet.network_address + FIRST_HOST_OCTET
            self.hosts = [Host(self, i, name, str(base + i)) for i, name in enumerate(self.names)]
            alias = f"{_ALIAS_TAG}{owner}"
            nogen = " addrgenmode none" if _has_ipv6() else ""
            lines = [
                f"link add name {self.bridge} type bridge stp_state 0 forward_delay 0",
                f"link set dev {self.bridge} alias {alias}{nogen}",
                f"addr add {self.gateway}/{self.subnet.prefixlen} dev {self.bridge}",
            ]
            for h in self.hosts:
                lines += [
                    f"netns add {h.netns}",
                    f"link add name {h.veth} type veth peer name {h.interface} netns {h.netns}",
                    f"link set dev {h.veth} alias {alias} master {self.bridge}{nogen} up",
                ]
            lines.append(f"link set dev {self.bridge} up")
            _ip_batch(lines)
        # No routing from the bridge to anywhere, even if the machine forwards.
        with contextlib.suppress(OSError):
            Path(f"/proc/sys/net/ipv4/conf/{self.bridge}/forwarding").write_text("0\n")
        if self.hosts_file:
            self._write_hosts_files()
        # Configure the hosts' interfaces and start their keepers, all in parallel.
        errors = []
        setups: list[tuple[Host, subprocess.Popen[str]]] = []
        try:
            for h in self.hosts:
                lines = [
                    "link set dev lo up",
                    *([f"link set dev {h.interface} addrgenmode none"] if nogen else []),
                    f"addr add {h.address}/{self.subnet.prefixlen} dev {h.interface}",
                    f"link set dev {h.interface} up",
                ]
                setups.append((h, _ip_batch_start(lines, netns=h.netns)))
            for h in self.hosts:
                h._spawn_keeper()
        finally:
            for h, proc in setups:
                err = _ip_batch_wait(proc)
                if err is not None:
                    errors.append(f"{h.name}: {err}")
        for h in self.hosts:
            try:
                h._await_keeper()
            except TestNetworkError as e:
                errors.append(str(e))
        if errors:
            raise TestNetworkError("setting up the test hosts failed: " + "; ".join(errors))

    def _write_hosts_files(self) -> None:
        """/etc/netns/<netns>/hosts: `ip netns exec` mounts it over /etc/hosts inside the host."""
        text = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
        text += f"{self.gateway}\tgateway\n"
        text += "".join(f"{h.address}\t{h.name}\n" for h in self.hosts)
        try:
            for h in self.hosts:
                d = _ETC_NETNS / h.netns
                d.mkdir(parents=True, exist_ok=True)
                (d / "hosts").write_text(text)
        except OSError:  # read-only /etc: names just do not resolve inside
            self.hosts_file = False

    def close(self) -> None:
        """Stop all hosts and remove everything; safe to call twice and after failures."""
        if self._closed:
            return
        self._closed = True
        _OPEN.discard(self)
        errors: list[str] = []
        _terminate([p for h in self.hosts for p in h._procs], self.stop_grace)
        for h in self.hosts:
            h._procs.clear()
            if h._keeper is not None and h._keeper.stdin is not None:
                with contextlib.suppress(OSError):
                    h._keeper.stdin.close()  # all keepers end in parallel
        for h in self.hosts:
            try:
                h._stop_keeper()
            except Exception as e:  # keep cleaning up
                errors.append(f"{h.name}: {e}")
        lines = [f"link del dev {h.veth}" for h in self.hosts if (_SYS_NET / h.veth).exists()]
        if self.bridge and (_SYS_NET / self.bridge).exists():
            lines.append(f"link del dev {self.bridge}")
        lines += [f"netns del {h.netns}" for h in self.hosts if (_NETNS_DIR / h.netns).exists()]
        if lines:
            try:
                _ip_batch(lines, force=True)
            except TestNetworkError as e:
                errors.append(str(e))
        for h in self.hosts:
            shutil.rmtree(_ETC_NETNS / h.netns, ignore_errors=True)
        with contextlib.suppress(OSError):
            _ETC_NETNS.rmdir()  # only if empty
        if errors:
            raise TestNetworkError("tearing down the test network: " + "; ".join(errors))


# -- requirements --------------------------------------------------------------------------------

_reason_cache: list[str | None] = []


def unavailable_reason() -> str | None:
    """Why test hosts cannot be built here (None if they can).  Cached."""
    if not _reason_cache:
        _reason_cache.append(_probe())
    return _reason_cache[0]


def _probe() -> str | None:
    if sys.platform != "linux":
        return "test hosts need Linux"
    if os.geteuid() != 0:
        return "test hosts need root (ip netns, unshare)"
    missing = [tool for tool in ("ip", "unshare") if shutil.which(tool) is None]
    if missing:
        return f"test hosts need {' and '.join(missing)} (iproute2, util-linux)"
    probe = subprocess.run(
        ["unshare", "--net", "--pid", "--uts", "--ipc", "--mount", "--fork", "--mount-proc", "true"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return f"cannot create namespaces: {probe.stderr.strip()}"
    name = f"{DEFAULT_PREFIX}probe{os.getpid() % 100000}"
    try:
        _ip_batch([f"link add name {name} type bridge", f"link del dev {name}"])
    except TestNetworkError as e:
        return f"cannot create a bridge: {e}"
    return None


def ci_mode() -> bool:
    """True when running in CI (env CI set and not '', '0', 'false', 'no')."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def skip_or_fail(reason: str) -> NoReturn:
    """pytest.skip(reason), but fail in CI, where cluster tests must never be skipped."""
    import pytest

    if ci_mode():
        pytest.fail(f"cluster tests cannot run in CI: {reason}", pytrace=False)
    pytest.skip(reason)


# -- leftovers -----------------------------------------------------------------------------------


def leftovers(prefix: str = DEFAULT_PREFIX) -> dict[str, list[str]]:
    """Network namespaces and interfaces with our prefix: {"netns": [...], "links": [...]}."""
    netns = sorted(n for n in _listdir(_NETNS_DIR) if _netns_re(prefix).match(n))
    links = sorted(n for n in _listdir(_SYS_NET) if n.startswith(prefix) and _alias_owner(n) is not None)
    return {"netns": netns, "links": links}


def cleanup_stale(prefix: str = DEFAULT_PREFIX, *, all_owners: bool = False) -> list[str]:
    """Remove namespaces/interfaces left by test runs that died (or all, with all_owners).

    Processes still in a stale network namespace are killed.  Returns what was removed.
    """

    def stale(owner: int | None) -> bool:
        return owner is not None and (all_owners or not _alive(owner))

    removed: list[str] = []
    lines: list[str] = []
    found = leftovers(prefix)
    for link in found["links"]:
        if stale(_alias_owner(link)):
            lines.append(f"link del dev {link}")
            removed.append(link)
    stale_ns = []
    for ns in found["netns"]:
        m = _netns_re(prefix).match(ns)
        if m and stale(int(m.group(2))):
            stale_ns.append(ns)
    if stale_ns:
        inodes = set()
        for ns in stale_ns:
            with contextlib.suppress(OSError):
                inodes.add(os.stat(_NETNS_DIR / ns).st_ino)
        for pid in _all_pids():
            with contextlib.suppress(OSError):
                if os.stat(f"/proc/{pid}/ns/net").st_ino in inodes:
                    os.kill(pid, signal.SIGKILL)
        for ns in stale_ns:
            lines.append(f"netns del {ns}")
            removed.append(ns)
            shutil.rmtree(_ETC_NETNS / ns, ignore_errors=True)
    if lines:
        _ip_batch(lines, force=True)
    with contextlib.suppress(OSError):
        _ETC_NETNS.rmdir()
    return removed


# -- helpers -------------------------------------------------------------------------------------

_OPEN: set[TestNetwork] = set()


def _close_open_networks() -> None:
    for net in list(_OPEN):
        with contextlib.suppress(Exception):
            net.close()


atexit.register(_close_open_networks)


_helper_path: list[Path] = []


def _helper_argv(mode: str, *args: str) -> list[str]:
    if not _helper_path:
        digest = hashlib.sha256(_HELPER.encode()).hexdigest()[:12]
        path = _run_dir() / f"host-helper-{digest}.py"
        if not path.is_file() or path.read_text() != _HELPER:
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(_HELPER)
            os.replace(tmp, path)
        _helper_path.append(path)
    return [sys.executable, "-I", "-S", str(_helper_path[0]), mode, *args]


def _run_dir() -> Path:
    """Root's directory for the helper and the lock (not world-writable, unlike /tmp)."""
    base = Path("/run") if os.access("/run", os.W_OK) else Path(tempfile.gettempdir())
    path = base / "wulf-testnet"
    path.mkdir(mode=0o755, exist_ok=True)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise TestNetworkError(f"{path} is not a private directory of ours")
    return path


def _check_program(program: str, env: Any) -> None:
    """Raise FileNotFoundError like subprocess does (the host shares our file system)."""
    if "/" in program:
        ok = os.access(program, os.X_OK) and not os.path.isdir(program)
    else:
        path = (env or os.environ).get("PATH", os.defpath)
        ok = shutil.which(program, path=path) is not None
    if not ok:
        raise FileNotFoundError(2, "No such file or directory (in the test host)", program)


def _ip_batch_start(
    lines: list[str], *, netns: str | None = None, force: bool = False
) -> subprocess.Popen[str]:
    cmd = ["ip"] + (["-n", netns] if netns else []) + (["-force"] if force else []) + ["-batch", "-"]
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdin is not None
    proc.stdin.write("\n".join(lines) + "\n")
    proc.stdin.close()
    return proc


def _ip_batch_wait(proc: subprocess.Popen[str]) -> str | None:
    """Wait for an _ip_batch_start; the error text if it failed."""
    assert proc.stderr is not None
    err = proc.stderr.read()
    proc.stderr.close()
    if proc.wait(30) != 0:
        return err.strip() or f"exit status {proc.returncode}"
    return None


def _ip_batch(lines: list[str], *, netns: str | None = None, force: bool = False) -> None:
    err = _ip_batch_wait(_ip_batch_start(lines, netns=netns, force=force))
    if err is not None:
        raise TestNetworkError(f"ip -batch failed: {err}")


@contextlib.contextmanager
def _global_lock() -> Iterator[None]:
    """Serialise the choice of names and subnets between concurrent test runs."""
    with open(_run_dir() / "lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _free_suffix(prefix: str) -> str:
    taken = [n for n in _listdir(_SYS_NET) + _listdir(_NETNS_DIR) if n.startswith(prefix)]
    for _ in range(100):
        suffix = f"{random.getrandbits(20):05x}"
        if not any(n.startswith(prefix + suffix) for n in taken):
            return suffix
    raise TestNetworkError("no free interface name")


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 of TEST_RANGE that no interface of the root namespace uses."""
    out = subprocess.run(["ip", "-j", "-4", "addr", "show"], capture_output=True, text=True, check=True)
    used = [
        ipaddress.IPv4Network(f"{a['local']}/{a['prefixlen']}", strict=False)
        for link in json.loads(out.stdout or "[]")
        for a in link.get("addr_info", [])
        if "local" in a
    ]
    subnets = list(TEST_RANGE.subnets(new_prefix=24))
    random.shuffle(subnets)
    for net in subnets:
        if not any(net.overlaps(u) for u in used):
            return net
    raise TestNetworkError("no free /24 in 198.18.0.0/15")


def _has_ipv6() -> bool:
    return Path("/proc/sys/net/ipv6").is_dir()


def _keeper_child(unshare_pid: int, timeout: float = 2.0) -> int | None:
    """The keeper is the only child of `unshare --fork`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            pids = Path(f"/proc/{unshare_pid}/task/{unshare_pid}/children").read_text().split()
            if pids:
                return int(pids[0])
        for pid in _all_pids():  # kernels without CONFIG_PROC_CHILDREN
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = Path(f"/proc/{pid}/stat").read_text()
                if int(fields.rsplit(")", 1)[1].split()[1]) == unshare_pid:
                    return pid
        time.sleep(0.005)
    return None


def _zombie(pid: int) -> bool:
    """pid has ended but is not reaped yet (raises OSError if it is gone)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _ns_pid(pid: int) -> int | None:
    """pid's number in its innermost PID namespace."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    return None


def _all_pids() -> list[int]:
    return [int(n) for n in _listdir(Path("/proc")) if n.isdigit()]


def _listdir(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []


def _netns_re(prefix: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(prefix)}([0-9a-f]{{5}})-.+-p(\d+)$")


def _alias_owner(link: str) -> int | None:
    try:
        alias = (_SYS_NET / link / "ifalias").read_text().strip()
    except OSError:
        return None
    if alias.startswith(_ALIAS_TAG) and alias[len(_ALIAS_TAG) :].isdigit():
        return int(alias[len(_ALIAS_TAG) :])
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _terminate(procs: Sequence[subprocess.Popen[Any]], grace: float) -> None:
    """SIGTERM the running ones, wait up to grace seconds in total, SIGKILL the rest; close pipes."""
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(OSError):
                p.terminate()
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                p.kill()
            p.wait()
        _close_pipes(p)


def _close_pipes(proc: subprocess.Popen[Any]) -> None:
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
