"""Reports as deltas (issue 16 §2, wulf.model.deltas): an agent sends its outside work whole once and then
only what changed; the server's view is the same as with full reports, and a lost or reordered delta makes
it ask for a full report rather than keep a wrong view."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from wulf.config import Config
from wulf.model.deltas import ASK_AGAIN, Deltas, Outside, Taken
from wulf.model.job import JobState
from wulf.protocol import Cluster, NodeInfo, NodeSample, Report, Resync, agent_message
from wulf.server.events import NodeUp, Reported
from wulf.server.instructions import Commit, Instruction, JobEnded, Send
from wulf.server.state import EXTERNAL_GONE_AFTER, ServerState

T0 = 1_000_000.0


def _state() -> ServerState:
    state = ServerState(Config())
    state.handle(NodeUp(NodeInfo(name="n1", hostname="n1", cpus=32, mem_mb=65536), "10.0.0.1", 0, (), (), T0))
    return state


def _cluster(k: int, cpu: float, mem: float) -> Cluster:
    return Cluster(key=f"{1000 + k}:{k}", pid=1000 + k, uid=2000 + k % 3, user=f"u{k % 3}", command=f"prog {k}",
                   cpu=cpu, mem_mb=mem, nprocs=1, started=T0 - k)


def _tables(seed: int, reports: int) -> list[list[Cluster]]:
    """A node's outside work over ``reports`` reports: programs start and end, some change their use."""
    rng = random.Random(seed)
    live = {k: (rng.choice([0.0, 0.5]), 10.0) for k in range(20)}
    next_k = 20
    out = []
    for _ in range(reports):
        for k in list(live):
            r = rng.random()
            if r < 0.1:
                del live[k]
            elif r < 0.3:
                live[k] = (round(rng.uniform(0, 2), 3), round(rng.uniform(1, 500), 1))
        for _ in range(rng.randrange(3)):
            live[next_k] = (0.1, 5.0)
            next_k += 1
        if rng.random() < 0.1 and out:  # a cluster gone for one report only comes back
            back = rng.choice(out[-1])
            live.setdefault(int(back.key.split(":")[1]), (back.cpu, back.mem_mb))
        out.append([_cluster(k, cpu, mem) for k, (cpu, mem) in sorted(live.items())])
    return out


def _report(report: Report, t: float) -> Reported:
    """The report as the server gets it: through JSON."""
    sent = report.model_copy(update={"sample": NodeSample(time=t)})
    msg = agent_message.validate_json(sent.model_dump_json())
    assert isinstance(msg, Report)
    return Reported("n1", msg)


def _view(state: ServerState) -> dict[str, Any]:
    """What the server knows of n1's outside work: its jobs by cluster key, and the ended ones."""
    node = state.nodes["n1"]
    jobs = {key: state.jobs[i] for key, i in node.external.items()}
    return {"running": {key: (j.id, j.user, j.uid, j.command, j.pid, j.started, j.cpu, j.mem_mb, j.cpu_used,
                              j.mem_used, j.state) for key, j in jobs.items()},
            "missing": dict(node.missing),
            "ended": sorted((j.id, j.ext_key, j.state, j.ended) for j in state.jobs.values() if j.final)}


def _running(state: ServerState) -> dict[str, Any]:
    """n1's running outside work, by cluster key (not by job id: it is the same work seen at other times)."""
    node = state.nodes["n1"]
    jobs = [state.jobs[i] for i in node.external.values()]
    return {j.ext_key: (j.user, j.cpu, j.mem_mb) for j in jobs if j.state is JobState.RUNNING}


def _told(todo: list[Instruction]) -> list[Any]:
    """Instructions, with the jobs they name by id (the two states' jobs are different objects)."""
    out: list[Any] = []
    for i in todo:
        if isinstance(i, Commit):
            out.append(("commit", [j.id for j in i.jobs], [j.id for j in i.new]))
        elif isinstance(i, JobEnded):
            out.append(("ended", i.job.id))
        else:
            out.append(i)
    return out


def _full(clusters: list[Cluster]) -> Report:
    return Report(sample=NodeSample(time=T0), clusters=clusters)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10**6))
def test_a_sequence_of_deltas_gives_the_view_full_reports_give(seed: int) -> None:
    whole, by_deltas, deltas = _state(), _state(), Deltas()
    for n, table in enumerate(_tables(seed, 30)):
        t = T0 + 5 * (n + 1)
        report = deltas.report(NodeSample(time=t), [], table)
        assert report.full == (n == 0)
        a = whole.handle(_report(_full(table), t))
        b = by_deltas.handle(_report(report, t))
        assert _told(a) == _told(b)  # the same commits and ends, of the same jobs
        assert _view(whole) == _view(by_deltas)


