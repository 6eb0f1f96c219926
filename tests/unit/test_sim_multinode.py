"""The simulator's jobs of several nodes (issue 13 §1): placed by the server, carried on every node of
their allocation, in step, ending together (small, seeded cases; no timing)."""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from wulf.cli.wulf import _main
from wulf.config import Config
from wulf.errors import UsageError
from wulf.model.job import JobState
from wulf.policy.settings import Policy
from wulf.sim.engine import Engine
from wulf.sim.workload import (
    MULTINODE_NODES,
    MULTINODE_PER_NODE,
    OutsideLoad,
    SimJob,
    SimNode,
    Workload,
    generate,
    numbered,
    read_workload,
    write_workload,
)

POLICY = Policy.from_config(Config())
ALLOCATION_ONLY = replace(POLICY, observe=False)


def _nodes(n: int, cpus: float = 4, mem: float = 8000, outside: OutsideLoad | None = None) -> list[SimNode]:
    return [SimNode(f"n{i}", cpus, mem, {"name": f"n{i}"}, frozenset(), outside) for i in range(n)]


def _w(nodes: list[SimNode], jobs: list[SimJob]) -> Workload:
    return Workload(tuple(nodes), numbered(jobs), (), "test")


class Watched(Engine):
    """An engine that checks after every moment that no node holds more than it has (by what the jobs
    there were given: each single job its allocation, each job of several nodes its slots there), that
    every running job of several nodes is on all the nodes of its allocation and on no other, and
    records where each ran.

    Under the default policy a single job's allocation becomes what it uses once it has settled, room
    or not (wulf.policy.adapt: it is then reniced if the node is full), so there only the slots of the
    jobs of several nodes are held to the node's size; under allocation-only, everything is."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.strict = not self.policy.adaptive
        self.moments = 0
        self.ran_on: dict[int, list[list[tuple[str, int]]]] = {}  # job id -> each run's slots
        self.exits: Counter[int] = Counter()

    def _start_gang(self, job_id: int, sim: SimJob, alloc: str, t: float) -> Any:
        others = super()._start_gang(job_id, sim, alloc, t)
        g = self.gangs[job_id]
        self.ran_on.setdefault(sim.id, []).append([(n.spec.name, k) for n, k in g.nodes])
        return others

    def _batch(self, t: float) -> None:
        super()._batch(t)
        self.moments += 1
        for node in self.nodes:
            cpu = mem = 0.0
            for job_id in node.runs if self.strict else ():
                job = self.state.jobs[job_id]
                cpu += job.cpu
                mem += job.mem_mb
            for g, k in node.gangs.values():
                assert self.gangs[g.id] is g and (node, k) in g.nodes
                cpu += g.job.cpu * k
                mem += g.job.mem_mb * k
            assert cpu <= node.spec.cpus + 1e-6 and mem <= node.spec.mem_mb + 1e-6, (t, node.spec.name, cpu, mem)
        for g in self.gangs.values():
            assert all(g.id in n.gangs for n, _ in g.nodes)
            assert self.state.jobs[g.id].state is JobState.RUNNING


@pytest.mark.parametrize("scenario", ["mixed", "flood", "outside"])
@pytest.mark.parametrize("policy", [POLICY, ALLOCATION_ONLY], ids=["default", "allocation-only"])
def test_jobs_of_several_nodes_run_on_as_many_nodes_and_every_job_ends(scenario: str, policy: Policy) -> None:
    w = generate(scenario, 12, 400, 3, None, seed=5, multinode=0.2)
    multi = [j for j in w.jobs if j.multinode]
    assert len(multi) == 80
    e = Watched(w, policy, seed=5)
    s = e.run()
    assert e.moments > 100
    assert s.finished == len(w.jobs) and s.never_started == s.rejected == 0
    assert s.multinode["jobs"] == s.multinode["finished"] == 80 and s.multinode["never_started"] == 0
    assert not e.gangs and all(not n.gangs and not n.runs for n in e.nodes)
    for j in multi:
        runs = e.ran_on[j.id]
        assert len(runs) == 1 + e.rec.kills.get(j.id, 0)
        for slots in runs:  # N distinct nodes, M tasks on each
            assert len({name for name, _ in slots}) == j.nodes == len(slots) and {k for _, k in slots} == {j.per_node}
        assert e.state.jobs[j.id + 1].state is JobState.DONE
        assert e.rec.end[j.id] >= e.rec.start[j.id] + j.duration - 1e-6
    assert not any(j.id in e.ran_on for j in w.jobs if not j.multinode)


def test_a_job_of_several_nodes_goes_at_its_slowest_node_s_speed() -> None:
    # n1's outside work wants all its cpus: the tasks there get half of what they want, and the job's
    # tasks on n0 wait for them at every step
    nodes = [*_nodes(1), *_nodes(2, outside=OutsideLoad(cpu=4))[1:]]
    jobs = [SimJob(0, 0, "u", "default", 1, 1000, 100, 1, 500, nodes=2, per_node=4),
            SimJob(0, 500, "u", "default", 1, 1000, 100, 1, 500)]
    e = Watched(_w(nodes, jobs), ALLOCATION_ONLY)
    s = e.run()
    assert s.finished == 2
    assert e.rec.end[0] - e.rec.start[0] == pytest.approx(200)
    assert {name for name, _ in e.ran_on[0][0]} == {"n0", "n1"}
    # its tasks left both nodes at once: the second job, on either, runs at full speed on n0
    assert e.rec.end[1] - e.rec.start[1] in (pytest.approx(100), pytest.approx(200))
    assert s.utilisation > 0


def test_all_the_slots_at_once_or_none() -> None:
    # a 2 × 4 job comes while n0 is full: it waits until both nodes are free, then takes both at once
    jobs = [SimJob(0, 0, "u", "default", 4, 1000, 300, 4, 500),
            SimJob(0, 10, "v", "default", 1, 1000, 100, 1, 500, nodes=2, per_node=4)]
    e = Watched(_w(_nodes(2), jobs), ALLOCATION_ONLY)
    s = e.run()
    assert s.finished == 2 and e.rec.start[1] == pytest.approx(300)
    assert s.multinode["wait_max"] == pytest.approx(290) and s.multinode["single_wait_max"] == 0


def test_a_task_killed_for_memory_fails_the_whole_job_which_runs_again() -> None:
    # each task asks for 1000 MB and uses 6000; the single job beside one of them uses 3000: the node
    # has 8000, so the out-of-memory killer takes the largest process, a task of the job of two nodes
    jobs = [SimJob(0, 0, "u", "default", 1, 1000, 100, 1, 6000, nodes=2, per_node=1),
            SimJob(0, 10, "v", "default", 1, 1000, 100, 1, 3000)]
    e = Watched(_w(_nodes(2), jobs), ALLOCATION_ONLY)
    s = e.run()
    assert s.finished == 2 and s.killed_for_memory >= 1
    assert set(e.rec.kills) == {0}  # only the job of several nodes was killed
    assert len(e.ran_on[0]) == 1 + e.rec.kills[0]
    job = e.state.jobs[1]
    assert (job.state, job.restarts) == (JobState.DONE, e.rec.kills[0])  # the server's own retries
    assert e.rec.start[0] >= 110  # it ran to its end only once the single job had left


def test_without_multinode_the_workload_is_what_it_was() -> None:
    plain = generate("mixed", 10, 300, 3, None, seed=2)
    assert generate("mixed", 10, 300, 3, None, seed=2, multinode=0.0) == plain
    multi = generate("mixed", 10, 300, 3, None, seed=2, multinode=0.1)
    assert sum(j.multinode for j in multi.jobs) == 30 and not any(j.multinode for j in plain.jobs)
    for j in multi.jobs:
        if j.multinode:
            assert j.nodes in MULTINODE_NODES[0] and j.per_node in MULTINODE_PER_NODE[0] and j.cpu == 1
    # the jobs arrive over a longer span, so the offered load stays what it was
    def load(w: Workload) -> float:
        return sum(j.cpu * j.duration * j.tasks for j in w.jobs) / (w.jobs[-1].arrival - w.jobs[0].arrival)
    assert load(multi) == pytest.approx(load(plain), rel=0.05)


def test_a_workload_file_carries_jobs_of_several_nodes(tmp_path: Path) -> None:
    w = generate("mixed", 6, 100, 2, None, seed=4, multinode=0.2)
    path = tmp_path / "w.jsonl"
    write_workload(path, w)
    back = read_workload(path)
    assert [(j.nodes, j.per_node) for j in back.jobs] == [(j.nodes, j.per_node) for j in w.jobs]
    bad = tmp_path / "bad.jsonl"
    for line, problem in (('{"arrival": 0, "user": "a", "duration": 10, "nodes": 0}', "'nodes' must be a whole"),
                          ('{"arrival": 0, "user": "a", "duration": 10, "nodes": 2.5}', "'nodes' must be a whole"),
                          ('{"arrival": 0, "user": "a", "duration": 10, "tasks_per_node": 2}', "goes with 'nodes'")):
        bad.write_text(line + "\n")
        with pytest.raises(UsageError) as e:
            read_workload(bad)
        assert problem in e.value.message


def test_the_command_reports_the_jobs_of_several_nodes(capsys: pytest.CaptureFixture[str]) -> None:
    small = ["sim", "--nodes", "10", "--jobs", "150", "--seed", "3", "--multinode", "0.1"]
    assert _main([*small, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["workload"]["multinode_jobs"] == 15
    [run] = out["runs"]
    assert run["multinode"]["finished"] == 15 and run["multinode"]["never_started"] == 0
    assert not math.isnan(run["multinode"]["single_wait_mean"])
    assert _main(small) == 0
    table = capsys.readouterr().out
    assert "multi-node jobs finished" in table and "15 of 15" in table and "single-node wait" in table
    assert _main(["sim", "--nodes", "6", "--jobs", "150", "--seed", "3"]) == 0
    assert "multi-node" not in capsys.readouterr().out  # (off by default: the table is as it was)
    # on 6 nodes, the jobs of 8 nodes can never run: set aside, not counted as starved
    assert _main(["sim", "--nodes", "6", "--jobs", "150", "--seed", "3", "--multinode", "0.1", "--json"]) == 0
    [run] = json.loads(capsys.readouterr().out)["runs"]
    m = run["multinode"]
    assert m["rejected"] > 0 and m["never_started"] == 0 and m["finished"] + m["rejected"] == 15
    assert run["rejected"] == m["rejected"]


@pytest.mark.parametrize(("args", "problem"), [
    (["--multinode", "1.5"], "--multinode is the fraction"),
    (["--multinode", "-0.1"], "--multinode is the fraction"),
    (["--workload", str(Path(__file__).parents[2] / "examples" / "sim-workload.jsonl"), "--multinode", "0.1"],
     "--multinode does not go with --workload"),
    (["--scenario", "owner-returns", "--multinode", "0.1"], "--multinode does not go with"),
])
def test_bad_multinode_is_a_usage_error(args: list[str], problem: str) -> None:
    with pytest.raises(UsageError) as e:
        _main(["sim", *args])
    assert problem in e.value.message and "\n" not in e.value.message


def _figures(hash_seed: str) -> Any:
    """A small seeded run's JSON, in a process of its own with this PYTHONHASHSEED, its timings left out."""
    import os
    import subprocess
    import sys

    out = subprocess.run([str(Path(sys.executable).parent / "wulf"), "sim", "--scenario", "homogeneous", "--nodes",
                          "60", "--jobs", "1500", "--seed", "1", "--multinode", "0.15", "--json"],
                         env={**os.environ, "PYTHONHASHSEED": hash_seed}, capture_output=True, text=True,
                         check=True, timeout=300).stdout

    def untimed(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: untimed(v) for k, v in x.items() if not k.endswith(("_ms", "_s", "seconds"))}
        return [untimed(v) for v in x] if isinstance(x, list) else x

    return untimed(json.loads(out))


def test_the_same_seed_gives_the_same_figures_whatever_python_s_hash_seed() -> None:
    """A run is the workload's seed's alone: the order nodes are looked at in does not follow the hash of
    their names (it did: the nodes that changed were kept in a set, and jobs of several nodes tie)."""
    first = _figures("1")
    assert first["runs"][0]["multinode"]["finished"] > 100  # (jobs of several nodes ran)
    assert _figures("2") == first == _figures("3")
