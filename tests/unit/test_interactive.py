"""The jr <-> agent framing, and jr's pure helpers."""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wulf.agent.session import command_line, parse_listen
from wulf.cli.jr import build_parser, command_string, rsh_argv
from wulf.errors import UsageError, WulfError
from wulf.interactive import (
    MAX_PAYLOAD,
    Decoder,
    Frame,
    FrameError,
    Kind,
    Relay,
    ack,
    data_frames,
    encode,
    error_frame,
    exit_frame,
    hello,
    parse_ack,
    parse_exit,
    parse_hello,
    parse_signal,
    parse_winch,
    shell_status,
    signal_frame,
    winch,
)

frames = st.lists(st.tuples(st.sampled_from(list(Kind)), st.binary(max_size=300)), max_size=20)


def decode_all(data: bytes) -> list[Frame]:
    d = Decoder()
    out = d.feed(data)
    assert d.pending == 0
    return out


@given(frames)
def test_round_trip(items: list[tuple[Kind, bytes]]) -> None:
    wire = b"".join(encode(k, p) for k, p in items)
    assert decode_all(wire) == [Frame(k, p) for k, p in items]


@given(frames, st.lists(st.integers(min_value=0, max_value=400), max_size=30))
def test_any_split_of_the_stream_gives_the_same_frames(items: list[tuple[Kind, bytes]], cuts: list[int]) -> None:
    wire = b"".join(encode(k, p) for k, p in items)
    points = sorted({min(c, len(wire)) for c in cuts} | {0, len(wire)})
    d = Decoder()
    got: list[Frame] = []
    for a, b in zip(points, points[1:], strict=False):
        got += d.feed(wire[a:b])
    assert got == [Frame(k, p) for k, p in items]
    assert d.pending == 0


def test_byte_by_byte() -> None:
    wire = hello("tok", 24, 80, "xterm") + encode(Kind.STDIN, b"abc") + encode(Kind.EOF)
    d = Decoder()
    got: list[Frame] = []
    for i in range(len(wire)):
        got += d.feed(wire[i : i + 1])
    assert [f.kind for f in got] == [Kind.HELLO, Kind.STDIN, Kind.EOF]
    assert got[1].payload == b"abc"


def test_oversize_frame_is_rejected_from_its_header() -> None:
    d = Decoder(max_payload=10)
    assert d.feed(encode(Kind.STDOUT, b"x" * 10)) == [Frame(Kind.STDOUT, b"x" * 10)]
    header_only = bytes([Kind.STDOUT]) + (11).to_bytes(4, "big")
    with pytest.raises(FrameError, match="larger"):
        d.feed(header_only)
    with pytest.raises(FrameError):
        encode(Kind.STDOUT, b"x" * (MAX_PAYLOAD + 1))


def test_unknown_kind_is_rejected() -> None:
    with pytest.raises(FrameError, match="unknown frame kind"):
        Decoder().feed(b"\xee\x00\x00\x00\x00")


def test_data_is_cut_into_chunks() -> None:
    data = os.urandom(200_000)
    got = decode_all(b"".join(data_frames(Kind.STDIN, data)))
    assert len(got) == 4
    assert b"".join(f.payload for f in got) == data
    assert data_frames(Kind.STDIN, b"") == []


def test_hello() -> None:
    [f] = decode_all(hello("t0k", 50, 132, "xterm-256color"))
    info = parse_hello(f)
    assert (info.token, info.rows, info.cols, info.term, info.version) == ("t0k", 50, 132, "xterm-256color", 1)


@pytest.mark.parametrize("payload", [b"not json", b"[1]", b'{"token": 5}', b'{"token": "t", "rows": "x"}',
                                     b'{"token": "t", "term": 3}'])
def test_bad_hello(payload: bytes) -> None:
    with pytest.raises(FrameError):
        parse_hello(Frame(Kind.HELLO, payload))


def test_hello_must_be_hello() -> None:
    with pytest.raises(FrameError, match="expected HELLO"):
        parse_hello(Frame(Kind.STDIN, b"{}"))


@given(st.integers(min_value=0, max_value=0xFFFF), st.integers(min_value=0, max_value=0xFFFF))
def test_winch(rows: int, cols: int) -> None:
    [f] = decode_all(winch(rows, cols))
    assert parse_winch(f) == (rows, cols)


def test_winch_clamps_and_checks() -> None:
    assert parse_winch(decode_all(winch(-5, 10**6))[0]) == (0, 0xFFFF)
    with pytest.raises(FrameError):
        parse_winch(Frame(Kind.WINCH, b"\x00"))