def test_a_delta_carries_only_what_changed() -> None:
    deltas = Deltas()
    a, b, c = _cluster(1, 0.0, 10.0), _cluster(2, 0.5, 20.0), _cluster(3, 0.0, 30.0)
    first = deltas.report(NodeSample(time=T0), [], [a, b])
    assert (first.full, first.seq, [x.key for x in first.clusters]) == (True, 1, [a.key, b.key])
    b2 = b.model_copy(update={"cpu": 0.7})
    second = deltas.report(NodeSample(time=T0), [], [b2, c])
    assert (second.full, second.seq, second.base) == (False, 2, 1)
    assert (second.clusters, second.gone) == ([b2, c], [a.key])
    third = deltas.report(NodeSample(time=T0), [], [b2, c])
    assert (third.clusters, third.gone, third.base) == ([], [], 2)


def _resyncs(todo: list[Instruction]) -> int:
    return sum(1 for i in todo if isinstance(i, Send) and isinstance(i.msg, Resync))


def test_a_lost_delta_is_never_applied_over_and_a_full_report_is_asked_for() -> None:
    tables = _tables(7, 8)
    whole, by_deltas, deltas = _state(), _state(), Deltas()
    reports = [deltas.report(NodeSample(time=T0), [], table) for table in tables[:5]]
    for n in (0, 1):
        by_deltas.handle(_report(reports[n], T0 + n))
        whole.handle(_report(_full(tables[n]), T0 + n))
    seen = _view(by_deltas)
    assert seen == _view(whole)
    # report 2 is lost (the server could not read it): 3 and 4 are deltas on what it never had
    assert _resyncs(by_deltas.handle(_report(reports[3], T0 + 3))) == 1
    assert _view(by_deltas) == seen  # the last good view, not a wrong one
    assert _resyncs(by_deltas.handle(_report(reports[4], T0 + 4))) == 0  # asked once already
    assert _view(by_deltas) == seen
    deltas.resync()  # (the agent got the Resync)
    again = deltas.report(NodeSample(time=T0), [], tables[5])
    assert again.full
    for n in (2, 3, 4, 5):
        whole.handle(_report(_full(tables[n]), T0 + n))
    by_deltas.handle(_report(again, T0 + 5))
    for n in range(6, 6 + EXTERNAL_GONE_AFTER):  # (what ended while it was refused ends after as many reports)
        whole.handle(_report(_full(tables[5]), T0 + n))
        by_deltas.handle(_report(deltas.report(NodeSample(time=T0), [], tables[5]), T0 + n))
    assert _running(by_deltas) == _running(whole) == {c.key: (c.user, c.cpu, c.mem_mb) for c in tables[5]}


def test_a_reordered_delta_is_refused_until_a_full_report() -> None:
    tables = _tables(11, 4)
    deltas = Deltas()
    r1, r2, r3 = (deltas.report(NodeSample(time=T0), [], table) for table in tables[:3])
    state = _state()
    state.handle(_report(r1, T0))
    seen = _view(state)
    assert _resyncs(state.handle(_report(r3, T0 + 2))) == 1
    assert _resyncs(state.handle(_report(r2, T0 + 1))) == 0  # in turn on its own, but a full one is awaited
    assert _view(state) == seen


def test_deltas_after_a_reconnection_are_refused_until_a_full_report() -> None:
    outside = Outside()
    deltas = Deltas()
    assert outside.take(deltas.report(NodeSample(time=T0), [], [_cluster(1, 0, 1)])) is Taken.APPLIED
    outside.lost()  # the node connected again: its agent's first report must be full
    assert outside.take(deltas.report(NodeSample(time=T0), [], [_cluster(2, 0, 1)])) is Taken.ASK
    assert outside.present == {_cluster(1, 0, 1).key}


def test_the_server_asks_again_when_deltas_keep_coming_out_of_turn() -> None:
    outside = Outside()
    deltas = Deltas()
    deltas.report(NodeSample(time=T0), [], [])  # a full report the server never got
    taken = [outside.take(deltas.report(NodeSample(time=T0), [], [])) for _ in range(2 * ASK_AGAIN)]
    assert taken.count(Taken.ASK) == 2 and taken[0] is Taken.ASK and taken[ASK_AGAIN] is Taken.ASK


def test_a_report_of_before_deltas_is_a_full_one() -> None:
    """A report that says nothing of deltas (the simulator's, older tests') is taken as full."""
    outside = Outside()
    assert outside.take(_full([_cluster(1, 0, 1)])) is Taken.APPLIED
    assert outside.take(_full([])) is Taken.APPLIED and outside.present == set()
