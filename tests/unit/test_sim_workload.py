"""The simulator's workloads: the generator and the workload file (one-line errors naming the line)."""

from __future__ import annotations

from pathlib import Path

import pytest

from wulf.errors import UsageError
from wulf.sim.workload import SCENARIOS, generate, read_workload, write_workload

EXAMPLE = Path(__file__).parents[2] / "examples" / "sim-workload.jsonl"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_generated_workloads_are_seeded_and_ordered(scenario: str) -> None:
    a, b = generate(scenario, 10, 200, None, None, 4), generate(scenario, 10, 200, None, None, 4)
    assert a == b and a != generate(scenario, 10, 200, None, None, 5)
    assert len(a.jobs) == 200 and [j.id for j in a.jobs] == list(range(200))
    assert all(x.arrival <= y.arrival for x, y in zip(a.jobs, a.jobs[1:], strict=False))
    assert (sum(1 for n in a.nodes if n.outside) > 0) == (scenario == "outside")


def test_scenario_defaults() -> None:
    w = generate("homogeneous", 3, None, None, None, 1)
    assert len(w.jobs) == 10 * 24 and len({(j.cpu, j.duration) for j in w.jobs}) == 1
    assert w.bound() == 10 * 600
    assert generate("flood", 3, 100, None, None, 1).users == ["alice", "bob"]
    assert sum(1 for n in generate("mixed", 30, 10, None, 0.5, 1).nodes if n.outside) == 15


def test_batches_run_programs_that_users_run_again() -> None:
    w = generate("mixed", 10, 2000, 3, None, 1)  # each batch a program of its own
    assert len({j.name for j in w.jobs}) == len({(j.name, j.user, j.cpu, j.mem_mb) for j in w.jobs}) > 10
    w = generate("mixed", 10, 2000, 3, None, 1, programs=4)
    for user in w.users:
        mine = [j for j in w.jobs if j.user == user]
        assert {j.name for j in mine} <= {"prog1", "prog2", "prog3", "prog4"}
        for name in {j.name for j in mine}:  # a program always asks for the same
            assert len({(j.cpu, j.mem_mb) for j in mine if j.name == name}) == 1


def test_a_workload_file_reads_back_what_was_written(tmp_path: Path) -> None:
    w = generate("outside", 6, 50, 3, None, 2)
    path = tmp_path / "w.jsonl"
    write_workload(path, w)
    back = read_workload(path)
    assert back.nodes == w.nodes and back.jobs == w.jobs


def test_the_example_workload_reads() -> None:
    w = read_workload(EXAMPLE)
    assert len(w.nodes) == 4 and len(w.jobs) == 17 and w.queues
    assert any(j.constraint == "bigmem" for j in w.jobs)
    assert sum(1 for n in w.nodes if n.outside) == 1


@pytest.mark.parametrize(("text", "problem"), [
    ('{"arrival": 0, "user": "a"}', "line 2: 'duration' is missing"),
    ('{"arrival": 0, "user": "a", "duration": -1}', "line 2: 'duration' must be more than zero"),
    ('{"arrival": "soon", "user": "a", "duration": 1}', "line 2: 'arrival' must be a number"),
    ('{"arrival": 0, "user": "a", "duration": 1, "cpus": 2}', "line 2: unknown key 'cpus' for a job line"),
    ('{"arrival": 0, "user": "a", "duration": 1, "constraint": "a,,b"}', "line 2: bad constraint"),
    ('{"node": "n", "cpus": 0, "mem_mb": 1}', "line 2: 'cpus' must be more than zero"),
    ('{"node": "n", "cpus": 1, "mem_mb": 1, "outside": {"cpu": 1, "off": 5}}', "line 2: an outside load"),
    ('{"queue": "q", "user": "u", "window": "lunch"}', "line 2: 'window' is one of"),
    ('{"user": "u"}', "line 2: a line is a node"),
    ("[1, 2]", "line 2: a line must be a JSON object"),
    ("{nope", "line 2: not JSON"),
])
def test_a_bad_line_is_one_line_naming_it(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "w.jsonl"
    path.write_text(f"# a comment\n{text}\n\n")
    with pytest.raises(UsageError) as e:
        read_workload(path)
    assert problem in e.value.message and "\n" not in e.value.message
    assert str(path) in e.value.message


def test_a_file_without_jobs_or_that_cannot_be_read(tmp_path: Path) -> None:
    path = tmp_path / "w.jsonl"
    path.write_text('{"node": "n", "cpus": 1, "mem_mb": 1}\n{"node": "n", "cpus": 1, "mem_mb": 1}\n')
    with pytest.raises(UsageError, match="line 2: node 'n' is defined twice"):
        read_workload(path)
    path.write_text('{"node": "n", "cpus": 1, "mem_mb": 1}\n')
    with pytest.raises(UsageError, match="no jobs"):
        read_workload(path)
    with pytest.raises(UsageError, match="cannot read the workload"):
        read_workload(tmp_path / "missing.jsonl")
