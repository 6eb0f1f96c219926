"""The server's network edge under abuse (issue 10: security 4 and 7, reliability 11): bodies, slow and idle
connections, floods of connections, the agents' hello, forwarded addresses, replayed credentials, group
changes, `wulf up`'s socket and the default address. Real servers, raw sockets; no timing in assertions.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from users import Users, make_group, make_user, remove
from wulf.auth import credential
from wulf.auth.key import load_key
from wulf.client import Client
from wulf.config import Config
from wulf.errors import UsageError
from wulfproc import BIN, Cluster, Daemon, free_port, wait_until

# ---------------------------------------------------------------- helpers


@contextlib.contextmanager
def cluster(root: Path, config: str = "", tcp: bool = True, prefix: Sequence[str] = (),
            listen: str | None = None) -> Iterator[Cluster]:
    """A server on its Unix socket (and on TCP at 127.0.0.1:``c.port``), started behind ``prefix``
    (e.g. ``prlimit``)."""
    port = free_port()
    c = Cluster(root, listen=listen if listen is not None else (f"127.0.0.1:{port}" if tcp else ""), config=config)
    c.port = port  # type: ignore[attr-defined]
    try:
        start(c, prefix)
        yield c
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.stop()


def start(c: Cluster, prefix: Sequence[str] = ()) -> None:
    argv = [*prefix, str(BIN / "wulf"), "server", "--state", str(c.state), "--listen", c.listen]
    c.server = Daemon(argv, c.root / "server.log", c.env).start()
    wait_until("the server to answer", lambda: c.try_status() is not None)


def connect(c: Cluster, source: str = "127.0.0.1", timeout: float = 30) -> socket.socket:
    s = socket.socket()
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect(("127.0.0.1", c.port))  # type: ignore[attr-defined]
    return s


def response(s: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP response (status, headers, body) from ``s``."""
    f = s.makefile("rb")
    try:
        status = int(f.readline().split()[1])
        headers = {}
        while (line := f.readline()) not in (b"\r\n", b""):
            k, _, v = line.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        body = f.read(int(headers.get("content-length", "0")))
    finally:
        f.close()
    return status, headers, body


def closed_by_server(s: socket.socket, keep_sending: bytes = b"", every: float = 0.2, timeout: float = 30) -> bytes:
    """Keep the connection going (sending ``keep_sending`` now and then) until the server closes it;
    what it sent. Fails the test if it never does."""
    got = b""
    s.settimeout(every)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = s.recv(65536)
        except TimeoutError:
            data = None
        except ConnectionResetError:
            return got
        if data == b"":
            return got
        if data:
            got += data
        if keep_sending:
            try:
                s.sendall(keep_sending)
            except (BrokenPipeError, ConnectionResetError):
                return got
    raise AssertionError(f"the server kept the connection open for {timeout}s (it sent {got[:200]!r})")


def error_of(body: bytes) -> dict[str, Any]:
    err = json.loads(body)["error"]
    assert set(err) >= {"kind", "message"}, err
    return dict(err)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def server_pid(c: Cluster) -> int:
    assert c.server is not None and c.server.proc is not None
    return c.server.proc.pid


# ---------------------------------------------------------------- security 4: bodies


