"""Jobs of a kind start with what the last ones of the kind used (wulf.policy.history)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wulf.config import Config, parse_config
from wulf.errors import ConfigError
from wulf.policy import history as history_module
from wulf.policy.history import History, Sized, kind_of
from wulf.policy.placement import NodePool
from wulf.policy.rank import compile_rank
from wulf.policy.scheduler import schedule
from wulf.policy.settings import Policy
from wulf.policy.snapshot import NodeView, QueuedJob, QueueView
from wulf.sim.engine import Engine
from wulf.sim.workload import SimJob, SimNode, Workload, numbered

RANK = compile_rank("cpu_free * 1e9 + mem_free_mb")
POLICY = Policy.from_config(Config())


def _taught(*runs: tuple[float, float], size: int = 5, kind: str = "fit") -> History:
    """A history in which jobs of ``kind`` (alice's, asking for 2 cpus and 1000 MB) used ``runs``:
    (mean cpu, peak MB), each over 100 s."""
    h = History(size, 60.0)
    for cpu, mem in runs:
        assert h.teach(kind_of("alice", kind, 2, 1000), True, 100.0, cpu * 100.0, mem)
    return h


def _job(job_id: int = 1, name: str = "fit", user: str = "alice", cpu: float = 2, mem: float = 1000) -> QueuedJob:
    return QueuedJob(job_id, user, "default", cpu, mem, "", name)


def test_a_kind_is_the_user_the_name_and_the_request() -> None:
    assert kind_of("alice", "run.sh[3]", 1, 32) == kind_of("alice", "run.sh[12]", 1, 32) == ("alice", "run.sh", 1, 32)
    assert kind_of("alice", "fit", 1, 32) != kind_of("bob", "fit", 1, 32)
    assert kind_of("alice", "fit", 1, 32) != kind_of("alice", "fit", 2, 32) != kind_of("alice", "fit", 2, 64)
    assert kind_of("alice", "", 1, 32) is None  # no name, no kind


def test_only_jobs_that_ran_long_enough_and_ended_done_teach() -> None:
    h = History(5, 60.0)
    kind = kind_of("alice", "fit", 2, 1000)
    assert not h.teach(kind, False, 100.0, 50.0, 300.0)  # failed
    assert not h.teach(kind, True, 59.0, 50.0, 300.0)  # too short to have shown itself
    assert not h.teach(kind, True, 100.0, None, 300.0)  # not measured
    assert not h.teach(kind, True, 100.0, 50.0, 0.0)
    assert not h.teach(None, True, 100.0, 50.0, 300.0)
    assert h.expect(kind) is None and h.sized(_job()) == _job()
    assert h.teach(kind, True, 100.0, 50.0, 300.0)
    assert h.expect(kind) == (0.5, 300.0)


def test_a_kind_expects_the_mean_cpu_and_the_largest_peak_of_its_last_jobs() -> None:
    h = _taught((1.0, 400), (0.5, 900), (0.6, 500), size=3)
    assert h.expect(kind_of("alice", "fit", 2, 1000)) == (0.7, 900.0)
    h = _taught((1.0, 400), (0.5, 900), (0.6, 500), (0.4, 300), size=3)  # the oldest is forgotten
    assert h.expect(kind_of("alice", "fit", 2, 1000)) == (0.5, 900.0)
    h = _taught((0.333333, 300.2))  # rounded up: to a hundredth of a cpu, to the MB
    assert h.expect(kind_of("alice", "fit", 2, 1000)) == (0.34, 301.0)
    h = _taught((0.0, 300))  # a job that slept still holds the least a process costs
    expect = h.expect(kind_of("alice", "fit", 2, 1000))
    assert expect is not None and expect[0] > 0


def test_a_waiting_job_is_sized_down_never_up() -> None:
    h = _taught((0.5, 300))
    sized = h.sized(_job(7))
    assert isinstance(sized, Sized)
    assert (sized.id, sized.user, sized.name, sized.constraint, sized.cpu, sized.mem_mb) == (
        7, "alice", "fit", "", 0.5, 300)
    h = _taught((3.0, 300))  # it used more cpu than asked for: it still asks for no more than it did
    sized = h.sized(_job())
    assert (sized.cpu, sized.mem_mb) == (2, 300)
    h = _taught((3.0, 2000))
    assert h.sized(_job()) == _job()  # nothing less than asked: the job itself
    for other in (_job(name="other"), _job(user="bob"), _job(cpu=1), _job(name="")):
        assert h.sized(other) is other


@given(st.lists(st.tuples(st.floats(0, 64), st.floats(0.1, 1e6)), min_size=1, max_size=20),
       st.floats(0.05, 64), st.floats(1, 1e6))
def test_a_sized_job_never_asks_for_more_than_the_job_nor_for_nothing(
        runs: list[tuple[float, float]], cpu: float, mem: float) -> None:
    h = History(5, 0.0)
    for used, peak in runs:
        h.teach(kind_of("u", "k", cpu, mem), True, 10.0, used * 10.0, peak)
    sized = h.sized(QueuedJob(1, "u", "q", cpu, mem, "", "k"))
    assert 0 < sized.cpu <= cpu and 0 < sized.mem_mb <= mem


def test_kinds_are_forgotten_least_recently_taught_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(history_module, "MAX_KINDS", 2)
    h = History(5, 0.0)
    for name in ("a", "b", "a", "c"):  # a was taught after b: b goes
        h.teach(kind_of("u", name, 1, 32), True, 10.0, 5.0, 10.0)
    assert len(h) == 2
    assert h.expect(kind_of("u", "b", 1, 32)) is None
    assert h.expect(kind_of("u", "a", 1, 32)) and h.expect(kind_of("u", "c", 1, 32))


def test_a_pass_places_jobs_as_their_kind_taught_and_says_so_when_they_wait() -> None:
    h = _taught((0.5, 300))
    jobs = [_job(i) for i in range(10)]
    pool = NodePool([NodeView("n0", 4.2, 100_000)], RANK)
    out = schedule([QueueView("alice", "default", map(h.sized, jobs))], {}, pool)
    # asked for 2 cpus each, 2 would fit; as taught, 8 do
    assert [p.job_id for p in out.placements] == list(range(8))
    assert {(p.cpu, p.mem_mb) for p in out.placements} == {(0.5, 300)}
    assert out.reasons[("alice", "default")] == (
        "waiting for room: needs 0.5 cpus and 300 MB (what its last jobs like it used)")
    plain = schedule([QueueView("alice", "default", jobs)], {}, NodePool([NodeView("n0", 4.2, 100_000)], RANK))
    assert [(p.job_id, p.cpu, p.mem_mb) for p in plain.placements] == [(0, 2, 1000), (1, 2, 1000)]


def test_the_policy_learns_only_when_it_observes_and_is_asked_to() -> None:
    assert isinstance(POLICY.history(), History) and POLICY.history_jobs == 5
    assert replace(POLICY, observe=False).history() is None  # allocation-only ignores what jobs used
    assert Policy.from_config(parse_config("[scheduler]\nhistory_jobs = 0\n")).history() is None
    for bad in ("history_jobs = -1", "history_min_seconds = -5"):
        with pytest.raises(ConfigError):
            Policy.from_config(parse_config(f"[scheduler]\n{bad}\n"))


def _sim(policy: Policy) -> tuple[Engine, list[float]]:
    """One 2-cpu node, and six jobs of a kind that ask for 2 cpus and use 1, for 100 s each."""
    node = SimNode("n0", 2, 8000, {"name": "n0"})
    jobs = [SimJob(0, 0.0, "alice", "default", 2, 1000, 100.0, 1.0, 400, "", "fit") for _ in range(6)]
    e = Engine(Workload((node,), numbered(jobs), (), "test"), policy)
    e.run()
    return e, [e.rec.start[i] for i in range(len(jobs))]


def test_the_simulator_starts_jobs_as_their_kind_taught_and_allocation_only_never_does() -> None:
    e, starts = _sim(POLICY)
    # the first runs alone; once it has taught its kind, two at a time
    assert starts == [0.0, 100.0, 100.0, 200.0, 200.0, 300.0] and e.rec.sized == 5
    e, starts = _sim(replace(POLICY, observe=False))
    assert starts == [0.0, 100.0, 200.0, 300.0, 400.0, 500.0] and e.rec.sized == 0
