"""Dask-jobqueue (from PyPI) drives a local wulf cluster through wulf's Slurm and PBS commands (`wulf compat`):
its SLURMCluster and PBSCluster submit each worker as a job (sbatch / qsub of a script with #SBATCH or #PBS
directives), read the job id from what the command prints, and cancel the jobs (scancel / qdel) when the
workers are scaled away. Workers reach the scheduler over loopback.

Dask-jobqueue runs from a venv of its own (see tests/toolenv.py), which ./dev test makes before the tests
start; the driver (tests/data/daskjq/driver.py) runs with that venv's python, and so do the workers.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import toolenv
from wulfproc import Cluster, running_cluster, wait_until

DRIVER = Path(__file__).resolve().parents[1] / "data" / "daskjq" / "driver.py"


@pytest.fixture(scope="module")
def dask_bin() -> Path:
    return toolenv.ensure("daskjq")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    # qsub and qdel are PBS's by the site's configuration (no WULF_COMPAT_FLAVOUR)
    with running_cluster(tmp_path, config='[scheduler]\nuse_observed = false\n[compat]\nflavour = "pbs"\n') as c:
        c.agent("n1", cpus=2)
        yield c


@pytest.mark.timeout(400)  # (a loaded machine: each worker is a python that imports distributed)
@pytest.mark.parametrize("kind", ["slurm", "pbs"])
def test_two_workers_compute_and_their_jobs_are_cancelled(cluster: Cluster, dask_bin: Path, tmp_path: Path,
                                                          kind: str) -> None:
    compat = tmp_path / "compat-bin"
    cluster.run("wulf", "compat", str(compat))
    logs = cluster.work / "dask-logs"
    env = {**cluster.env, "PATH": f"{compat}:{os.environ['PATH']}", "HOME": str(tmp_path),
           "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "60s"}
    env.pop("WULF_COMPAT_FLAVOUR", None)
    p = subprocess.run([str(dask_bin / "python"), str(DRIVER), kind, str(logs)], capture_output=True, text=True,
                       cwd=cluster.work, env=env, timeout=600)
    worker_logs = "".join(f"--- {f}\n{f.read_text()[-2000:]}" for f in sorted(logs.glob("*")) if f.is_file())
    assert p.returncode == 0, p.stderr[-4000:] + worker_logs
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert (out["total"], out["left"]) == (338350, 0), p.stderr[-3000:]
    jobs = [int(j) for j in out["jobs"]]
    assert len(set(jobs)) == 2
    # each worker ran inside the job whose id the submit command printed, in the dialect's variable
    assert sorted(int(s.split(".")[0]) for s in out["seen"]) == sorted(jobs)
    for job_id in jobs:
        wait_until(f"job {job_id} to end", lambda job_id=job_id: cluster.job(job_id)["state"] not in
                   ("queued", "held", "running"))
        job = cluster.job(job_id)
        assert job["dialect"] == kind and job["cpu_req"] == 1.0, job
        # scaled away: cancelled by scancel / qdel (as seen every time here), or, were the worker quicker to
        # leave when the scheduler retired it, ended by itself just before
        assert job["state"] in ("cancelled", "done"), job
    assert any(logs.iterdir())  # the workers' output went where the directives said
