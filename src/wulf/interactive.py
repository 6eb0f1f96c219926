"""The wire between ``jr`` and an agent's session server, and the client end of it.

``jr`` asks the server for a session (a node, its address and a one-use token), connects to that
node's agent with TCP and speaks in frames::

    frame = kind (1 byte) + length (4 bytes, big-endian) + payload (length bytes)

======  ===========  =========================================================================
kind    direction    payload
======  ===========  =========================================================================
HELLO   jr -> agent  JSON ``{"version", "token", "rows", "cols", "term"}``; the first frame
STDIN   jr -> agent  bytes for the job's stdin (its terminal in pty mode)
EOF     jr -> agent  empty: jr's stdin has ended
WINCH   jr -> agent  rows, cols (2 x 2 bytes): the terminal was resized
SIGNAL  jr -> agent  signal number (4 bytes): send it to the job's process group
STDOUT  agent -> jr  bytes the job wrote to stdout (to its terminal in pty mode)
STDERR  agent -> jr  bytes the job wrote to stderr (pipe mode only)
ACK     agent -> jr  a count (4 bytes): this many STDIN bytes were passed on (or dropped)
EXIT    agent -> jr  JSON ``{"exit_code", "signal"}``; the last frame
ERROR   agent -> jr  a UTF-8 message: the session was refused or could not start; the last frame
======  ===========  =========================================================================

Input is flow-controlled by credit, as in ssh: jr sends at most ``WINDOW`` bytes of STDIN that the
agent has not yet acknowledged. So the agent never has to stop reading the connection, and a SIGNAL
or WINCH frame is never stuck behind input the job does not read.

This module is imported by ``jr``, so it uses the standard library only and no asyncio: the client
is a ``select`` loop over plain file descriptors (:func:`relay`), testable without a terminal.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import select
import socket
import struct
from collections import deque
from dataclasses import dataclass
from typing import Any

from wulf.errors import WulfError

VERSION = 1
#: the largest payload either end accepts; data frames are much smaller (``CHUNK``)
MAX_PAYLOAD = 1 << 20
#: how much is read from a descriptor at once
CHUNK = 64 * 1024
#: STDIN bytes jr may have sent and the agent not yet acknowledged
WINDOW = 256 * 1024
#: the agent stops reading a job's output while this much waits to go to jr
HIGH_WATER = 256 * 1024

_HEADER = struct.Struct(">BI")
_WINCH = struct.Struct(">HH")
_SIGNAL = struct.Struct(">i")
_COUNT = struct.Struct(">I")


class Kind(enum.IntEnum):
    HELLO = 1
    STDIN = 2
    EOF = 3
    STDOUT = 4
    STDERR = 5
    WINCH = 6
    SIGNAL = 7
    EXIT = 8
    ERROR = 9
    ACK = 10


class FrameError(ValueError):
    """The peer sent something that is not a valid frame: the connection cannot go on."""


class SessionError(WulfError):
    """The session was refused, could not start, or was lost."""


@dataclass(frozen=True)
class Frame:
    kind: Kind
    payload: bytes = b""


@dataclass(frozen=True)
class HelloInfo:
    token: str
    rows: int = 0
    cols: int = 0
    term: str = ""
    version: int = VERSION


# ---------------------------------------------------------------- encoding (pure)


def encode(kind: Kind, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise FrameError(f"a {kind.name} frame of {len(payload)} bytes is larger than {MAX_PAYLOAD}")
    return _HEADER.pack(kind, len(payload)) + payload


def _json(kind: Kind, data: dict[str, Any]) -> bytes:
    return encode(kind, json.dumps(data, separators=(",", ":")).encode())


def hello(token: str, rows: int = 0, cols: int = 0, term: str = "") -> bytes:
    return _json(Kind.HELLO, {"version": VERSION, "token": token, "rows": rows, "cols": cols, "term": term})


def winch(rows: int, cols: int) -> bytes:
    return encode(Kind.WINCH, _WINCH.pack(_clamp16(rows), _clamp16(cols)))


def signal_frame(signum: int) -> bytes:
    return encode(Kind.SIGNAL, _SIGNAL.pack(signum))


def ack(count: int) -> bytes:
    return encode(Kind.ACK, _COUNT.pack(count))


def exit_frame(exit_code: int | None, signal: int | None) -> bytes:
    return _json(Kind.EXIT, {"exit_code": exit_code, "signal": signal})


def error_frame(message: str) -> bytes:
    return encode(Kind.ERROR, message.encode("utf-8", "replace")[:MAX_PAYLOAD])


def data_frames(kind: Kind, data: bytes) -> list[bytes]:
    """``data`` as frames of ``kind``, cut to ``CHUNK`` bytes each."""
    return [encode(kind, data[i : i + CHUNK]) for i in range(0, len(data), CHUNK)]


def _clamp16(n: int) -> int:
    return max(0, min(0xFFFF, int(n)))


# ---------------------------------------------------------------- decoding (pure)


class Decoder:
    """Incremental: feed it bytes as they arrive, get back the frames they complete."""

    def __init__(self, max_payload: int = MAX_PAYLOAD) -> None:
        self.max_payload = max_payload
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames: list[Frame] = []
        while len(self._buf) >= _HEADER.size:
            code, length = _HEADER.unpack_from(self._buf)
            try:
                kind = Kind(code)
            except ValueError:
                raise FrameError(f"unknown frame kind {code}") from None
            if length > self.max_payload:
                raise FrameError(f"a {kind.name} frame of {length} bytes is larger than {self.max_payload}")
            end = _HEADER.size + length
            if len(self._buf) < end:
                break
            frames.append(Frame(kind, bytes(self._buf[_HEADER.size : end])))
            del self._buf[:end]
        return frames

    @property
    def pending(self) -> int:
        """Bytes received that do not yet make a whole frame."""
        return len(self._buf)


def _load_json(frame: Frame) -> dict[str, Any]:
    try:
        data = json.loads(frame.payload)
    except ValueError:
        raise FrameError(f"the {frame.kind.name} frame is not JSON") from None
    if not isinstance(data, dict):
        raise FrameError(f"the {frame.kind.name} frame is not a JSON object")
    return data


def _opt_int(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise FrameError(f"{key!r} must be a whole number")
    return value


def parse_hello(frame: Frame) -> HelloInfo:
    if frame.kind is not Kind.HELLO:
        raise FrameError(f"expected HELLO, got {frame.kind.name}")
    data = _load_json(frame)
    token, term = data.get("token"), data.get("term", "")
    if not isinstance(token, str) or not isinstance(term, str):
        raise FrameError("HELLO needs a string token (and term)")
    return HelloInfo(token=token, rows=_clamp16(_opt_int(data, "rows") or 0),
                     cols=_clamp16(_opt_int(data, "cols") or 0), term=term,
                     version=_opt_int(data, "version") or 0)


def parse_winch(frame: Frame) -> tuple[int, int]:
    if len(frame.payload) != _WINCH.size:
        raise FrameError("WINCH needs 4 bytes")
    rows, cols = _WINCH.unpack(frame.payload)
    return rows, cols


def parse_signal(frame: Frame) -> int:
    if len(frame.payload) != _SIGNAL.size:
        raise FrameError("SIGNAL needs 4 bytes")
    (signum,) = _SIGNAL.unpack(frame.payload)
    return int(signum)


def parse_ack(frame: Frame) -> int:
    if len(frame.payload) != _COUNT.size:
        raise FrameError("ACK needs 4 bytes")
    (count,) = _COUNT.unpack(frame.payload)
    return int(count)


def parse_exit(frame: Frame) -> tuple[int | None, int | None]:
    data = _load_json(frame)
    return _opt_int(data, "exit_code"), _opt_int(data, "signal")


def shell_status(exit_code: int | None, signal: int | None) -> int:
    """The status a shell would show: the exit code, or 128+N when killed by signal N."""
    if signal:
        return 128 + signal
    if exit_code is None:
        return 1
    return exit_code & 0xFF


# ---------------------------------------------------------------- the client end


def connect(host: str, port: int, token: str, rows: int = 0, cols: int = 0, term: str = "",
            timeout: float = 10.0) -> socket.socket:
    """Connect to an agent's session server and say hello. Raises OSError when it cannot connect."""
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        keepalive(sock)
        sock.sendall(hello(token, rows, cols, term))
    except OSError:
        sock.close()
        raise
    return sock


