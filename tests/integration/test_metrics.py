"""GET /metrics on a real server and agent, parsed with prometheus_client's own parser."""

from __future__ import annotations

import http.client
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from wulfproc import Cluster, free_port, running_cluster


def scrape(c: Cluster) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    client = c.client()
    try:
        status, body = client._exchange("GET", "/metrics", None, 30)
    finally:
        client.close()
    assert status == 200, body
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_count_jobs_nodes_passes_and_requests(tmp_path: Path) -> None:
    with running_cluster(tmp_path, config="[scheduler]\nuse_observed = false\n") as c:
        c.agent("n1", cpus=2)
        ids = c.submit("-c", "true", "-c", "exit 3")
        c.run("qwait", *map(str, ids), check=False)
        c.run("jobmgr", "drain", "n1")
        [held] = c.submit("-q", "later", "-c", "true")
        c.run("qhold", str(held))
        m = scrape(c)
        assert m[("wulf_jobs_submitted_total", ())] == 3
        assert m[("wulf_jobs_started_total", ())] == 2
        assert m[("wulf_jobs_ended_total", (("state", "done"),))] == 1
        assert m[("wulf_jobs_ended_total", (("state", "failed"),))] == 1
        assert m[("wulf_jobs", (("queue", "later"), ("state", "held")))] == 1
        assert m[("wulf_user_jobs", (("state", "waiting"), ("user", "root")))] == 1
        assert m[("wulf_node_up", (("node", "n1"),))] == 1
        assert m[("wulf_node_drained", (("node", "n1"),))] == 1
        assert m[("wulf_node_cpus", (("node", "n1"),))] == 2
        assert m[("wulf_agent_connections", ())] == 1
        assert m[("wulf_schedule_pass_seconds_count", ())] >= 1
        assert m[("wulf_commit_seconds_count", ())] >= 1
        assert m[("wulf_http_requests_total", (("route", "/api/v1/jobs"), ("status", "200")))] == 2
        assert m[("wulf_http_requests_total", (("route", "/api/v1/jobs/hold"), ("status", "200")))] == 1


def _get(port: int, token: str = "") -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/metrics", headers={"Authorization": f"Bearer {token}"} if token else {})
        return conn.getresponse().status
    finally:
        conn.close()


def test_scraping_needs_a_token_unless_public(tmp_path: Path) -> None:
    port = free_port()
    with running_cluster(tmp_path / "a", listen=f"127.0.0.1:{port}") as c:
        assert _get(port) == 401
        token = c.json("wulf", "token", "create", "--read-only", "--name", "prometheus", "--json")["token"]
        assert _get(port, token) == 200
    port = free_port()
    with running_cluster(tmp_path / "b", listen=f"127.0.0.1:{port}", config="[metrics]\npublic = true\n"):
        assert _get(port) == 200