def test_signal_and_exit_and_error() -> None:
    sig, ex, err = decode_all(signal_frame(signal.SIGTERM) + exit_frame(None, 9) + error_frame("nope ✗"))
    assert parse_signal(sig) == signal.SIGTERM
    assert parse_exit(ex) == (None, 9)
    assert err.payload.decode() == "nope ✗"
    assert json.loads(decode_all(exit_frame(3, None))[0].payload) == {"exit_code": 3, "signal": None}
    with pytest.raises(FrameError):
        parse_signal(Frame(Kind.SIGNAL, b""))
    with pytest.raises(FrameError):
        parse_exit(Frame(Kind.EXIT, b'{"exit_code": true}'))


def test_shell_status() -> None:
    assert shell_status(0, None) == 0
    assert shell_status(3, None) == 3
    assert shell_status(None, 15) == 143
    assert shell_status(None, None) == 1
    assert shell_status(256 + 7, None) == 7


# ---------------------------------------------------------------- jr's helpers


def test_command_words() -> None:
    assert command_string([]) == ""
    assert command_string(["a | b"]) == "a | b"
    assert command_string(["echo", "a b", "$HOME"]) == "echo 'a b' '$HOME'"
    assert command_string(["--", "ls", "-l"]) == "ls -l"


def test_options_stop_at_the_command() -> None:
    args = build_parser().parse_args(["--mem", "2G", "--cpu", "2", "ls", "--mem", "-l"])
    assert (args.mem, args.cpu, args.command) == ("2G", "2", ["ls", "--mem", "-l"])
    with pytest.raises(UsageError):
        build_parser().parse_args(["--bogus"])


def test_rsh_command_line() -> None:
    argv = rsh_argv("ssh -o BatchMode=yes", "n1", "/home/a b", "make -j4", tty=True)
    assert argv[:4] == ["ssh", "-o", "BatchMode=yes", "-t"]
    assert argv[4:6] == ["--", "n1"]  # the host is never taken for an option
    assert shlex.split(argv[6]) == ["cd", "/home/a b", "&&", "make", "-j4"]
    for host in ("-oProxyCommand=touch /tmp/x", "n1 -v", "", "a\nb"):
        with pytest.raises(WulfError, match="not a host name"):
            rsh_argv("ssh", host, "/x", "ls", tty=False)
    assert rsh_argv("rsh", "n1", "/x", "", tty=True) == ["rsh", "n1", 'cd /x && exec "${SHELL:-/bin/sh}" -l']
    assert "-t" not in rsh_argv("ssh", "n1", "/x", "ls", tty=False)
    with pytest.raises(UsageError):
        rsh_argv("", "n1", "/x", "ls", tty=False)


def test_session_command_line() -> None:
    assert command_line("echo hi", {}) == ("/bin/sh", ["/bin/sh", "-c", "echo hi"])
    assert command_line("", {"SHELL": "/bin/bash"}) == ("/bin/bash", ["-bash"])
    assert command_line(" ", {}) == ("/bin/sh", ["-sh"])


def test_parse_listen() -> None:
    assert parse_listen("0.0.0.0:0") == ("0.0.0.0", 0)
    assert parse_listen("[::]:7000") == ("::", 7000)
    assert parse_listen(":7000") == ("", 7000)
    with pytest.raises(ValueError):
        parse_listen("nohost")


def test_ack() -> None:
    [f] = decode_all(ack(300_000))
    assert parse_ack(f) == 300_000
    with pytest.raises(FrameError):
        parse_ack(Frame(Kind.ACK, b"\x00"))


@pytest.mark.parametrize("family", [socket.AF_UNIX, socket.AF_INET])
def test_the_exit_arrives_though_the_agent_stopped_reading_input(family: int) -> None:
    """The agent sends the job's EXIT and closes while jr still has input to send (the job died
    without reading it). jr's send then fails (EPIPE, or a reset): the job's status must still be
    the EXIT frame's, not "connection lost"."""
    if family == socket.AF_UNIX:
        ours, agent = socket.socketpair()
    else:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            ours = socket.create_connection(listener.getsockname())
            agent, _ = listener.accept()
    unread_r, unread_w = os.pipe()
    out_r, out_w = os.pipe()
    try:
        ours.sendall(b"x" * 1000)  # input the agent never reads: its close then resets the connection
        agent.sendall(exit_frame(None, signal.SIGTERM))
        agent.close()
        os.write(unread_w, b"y" * 4096)
        r = Relay(ours, unread_r, out_w, out_w, pty=False)
        r._out += encode(Kind.STDIN, b"z" * 100)  # queued before the EXIT came
        try:
            assert r.run() == 128 + signal.SIGTERM
        finally:
            r.close()
    finally:
        ours.close()
        for fd in (unread_r, unread_w, out_r, out_w):
            os.close(fd)