def keepalive(sock: socket.socket, idle: int = 60, interval: int = 15, count: int = 4) -> None:
    """Notice a peer that vanished without closing (a crashed node, a cut cable) in minutes, not hours."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", interval), ("TCP_KEEPCNT", count)):
        opt = getattr(socket, name, None)
        if opt is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, opt, value)


class Relay:
    """Carries a session between local descriptors and the agent until the job ends.

    ``stdin_fd`` of ``None`` means no input (EOF at once). :meth:`send_signal` and :meth:`resize`
    may be called from signal handlers while :meth:`run` is in progress: they queue a frame and
    wake the loop through a pipe.
    """

    def __init__(self, sock: socket.socket, stdin_fd: int | None, stdout_fd: int, stderr_fd: int,
                 pty: bool) -> None:
        self.sock = sock
        self.stdin_fd = stdin_fd
        self.stdout_fd = stdout_fd
        self.stderr_fd = stderr_fd
        self.pty = pty
        self._queued: deque[bytes] = deque()
        self._out = bytearray()
        self._credit = WINDOW
        self._lost: OSError | None = None  # why sending to the agent failed: it may still have sent the EXIT
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)

    # called from signal handlers: only append and poke the pipe
    def send_signal(self, signum: int) -> None:
        self._queued.append(signal_frame(signum))
        self._wake()

    def resize(self, rows: int, cols: int) -> None:
        self._queued.append(winch(rows, cols))
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"\0")

    def close(self) -> None:
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def run(self) -> int:
        """Relay until the job's EXIT frame; returns its shell status. Raises SessionError."""
        self.sock.setblocking(False)
        decoder = Decoder()
        stdin = self.stdin_fd
        if stdin is None:
            self._out += encode(Kind.EOF)
        sock = self.sock.fileno()
        while True:
            while self._queued:
                self._out += self._queued.popleft()
            if self._lost is not None:
                self._out.clear()  # nowhere to send it; what the agent already sent is still read
                stdin = None
            poller = select.poll()
            poller.register(sock, select.POLLIN | (select.POLLOUT if self._out else 0))
            poller.register(self._wake_r, select.POLLIN)
            if stdin is not None and self._credit > 0:
                poller.register(stdin, select.POLLIN)
            events = dict(poller.poll())
            readable = {fd for fd, ev in events.items() if ev & (select.POLLIN | select.POLLHUP | select.POLLERR)}
            writable = bool(events.get(sock, 0) & (select.POLLOUT | select.POLLERR))
            if self._wake_r in readable:
                with contextlib.suppress(OSError):
                    os.read(self._wake_r, 1024)
            if writable:
                self._send()
            if stdin is not None and stdin in readable and not self._read_stdin(stdin):
                stdin = None
            if sock in readable:
                status = self._receive(decoder)
                if status is not None:
                    return status

    def _receive(self, decoder: Decoder) -> int | None:
        """Handle what the agent sent; the job's status once its EXIT frame came."""
        try:
            data = self.sock.recv(CHUNK)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as e:
            raise SessionError(f"the connection to the job was lost ({(self._lost or e).strerror or e})") from None
        try:
            for frame in decoder.feed(data):
                status = self._handle(frame)
                if status is not None:
                    return status
        except FrameError as e:
            raise SessionError(f"the agent sent something jr does not understand ({e})") from None
        if not data:
            if self._lost is not None:
                raise SessionError(f"the connection to the job was lost ({self._lost.strerror or self._lost})")
            raise SessionError("the connection to the job was lost before it ended")
        return None

    def _send(self) -> None:
        """Send what is queued. A failed send is not the end: the agent closes the connection once the
        job has ended, whether or not it read all the input jr had for it (a job killed while input was
        on its way), and the job's EXIT frame may be waiting to be read; :meth:`_receive` decides."""
        try:
            n = self.sock.send(self._out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._lost = e
            self._out.clear()
            return
        del self._out[:n]

    def _read_stdin(self, fd: int) -> bool:
        """Read stdin and queue it for the agent; False once it has ended."""
        try:
            data = os.read(fd, min(CHUNK, self._credit))
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:  # EIO: the terminal went away; like any read error, the end of input
            data = b""
        if not data:
            self._out += encode(Kind.EOF)
            return False
        self._credit -= len(data)
        for frame in data_frames(Kind.STDIN, data):
            self._out += frame
        return True

    def _handle(self, frame: Frame) -> int | None:
        if frame.kind is Kind.STDOUT:
            _write_all(self.stdout_fd, frame.payload)
        elif frame.kind is Kind.STDERR:
            _write_all(self.stderr_fd, frame.payload)
        elif frame.kind is Kind.ACK:
            self._credit = min(WINDOW, self._credit + parse_ack(frame))
        elif frame.kind is Kind.EXIT:
            return shell_status(*parse_exit(frame))
        elif frame.kind is Kind.ERROR:
            raise SessionError(frame.payload.decode("utf-8", "replace") or "the agent refused the session")
        else:
            raise FrameError(f"unexpected {frame.kind.name} frame from the agent")
        return None


def _write_all(fd: int, data: bytes) -> None:
    """Write everything (waiting when ``fd`` is non-blocking); a closed pipe stays BrokenPipeError."""
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            poller = select.poll()
            poller.register(fd, select.POLLOUT)
            poller.poll()
            continue
        except BrokenPipeError:
            raise
        except OSError as e:  # EIO: the terminal is gone
            raise SessionError(f"cannot write the job's output ({e.strerror or e})") from None
        view = view[n:]


def relay(sock: socket.socket, stdin_fd: int | None, stdout_fd: int, stderr_fd: int, pty: bool) -> int:
    """Relay a connected session (see :class:`Relay`) and return the job's shell status."""
    r = Relay(sock, stdin_fd, stdout_fd, stderr_fd, pty)
    try:
        return r.run()
    finally:
        r.close()
