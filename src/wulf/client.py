"""A small client for the wulf HTTP API, standard library only, so the commands start fast.

It is also wulf's Python API::

    from wulf.client import Client
    c = Client()                       # $WULF_SERVER, the config, or the local `wulf up`
    ids = c.submit([{"command": "echo hi", "cwd": "/tmp"}])
    c.wait(ids)

It speaks just enough HTTP/1.1 itself, over a Unix socket (``unix:PATH``) or TCP
(``http://HOST:PORT``, ``https://HOST:PORT``), rather than import :mod:`http.client` (which brings
:mod:`email` and :mod:`ssl`) and :mod:`socket` (whose enums are slow to build): a command-line tool
spends most of its life starting up. :mod:`ssl` and :mod:`hashlib` come only for TCP.

Who the caller is, the server learns without the client's word for it: over the Unix socket the
kernel tells it; over TCP each request carries a credential that the wulf agent of this machine signed
for the caller's uid and that request (``X-Wulf-Credential``; see :mod:`wulf.auth.vouch`), or the API
token in ``$WULF_TOKEN`` (``Authorization: Bearer``). When the server asks to slow down (HTTP 429),
the client waits the time it names and tries again (a few times).
"""

from __future__ import annotations

import _socket
import json
import os
import pwd
import time

from wulf.errors import ServerUnreachable, SlowDown, Unauthenticated, UsageError, WulfError, error_from_kind

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence
    from typing import Any, TypeVar

    T = TypeVar("T")

DEFAULT_PORT = 7878
SLOW_DOWN_TRIES = 8
"""How many times a request the server asked to slow down is tried again before the client gives up."""
SLOW_DOWN_WAIT = 30.0
"""Longest wait before trying again, whatever the server names."""
SUBMIT_TRIES = 4
"""How many times a submission whose answer was lost (a timeout, a dropped connection) is sent, with the
same idempotency key: the server queues it once and answers its ids each time."""
RECONNECT_FOR = 600.0
"""How long waiting for jobs (qwait, :meth:`Client.wait`) keeps trying to reach a server that went away
(restarted), unless its own timeout ends sooner."""
MAX_IDS = 10_000
"""Most job ids one request names (wulf.protocol.MAX_IDS): longer lists go in several requests."""
MAX_SUBMIT_JOBS = 10_000
"""Most jobs one submission carries (wulf.protocol.MAX_SUBMIT_JOBS): more go in several."""
OUTPUT_CHUNK = 1024 * 1024
"""Most bytes of a job's output one read returns (wulf.protocol.MAX_OUTPUT_CHUNK)."""
MAX_ACCT_IDS = 1000
"""Most job ids one accounting query names (wulf.model.accounting.MAX_IDS): more go in several."""
_MAX_LINE = 65536  # longest status or header line accepted
_MAX_HEADERS = 100
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def quote(text: str, safe: str = "/") -> str:
    """Percent-encode ``text`` (UTF-8) for a URL, like :func:`urllib.parse.quote`."""
    ok = _SAFE.union(safe.encode("ascii"))
    return "".join(chr(b) if b in ok else f"%{b:02X}" for b in text.encode("utf-8"))


