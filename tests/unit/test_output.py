"""Reading a job's output (jtail): the agent's reader, its answers, and what the server makes of them."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from wulf.agent.readout import Read, parse_reply, read_output
from wulf.cli.jtail import last_lines
from wulf.errors import NotFound, Refused
from wulf.model.job import Job, JobState, Origin
from wulf.protocol import Output, ReadOutput
from wulf.server import output


def _read(path: Path, offset: int = 0, limit: int = 1024) -> Read:
    return read_output(ReadOutput(req=1, job=1, uid=os.geteuid(), path=str(path), offset=offset, limit=limit), "n1")


def test_the_reader_reads_from_an_offset_or_from_the_end(tmp_path: Path) -> None:
    f = tmp_path / "out"
    f.write_bytes(b"0123456789")
    got = _read(f, 2, 3)
    assert (got.data, got.start, got.size, got.error) == (b"234", 2, 10, "")
    got = _read(f, -4)
    assert (got.data, got.start) == (b"6789", 6)
    got = _read(f, 50)
    assert (got.data, got.start, got.size) == (b"", 50, 10)


def test_the_reader_follows_no_link_and_opens_no_fifo(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("TOPSECRET")
    (tmp_path / "link").symlink_to(secret)
    got = _read(tmp_path / "link")
    assert got.data == b"" and "is a symbolic link, which is not followed" in got.error
    os.mkfifo(tmp_path / "fifo")
    got = _read(tmp_path / "fifo")  # answered at once: not hung on a FIFO nobody writes
    assert "is not a regular file" in got.error
    got = _read(tmp_path / "none")
    assert got.missing and "is not there" in got.error


def test_a_readers_answer_that_is_not_its_protocol_is_an_error() -> None:
    assert parse_reply(b"S 10 2\nabc", "/p", 2).data == b"ab"  # never more than asked
    assert parse_reply(b"garbage", "/p", 2).error == "could not read /p"
    assert parse_reply(b"", "/p", 2).error == "could not read /p"


def test_last_lines() -> None:
    assert last_lines(b"a\nb\nc\n", 2, True) == b"b\nc\n"
    assert last_lines(b"tial\nb\nc", 5, False) == b"b\nc"  # the first line of a later part is partial
    assert last_lines(b"a\nb\n", 0, True) == b""


def _job(state: JobState, node: str = "n1", origin: Origin = Origin.BATCH) -> Job:
    return Job(id=7, user="alice", uid=1000, origin=origin, state=state, command="x", node=node)


def test_what_the_server_answers() -> None:
    running = _job(JobState.RUNNING)
    got = Output(req=1, data=base64.b64encode(b"hello").decode(), offset=3, size=8)
    assert output.answered(running, False, got, 3) == {"id": 7, "state": "running", "node": "n1", "offset": 3,
                                                       "next": 8, "size": 8, "ended": False, "data": got.data}
    assert output.answered(_job(JobState.DONE), True, got, 3)["ended"] is True
    assert output.answered(_job(JobState.DONE), True, Output(req=1, offset=0, size=8), 0)["ended"] is False
    # a running job that has not opened its output yet: nothing yet; an ended one's that is gone: not found
    assert output.answered(running, False, Output(req=1, missing=True, error="x"), 0)["next"] == 0
    with pytest.raises(NotFound):
        output.answered(_job(JobState.DONE), True, Output(req=1, missing=True, error="is not there"), 0)
    with pytest.raises(Refused, match="is a symbolic link"):
        output.answered(running, False, Output(req=1, error="/p is a symbolic link, which is not followed"), 0)
    with pytest.raises(Refused, match="interactive"):
        output.check_readable(_job(JobState.RUNNING, origin=Origin.INTERACTIVE))
    assert output.waiting(_job(JobState.QUEUED, node=""))
    with pytest.raises(NotFound, match="never ran"):
        output.waiting(_job(JobState.CANCELLED, node=""))


def test_a_reader_that_failed_says_so() -> None:
    assert "failed (exit 127" in parse_reply(b"", "/p", 2, 127).error
