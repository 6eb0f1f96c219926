"""What a listing (GET /api/v1/status, jstat) shows of the outside work on the nodes: by default a line per
node and user, not a job per process cluster; every cluster when asked (jstat --external)."""

from __future__ import annotations

from wulf.config import Config
from wulf.model.job import Job, JobState, Origin
from wulf.protocol import Cluster, NodeInfo, NodeSample, Report
from wulf.server import views
from wulf.server.events import NodeUp, Reported, Submitted
from wulf.server.state import ServerState

T0 = 1_000_000.0


def _cluster() -> ServerState:
    state = ServerState(Config())
    for node, users in (("n1", ["ann", "ann", "bob"]), ("n2", ["ann"])):
        state.handle(NodeUp(NodeInfo(name=node, hostname=node, cpus=8, mem_mb=8192), "10.0.0.1", 0, (), (), T0))
        clusters = [Cluster(key=f"{k}:{node}", pid=100 + k, uid=1000, user=u, command="matlab -batch run",
                            cpu=0.5 + k, mem_mb=100.0, nprocs=2, started=T0) for k, u in enumerate(users)]
        state.handle(Reported(node, Report(sample=NodeSample(time=T0, used_cpu=5.0), clusters=clusters)))
    state.handle(Submitted((Job(id=state.new_id(), user="cat", uid=1001, origin=Origin.BATCH, state=JobState.QUEUED,
                                command="./run", cwd="/", queue="default", cpu_req=1, mem_req=32, cpu=1, mem_mb=32,
                                submitted=T0),)))
    return state


def test_outside_work_is_summed_per_node_and_user_by_default() -> None:
    state = _cluster()
    page = views.status(state, T0, T0)
    assert [j["origin"] for j in page["jobs"]] == ["batch"]
    assert page["outside"] == [
        {"node": "n1", "user": "ann", "clusters": 2, "cpu": 2.0, "mem_mb": 200.0},
        {"node": "n1", "user": "bob", "clusters": 1, "cpu": 2.5, "mem_mb": 100.0},
        {"node": "n2", "user": "ann", "clusters": 1, "cpu": 0.5, "mem_mb": 100.0},
    ]
    assert [o["user"] for o in views.status(state, T0, T0, user="bob")["outside"]] == ["bob"]
    assert views.status(state, T0, T0, queue="default")["outside"] == []  # (outside work is in no queue)


def test_every_cluster_is_listed_when_asked_for() -> None:
    state = _cluster()
    page = views.status(state, T0, T0, external=True)
    assert sorted(j["origin"] for j in page["jobs"]) == ["batch", *["external"] * 4]
    assert "outside" not in page


def test_the_summary_comes_with_the_first_page_only() -> None:
    state = _cluster()
    first = views.status(state, T0, T0, limit=1)
    assert first["next"] is None and len(first["outside"]) == 3  # one batch job: one page
    later = views.status(state, T0, T0, after=first["jobs"][0]["id"])
    assert later["jobs"] == [] and "outside" not in later