def current_umask() -> int:
    """This process's umask (read by setting it, and setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def current_user() -> tuple[str, int]:
    uid = os.getuid()
    try:
        return pwd.getpwuid(uid).pw_name, uid
    except KeyError:
        return str(uid), uid


def _how_to_start(url: str) -> str:
    if url.startswith("unix:"):
        return "start a local cluster with `wulf up`, or set WULF_SERVER to the server's URL"
    return "start it with `wulf server`, or set WULF_SERVER to the right URL"


def is_tls(url: str) -> bool:
    return url[:8].lower() == "https://"


def parse_server_url(url: str) -> tuple[str, int]:
    """``(host, port)`` of a TCP server URL: ``http://HOST:PORT``, ``https://HOST:PORT``, ``HOST:PORT``,
    ``http://[::1]:PORT``."""
    rest = url
    scheme, sep, after = url.partition("://")
    if sep:
        if scheme.lower() not in ("http", "https"):
            raise WulfError(f"unsupported server URL {url!r} (use http://HOST:PORT, https://HOST:PORT or unix:PATH)")
        rest = after
    elif url.startswith("//"):
        rest = url[2:]
    netloc = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].rpartition("@")[2]
    if netloc.startswith("["):
        host, bracket, port_text = netloc[1:].partition("]")
        if not bracket or (port_text and not port_text.startswith(":")):
            raise WulfError(f"bad server URL {url!r} (use http://HOST:PORT or unix:PATH)")
        port_text = port_text[1:]
    else:
        host, _, port_text = netloc.partition(":")
    if port_text and not (port_text.isascii() and port_text.isdigit() and int(port_text) <= 65535):
        raise WulfError(f"bad port in server URL {url!r} (use http://HOST:PORT or unix:PATH)")
    return host.lower() or "localhost", int(port_text) if port_text else DEFAULT_PORT


def _find_server() -> str:
    from wulf.locate import server_url

    return server_url()


def fetch_credential(path: str, digest: str, timeout: float = 10.0) -> str:
    """A credential for one request (``digest``: see :func:`wulf.auth.credential.request_digest`) from
    the wulf agent of this machine, which listens at ``path``. Raises OSError when there is none, and
    Unauthenticated when it will not vouch."""
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(f"CRED {digest}\n".encode("ascii"))
        buf = b""
        while not buf.endswith(b"\n") and len(buf) < 8192:
            chunk = s.recv(8192)
            if not chunk:
                break
            buf += chunk
    finally:
        s.close()
    line = buf.decode("ascii", "replace").strip()
    if line.startswith("OK "):
        return line[3:]
    raise Unauthenticated(f"the wulf agent at {path} would not vouch for you: {line[4:] or 'it did not answer'}")


FAILOVER_PATIENCE = 15.0
"""Seconds a client of several servers keeps trying while none answers (a standby takes over within
``[server] failover_seconds``, 10 by default)."""


class AnswerLost(ServerUnreachable):
    """The request went out and no answer came back: the server may have carried it out."""


def new_key() -> str:
    """An idempotency key for one submission (see :meth:`Client.submit`)."""
    return os.urandom(16).hex()


def retrying(call: Callable[[], T], patience: float, notice: Callable[[WulfError], None] | None = None) -> T:
    """``call()``; while the server cannot be reached, again after a pause (0.2 s, doubling up to 5 s),
    until ``patience`` seconds have passed without an answer (then the last error is raised)."""
    give_up = time.monotonic() + patience
    delay = 0.2
    while True:
        try:
            return call()
        except ServerUnreachable as e:
            if time.monotonic() + delay > give_up:
                raise
            if notice is not None:
                notice(e)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


class _Disconnected(ConnectionResetError):
    """The server closed the connection before it sent anything back."""


class _Truncated(ConnectionError):
    """The server closed the connection in the middle of an answer."""


class _BadResponse(Exception):
    """What came back is not HTTP/1.x."""


