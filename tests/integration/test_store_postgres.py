"""`wulf server` on a PostgreSQL store ([store] url): jobs run end to end and outlive a kill -9 of the server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pgserver import PgServer, scalar
from wulfproc import Cluster, running_cluster, wait_until


@pytest.fixture
def pg_cluster(tmp_path: Path, pg: PgServer) -> Iterator[tuple[Cluster, str]]:
    url = pg.new_database()
    with running_cluster(tmp_path, config=f'[store]\nurl = "{url}"\n') as c:
        c.agent("n1", cpus=4)  # room beside what the other tests on this machine use (it counts as outside load)
        yield c, url


def test_jobs_run_and_outlive_a_server_killed_on_postgresql(pg_cluster: tuple[Cluster, str]) -> None:
    cluster, url = pg_cluster
    [done] = cluster.submit("-c", "echo on postgresql")
    cluster.run("qwait", str(done))
    assert (cluster.work / f"wulf-{done}.out").read_text() == "on postgresql\n"
    [running] = cluster.submit("-c", "sleep 3; echo survived")
    wait_until("the job to start", lambda: cluster.job(running)["pid"])
    [waiting] = cluster.submit("--cpu", "8", "-c", "true")  # more cpus than the node has: waits
    array = cluster.submit("--array", "1-3", "-c", "echo task $WULF_ARRAY_TASK_ID")
    assert cluster.server is not None
    cluster.server.kill()
    cluster.start_server()
    states = {j["id"]: j["state"] for j in cluster.status()["jobs"]}
    assert states[done] == "done" and states[running] == "running" and states[waiting] == "queued"
    cluster.wait_node("n1")
    cluster.run("qwait", str(running), *map(str, array))
    assert cluster.job(running)["state"] == "done"
    assert (cluster.work / f"wulf-{running}.out").read_text() == "survived\n"
    # the jobs are in PostgreSQL, and no SQLite file was made
    assert scalar(url, "SELECT state FROM jobs WHERE id = ?", running) == "done"
    assert not (cluster.state / "wulf.db").exists()
    assert "store postgresql://" in (cluster.root / "server.log").read_text()


def test_a_server_whose_database_is_unreachable_says_so_in_one_line(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, config='[store]\nurl = "postgresql://wulf:secret@127.0.0.1:1/wulf"\n')
    p = cluster.run("wulf", "server", "--state", str(cluster.state), "--listen", "", check=False, timeout=60)
    assert p.returncode == 1
    [line] = [x for x in p.stderr.splitlines() if x.startswith("wulf:")]
    assert line.startswith("wulf: cannot reach the database postgresql://wulf:***@127.0.0.1:1/wulf: ")
    assert "Traceback" not in p.stderr and "secret" not in p.stderr
