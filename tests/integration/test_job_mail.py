"""Mail about one job, end to end: qr --mail-type and #SBATCH --mail-type, through the real server to an
SMTP server on loopback."""

from __future__ import annotations

import email
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from wulfproc import free_port, running_cluster, wait_until


class Box:
    """An aiosmtpd handler that keeps what it receives (recipients and message)."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), email.message_from_bytes(envelope.content)))
        return "250 OK"

    def about(self, job_id: int) -> list[tuple[list[str], Message]]:
        return [(to, m) for to, m in self.messages if m["X-Wulf-Job"] == str(job_id)]


@pytest.fixture
def box() -> Iterator[tuple[int, Box]]:
    controller = pytest.importorskip("aiosmtpd.controller")
    inbox = Box()
    port = free_port()
    smtp = controller.Controller(inbox, hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        yield port, inbox
    finally:
        smtp.stop()


def test_a_job_mails_its_owner_when_it_begins_and_ends(tmp_path: Path, box: tuple[int, Box]) -> None:
    port, inbox = box
    config = (f'[mail]\nsmtp = "127.0.0.1:{port}"\nfrom = "wulf@test"\ndomain = "example.org"\n'
              'allowed_domains = ["example.org"]\n')
    with running_cluster(tmp_path, config=config) as c:
        c.agent("n1", cpus=4)
        [jid] = c.submit("--mail-type", "begin,end", "-N", "sim", "--mem", "64M", "-c", "sleep 1; exit 3")
        c.run("qwait", str(jid), check=False)
        wait_until("the two mails", lambda: len(inbox.about(jid)) == 2)
        (to1, begin), (to2, end) = inbox.about(jid)
        assert to1 == to2 == ["root@example.org"]  # the submitting user at [mail] domain
        assert begin["Subject"] == f"wulf: job {jid} (sim) began on n1"
        assert end["Subject"] == f"wulf: job {jid} (sim) failed (exit 3) on n1"
        text = end.get_payload(decode=True).decode()
        assert "cpu efficiency: " in text and "of 64 MB asked" in text

        script = tmp_path / "work" / "job.sh"
        script.write_text("#!/bin/sh\n#SBATCH --mail-type=END\n#SBATCH --mail-user=bob@example.org\ntrue\n")
        [sid] = c.submit("-s", str(script))
        c.run("qwait", str(sid))
        wait_until("the script's mail", lambda: inbox.about(sid))
        [(to, done)] = inbox.about(sid)
        assert to == ["bob@example.org"] and done["Subject"] == f"wulf: job {sid} (job.sh) done on n1"
        assert c.job(sid)["mail_user"] == "bob@example.org"

        bad = c.run("qr", "--mail-type", "END", "--mail-user", "eve@elsewhere.net", "-c", "true", check=False)
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1
        assert "--mail-user: wulf mails only addresses in example.org" in bad.stderr
        bad = c.run("qr", "--mail-type", "SOMETIMES", "-c", "true", check=False)
        assert bad.returncode == 2 and "--mail-type" in bad.stderr and bad.stderr.count("\n") == 1
        assert {j["id"] for j in c.status()["jobs"] if j["origin"] == "batch"} == {jid, sid}  # nothing else queued