class _Connection:
    """One HTTP/1.1 connection, kept alive between requests; one request at a time."""

    def __init__(self, url: str, ca: str = "") -> None:
        self.unix_path = url[5:] if url.startswith("unix:") else None
        self.tls = self.unix_path is None and is_tls(url)
        self.ca = ca
        self.addr = ("localhost", 0) if self.unix_path is not None else parse_server_url(url)
        host, port = self.addr
        self.host_header = host if self.unix_path is not None else f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.sock: _socket.socket | None = None
        self.buf = bytearray()
        self.reused = False  # whether an answer came on this connection already (it may have gone stale)
        self.answered = False  # whether any of the answer to the current request has come
        self.headers: dict[str, str] = {}  # of the last answer

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        self.buf.clear()
        self.reused = False

    def _open(self, timeout: float) -> _socket.socket:
        targets: list[tuple[int, int, int, str, Any]]
        if self.unix_path is not None:
            targets = [(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, "", self.unix_path)]
        else:
            targets = _socket.getaddrinfo(*self.addr, 0, _socket.SOCK_STREAM)
        err = OSError("no address found")
        for family, kind, proto, _, addr in targets:
            s = _socket.socket(family, kind, proto)
            try:
                s.settimeout(timeout)
                s.connect(addr)
                if self.tls:
                    from wulf.auth.tls import client_context

                    return client_context(self.ca).wrap_socket(s, server_hostname=self.addr[0])  # type: ignore[arg-type]
                return s
            except OSError as e:
                s.close()
                err = e
            except BaseException:
                s.close()
                raise
        raise err

    # ------------------------------------------------------------------ reading

    def _fill(self) -> bool:
        """Read what has come into the buffer; False at the end of the stream."""
        assert self.sock is not None
        data = self.sock.recv(65536)
        if not data and not self.answered:
            raise _Disconnected("Remote end closed connection without response")
        self.answered = True
        self.buf += data
        return bool(data)

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise _Truncated("it closed the connection in the middle of an answer")
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def _line(self) -> bytes:
        while (i := self.buf.find(b"\n")) < 0:
            if len(self.buf) > _MAX_LINE:
                raise _BadResponse("a line is too long")
            if not self._fill():
                raise _Truncated("it closed the connection in the middle of an answer")
        return self._take(i + 1)

    def _read_head(self) -> tuple[int, bytes, dict[str, str]]:
        """The status, HTTP version and headers (names in lower case) of one answer."""
        line = self._line()
        version, _, rest = line.partition(b" ")
        if not (version.startswith(b"HTTP/1.") and rest[:3].isdigit() and rest[3:4] in (b" ", b"\r", b"\n")):
            raise _BadResponse(f"bad status line {line[:60]!r}")
        headers: dict[str, str] = {}
        for _ in range(_MAX_HEADERS):
            line = self._line()
            if line in (b"\r\n", b"\n"):
                return int(rest[:3]), version, headers
            name, colon, value = line.decode("latin-1").partition(":")
            name = name.lower()
            if not colon or not name or name != name.strip():
                raise _BadResponse(f"bad header line {line[:60]!r}")
            headers[name] = headers[name] + ", " + value.strip() if name in headers else value.strip()
        raise _BadResponse("too many header lines")

    def _read_body(self, method: str, status: int, headers: dict[str, str]) -> tuple[bytes, bool]:
        """The body, and whether the connection can carry another request after it."""
        if method == "HEAD" or status in (204, 304):
            return b"", True
        coding = headers.get("transfer-encoding")
        if coding is not None and coding.lower().rsplit(",", 1)[-1].strip() == "chunked":
            chunks = []
            while size := self._chunk_size():
                chunks.append(self._take(size))
                if self._line() not in (b"\r\n", b"\n"):
                    raise _BadResponse("a chunk does not end with its line end")
            while self._line() not in (b"\r\n", b"\n"):  # trailer fields
                pass
            return b"".join(chunks), True
        lengths = {n.strip() for n in headers.get("content-length", "").split(",")}
        if coding is not None or lengths == {""}:  # the body ends where the connection does
            while self._fill():
                pass
            return self._take(len(self.buf)), False
        length = lengths.pop()
        if lengths or not (length.isascii() and length.isdigit()):
            raise _BadResponse(f"bad Content-Length {headers['content-length'][:40]!r}")
        return self._take(int(length)), True

    def _chunk_size(self) -> int:
        size = self._line().split(b";", 1)[0].strip()
        if not size or size.strip(b"0123456789abcdefABCDEF"):
            raise _BadResponse(f"bad chunk size {size[:40]!r}")
        return int(size, 16)

    def exchange(self, method: str, path: str, data: bytes | None, timeout: float,
                 extra: str = "") -> tuple[int, bytes]:
        """Send one request (with the ``extra`` header lines) and read its answer: ``(status, body)``."""
        target = f"{method} {path}"
        if not (target.isascii() and target.isprintable()) or target.count(" ") != 1:
            raise WulfError(f"cannot send {target!r}: not ASCII, or spaces or control characters in it")
        head = f"{target} HTTP/1.1\r\nHost: {self.host_header}\r\nAccept-Encoding: identity\r\n{extra}"
        if data is not None:
            head += "Content-Type: application/json\r\n"
        if data is not None or method in ("POST", "PUT", "PATCH"):
            head += f"Content-Length: {len(data or b'')}\r\n"
        if self.sock is None:
            self.sock = self._open(timeout)
            self.reused = False
        else:
            self.sock.settimeout(timeout)
        self.answered = False
        self.sock.sendall(head.encode() + b"\r\n" + (data or b""))
        status, version, headers = self._read_head()
        while 100 <= status < 200:  # interim answers (100 Continue); no protocol switch was asked for
            if status == 101:
                raise _BadResponse("the server switched protocols")
            status, version, headers = self._read_head()
        self.headers = headers
        body, keep = self._read_body(method, status, headers)
        tokens = [t.strip() for t in headers.get("connection", "").lower().split(",")]
        if keep and ("keep-alive" in tokens if version == b"HTTP/1.0" else "close" not in tokens) and not self.buf:
            self.reused = True
        else:
            self.close()
        return status, body


