"""Job arrays end to end (qr --array), with the real server and agent as processes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from wulfproc import Cluster, running_cluster, wait_until


@pytest.fixture
def wide(tmp_path: Path) -> Iterator[Cluster]:
    """A server and one agent with room for far more than five tasks at once (and room left when other
    work on this machine counts against it)."""
    with running_cluster(tmp_path) as c:
        c.agent("n1", cpus=64, mem="64G")
        yield c


def _overlap(spans: list[tuple[float, float]]) -> int:
    """The most spans open at one moment (an end at the same moment as a start does not overlap)."""
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda x: (x[0], x[1]))
    most = now = 0
    for _, d in edges:
        now += d
        most = max(most, now)
    return most


def test_array_of_200_with_throttle_5_never_runs_more_than_5(wide: Cluster) -> None:
    """Each task writes its own start and end times (a clock the tasks share): never more than five
    overlap, and every index ran once with its variables."""
    log = wide.work / "spans"
    log.mkdir()
    cmd = ('s=$(date +%s.%N); sleep 0.05; e=$(date +%s.%N); '
           'echo "$s $e $WULF_JOB_ID $WULF_ARRAY_JOB_ID $WULF_ARRAY_TASK_COUNT $WULF_ARRAY_TASK_MIN '
           '$WULF_ARRAY_TASK_MAX" > spans/$WULF_ARRAY_TASK_ID')
    (wide.work / "out").mkdir()
    [aid] = wide.submit("--array", "1-200%5", "--mem", "8M", "-o", "out/%A-%a.txt", "-c", cmd)
    wide.run("qwait", str(aid), timeout=600)
    spans = []
    ids = set()
    for i in range(1, 201):
        start, end, job_id, array_id, count, first, last = (log / str(i)).read_text().split()
        spans.append((float(start), float(end)))
        ids.add(int(job_id))
        assert (int(array_id), count, first, last) == (aid, "200", "1", "200")
    assert ids == set(range(aid, aid + 200))  # each task its own id, one block from the array's
    assert _overlap(spans) <= 5
    assert (wide.work / "out" / f"{aid}-7.txt").exists()
    status = wide.status()
    tasks = [j for j in status["jobs"] if j.get("array_id") == aid]
    assert len(tasks) == 200 and all(j["state"] == "done" for j in tasks)
    assert sorted(j["array_index"] for j in tasks) == list(range(1, 201))


def test_jstat_and_qcancel_of_an_array_and_of_one_task(wide: Cluster) -> None:
    """A pending array is one line with its counts; ``ID[i]`` names one task for jstat's listing,
    qcancel and qwait; ``qcancel ID`` cancels every task not ended."""
    [aid] = wide.submit("--array", "1,4,7-9%1", "-c", "sleep 300")
    wait_until("a task to run", lambda: any(j.get("array_id") == aid and j["state"] == "running"
                                             for j in wide.status()["jobs"]))
    text = wide.run("jstat", "--jobs").stdout
    assert f"{aid}[1,4,7-9%1]" in text and "queued 4, running 1, done 0, failed 0" in text
    assert f"{aid}[1]" in text and "running" in text  # the running task, a line of its own
    expanded = wide.run("jstat", "--jobs", "--expand").stdout
    assert all(f"{aid}[{i}]" in expanded for i in (1, 4, 7, 8, 9))
    p = wide.run("qcancel", f"{aid}[8]", "--json")
    assert json.loads(p.stdout)["cancelled"] == [aid + 3]  # 1,4,7,8,9: index 8 is the fourth
    assert wide.job(aid + 3)["state"] == "cancelled"
    assert wide.job(aid)["state"] == "running"  # the others go on
    p = wide.run("qcancel", str(aid), "--json")
    assert sorted(json.loads(p.stdout)["cancelled"]) == [aid, aid + 1, aid + 2, aid + 4]
    wide.run("qwait", f"{aid}[1]", f"{aid}[9]", check=False)
    assert {wide.job(aid + k)["state"] for k in range(5)} == {"cancelled"}


def test_bad_array_specs_queue_nothing(cluster: Cluster) -> None:
    for spec in ("1-x", "5-1", "1-10%0", "", "1-10%", "0-30:0"):
        p = cluster.run("qr", "--array", spec, "-c", "true", check=False)
        assert p.returncode == 2, (spec, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
    script = cluster.work / "two.sh"
    script.write_text("echo a\n#NEXTSCRIPT\necho b\n")
    p = cluster.run("qr", "--array", "1-3", "-s", str(script), check=False)
    assert p.returncode == 2 and "#NEXTSCRIPT" in p.stderr
    p = cluster.run("qcancel", "1[5]x", check=False)
    assert p.returncode == 2
    assert [j for j in cluster.status()["jobs"] if j["origin"] == "batch"] == []  # nothing half-queued


def test_slurm_array_script_sees_its_variables(wide: Cluster) -> None:
    script = wide.work / "job.sbatch"
    script.write_text("#!/bin/sh\n#SBATCH --array=0-4:2\n#SBATCH --job-name=sweep\n"
                      'echo "$SLURM_ARRAY_JOB_ID $SLURM_ARRAY_TASK_ID $SLURM_ARRAY_TASK_COUNT '
                      '$SLURM_ARRAY_TASK_STEP $WULF_ARRAY_TASK_ID"\n')
    p = wide.run("qr", "--json", "-s", str(script))
    assert "not supported" not in p.stderr
    [aid] = json.loads(p.stdout)["jobs"]
    wide.run("qwait", str(aid))
    for index in (0, 2, 4):
        out = (wide.work / f"slurm-{aid}_{index}.out").read_text()
        assert out == f"{aid} {index} 3 2 {index}\n"


def test_hold_release_kill_and_a_restart_keep_the_throttle(wide: Cluster) -> None:
    """qhold ID holds an array's waiting tasks, qrls ID[i] releases one (it waits under the throttle),
    a restarted server still runs at most N, and jkill ID[i] makes room for the next."""
    [aid] = wide.submit("--array", "1-6%2", "-c", "sleep 300")

    def states() -> list[str]:
        by_id = {j["id"]: j for j in wide.status()["jobs"]}
        return [by_id[aid + k]["state"] for k in range(6)]

    wait_until("two tasks to run", lambda: states().count("running") == 2)
    held = json.loads(wide.run("qhold", str(aid), "--json").stdout)["held"]
    assert sorted(held) == [aid + k for k in range(2, 6)]
    assert json.loads(wide.run("qrls", f"{aid}[6]", "--json").stdout)["released"] == [aid + 5]
    assert states() == ["running", "running", "held", "held", "held", "queued"]
    reason = wide.job(aid + 5)["reason"]
    assert reason == f"array {aid} runs at most 2 tasks at once"
    assert wide.server is not None
    wide.server.kill()  # SIGKILL: what it knows is what the store kept
    wide.start_server()
    wide.wait_node("n1")
    wide.run("qrls", f"{aid}[5]")
    assert states() == ["running", "running", "held", "held", "queued", "queued"]
    wide.run("jkill", f"{aid}[1]")
    wait_until("task 5 to run", lambda: states()[4] == "running")
    assert states() == ["failed", "running", "held", "held", "running", "queued"]
    wide.run("qcancel", str(aid))
    wait_until("every task to end", lambda: all(s in ("cancelled", "failed") for s in states()))
