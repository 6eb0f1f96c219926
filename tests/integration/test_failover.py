"""A standby server (issue 16 §3): two `wulf server`s share one PostgreSQL store; one leads, the other
stands by. The leader is killed (kill -9) during a burst of submissions: the standby takes over, no
acknowledged job is lost, none is started twice, and the agent and the clients follow it."""

from __future__ import annotations

import sys
from pathlib import Path

from pgserver import PgServer
from wulfproc import running_cluster

ROOT = Path(__file__).resolve().parents[2]

def test_a_standby_takes_over_from_a_killed_leader_losing_nothing(pg: PgServer) -> None:
    """The failover bench (bench/failover.py), small: 300 submissions from three clients, each tried again
    with its key until acknowledged; the leader killed a third of the way through."""
    sys.path.insert(0, str(ROOT))
    try:
        from bench import failover
    finally:
        sys.path.remove(str(ROOT))
    r = failover.run(pg.new_database(), jobs=300, clients=3, cpus=4)
    print(f"standby leading {r['standby_leading_s']:.2f} s after the kill")
    assert r["errors"] == 0, r["first_error"]
    assert r["acked"] == 300 and r["acked_twice"] == 0
    assert r["lost"] == r["not_done"] == 0  # every acknowledged job kept, and run
    assert r["started_twice"] == r["never_started"] == 0
    assert r["leader_pid"] == r["standby_pid"] and f"(pid {r['standby_pid']}) leads" in r["jstat_leader"], r


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
