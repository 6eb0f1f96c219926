"""Warning signals and self-checkpointing end to end (issue 13 §2), with the real server and agent.

The self-checkpointing program counts to a total, one step a tenth of a second; on SIGUSR1 (or SIGTERM)
it saves its count to a file and exits with the checkpoint exit code; run again (WULF_RESTART_COUNT > 0),
it goes on from the saved count. Its shell ignores SIGUSR1 until the program has its handler (``trap ''``
is inherited through exec): a signal that comes before is lost, never fatal.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from programs import COUNTER
from wulfproc import Cluster, running_cluster, wait_until


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A server and one agent 'n1' whose jobs get 3 s between TERM and KILL (and so their checkpoint
    signal 3 s before their time limit)."""
    root = tmp_path_factory.mktemp("ckpt")
    with running_cluster(root, config="[agent]\nkill_grace = 3\n") as c:
        c.agent("n1", cpus=16)
        yield c


def _counter(cluster: Cluster, name: str, total: int) -> str:
    prog = cluster.work / "counter.py"
    prog.write_text(COUNTER)
    state = cluster.work / f"{name}.count"
    return f"trap '' USR1; exec python3 {prog} {state} {total}"


def _finished(cluster: Cluster, jid: int, timeout: float = 180) -> dict[str, object]:
    cluster.run("qwait", str(jid), check=False, timeout=timeout)
    return cluster.job(jid)


def _runs(out: str) -> list[tuple[int, int]]:
    """(run, count it started at) of each run the output tells of."""
    return [(int(a), int(b)) for a, b in re.findall(r"run (\d+) starts at (\d+)", out)]


def test_a_job_checkpointed_every_interval_finishes_with_the_right_total(cluster: Cluster) -> None:
    [jid] = cluster.submit("--checkpoint", "USR1@3", "-o", "interval.out", "-c", _counter(cluster, "interval", 60))
    job = _finished(cluster, jid)
    out = (cluster.work / "interval.out").read_text()
    assert job["state"] == "done" and job["exit_code"] == 0, (job, out, cluster.logs())
    assert "counted to 60" in out
    runs = _runs(out)
    assert len(runs) >= 2 and runs[0] == (0, 0), out  # one file: every run's output, appended
    assert [r for r, _ in runs] == list(range(len(runs)))
    saved = [int(n) for n in re.findall(r"saved (\d+) on signal", out)]
    assert saved == [start for _, start in runs[1:]], out  # each run went on where the last stopped
    assert job["restarts"] == job["checkpoints"] == len(runs) - 1 >= 1, job
    assert f"({job['checkpoints']} ckpt)" in cluster.run("jstat", "-a", "--jobs").stdout
    [row] = cluster.json("jacct", str(jid))["jobs"]
    assert (row["state"], row["attempts"], row["checkpoints"]) == ("done", len(runs), len(runs) - 1), row


def test_a_job_told_to_checkpoint_before_its_time_limit_is_queued_again_not_failed(cluster: Cluster) -> None:
    # a time limit of 6 s and 3 s of grace: the checkpoint signal comes 3 s into each run, TERM at 6 s (also
    # saved); 8 s of counting needs at least three runs
    [jid] = cluster.submit("--time", "0:00:06", "--checkpoint", "USR1", "-o", "limit.out",
                           "-c", _counter(cluster, "limit", 80))
    job = _finished(cluster, jid, timeout=240)
    out = (cluster.work / "limit.out").read_text()
    assert job["state"] == "done", (job, out, cluster.logs())
    assert "counted to 80" in out and len(_runs(out)) >= 2, out
    assert job["checkpoints"] >= 1 and job["restarts"] == job["checkpoints"], job


def test_a_warning_signal_comes_before_the_time_limit(cluster: Cluster) -> None:
    script = ("trap 'echo warned >> warn.log' USR2; echo start >> warn.log; "
              "i=0; while [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done; echo never >> warn.log")
    [jid] = cluster.submit("--time", "0:00:05", "--signal", "USR2@3", "-c", script)
    job = _finished(cluster, jid, timeout=120)
    assert job["state"] == "failed" and str(job["reason"]).startswith("exceeded its time limit"), job
    assert (cluster.work / "warn.log").read_text().split() == ["start", "warned"]


def test_a_warning_signal_without_a_time_limit_is_refused(cluster: Cluster) -> None:
    p = cluster.run("qr", "--signal", "USR1@60", "-c", "true", check=False)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "needs a time limit" in p.stderr, p


def test_sbatch_signal_is_carried(cluster: Cluster) -> None:
    script = cluster.work / "warned.sh"
    script.write_text("#!/bin/sh\n#SBATCH --time=0:05\n#SBATCH --signal=B:USR1@2\n"
                      "trap 'echo warned' USR1\ni=0; while [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done\n")
    bin_dir = cluster.root / "bin"
    if not (bin_dir / "sbatch").exists():
        cluster.run("wulf", "compat", str(bin_dir))
    p = subprocess.run([str(bin_dir / "sbatch"), "--parsable", str(script)], capture_output=True, text=True,
                       cwd=cluster.work, env=cluster.env, timeout=60, check=True)
    jid = int(p.stdout.strip().split(";")[0])
    assert "B: is ignored" in p.stderr
    job = _finished(cluster, jid, timeout=120)
    assert job["warn_signal"] == "USR1@2" and job["state"] == "failed", job
    assert "warned" in (cluster.work / f"slurm-{jid}.out").read_text()


def test_checkpoint_by_criu_is_refused_with_the_reason(cluster: Cluster, tmp_path: Path) -> None:
    bare = {"PATH": "/nonexistent"}  # (qr also looks in /usr/sbin and /sbin: skip if this machine has criu)
    if any(os.path.exists(f"{d}/criu") for d in ("/usr/sbin", "/sbin")):
        pytest.skip("criu is installed here")
    p = cluster.run("qr", "--checkpoint", "criu", "-c", "true", check=False, env_extra=bare)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "criu is not installed here" in p.stderr, p
    fake = tmp_path / "criu"  # a criu whose check fails, as Debian's does on a kernel newer than it knows
    fake.write_text("#!/bin/sh\necho 'Error (criu/kerndat.c:123): kernel too new' >&2\nexit 1\n")
    fake.chmod(0o755)
    p = cluster.run("qr", "--checkpoint", "criu", "-c", "true", check=False, env_extra={"PATH": str(tmp_path)})
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p
    assert "`criu check` fails here (Error (criu/kerndat.c:123): kernel too new)" in p.stderr, p


def test_the_checkpoint_clock_survives_an_agent_restart(tmp_path: Path) -> None:
    """The agent keeps a running job's checkpoint signal in its journal: restarted, it goes on telling it."""
    with running_cluster(tmp_path) as c:
        c.agent("n1", cpus=16)
        out = c.work / "restart.out"
        [jid] = c.submit("--checkpoint", "USR1@4", "-o", str(out), "-c", _counter(c, "restart", 100))
        wait_until("the job to start counting", lambda: out.exists() and "run 0 starts" in out.read_text())
        c.agents["n1"].kill(signal.SIGKILL)
        c.agent("n1", cpus=16, wait=False)
        job = _finished(c, jid)
        text = out.read_text()
        assert job["state"] == "done" and "counted to 100" in text, (job, text, c.logs())
        assert job["checkpoints"] >= 1 and "run 0 saved" in text, (job, text)  # told by the restarted agent
