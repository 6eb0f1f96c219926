"""A standby server (issue 16 §3): two `wulf server`s share one PostgreSQL store; one leads, the other
stands by. The leader is killed (kill -9) during a burst of submissions: the standby takes over, no
acknowledged job is lost, none is started twice, and the agent and the clients follow it."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from pathlib import Path

from pgserver import PgServer
from wulf.client import Client, new_key
from wulf.errors import WulfError
from wulfproc import BIN, Daemon, running_cluster, wait_until

JOBS = 300


def _submit_all(urls: str, work: Path, acked: list[int], errors: list[str]) -> None:
    """Submit JOBS jobs one at a time, each with its own key, trying each again (same key) until it is
    acknowledged: what a careful client does across a failover."""
    with contextlib.closing(Client(urls, timeout=10)) as client:
        _submit_each(client, work, acked, errors)


def _submit_each(client: Client, work: Path, acked: list[int], errors: list[str]) -> None:
    for _ in range(JOBS):
        key, give_up = new_key(), time.monotonic() + 60
        while True:
            try:
                acked += client.submit([{"command": f"echo $WULF_JOB_ID >> {work}/started", "cwd": str(work),
                                         "cpu": 0.1}], env={}, key=key)
                break
            except WulfError as e:
                if not e.retryable or time.monotonic() > give_up:
                    errors.append(e.message)
                    return
                time.sleep(0.1)


def test_a_standby_takes_over_from_a_killed_leader_losing_nothing(tmp_path: Path, pg: PgServer) -> None:
    url = pg.new_database()
    config = f'[store]\nurl = "{url}"\n[auth]\nkey_file = "{tmp_path}/cluster.key"\n[server]\nfailover_seconds = 4\n'
    with running_cluster(tmp_path / "a", config=config) as cluster:
        cluster.key_file = tmp_path / "cluster.key"
        standby_state = tmp_path / "b"
        standby = Daemon([str(BIN / "wulf"), "server", "--state", str(standby_state), "--listen", ""],
                         tmp_path / "a" / "server-b.log", cluster.env).start()
        try:
            wait_until("the second server to stand by",
                       lambda: "standing by" in (tmp_path / "a" / "server-b.log").read_text())
            both = f"{cluster.url},unix:{standby_state}/wulf.sock"
            cluster.url = cluster.env["WULF_SERVER"] = both
            assert "leads since" in cluster.run("jstat").stdout
            cluster.agent("n1", cpus=4, server=both)
            acked: list[int] = []
            errors: list[str] = []
            burst = threading.Thread(target=_submit_all, args=(both, cluster.work, acked, errors))
            burst.start()
            wait_until("a third of the burst", lambda: len(acked) >= JOBS // 3, timeout=60)
            assert cluster.server is not None
            cluster.server.kill()  # kill -9 of the leader in the middle of the burst
            killed = time.monotonic()
            wait_until("the standby to lead", lambda: "this server leads" in
                       (tmp_path / "a" / "server-b.log").read_text(), timeout=30)
            print(f"standby leading {time.monotonic() - killed:.2f} s after the kill")
            burst.join(120)
            assert not burst.is_alive() and not errors, errors
            assert len(acked) == JOBS == len(set(acked))
            cluster.run("qwait", *map(str, acked), timeout=120)
            states = {j["id"]: j["state"] for j in cluster.status()["jobs"]}
            assert {states.get(i) for i in acked} == {"done"}  # every acknowledged job kept, and run
            started = Counter(int(x) for x in (cluster.work / "started").read_text().split())
            assert set(acked) <= set(started) and max(started.values()) == 1, "a job started twice"
            jstat = cluster.run("jstat").stdout
            assert standby.proc is not None and f"(pid {standby.proc.pid}) leads" in jstat
        finally:
            standby.kill()


def test_a_leader_that_lost_its_database_and_the_lead_stops(tmp_path: Path, pg: PgServer) -> None:
    """Its sessions are cut and another takes the lock meanwhile: the leader finds out by itself (nothing is
    asked of it) and stops, with the status that says so, rather than serve beside the new leader."""
    import psycopg

    from wulf.store.leader import LEADER_LOCK
    from wulf.store.postgres import LOST_LEAD

    url = pg.new_database()
    with running_cluster(tmp_path, config=f'[store]\nurl = "{url}"\n[server]\nfailover_seconds = 4\n') as cluster:
        assert cluster.server is not None and cluster.server.proc is not None
        with psycopg.connect(url, autocommit=True) as usurper:
            cut = usurper.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                                  "application_name = 'wulf server' AND datname = current_database()").fetchall()
            assert cut
            usurper.execute("SELECT pg_advisory_lock(%s)", (LEADER_LOCK,))  # waits for the cut session's end
            assert cluster.server.proc.wait(timeout=60) == LOST_LEAD
        assert "this server no longer leads" in (tmp_path / "server.log").read_text()
