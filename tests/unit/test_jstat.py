"""jstat's tables (the commands themselves are run end to end in tests/integration)."""

from __future__ import annotations

from typing import Any

from wulf.cli.common import format_table
from wulf.cli.jstat import group_arrays, jobs_table


def _job(**kw: Any) -> dict[str, Any]:
    job = {"id": 7, "user": "alice", "queue": "default", "origin": "batch", "state": "queued", "exit_code": None,
           "node": None, "cpu": 4.0, "mem_mb": 1024.0, "age": 75.0, "reason": "", "command": "echo hi",
           "array_id": None, "array_index": None, "restarts": 0, "checkpoints": 0, "ntasks": 1, "nodes": None, "vacated": 0}
    job.update(kw)
    return job


def test_why_a_job_waits_survives_a_long_command(monkeypatch: Any) -> None:
    monkeypatch.setenv("COLUMNS", "120")
    long = "python simulate.py " + " ".join(f"--option{i}=value" for i in range(30))
    out = jobs_table([_job(command=long, reason="user limit: alice occupies 8 of 8 cpus"),
                      _job(id=8, state="done", exit_code=3, node="n1", command="false")]).splitlines()
    assert out[0].split() == ["ID", "USER", "QUEUE", "ORIGIN", "STATE", "NODE", "CPU", "MEM", "AGE", "COMMAND"]
    assert "[user limit: alice occupies 8 of 8 cpus] python simulate" in out[1]
    assert out[1].endswith("…") and len(out[1]) == 120
    assert out[2].split()[4:6] == ["done(3)", "n1"] and out[2].endswith("false")


def test_tables_cut_only_the_flexible_column() -> None:
    out = format_table(["A", "B"], [["x" * 5, "y" * 40]], width=20).splitlines()
    assert out[1] == "xxxxx  " + "y" * 12 + "…" and len(out[1]) == 20


def test_the_table_needs_only_the_brief_listing_of_a_job() -> None:
    from wulf.model.job import Job, JobState, Origin

    job = Job(9, "bob", 1001, Origin.BATCH, JobState.DONE, "true", node="n2", exit_code=0, submitted=0.0)
    brief = job.brief(now=30.0)
    assert set(brief) == set(_job())  # what jstat's table reads, and no more
    assert set(brief) < set(job.public(now=30.0))
    assert jobs_table([brief]).splitlines()[1].split() == ["9", "bob", "default", "batch", "done", "n2", "1", "32M",
                                                          "30s", "true"]


def test_the_table_says_which_attempt_a_retried_job_is_at() -> None:
    row = jobs_table([_job(state="failed", exit_code=3, restarts=2, reason="exited 3")]).splitlines()[1]
    assert "failed(3) try 3" in row
    assert " try " not in jobs_table([_job()])


def test_json_for_a_program_puts_each_record_on_a_line_of_its_own(capsys: Any) -> None:
    import json

    from wulf.cli.common import print_json

    data = {"nodes": [], "jobs": [_job(), _job(id=8, command='say "hi"\nthen go')], "server": {"time": 1.5}}
    print_json(data)  # captured: not a terminal
    out = capsys.readouterr().out
    assert json.loads(out) == data
    lines = out.splitlines()
    assert len(lines) == 8 and lines[4].strip().startswith('{"id": 8') and lines[-1] == "}"


def test_an_arrays_waiting_tasks_are_one_line_and_its_running_ones_a_line_each() -> None:
    tasks = [_job(id=12 + k, array_id=12, array_index=1 + k, state="running" if k < 2 else "queued", node="n1")
             for k in range(6)]
    arrays = {"12": {"id": 12, "spec": "1-1000%2", "tasks": 1000, "throttle": 2, "queued": 998, "held": 0,
                     "running": 2, "done": 0, "failed": 0, "cancelled": 0}}
    lines = jobs_table(group_arrays([_job(id=5), *tasks], arrays)).splitlines()[1:]
    assert [line.split()[0] for line in lines] == ["5", "12[1]", "12[2]", "12[1-1000%2]"]
    assert "[queued 998, running 2, done 0, failed 0] echo hi" in lines[3]
    assert len(jobs_table(tasks).splitlines()) == 7  # --expand: a line a task


def test_a_job_of_several_nodes_shows_all_its_nodes_and_all_its_cpus() -> None:
    out = jobs_table([_job(state="running", node="n1", nodes="n[1-3]", ntasks=6, cpu=0.5, mem_mb=100.0)])
    assert out.splitlines()[1].split()[5:8] == ["n[1-3]", "3", "600M"]