def test_a_huge_body_is_refused_before_it_is_read(shared_tmp: Path) -> None:
    with cluster(shared_tmp, '[server]\nmax_body_mb = 1.0\n') as c:
        pid = server_pid(c)
        before = peak_rss_mb(pid)
        # a 1 GB login: refused on its headers alone, in the one error shape, and the connection closed
        with connect(c) as s:
            s.sendall(b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                      b"Content-Length: 1000000000\r\n\r\n")
            status, headers, body = response(s)
            assert status == 413 and error_of(body)["kind"] == "usage", body
            assert "larger than" in error_of(body)["message"]
            assert headers.get("connection") == "close"
        # without a length (chunked): refused once what came is too much for a page that needs a few bytes
        with connect(c) as s:
            chunk = b"a" * 100_000
            s.sendall(b"POST /login HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                      + f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            status, _, body = response(s)
            assert status == 413 and error_of(body)["kind"] == "usage"

        def flood() -> None:  # 200 MB sent as fast as loopback goes, whatever the server says
            with contextlib.suppress(OSError), connect(c) as s:
                s.sendall(b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 200000000\r\n\r\n")
                block = b"t" * 1_000_000
                for _ in range(200):
                    s.sendall(block)

        threads = [threading.Thread(target=flood) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert c.try_status() is not None
        assert peak_rss_mb(pid) < before + 64, (before, peak_rss_mb(pid))
        # a known caller may send more, up to [server] max_body_mb
        client = Client(c.url)
        try:
            with pytest.raises(UsageError, match="max_body_mb"):
                client.submit([{"command": "x" * 2_000_000, "cwd": "/tmp"}])
        finally:
            client.close()


# ---------------------------------------------------------------- security 4: slow, idle and many connections

FLOODER = """
import json, socket, sys
path, n = sys.argv[1], int(sys.argv[2])
socks = []
for _ in range(n):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    socks.append(s)
print("open", flush=True)
sys.stdin.readline()
refused = 0
for s in socks:
    s.setblocking(False)
    try:
        refused += s.recv(64).startswith(b"HTTP/1.1 429")
    except OSError:
        pass
    s.close()
print(json.dumps({"refused": refused}), flush=True)
"""


def first_words(socks: list[socket.socket], timeout: float = 15) -> list[bytes]:
    """What each socket got first (b"" where the server sent nothing within ``timeout`` or closed at once)."""
    got = {s: b"" for s in socks}
    pending = list(socks)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        readable, _, _ = select.select(pending, [], [], 0.5)
        for s in readable:
            with contextlib.suppress(OSError):
                got[s] = s.recv(64)
            pending.remove(s)
    return [got[s][:12] for s in socks]


def test_slow_idle_and_many_connections_do_not_shut_others_out(shared_tmp: Path, users: Users) -> None:
    config = "[server]\nmax_connections = 20\nrequest_timeout = 3.0\n"
    # few file descriptors, as a server has when 20,000 connections took the rest
    with cluster(shared_tmp, config, prefix=["prlimit", "--nofile=256:256", "--"]) as c:
        # slowloris: headers that never end, a byte at a time; a body that stops coming
        with connect(c) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            got = closed_by_server(s, keep_sending=b"X")
            assert got == b"" or got.startswith(b"HTTP/1.1 408"), got
        with connect(c) as s:
            s.sendall(b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\ntoken=")
            closed_by_server(s)
        with connect(c) as s:  # headers without end, all at once
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"p" * 200_000)
            got = closed_by_server(s)
            assert got == b"" or got.startswith(b"HTTP/1.1 431"), got[:100]
        # 300 idle connections from one address, and 300 on the Unix socket from one user
        tcp = [connect(c, source="127.0.0.2") for _ in range(300)]
        flooder = subprocess.Popen(["/usr/bin/python3", "-I", "-c", FLOODER, str(c.socket), "300"],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                   user=users.alice.uid, group=users.alice.gid, extra_groups=[])
        try:
            assert flooder.stdout is not None and flooder.stdin is not None
            assert flooder.stdout.readline().strip() == "open"
            # others get their answers meanwhile: bob on the Unix socket, a client over TCP
            p = c.run_as(users.bob, "jstat", "--json", timeout=20)
            assert "nodes" in json.loads(p.stdout)
            with connect(c) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                assert response(s)[0] == 200
            refused = first_words(tcp).count(b"HTTP/1.1 429")
            flooder.stdin.write("go\n")
            flooder.stdin.flush()
            unix = json.loads(flooder.stdout.readline())
        finally:
            for s in tcp:
                s.close()
            flooder.kill()
            flooder.wait()
            if flooder.stdout is not None:
                flooder.stdout.close()
            if flooder.stdin is not None:
                flooder.stdin.close()
        assert refused == 280 and unix["refused"] == 280, (refused, unix)
        assert c.run_as(users.alice, "jstat", timeout=20).returncode == 0  # and she may come back


# ---------------------------------------------------------------- security 4: the agents' hello


def ws_open(c: Cluster) -> socket.socket:
    """A WebSocket to the agents' endpoint, opened by hand (raw frames follow)."""
    s = connect(c)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(f"GET /api/v1/agent HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        data = s.recv(1)
        assert data, "the server closed the WebSocket handshake"
        head += data
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


def ws_frame(payload: bytes, length: int | None = None) -> bytes:
    """A masked text frame (mask 0) saying it holds ``length`` bytes (default: the payload's)."""
    n = len(payload) if length is None else length
    return bytes([0x81, 0x80 | 127]) + struct.pack("!Q", n) + b"\0\0\0\0" + payload


def ws_close_code(s: socket.socket, timeout: float = 30) -> int | None:
    """The code of the server's close frame (skipping others); None if the connection just ended."""
    s.settimeout(timeout)
    f = s.makefile("rb")
    try:
        while True:
            head = f.read(2)
            if len(head) < 2:
                return None
            n = head[1] & 0x7F
            if n == 126:
                n = struct.unpack("!H", f.read(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", f.read(8))[0]
            data = f.read(n)
            if head[0] & 0x0F == 8:
                return int(struct.unpack("!H", data[:2])[0]) if len(data) >= 2 else None
    except TimeoutError:
        raise AssertionError(f"the server kept the WebSocket open for {timeout}s") from None
    finally:
        f.close()


def test_a_huge_or_late_agent_hello_is_closed_and_others_go_on(shared_tmp: Path) -> None:
    with cluster(shared_tmp, "[server]\nrequest_timeout = 2.0\n") as c:
        c.agent("n1")
        with ws_open(c) as s:  # a hello of 40 MB: refused on its length, before it is read
            s.sendall(ws_frame(b'{"type":"hello"', length=40 * 2**20))
            assert ws_close_code(s) == 1009
        with ws_open(c) as s:  # no hello at all
            assert ws_close_code(s) == 1008
        with ws_open(c) as s:  # a hello that never ends
            s.sendall(ws_frame(b'{"type":', length=1000))
            assert ws_close_code(s) in (1008, None)
        assert "no hello" in (c.root / "server.log").read_text()
        assert [(n["name"], n["state"]) for n in c.status()["nodes"]] == [("n1", "up")]
        jid = c.submit("-c", "true")[0]
        c.run("qwait", str(jid))


def test_agents_that_give_up_during_the_handshake_leave_no_traceback(shared_tmp: Path) -> None:
    """(Issue 16: in a reconnect storm, an agent that gave up before its hello left an 80-line traceback in
    the server's log.) Agents that go away at each point of the handshake: before the upgrade is
    answered, with a half-sent hello, with a hello then at once, or reset (RST) instead of closing."""
    with cluster(shared_tmp, "[server]\nrequest_timeout = 2.0\n") as c:
        c.agent("n1")
        key = base64.b64encode(os.urandom(16)).decode()
        upgrade = (f"GET /api/v1/agent HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
        hello = json.dumps({"type": "hello", "node": {"name": "gone", "hostname": "gone", "cpus": 2, "mem_mb": 1000}})
        for _ in range(5):
            s = connect(c)  # the upgrade asked for, then gone before the answer
            s.sendall(upgrade)
            s.close()
            with ws_open(c) as s:  # a part of a hello, then gone
                s.sendall(ws_frame(b'{"type":"hel', length=200))
            with ws_open(c) as s:  # a whole hello (not signed), then gone at once
                s.sendall(ws_frame(hello.encode()))
            s = ws_open(c)  # reset, not closed
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        time.sleep(3)  # past request_timeout: every handshake has been given up on by now
        assert [(n["name"], n["state"]) for n in c.status()["nodes"]] == [("n1", "up")]
        log = (c.root / "server.log").read_text()
        assert "Traceback" not in log, log[-4000:]
        jid = c.submit("-c", "true")[0]
        c.run("qwait", str(jid))


# ---------------------------------------------------------------- reliability 11: a failed handshake


def test_a_failed_agent_handshake_leaves_the_node_down(shared_tmp: Path) -> None:
    with cluster(shared_tmp) as c:
        key = load_key(c.key_path)
        auth = credential.encode(key, credential.AGENT, 0, 0, "ghost", time.time(), credential.agent_digest("ghost"))
        # a signed hello the server fails to take in (an exit of a job id no database can hold)
        hello = {"type": "hello", "node": {"name": "ghost", "hostname": "ghost", "cpus": 2, "mem_mb": 1000},
                 "auth": auth, "finished": [{"id": 2**64, "exit_code": 0, "time": time.time()}]}
        with ws_open(c) as s:
            s.sendall(ws_frame(json.dumps(hello).encode()))
            ws_close_code(s)
        states = {n["name"]: n["state"] for n in c.status()["nodes"]}
        assert states.get("ghost", "down") != "up", states


# ---------------------------------------------------------------- security 7


def test_x_forwarded_for_is_believed_only_from_a_trusted_proxy(shared_tmp: Path) -> None:
    config = '[server]\nallow = ["198.51.100.0/24"]\n'
    forged = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 198.51.100.7\r\n\r\n"
    with cluster(shared_tmp / "a", config) as c:
        with connect(c) as s:
            s.sendall(forged)
            status, _, body = response(s)
        assert status == 403 and error_of(body)["kind"] == "forbidden"
    with cluster(shared_tmp / "b", config + 'trusted_proxies = ["127.0.0.1"]\n') as c:
        with connect(c) as s:
            s.sendall(forged)
            assert response(s)[0] == 200


def test_a_credential_used_before_a_restart_is_not_good_after_it(shared_tmp: Path, users: Users) -> None:
    with cluster(shared_tmp) as c:
        path = "/api/v1/whoami"
        cred = credential.encode(load_key(c.key_path), credential.USER, users.alice.uid, users.alice.gid, "tests",
                                 time.time(), credential.request_digest("GET", path, b""))
        request = f"GET {path} HTTP/1.1\r\nHost: x\r\nX-Wulf-Credential: {cred}\r\n\r\n".encode()
        with connect(c) as s:
            s.sendall(request)
            status, _, body = response(s)
        assert status == 200 and json.loads(body)["user"] == users.alice.name
        assert c.server is not None
        c.server.kill(signal.SIGTERM)
        start(c)
        with connect(c) as s:
            s.sendall(request)
            status, _, body = response(s)
        assert status == 401 and error_of(body)["kind"] == "unauthenticated", body
        assert "before the server started" in error_of(body)["message"]


def test_leaving_the_administrators_group_takes_effect_without_a_reload(shared_tmp: Path, users: Users) -> None:
    group = make_group("edgeadm")
    dave = make_user("dave", (group,))
    try:
        with cluster(shared_tmp, f'[server]\nadmin_group = "{group}"\n', tcp=False) as c:
            # (not `jobmgr reload`: a reload would forget what the server knew of its callers anyway)
            p = c.run_as(dave, "jobmgr", "drain", "nosuch", check=False)
            assert p.returncode == 4 and "not an administrator" not in p.stderr, p.stderr
            subprocess.run(["gpasswd", "-d", dave.name, group], check=True, capture_output=True)

            def refused() -> bool:
                p = c.run_as(dave, "jobmgr", "drain", "nosuch", check=False)
                return p.returncode == 5 and "not an administrator" in p.stderr

            wait_until("dave to be no administrator", refused, timeout=60, every=1.0)
    finally:
        remove([dave], [group])


def test_wulf_up_serves_its_owner_alone(shared_tmp: Path, users: Users) -> None:
    state = shared_tmp / "up"
    config = shared_tmp / "wulf.toml"
    config.write_text('[auth]\nagent_socket = ""\n')
    env = {**os.environ, "WULF_CONFIG": str(config), "WULF_IGNORE_PIDS": str(os.getpid())}
    env.pop("WULF_SERVER", None)
    wulf = str(BIN / "wulf")
    p = subprocess.run([wulf, "up", "-d", "--state", str(state), "--name", "mine"], env=env, capture_output=True,
                       text=True, timeout=60)
    try:
        assert p.returncode == 0, p.stdout + p.stderr
        url = {"WULF_SERVER": f"unix:{state / 'wulf.sock'}"}
        assert subprocess.run([str(BIN / "jstat")], env={**env, **url}, capture_output=True).returncode == 0
        c = Cluster(shared_tmp / "c")
        p = c.run_as(users.alice, "jstat", env=url, check=False)
        assert p.returncode != 0 and "Traceback" not in p.stderr, p.stderr
        assert oct((state / "wulf.sock").stat().st_mode & 0o777) == "0o600"
        # and were the socket opened to all, the server still serves its owner (and root) alone
        (state / "wulf.sock").chmod(0o666)
        p = c.run_as(users.alice, "jstat", env=url, check=False)
        assert p.returncode == 5 and p.stderr.count("\n") == 1 and "alone" in p.stderr, p.stderr
    finally:
        subprocess.run([wulf, "down", "--state", str(state)], env=env, capture_output=True, timeout=60)


def _listening(port: int) -> set[str]:
    """The addresses this machine listens on at ``port`` (TCP, IPv4), from the kernel's table."""
    out = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        addr, _, p = local.partition(":")
        if state == "0A" and int(p, 16) == port:
            out.add(socket.inet_ntoa(struct.pack("<I", int(addr, 16))))
    return out


def test_the_default_address_is_loopback_until_tls_is_set_up(shared_tmp: Path) -> None:
    assert Config().server.listen.startswith(":")  # no host: it depends on TLS
    port = free_port()
    with cluster(shared_tmp / "plain", listen=f":{port}"):
        assert _listening(port) == {"127.0.0.1"}
    etc = shared_tmp / "etc"
    port = free_port()
    p = subprocess.run([str(BIN / "wulf"), "init", "--dir", str(etc), "--host", "127.0.0.1", "--port", str(port),
                        "--state", str(shared_tmp / "tls" / "server")], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    c = Cluster(shared_tmp / "tls", listen=f":{port}", config=(etc / "wulf.toml").read_text())
    try:
        c.server = Daemon([str(BIN / "wulf"), "server", "--state", str(c.state), "--listen", c.listen],
                          c.root / "server.log", c.env).start()
        wait_until("the server to answer", lambda: c.try_status() is not None)
        assert _listening(port) == {"0.0.0.0"}
    finally:
        c.stop()
