"""Mail on job completion: the message, the address check, and sending to a real SMTP server."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
from collections.abc import Iterator
from datetime import timedelta, timezone
from email.message import EmailMessage
from typing import Any

import pytest

from wulf.errors import ConfigError, UsageError, WulfError
from wulf.server.mail import (
    MailError,
    completion_message,
    parse_smtp,
    send,
    subject,
    validate_address,
)

CEST = timezone(timedelta(hours=2))
T0 = 1_714_557_600.0  # 2024-05-01 12:00:00 CEST


def job(**changes: Any) -> dict[str, Any]:
    record = {
        "id": 42, "name": "sim", "user": "alice", "uid": 1000, "origin": "batch", "state": "done",
        "queue": "default", "node": "node3", "pid": 4242, "exit_code": 0, "signal": None,
        "command": "python sim.py --steps 10", "cwd": "/home/alice/run", "output": "/home/alice/run/wulf-42.out",
        "cpu": 1.0, "mem_mb": 32.0, "cpu_req": 1.0, "mem_req_mb": 32.0, "cpu_used": 0.0, "mem_used_mb": 0.0,
        "cpu_time": 3570.4, "peak_mem_mb": 1234.5, "submitted": T0, "started": T0 + 5,
        "ended": T0 + 3605, "age": 3600.0, "nice": 0, "reason": "",
    }
    record.update(changes)
    return record


@pytest.mark.parametrize("changes, expected", [
    ({}, "wulf: job 42 (sim) done on node3"),
    ({"state": "failed", "exit_code": 1}, "wulf: job 42 (sim) failed (exit 1) on node3"),
    ({"state": "failed", "exit_code": None, "signal": 9}, "wulf: job 42 (sim) failed (SIGKILL) on node3"),
    ({"state": "failed", "exit_code": None}, "wulf: job 42 (sim) failed on node3"),
    ({"state": "cancelled", "node": None, "name": ""}, "wulf: job 42 cancelled"),
    ({"name": "evil\r\nBcc: x@example.org"}, "wulf: job 42 (evil Bcc: x@example.org) done on node3"),
])
def test_subject(changes: dict[str, Any], expected: str) -> None:
    assert subject(job(**changes)) == expected


def test_completion_message() -> None:
    msg = completion_message(job(), "alice@example.org", "wulf@cluster.example.org", "head", tz=CEST)
    assert msg["Subject"] == "wulf: job 42 (sim) done on node3"
    assert msg["To"] == "alice@example.org"
    assert msg["From"] == "wulf@cluster.example.org"
    assert msg["Date"] == "Wed, 01 May 2024 13:00:05 +0200"
    assert msg["Message-ID"] == "<wulf-job-42.1714561205@head>"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg.get_content_type() == "text/plain"
    body = msg.get_content()
    assert body.splitlines() == [
        "Job 42 of alice in queue default: done.",
        "",
        "name:        sim",
        "command:     python sim.py --steps 10",
        "directory:   /home/alice/run",
        "node:        node3",
        "output:      /home/alice/run/wulf-42.out",
        "exit code:   0",
        "submitted:   2024-05-01 12:00:00+02:00",
        "started:     2024-05-01 12:00:05+02:00",
        "ended:       2024-05-01 13:00:05+02:00",
        "elapsed:     1:00:00",
        "cpu time:    0:59:30",
        "peak memory: 1,234 MB",
        "",
        "-- wulf on head",
    ]


def test_failed_job_message_shows_signal_and_reason_and_skips_unknowns() -> None:
    msg = completion_message(
        job(state="failed", exit_code=None, signal=9, reason="out of memory", cpu_time=None,
            peak_mem_mb=3.25, started=T0, ended=T0 + 2 * 86400 + 61),
        "alice", "wulf@localhost", "head", tz=CEST,
    )
    body = msg.get_content()
    assert "signal:      SIGKILL\n" in body
    assert "reason:      out of memory\n" in body
    assert "elapsed:     2d 0:01:01\n" in body
    assert "peak memory: 3.2 MB\n" in body
    assert "exit code" not in body and "cpu time" not in body


def test_job_that_never_ran() -> None:
    msg = completion_message(
        job(state="cancelled", node=None, started=None, ended=T0 + 60, exit_code=None, cpu_time=None,
            peak_mem_mb=None),
        "alice@example.org", "wulf@localhost", "head", tz=CEST,
    )
    body = msg.get_content()
    assert "started" not in body and "elapsed" not in body and "node:" not in body
    assert msg["Subject"] == "wulf: job 42 (sim) cancelled"


def test_message_in_the_server_zone_by_default() -> None:
    msg = completion_message(job(), "alice@example.org", "wulf@localhost", "head")
    assert "ended:" in msg.get_content()
    assert msg["Date"]


def test_multiline_command_stays_on_one_line() -> None:
    body = completion_message(job(command="set -e\nmake\n"), "a@b.org", "w@b.org", "head").get_content()
    assert "command:     set -e make\n" in body


@pytest.mark.parametrize("addr", ["alice@example.org", " bob.smith+wulf@mail.example.co.uk ", "alice",
                                  "a_b@localhost", "x@a-b.example"])
def test_good_addresses(addr: str) -> None:
    assert validate_address(addr) == addr.strip()


@pytest.mark.parametrize("addr, fragment", [
    ("", "it is empty"),
    ("   ", "it is empty"),
    ("alice@", "the part after '@' is not a host name"),
    ("@example.org", "the part before '@'"),
    ("alice bob@example.org", "it has spaces"),
    ("alice@example.org, bob@example.org", "one bare address only"),
    ("alice@@example.org", "the part before '@'"),
    ("alice@exam_ple.org", "is not a host name"),
    ("alice@exa mple.org", "it has spaces"),
    ("alice@-example.org", "is not a host name"),
    ("alice@example..org", "is not a host name"),
    (".alice@example.org", "the part before '@'"),
    ("al..ice@example.org", "the part before '@'"),
    ("alice@example.org\nBcc: eve@example.org", "it has spaces"),
    ("<alice@example.org>", "brackets"),
    ("a" * 250 + "@example.org", "longer than 254"),
])
def test_bad_addresses(addr: str, fragment: str) -> None:
    with pytest.raises(UsageError) as err:
        validate_address(addr)
    assert fragment in err.value.message
    assert "\n" not in err.value.message


@pytest.mark.parametrize("text, expected", [
    ("localhost:25", ("localhost", 25)),
    ("mail.example.org", ("mail.example.org", 25)),
    (" 10.0.0.1:2525 ", ("10.0.0.1", 2525)),
    ("[::1]:1025", ("::1", 1025)),
    ("[::1]", ("::1", 25)),
])
def test_parse_smtp(text: str, expected: tuple[str, int]) -> None:
    assert parse_smtp(text) == expected


@pytest.mark.parametrize("text", ["", "host:", "host:port", "host:0", "host:70000", "::1:25", "a b:25"])
def test_bad_smtp(text: str) -> None:
    with pytest.raises(ConfigError, match="mail smtp"):
        parse_smtp(text)


# -- sending to a real SMTP server on loopback -------------------------------------------------


class Inbox:
    """An aiosmtpd handler that keeps what it receives."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if address.startswith("nobody@"):
            return "550 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def smtp_server() -> Iterator[tuple[str, Inbox]]:
    controller_module = pytest.importorskip("aiosmtpd.controller")
    inbox = Inbox()
    port = free_port()
    controller = controller_module.Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield f"127.0.0.1:{port}", inbox
    finally:
        controller.stop()


