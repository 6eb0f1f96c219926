"""Upgrades: this release's server opens the store a previous release wrote (tests/data/stores), applies
its migrations, and carries on with its jobs: the waiting ones run with their environment, the ended
ones keep their record, ids go on from where they were."""

from __future__ import annotations

import json
import shutil
import socket
import sqlite3
import struct
from pathlib import Path

from wulf.protocol import PROTOCOL_VERSION
from wulfproc import Cluster, wait_until

OLD = Path(__file__).parent.parent / "data" / "stores" / "wulf-0.1.0-04f9beb.db"


def test_a_store_of_release_0_1_0_is_carried_on(tmp_path: Path) -> None:
    c = Cluster(tmp_path, config="[server]\nnode_lost_after = 1\n[scheduler]\nuse_observed = false\n")
    db = c.state / "wulf.db"
    shutil.copy(OLD, db)
    with sqlite3.connect(db) as conn:  # the jobs' directory was the old run's (see tests/data/stores)
        conn.execute("UPDATE jobs SET cwd = ?", (str(c.work),))
    try:
        c.start_server()
        client = c.client()
        status = client.status(all_jobs=True)
        assert status["server"]["next_id"] == 12  # ids go on from the old store's
        jobs = {j["id"]: j for j in status["jobs"]}
        assert {i: jobs[i]["state"] for i in range(6, 12)} == {
            6: "done", 7: "done", 8: "failed", 9: "queued", 10: "held", 11: "cancelled"}
        assert (jobs[8]["exit_code"], jobs[9]["queue"], jobs[9]["cpu"], jobs[9]["mem_mb"]) == (3, "later", 0.5, 64.0)
        c.run("qrls", "10")
        c.agent("n1", cpus=2)
        c.run("qwait", "9", "10")
        assert (c.work / "wulf-9.out").read_text() == "waited kept\n"  # its stored environment
        assert (c.work / "wulf-10.out").read_text() == "held\n"
        [new] = c.submit("-c", "true")
        assert new >= 12  # (outside work seen on n1 takes ids too)
        # the node of the old run never comes back: what it ran (outside work) is over, not running for good
        wait_until("the old node's jobs to end", lambda: all(
            c.job(i)["state"] != "running" for i in range(1, 6)), timeout=30)
        queues = {q["name"]: q for q in client.queues()}
        assert queues["later"]["priority"] == 5
        client.close()
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.stop()
    with sqlite3.connect(db) as conn:
        applied = [r[0] for r in conn.execute("SELECT name FROM migrations ORDER BY name")]
    from wulf.store.sqlite import MIGRATIONS

    assert applied == [name for name, _ in MIGRATIONS]


def _close(s: socket.socket) -> tuple[int | None, str]:
    """The code and reason of the server's close frame."""
    s.settimeout(30)
    f = s.makefile("rb")
    try:
        while True:
            head = f.read(2)
            if len(head) < 2:
                return None, ""
            n = head[1] & 0x7F
            if n == 126:
                n = struct.unpack("!H", f.read(2))[0]
            data = f.read(n)
            if head[0] & 0x0F == 8:
                return int(struct.unpack("!H", data[:2])[0]), data[2:].decode()
    finally:
        f.close()


def test_an_agent_of_another_protocol_is_told_which_to_upgrade(tmp_path: Path) -> None:
    """An agent of 0.1.0 (protocol 2) would take a start it cannot read and leave the job hanging: it is
    refused, and told to upgrade; so is one newer than the server, whose hello has fields it does not know."""
    from test_hardening_edge import cluster, ws_frame, ws_open

    node = {"name": "old1", "hostname": "old1", "cpus": 2, "mem_mb": 1000}
    with cluster(tmp_path) as c:
        with ws_open(c) as s:
            s.sendall(ws_frame(json.dumps({"type": "hello", "version": 2, "node": node}).encode()))
            code, reason = _close(s)
        assert code == 1008 and "upgrade wulf on node old1" in reason, reason
        with ws_open(c) as s:
            newer = {"type": "hello", "version": PROTOCOL_VERSION + 1, "node": node, "a_field_of_later": 1}
            s.sendall(ws_frame(json.dumps(newer).encode()))
            code, reason = _close(s)
        assert code == 1008 and "upgrade the server" in reason, reason
        assert "refused node old1" in (c.root / "server.log").read_text()
