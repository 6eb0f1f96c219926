"""The client's own HTTP/1.1, against a scripted fake server; how it finds the server."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wulf import config, locate
from wulf.auth import credential, vouch
from wulf.auth.key import ClusterKey
from wulf.cli.common import terminal_width
from wulf.client import AnswerLost, Client, current_umask, parse_server_url, quote
from wulf.errors import NotFound, Refused, ServerUnreachable, SlowDown, Unauthenticated, WulfError

# ---------------------------------------------------------------------------- a fake server

CLOSE = b""  # an answer that closes the connection without a word


@dataclass
class Seen:
    conn: int  # which connection (0, 1, ...) the request came on
    line: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Answer:
    raw: bytes
    close: bool = False  # close the connection after it


def ok(body: object, *extra: str, status: str = "200 OK") -> bytes:
    data = json.dumps(body).encode()
    head = "".join(f"{h}\r\n" for h in extra)
    return f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n{head}content-length: {len(data)}\r\n\r\n".encode() + data


@dataclass
class FakeServer:
    """Serves ``answers`` in order, one per request, and records what it was sent."""

    sock: socket.socket
    answers: list[Answer]
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0
    idle_closed: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> FakeServer:
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        return self

    def _serve(self) -> None:
        while self.answers:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            n = self.connections
            self.connections += 1
            with conn:
                self._talk(conn, n)
            self.idle_closed.set()

    def _talk(self, conn: socket.socket, n: int) -> None:
        conn.settimeout(10)
        buf = b""
        while self.answers:
            while b"\r\n\r\n" not in buf:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            head, _, buf = buf.partition(b"\r\n\r\n")
            line, *lines = head.decode().split("\r\n")
            headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in lines)}
            length = int(headers.get("content-length", "0"))
            while len(buf) < length:
                buf += conn.recv(65536)
            body, buf = buf[:length], buf[length:]
            self.seen.append(Seen(n, line, headers, body))
            answer = self.answers.pop(0)
            if answer.raw:
                conn.sendall(answer.raw)
            if answer.close or not answer.raw:
                return


@pytest.fixture
def unix_server(tmp_path: Path) -> Iterator[tuple[str, list[Answer], FakeServer]]:
    path = tmp_path / "wulf.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(4)
    answers: list[Answer] = []
    server = FakeServer(sock, answers)
    try:
        yield f"unix:{path}", answers, server
    finally:
        sock.close()
        if server.thread is not None:
            server.thread.join(5)


def test_request_and_content_length(unix_server: tuple[str, list[Answer], FakeServer]) -> None:
    url, answers, server = unix_server
    answers.append(Answer(ok({"jobs": [7, 8]})))
    server.start()
    c = Client(url)
    assert c.submit([{"command": "true", "cwd": "/"}], env={"A": "1"}, key="k1") == [7, 8]
    c.close()
    (req,) = server.seen
    assert req.line == "POST /api/v1/jobs HTTP/1.1"
    assert req.headers["host"] == "localhost"
    assert req.headers["content-type"] == "application/json"
    assert json.loads(req.body) == {"jobs": [{"command": "true", "cwd": "/"}], "env": {"A": "1"},
                                    "umask": current_umask(), "key": "k1"}
    assert "x-wulf-credential" not in req.headers and "authorization" not in req.headers  # the kernel says who


def test_get_has_no_body_and_query_is_quoted(unix_server: tuple[str, list[Answer], FakeServer]) -> None:
    url, answers, server = unix_server
    answers.append(Answer(ok({"nodes": [], "jobs": []})))
    server.start()
    c = Client(url)
    assert c.status(user="a b/é", queue="x&y") == {"nodes": [], "jobs": []}
    c.close()
    (req,) = server.seen
    assert req.line == "GET /api/v1/status?all=0&user=a%20b/%C3%A9&queue=x%26y HTTP/1.1"
    assert "content-length" not in req.headers and req.body == b""


def test_chunked(unix_server: tuple[str, list[Answer], FakeServer]) -> None:
    url, answers, server = unix_server
    body = json.dumps({"id": 3, "text": "x" * 5000}).encode()
    parts = [body[:10], body[10:4000], body[4000:]]
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    raw += b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\nX-Trailer: 1\r\n\r\n"
    answers += [Answer(raw), Answer(ok({"id": 4}))]
    server.start()
    c = Client(url)
    assert c.job(3)["text"] == "x" * 5000
    assert c.job(4) == {"id": 4}  # the connection is still in step after a chunked answer
    c.close()
    assert [s.conn for s in server.seen] == [0, 0]


def test_body_to_connection_close(unix_server: tuple[str, list[Answer], FakeServer]) -> None:
    url, answers, server = unix_server
    answers += [Answer(b'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{"id": 1}', close=True),
                Answer(b'HTTP/1.0 200 OK\r\nContent-Length: 9\r\n\r\n{"id": 2}'),
                Answer(ok({"id": 3}))]
    server.start()
    c = Client(url)
    assert c.job(1) == {"id": 1}
    assert c.job(2) == {"id": 2}  # HTTP/1.0 without keep-alive: closed after it
    assert c.job(3) == {"id": 3}
    c.close()
    assert [s.conn for s in server.seen] == [0, 1, 2]


def test_keep_alive_reuse_and_interim_answer(unix_server: tuple[str, list[Answer], FakeServer]) -> None:
    url, answers, server = unix_server
    answers += [Answer(ok({"id": 1})), Answer(b"HTTP/1.1 100 Continue\r\n\r\n" + ok({"id": 2})),
                Answer(ok({"id": 3}, "Connection: keep-alive"))]
    server.start()
    c = Client(url)
    assert [c.job(i)["id"] for i in (1, 2, 3)] == [1, 2, 3]
    c.close()
    assert [s.conn for s in server.seen] == [0, 0, 0]


def test_error_json_becomes_the_error_of_its_kind(unix_server: tuple[str, list[Answer], FakeServer]) -> None:
    url, answers, server = unix_server
    answers += [Answer(ok({"error": {"kind": "not_found", "message": "no job 9"}}, status="404 Not Found")),
                Answer(ok({"error": {"kind": "refused", "message": "not yours"}}, status="403 Forbidden")),
                Answer(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 2\r\n\r\n[]"),
                Answer(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")]
    server.start()
    c = Client(url)
    with pytest.raises(NotFound, match="^no job 9$"):
        c.job(9)
    with pytest.raises(Refused, match="^not yours$"):
        c.cancel([9])
    with pytest.raises(WulfError, match="the server answered 502"):
        c.job(9)
    with pytest.raises(WulfError, match="not JSON"):
        c.job(9)
    c.close()


def test_silent_retry_when_a_kept_connection_was_closed(unix_server: tuple[str, list[Answer], FakeServer]) -> None:
    url, answers, server = unix_server
    answers += [Answer(ok({"id": 1}), close=True), Answer(ok({"id": 2}))]  # closes with no word of it
    server.start()
    c = Client(url)
    assert c.job(1) == {"id": 1}
    assert server.idle_closed.wait(5)
    assert c.job(2) == {"id": 2}
    c.close()
    assert [s.conn for s in server.seen] == [0, 1]


def test_no_retry_on_a_new_connection(unix_server: tuple[str, list[Answer], FakeServer]) -> None:
    url, answers, server = unix_server
    answers += [Answer(CLOSE), Answer(ok({"id": 1}))]
    server.start()
    c = Client(url)
    with pytest.raises(ServerUnreachable, match="closed the connection"):
        c.post("/api/v1/jobs", {"jobs": []})  # perhaps queued already: not sent twice
    assert len(server.seen) == 1
    assert c.job(1) == {"id": 1}
    c.close()


def test_answer_cut_short(unix_server: tuple[str, list[Answer], FakeServer]) -> None:
    url, answers, server = unix_server
    answers += [Answer(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{", close=True),
                Answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{", close=True),
                Answer(b"HTTP/1.1 200 OK\r\nContent-", close=True)]
    server.start()
    c = Client(url)
    for _ in range(3):
        with pytest.raises(ServerUnreachable, match="stopped answering"):
            c.job(1)
    c.close()
    assert len(server.seen) == 3


def test_not_http(unix_server: tuple[str, list[Answer], FakeServer]) -> None:
    url, answers, server = unix_server
    answers += [Answer(b"SSH-2.0-OpenSSH_9.2\r\n", close=True),
                Answer(b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n", close=True),
                Answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", close=True)]
    server.start()
    c = Client(url)
    for _ in range(3):
        with pytest.raises(WulfError, match="does not speak HTTP"):
            c.job(1)
    c.close()


def test_timeout(unix_server: tuple[str, list[Answer], FakeServer]) -> None:
    url, _, server = unix_server  # nobody accepts: the connection waits in the backlog
    c = Client(url, timeout=0.2)
    with pytest.raises(ServerUnreachable, match="did not answer in time"):
        c.job(1)
    c.close()
    assert server.thread is None


def test_no_server(tmp_path: Path) -> None:
    url = f"unix:{tmp_path}/none.sock"
    with pytest.raises(ServerUnreachable, match=f"cannot reach the wulf server at {url} .*wulf up") as e:
        Client(url).job(1)
    assert e.value.exit_code == 3
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(tmp_path / "stale.sock"))  # a socket file nobody listens on
    sock.close()
    with pytest.raises(ServerUnreachable, match="Connection refused"):
        Client(f"unix:{tmp_path}/stale.sock").job(1)


def test_bad_request_target_is_refused_before_sending() -> None:
    c = Client("unix:/nonexistent")
    with pytest.raises(WulfError, match="control characters"):
        c.get("/api/v1/jobs/1 HTTP/1.1\r\nX-Evil: 1")


def test_tcp() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    port = sock.getsockname()[1]
    server = FakeServer(sock, [Answer(ok({"id": 1})), Answer(ok({"id": 2}))]).start()
    try:
        for i, url in enumerate((f"http://127.0.0.1:{port}", f"127.0.0.1:{port}/"), 1):
            c = Client(url)
            assert c.job(i) == {"id": i}
            c.close()
        assert [s.headers["host"] for s in server.seen] == [f"127.0.0.1:{port}"] * 2
    finally:
        sock.close()
        assert server.thread is not None
        server.thread.join(5)
    with pytest.raises(ServerUnreachable, match=f"127.0.0.1:{port}.*wulf server"):
        Client(f"http://127.0.0.1:{port}").job(1)


# ---------------------------------------------------------------------------- who asks, and slowing down


@pytest.fixture
def tcp_server() -> Iterator[tuple[str, list[Answer], FakeServer]]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    answers: list[Answer] = []
    server = FakeServer(sock, answers)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", answers, server
    finally:
        sock.close()
        if server.thread is not None:
            server.thread.join(5)


def test_over_tcp_each_request_carries_a_credential_from_the_local_agent(
        tcp_server: tuple[str, list[Answer], FakeServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, answers, server = tcp_server
    key = ClusterKey(b"k" * 32)
    agent = vouch.serve(tmp_path / "agent.sock", key, "here")
    assert agent is not None
    monkeypatch.setenv("WULF_AGENT_SOCKET", str(tmp_path / "agent.sock"))
    monkeypatch.delenv("WULF_TOKEN", raising=False)
    answers.extend([Answer(ok({"cancelled": [3]})), Answer(ok({"id": 3}))])
    server.start()
    try:
        c = Client(url)
        c.cancel([3])
        c.job(3)
        c.close()
    finally:
        agent.close()
    first, second = server.seen
    replays = credential.ReplayCache()
    for req, method, target in ((first, "POST", "/api/v1/jobs/cancel"), (second, "GET", "/api/v1/jobs/3")):
        cred = credential.verify(key, req.headers["x-wulf-credential"], kind="user",
                                 digest=credential.request_digest(method, target, req.body),
                                 now=credential.decode(key, req.headers["x-wulf-credential"]).time, ttl=60,
                                 replays=replays)
        assert (cred.uid, cred.host) == (os.getuid(), "here")


def test_a_token_goes_as_bearer_and_no_agent_is_asked(
        tcp_server: tuple[str, list[Answer], FakeServer], monkeypatch: pytest.MonkeyPatch) -> None:
    url, answers, server = tcp_server
    monkeypatch.setenv("WULF_TOKEN", "wulf_secret")
    monkeypatch.setenv("WULF_AGENT_SOCKET", "/nonexistent/agent.sock")
    answers.append(Answer(ok({"id": 3})))
    server.start()
    c = Client(url)
    c.job(3)
    c.close()
    assert server.seen[0].headers["authorization"] == "Bearer wulf_secret"
    assert "x-wulf-credential" not in server.seen[0].headers


def test_without_an_agent_the_refusal_says_why(
        tcp_server: tuple[str, list[Answer], FakeServer], monkeypatch: pytest.MonkeyPatch) -> None:
    url, answers, server = tcp_server
    monkeypatch.delenv("WULF_TOKEN", raising=False)
    monkeypatch.setenv("WULF_AGENT_SOCKET", "/nonexistent/agent.sock")
    body = {"error": {"kind": "unauthenticated", "message": "who are you?"}}
    answers.append(Answer(ok(body, status="401 Unauthorized")))
    server.start()
    c = Client(url)
    with pytest.raises(Unauthenticated, match=r"who are you\?; no wulf agent here vouches for you "
                                              r"\(/nonexistent/agent.sock: No such file"):
        c.job(3)
    c.close()
    assert "x-wulf-credential" not in server.seen[0].headers


def test_slow_down_is_waited_out_and_tried_again(unix_server: tuple[str, list[Answer], FakeServer],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    url, answers, server = unix_server
    slept: list[float] = []
    monkeypatch.setattr("wulf.client.time.sleep", slept.append)
    body = {"error": {"kind": "slow_down", "message": "slow down", "retry_after": 0.25}}
    answers.extend([Answer(ok(body, "retry-after: 1", status="429 Too Many Requests"))] * 2
                   + [Answer(ok({"id": 1}))])
    server.start()
    c = Client(url)
    assert c.job(1) == {"id": 1}
    c.close()
    assert slept == [0.25, 0.25] and len(server.seen) == 3


def test_slow_down_gives_up_after_a_few_tries(unix_server: tuple[str, list[Answer], FakeServer],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    url, answers, server = unix_server
    monkeypatch.setattr("wulf.client.time.sleep", lambda s: None)
    body = {"error": {"kind": "slow_down", "message": "slow down: too many"}}
    answers.extend([Answer(ok(body, status="429 Too Many Requests"))] * 20)
    server.start()
    c = Client(url)
    with pytest.raises(SlowDown, match="slow down: too many") as e:
        c.job(1)
    c.close()
    assert e.value.exit_code == 1 and len(server.seen) == 9


# ---------------------------------------------------------------------------- URLs and quoting


def test_parse_server_url() -> None:
    assert parse_server_url("http://Node1:7000") == ("node1", 7000)
    assert parse_server_url("node1") == ("node1", 7878)
    assert parse_server_url("node1:") == ("node1", 7878)
    assert parse_server_url("//node1:1/x") == ("node1", 1)
    assert parse_server_url("http://user@[::1]:99/api") == ("::1", 99)
    assert parse_server_url("HTTP://[fe80::1]") == ("fe80::1", 7878)
    assert parse_server_url("http://") == ("localhost", 7878)
    assert parse_server_url("https://node1") == ("node1", 7878)
    for bad in ("ftp://x", "http://node1:port", "http://[::1", "http://node1:99999"):
        with pytest.raises(WulfError):
            parse_server_url(bad)


@given(st.text(), st.sampled_from(["/", "", "/:@"]))
def test_quote_is_urllib_quote(text: str, safe: str) -> None:
    try:
        expected = urllib.parse.quote(text, safe=safe)
    except UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            quote(text, safe)
        return
    assert quote(text, safe) == expected


# ---------------------------------------------------------------------------- finding the server


@pytest.fixture
def no_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.delenv("WULF_SERVER", raising=False)
    monkeypatch.delenv("WULF_CONFIG", raising=False)
    monkeypatch.setattr(locate, "SYSTEM_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setattr(config, "SYSTEM_CONFIG", tmp_path / "absent.toml")
    return tmp_path


@pytest.mark.parametrize("state", ["", "/var/state", "/var//state/", "rel/./x", "//net/x", "///x", ".", "/", "//"])
def test_default_url_is_the_configs(no_config: Path, monkeypatch: pytest.MonkeyPatch, state: str) -> None:
    if state:
        monkeypatch.setenv("XDG_STATE_HOME", state)
    else:
        monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    expected = f"unix:{config.Config().socket_path()}"
    assert locate.server_url() == expected == config.server_url()
    assert locate.default_state_dir() == str(config.default_state_dir())


def test_keys_are_the_configs() -> None:
    from dataclasses import fields

    expected = {name: {f.metadata.get("key", f.name): type(getattr(cls(), f.name)) for f in fields(cls)}
                for name, cls in config._SECTIONS.items()}
    assert locate.KEYS == expected, "wulf.locate.KEYS must list the keys of wulf.config"


@pytest.mark.parametrize("text", [
    "",
    '[client]\nserver = "http://master:7000"\n[server]\nsocket = "/ignored.sock"\n',
    '[server]\nsocket = "/run//wulf/"\nhistory = 5\nstart_grace = 2\n',
    '[server]\nstate_dir = "/srv/wulf/"\n[agent]\ninterval = 1\nscratch = "/scratch"\n',
    '[server]\nstate_dir = "/"\n',
    '[server]\nstate_dir = "."\n[scheduler]\ndefault_cpu = 0.5\n',
    '[client]\nserver = ""\n',
    "[server]\nhistory = 5.0\n",  # wrong type
    "[server]\nstart_grace = true\n",  # a bool is not a number
    "[client]\nserver = 7\n",
    "[agent]\nbogus = 1\n",
    "[bogus]\n",
    "client = 3\n",
    "[limits]\nusers = { alice = 4 }\n[shares]\ngroups = { staff = 2.5 }\n",
    '[windows]\nweekends = ["Sat"]\n[nodes.features]\nn7 = ["bigmem"]\n',
    '[limits]\nusers = { alice = "many" }\n',  # a bad member
    "[limits]\nusers = { alice = -1 }\n",
    '[nodes.features]\nn7 = "bigmem"\n',
    "[client\n",  # not TOML
    b"[client]\nserver = '\xff'\n",  # not UTF-8
    None,  # no file at all
])
def test_url_from_file_is_the_configs(no_config: Path, monkeypatch: pytest.MonkeyPatch,
                                      text: str | bytes | None) -> None:
    cfg = no_config / "wulf.toml"
    if isinstance(text, str):
        cfg.write_text(text)
    elif text is not None:
        cfg.write_bytes(text)
    monkeypatch.setenv("WULF_CONFIG", str(cfg))
    monkeypatch.setenv("XDG_STATE_HOME", "/state")
    try:
        expected: object = config.server_url(config.load_config())
    except Exception as e:  # the same error, whatever it is
        expected = e
    if isinstance(expected, Exception):
        with pytest.raises(type(expected), match=re.escape(str(expected))):
            locate.server_url()
    else:
        assert locate.server_url() == expected
        assert locate._url_from_file(str(cfg)) == expected  # without wulf.config


def test_on_the_servers_machine_its_socket_is_used(no_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = no_config / "wulf.toml"
    state = no_config / "state"
    cfg.write_text(f'[client]\nserver = "https://master:7000"\n[server]\nstate_dir = "{state}"\n')
    monkeypatch.setenv("WULF_CONFIG", str(cfg))
    assert locate.server_url() == "https://master:7000" == config.server_url()  # a node: no socket here
    state.mkdir()
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(state / "wulf.sock"))
        assert locate.server_url() == f"unix:{state}/wulf.sock" == config.server_url()  # the master


def test_url_from_env_and_file(no_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = no_config / "wulf.toml"
    cfg.write_text('[client]\nserver = "http://master:7000"\n')
    monkeypatch.setenv("WULF_CONFIG", str(cfg))
    assert locate.server_url() == "http://master:7000" == config.server_url()
    cfg.write_text('[server]\nsocket = "/run/wulf.sock"\n')
    assert locate.server_url() == "unix:/run/wulf.sock"
    monkeypatch.setenv("WULF_SERVER", "unix:/x.sock")
    assert locate.server_url() == "unix:/x.sock" == config.server_url()
    assert config.server_url(config.Config()) == "unix:/x.sock"


def test_terminal_width(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "77")
    assert terminal_width() == 77
    monkeypatch.setenv("COLUMNS", "wide")
    expected = os.get_terminal_size().columns if os.isatty(1) else 120
    assert terminal_width() == expected


# ---------------------------------------------------------------------------- start-up


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("WULF_")} | env
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ, timeout=60)


def test_commands_import_little(tmp_path: Path) -> None:
    heavy = ["http.client", "email", "ssl", "socket", "urllib.parse", "shutil", "typing", "tomllib",
             "dataclasses", "pathlib", "shlex", "wulf.config"]
    commands = ("qr", "jstat", "qwait", "qcancel", "jkill", "jnice", "jmod", "jobmgr")
    code = ("import sys\nfrom wulf.client import Client\n"
            + "".join(f"import wulf.cli.{m}\n" for m in commands)
            + "Client()\nwulf.cli.qr._parser().format_help()\n"
            + f"print(sorted(m for m in {heavy!r} if m in sys.modules))\n")
    p = _python(code, WULF_SERVER="unix:/nowhere.sock")
    assert (p.returncode, p.stdout.strip(), p.stderr) == (0, "[]", "")
    p = _python(code, XDG_STATE_HOME=str(tmp_path))  # no config file either (unless /etc/wulf has one)
    assert p.returncode == 0, p.stderr
    if not os.path.exists(locate.SYSTEM_CONFIG):
        assert p.stdout.strip() == "[]"


def test_a_plain_qr_builds_its_job_without_the_models() -> None:
    """`qr -c CMD` (no dependency, signal, tasks or checkpoint) builds its job without wulf.model's
    dataclasses and what they import: each is imported by the option that needs it (issue 16, qr's
    start-up)."""
    heavy = ["dataclasses", "inspect", "typing", "wulf.model.job", "wulf.model.depend", "wulf.model.tasks",
             "wulf.model.checkpoint"]
    code = ("import sys\nfrom wulf.cli import qr\n"
            "args = qr._parser().parse_args(['-c', 'true', '-o', '/dev/null'])\n"
            "[spec] = qr.build_specs(args, '/tmp')\nassert spec['command'] == 'true', spec\n"
            f"print(sorted(m for m in {heavy!r} if m in sys.modules))\n")
    p = _python(code, WULF_SERVER="unix:/nowhere.sock")
    assert (p.returncode, p.stdout.strip(), p.stderr) == (0, "[]", "")
    # and an option that needs one still has it
    p = _python(code.replace("'-c', 'true'", "'--after', '7', '--ntasks', '2', '-c', 'true'"),
                WULF_SERVER="unix:/nowhere.sock")
    assert p.returncode == 0, p.stderr
    assert "wulf.model.depend" in p.stdout and "wulf.model.tasks" in p.stdout


def test_exit_fast_flushes_and_keeps_the_code() -> None:
    code = ("import sys\nfrom wulf.cli.common import run\n"
            "def main(argv):\n    sys.stdout.write('out ' * 10000 + 'end')\n    sys.stderr.write('err')\n    return 3\n"
            "run(main, [], exit_fast=True)\n")
    p = _python(code)
    assert (p.returncode, p.stdout[-8:], p.stderr) == (3, "out out end"[-8:], "err")
    p = _python(code.replace("return 3", "raise UsageError('bad')").replace(
        "import run", "import run\nfrom wulf.errors import UsageError"))
    assert p.returncode == 2 and p.stderr.endswith(": bad\n")


def test_several_servers_the_one_that_answers_is_used(unix_server: tuple[str, list[Answer], FakeServer],
                                                      tmp_path: Path) -> None:
    """A leader and a standby (which listens only once it leads): a refusal moves on to the next; a
    request that went out and got no answer is not sent to another (it may have been carried out)."""
    url, answers, server = unix_server
    answers += [Answer(ok({"id": 1})), Answer(ok({"id": 2})), Answer(CLOSE)]
    server.start()
    gone = f"unix:{tmp_path}/standby.sock"
    c = Client(f"{gone},{url}")
    assert c.job(1) == {"id": 1} and c.url == url
    assert c.job(2) == {"id": 2}  # it stays with the one that answered
    c.close()
    c = Client(f"{url},{gone}")
    with pytest.raises(AnswerLost):
        c.post("/api/v1/jobs", {"jobs": []})
    assert c.url == url and len(server.seen) == 3
    c.close()