def test_send_delivers_the_message(smtp_server: tuple[str, Inbox]) -> None:
    address, inbox = smtp_server
    msg = completion_message(job(state="failed", exit_code=3), "alice@example.org", "wulf@cluster.example.org",
                             "head", tz=CEST)
    asyncio.run(send(address, msg, timeout=5))
    [envelope] = inbox.envelopes
    assert envelope.mail_from == "wulf@cluster.example.org"
    assert envelope.rcpt_tos == ["alice@example.org"]
    received = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert isinstance(received, EmailMessage)
    assert received["Subject"] == "wulf: job 42 (sim) failed (exit 3) on node3"
    assert received["From"] == "wulf@cluster.example.org"
    assert received["To"] == "alice@example.org"
    assert received["Message-ID"] == "<wulf-job-42.1714561205@head>"
    assert "exit code:   3" in received.get_content()


def test_refused_recipient_is_a_mail_error(smtp_server: tuple[str, Inbox]) -> None:
    address, inbox = smtp_server
    msg = completion_message(job(), "nobody@example.org", "wulf@localhost", "head", tz=CEST)
    with pytest.raises(MailError) as err:
        asyncio.run(send(address, msg, timeout=5))
    assert isinstance(err.value, WulfError)
    assert "cannot send mail to nobody@example.org via" in err.value.message
    assert "550 no such user here" in err.value.message
    assert "\n" not in err.value.message
    assert inbox.envelopes == []


def test_no_server_is_a_mail_error() -> None:
    msg = completion_message(job(), "alice@example.org", "wulf@localhost", "head", tz=CEST)
    with pytest.raises(MailError) as err:
        asyncio.run(send(f"127.0.0.1:{free_port()}", msg, timeout=5))
    assert err.value.message.startswith("cannot send mail to alice@example.org via 127.0.0.1:")
    assert "\n" not in err.value.message
    assert err.value.retryable


def test_bad_smtp_setting_is_a_config_error() -> None:
    msg = completion_message(job(), "alice@example.org", "wulf@localhost", "head", tz=CEST)
    with pytest.raises(ConfigError):
        asyncio.run(send("localhost:smtp", msg))