class Client:
    def __init__(self, url: str | None = None, timeout: float = 30.0) -> None:
        if url is None:  # $WULF_SERVER is what wulf.locate.server_url() answers first: no need to import it
            url = os.environ.get("WULF_SERVER") or _find_server()
        # several URLs (comma-separated: [client] servers): a leader and standbys; the one that answers is used
        self.urls = [u.strip() for u in url.split(",") if u.strip()] or [url]
        self.url = self.urls[0]
        self.timeout = timeout
        self._conn: _Connection | None = None
        self.user, self.uid = current_user()
        self.token = os.environ.get("WULF_TOKEN", "").strip()
        self._tcp: tuple[str, str] | None = None  # (agent socket, CA certificate), looked up when needed
        self._no_credential = ""  # why the last request went without a credential
        self.headers: dict[str, str] = {}  # of the last answer (names in lower case): wulf doctor reads its Date

    def _tcp_settings(self) -> tuple[str, str]:
        if self._tcp is None:
            from wulf.locate import tcp_settings

            self._tcp = tcp_settings()
        return self._tcp

    # ------------------------------------------------------------------ transport

    def _connect(self) -> _Connection:
        if self._conn is None:
            if self.url.startswith("unix:"):
                self._conn = _Connection(self.url)
            else:
                ca = self._tcp_settings()[1]
                if ca and not is_tls(self.url):
                    raise UsageError(f"this cluster speaks TLS ([tls] ca is set): use https:// in {self.url}")
                self._conn = _Connection(self.url, ca)
        return self._conn

    def _identity(self, method: str, path: str, data: bytes | None) -> str:
        """The header lines that say who sends a request over TCP (none over the Unix socket)."""
        if self.token:
            return f"Authorization: Bearer {self.token}\r\n"
        if self.url.startswith("unix:"):
            return ""
        from wulf.auth.digest import request_digest

        agent = self._tcp_settings()[0]
        try:
            cred = fetch_credential(agent, request_digest(method, path, data or b""))
        except OSError as e:
            self._no_credential = f"no wulf agent here vouches for you ({agent}: {e.strerror or e})"
            return ""
        self._no_credential = ""
        return f"X-Wulf-Credential: {cred}\r\n"

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _exchange(self, method: str, path: str, data: bytes | None, timeout: float | None) -> tuple[int, bytes]:
        """One request to the server that answers: with several (a leader and standbys), a refusal moves on
        to the next (a standby listens only once it leads), and while none answers the client keeps
        trying for FAILOVER_PATIENCE seconds (a takeover in progress). A request that went out and got no
        answer is never sent to another: it may have been carried out."""
        give_up = time.monotonic() + (FAILOVER_PATIENCE if len(self.urls) > 1 else 0.0)
        refused = 0
        while True:
            try:
                return self._exchange_with(method, path, data, timeout)
            except AnswerLost:
                raise
            except ServerUnreachable:
                refused += 1
                if len(self.urls) == 1 or (refused % len(self.urls) == 0 and time.monotonic() > give_up):
                    raise
                if refused % len(self.urls) == 0:
                    time.sleep(0.2)
                self.close()
                self.url = self.urls[refused % len(self.urls)]

    def _exchange_with(self, method: str, path: str, data: bytes | None, timeout: float | None) -> tuple[int, bytes]:
        extra = self._identity(method, path, data)
        for attempt in range(2):  # one silent retry when a kept-alive connection was closed
            conn = self._connect()
            reused = conn.sock is not None and conn.reused
            try:
                answer = conn.exchange(method, path, data, self.timeout if timeout is None else timeout, extra)
                self.headers = conn.headers
                return answer
            except (ConnectionRefusedError, FileNotFoundError) as e:
                self.close()
                raise ServerUnreachable(
                    f"cannot reach the wulf server at {self.url} ({e.strerror}); {_how_to_start(self.url)}"
                ) from None
            except _Truncated as e:
                self.close()
                raise AnswerLost(f"the wulf server at {self.url} stopped answering: {e}") from None
            except (BrokenPipeError, ConnectionResetError) as e:
                answered = conn.answered
                self.close()
                if attempt or not reused or answered:
                    hint = "" if conn.tls or self.url.startswith("unix:") else "; does it speak TLS only? then use https://"
                    raise AnswerLost(f"the wulf server at {self.url} closed the connection ({e}){hint}") from None
            except TimeoutError:
                self.close()
                raise AnswerLost(f"the wulf server at {self.url} did not answer in time") from None
            except OSError as e:
                self.close()
                if conn.tls:
                    _tls_failure(self.url, conn.ca, e)
                raise ServerUnreachable(
                    f"cannot reach the wulf server at {self.url} ({e.strerror or e}); {_how_to_start(self.url)}"
                ) from None
            except _BadResponse as e:
                self.close()
                raise WulfError(f"the server at {self.url} does not speak HTTP/1.1 as wulf does ({e})") from None
            except BaseException:  # WulfError, KeyboardInterrupt: the connection is in an unknown state
                self.close()
                raise
        raise AssertionError("unreachable")

    def request(self, method: str, path: str, body: Any = None, timeout: float | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        for attempt in range(SLOW_DOWN_TRIES + 1):
            try:
                return self._request_once(method, path, data, timeout)
            except SlowDown as e:
                if attempt == SLOW_DOWN_TRIES:
                    raise
                time.sleep(min(SLOW_DOWN_WAIT, max(0.01, e.retry_after)))
        raise AssertionError("unreachable")

    def _request_once(self, method: str, path: str, data: bytes | None, timeout: float | None) -> Any:
        status, payload = self._exchange(method, path, data, timeout)
        try:
            result = json.loads(payload) if payload else None
        except ValueError:
            raise WulfError(f"the server at {self.url} sent something that is not JSON (status {status})") from None
        if status >= 400:
            err = result.get("error") if isinstance(result, dict) else None
            if isinstance(err, dict):
                kind, message = str(err.get("kind", "error")), str(err.get("message", ""))
                if kind == "slow_down":
                    wait = err.get("retry_after")
                    raise SlowDown(message, float(wait) if isinstance(wait, (int, float)) else 1.0)
                if kind == "unauthenticated" and self._no_credential:
                    message = f"{message}; {self._no_credential}"
                raise error_from_kind(kind, message)
            raise WulfError(f"the server answered {status}: {payload[:200]!r}")
        return result

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: Any = None, timeout: float | None = None) -> Any:
        return self.request("POST", path, body if body is not None else {}, timeout=timeout)

    # ------------------------------------------------------------------ API

    def submit(self, jobs: list[dict[str, Any]], env: dict[str, str] | None = None, key: str = "") -> list[int]:
        """Queue jobs (dicts of :class:`wulf.protocol.JobSpec` fields); returns their ids.

        The submission carries an idempotency ``key`` (a new one unless given): when its answer is lost
        (a timeout, a dropped connection), it is sent again with that key, up to SUBMIT_TRIES times, and
        the server, which remembers keys for a day, answers the same ids without queueing the jobs again.
        Give the same ``key`` to try again yourself after an error.

        More than MAX_SUBMIT_JOBS go in several requests (keys ``KEY:1``, ``KEY:2``...), each all or
        nothing: if one is refused, the error says which jobs the earlier ones queued."""
        body = {"env": dict(os.environ) if env is None else env, "umask": current_umask()}
        key = key or new_key()
        parts = range(0, max(1, len(jobs)), MAX_SUBMIT_JOBS)
        ids: list[int] = []
        for n, start in enumerate(parts):
            part = {"jobs": jobs[start:start + MAX_SUBMIT_JOBS], **body, "key": key if len(parts) == 1 else f"{key}:{n}"}
            try:
                ids += self._submit_once(part)
            except WulfError as e:
                if ids:
                    e.message += f" (the first {len(ids)} jobs were queued: {ids[0]}-{ids[-1]})"
                raise
        return ids

    def _submit_once(self, body: dict[str, Any]) -> list[int]:
        for attempt in range(1, SUBMIT_TRIES + 1):
            try:
                return list(self.post("/api/v1/jobs", body)["jobs"])
            except AnswerLost:
                if attempt == SUBMIT_TRIES:
                    raise
                time.sleep(0.2 * 2 ** attempt)
        raise AssertionError("unreachable")

    def status(self, user: str = "", queue: str = "", all_jobs: bool = False, brief: bool = False,
               external: bool = False) -> dict[str, Any]:
        """Nodes and jobs; ``brief``: only the fields a listing shows of each job (see Job.brief);
        ``external``: outside work as a job per process cluster (else summed per node and user, in
        ``outside``). The server answers a page of jobs at a time: this asks for the next until there
        are no more."""
        q = f"?all={int(all_jobs)}" + ("&brief=1" if brief else "") + ("&external=1" if external else "")
        if user:
            q += "&user=" + quote(user)
        if queue:
            q += "&queue=" + quote(queue)
        reply = dict(self.get("/api/v1/status" + q))
        jobs = list(reply["jobs"])
        arrays = dict(reply.get("arrays") or {})
        after = reply.pop("next", None)
        while after:
            page = self.get(f"/api/v1/status{q}&after={int(after)}")
            jobs += page["jobs"]
            arrays.update(page.get("arrays") or {})
            after = page.get("next")
        reply["jobs"] = jobs
        if "arrays" in reply:  # (a server before arrays has none)
            reply["arrays"] = arrays
        return reply

    def job(self, job_id: int) -> dict[str, Any]:
        return dict(self.get(f"/api/v1/jobs/{int(job_id)}"))

    def output(self, job_id: int, offset: int = 0, limit: int = OUTPUT_CHUNK) -> dict[str, Any]:
        """Up to ``limit`` (at most OUTPUT_CHUNK) bytes of a job's output from ``offset`` (from its end
        when negative), read on its node as it is written: ``data`` (bytes), ``offset`` (where they
        start), ``next`` (the offset to ask next), ``size`` (the file's), ``state``, and ``ended`` (the
        job has ended and everything is read)."""
        import base64

        reply = dict(self.get(f"/api/v1/jobs/{int(job_id)}/output?offset={int(offset)}&limit={int(limit)}"))
        reply["data"] = base64.b64decode(reply.get("data") or "")
        return reply

    def follow_output(self, job_id: int, offset: int = 0, every: float = 0.5) -> Iterator[bytes]:
        """The job's output from ``offset`` as it is written, until the job has ended and all of it is
        read (``every``: seconds between looks when nothing new was there, doubling up to four times
        that while nothing comes: each look starts a small reader on the job's node)."""
        wait = every
        while True:
            reply = self.output(job_id, offset)
            if reply["size"] < offset and reply["state"] == "running":
                offset = 0  # truncated: start again from its beginning, as tail -f does
                continue
            if reply["data"]:
                yield reply["data"]
                wait = every
            offset = reply["next"]
            if reply["ended"]:
                return
            if not reply["data"]:
                time.sleep(wait)
                wait = min(wait * 2, every * 4)

    def _on_ids(self, path: str, ids: Iterable[int | str], **more: Any) -> dict[str, Any]:
        """POST an action on jobs, MAX_IDS at a time; the answers' lists are joined."""
        todo = list(ids)
        out: dict[str, Any] = {}
        for start in range(0, max(1, len(todo)), MAX_IDS):
            reply = self.post(path, {"ids": todo[start:start + MAX_IDS], **more})
            for k, v in reply.items():
                out[k] = out.get(k, []) + v if isinstance(v, list) else v
        return out

    def cancel(self, ids: Iterable[int | str]) -> dict[str, Any]:
        return self._on_ids("/api/v1/jobs/cancel", ids)

    def signal(self, ids: Iterable[int | str], signum: int) -> dict[str, Any]:
        return self._on_ids("/api/v1/jobs/signal", ids, signal=signum)

    def renice(self, ids: Iterable[int | str], nice: int) -> dict[str, Any]:
        return self._on_ids("/api/v1/jobs/nice", ids, nice=nice)

    def modify(self, ids: Iterable[int | str], **changes: Any) -> dict[str, Any]:
        """jmod: change jobs (``cpu``, ``mem_mb``, ``time_limit``, ``queue``, ``name``, ``nice``,
        ``throttle``, ``depend``; "" drops the dependencies). One request, all or nothing: at most
        MAX_IDS ids (an array's id counts once)."""
        todo = list(ids)
        if len(todo) > MAX_IDS:
            raise UsageError(f"at most {MAX_IDS} jobs in one change (name an array by its id), not {len(todo)}")
        body = {"ids": todo, **{k: v for k, v in changes.items() if v is not None}}
        return dict(self.post("/api/v1/jobs/modify", body))

    def hold(self, ids: Iterable[int | str]) -> dict[str, Any]:
        return self._on_ids("/api/v1/jobs/hold", ids)

    def release(self, ids: Iterable[int | str]) -> dict[str, Any]:
        return self._on_ids("/api/v1/jobs/release", ids)

    def nodes(self) -> list[dict[str, Any]]:
        return list(self.get("/api/v1/nodes")["nodes"])

    @staticmethod
    def _acct_query(user: str, all_users: bool, start: float, end: float, states: Iterable[str],
                    queue: str) -> str:
        q = f"start={start!r}&end={end!r}" + ("&all=1" if all_users else "")
        for key, value in (("user", user), ("state", ",".join(states)), ("queue", queue)):
            if value:
                q += f"&{key}={quote(value)}"
        return q

    def accounting(self, user: str = "", all_users: bool = False, start: float = 0.0, end: float = 0.0,
                   states: Iterable[str] = (), queue: str = "", ids: Iterable[int] = ()) -> list[dict[str, Any]]:
        """Ended jobs (jacct): of ``user`` (default: the caller; ``all_users``: everyone's) that ended
        from ``start`` to ``end`` (Unix times; end 0: now), by end time; or the jobs ``ids``, whenever
        they ended (and, by id, in any state). The server answers a page at a time: this asks for all."""
        q = "/api/v1/accounting?" + self._acct_query(user, all_users, start, end, states, queue)
        todo = list(ids)
        if todo:
            out: list[dict[str, Any]] = []
            for at in range(0, len(todo), MAX_ACCT_IDS):
                out += self.get(q + "&ids=" + ",".join(str(int(i)) for i in todo[at:at + MAX_ACCT_IDS]))["jobs"]
            return out
        page = self.get(q)
        jobs = list(page["jobs"])
        while page.get("next"):
            page = self.get(q + "&after=" + quote(str(page["next"])))
            jobs += page["jobs"]
        return jobs

    def accounting_summary(self, user: str = "", all_users: bool = False, start: float = 0.0, end: float = 0.0,
                           states: Iterable[str] = (), queue: str = "") -> list[dict[str, Any]]:
        """Per user totals of what :meth:`accounting` lists: jobs, cpu_hours, mean_wait, cpu_eff."""
        q = self._acct_query(user, all_users, start, end, states, queue)
        return list(self.get("/api/v1/accounting?summary=1&" + q)["users"])

    def queues(self, user: str = "") -> list[dict[str, Any]]:
        return list(self.get("/api/v1/queues" + (f"?user={quote(user)}" if user else ""))["queues"])

    def set_queue(self, queue: str, **changes: Any) -> dict[str, Any]:
        return dict(self.post("/api/v1/queues", {"queue": queue, **changes}))

    def wait_once(self, ids: Sequence[int | str], queues: list[str], timeout: float) -> dict[str, Any]:
        """One wait of at most ``timeout`` seconds; more than MAX_IDS jobs are waited for a part at a
        time (a part not done when the time is up: the others are only looked at)."""
        if len(ids) <= MAX_IDS:
            body = {"ids": list(ids), "queues": queues, "timeout": timeout}
            return dict(self.post("/api/v1/wait", body, timeout=timeout + self.timeout))
        deadline = time.monotonic() + timeout
        out: dict[str, Any] = {"done": True, "jobs": [], "counts": {}}
        for start in range(0, len(ids), MAX_IDS):
            left = max(0.0, deadline - time.monotonic()) if out["done"] else 0.0
            part = self.wait_once(ids[start:start + MAX_IDS], queues if start == 0 else [], left)
            out["done"] = out["done"] and part["done"]
            out["jobs"] += part["jobs"]
            for state, n in part["counts"].items():
                out["counts"][state] = out["counts"].get(state, 0) + n
        return out

    def wait(self, ids: Sequence[int | str], queues: list[str] | None = None, timeout: float | None = None) -> dict[str, Any]:
        """Block until every job named (or in the queues named) has ended; returns the last answer.
        A server that goes away (restarts) is waited for, up to RECONNECT_FOR seconds (or ``timeout``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = 30.0 if deadline is None else max(0.0, min(30.0, deadline - time.monotonic()))
            patience = RECONNECT_FOR if deadline is None else max(0.0, deadline - time.monotonic())
            reply = retrying(lambda: self.wait_once(ids, queues or [], step), patience)  # noqa: B023 (called at once)
            if reply["done"] or (deadline is not None and time.monotonic() >= deadline):
                return reply

    # ------------------------------------------------------------------ API tokens

    def create_token(self, name: str = "", days: float | None = None, read_only: bool = False) -> dict[str, Any]:
        return dict(self.post("/api/v1/tokens", {"name": name, "days": days, "read_only": read_only}))

    def tokens(self) -> list[dict[str, Any]]:
        return list(self.get("/api/v1/tokens")["tokens"])

    def revoke_token(self, token_id: int) -> dict[str, Any]:
        return dict(self.request("DELETE", f"/api/v1/tokens/{int(token_id)}"))

    def whoami(self) -> dict[str, Any]:
        return dict(self.get("/api/v1/whoami"))


def _tls_failure(url: str, ca: str, e: OSError) -> None:
    """Raise a clear error for a TLS failure (and nothing for other errors)."""
    import ssl

    if isinstance(e, ssl.SSLCertVerificationError):
        raise WulfError(f"the wulf server at {url} is not who it should be: its certificate does not verify "
                        f"({e.verify_message or e.reason}; checked with {ca or 'the system CAs'})") from None
    if isinstance(e, ssl.SSLError):
        raise WulfError(f"cannot speak TLS with {url} ({e.reason or e}); is it a wulf server with TLS on?") from None
