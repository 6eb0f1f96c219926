"""psij-python (from PyPI) follows jobs on a local wulf cluster with its Slurm and PBS executors, through wulf's
commands (`wulf compat`). Slurm: it writes a script with #SBATCH directives (output to /dev/null, --export),
submits it with sbatch, polls `squeue -O JobArrayID,StateCompact,Reason -t all --me`, cancels with
`scancel -Q`, and the script runs `scontrol show hostnames` to make its node file. PBS (Pro): #PBS
directives (`-l select=...`, `-V`), qsub, `qstat -f -F json -x IDS`, qdel, and $PBS_NODEFILE.

psij-python runs from a venv of its own (see tests/toolenv.py), which ./dev test makes before the tests start;
the driver is tests/data/psij/driver.py.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import toolenv
from wulfproc import Cluster, running_cluster

DRIVER = Path(__file__).resolve().parents[1] / "data" / "psij" / "driver.py"


@pytest.fixture(scope="module")
def psij_bin() -> Path:
    return toolenv.ensure("psij")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(tmp_path, config="[scheduler]\nuse_observed = false\n") as c:
        c.agent("n1", cpus=2)
        yield c


@pytest.mark.timeout(400)
@pytest.mark.parametrize("kind", ["slurm", "pbs"])
def test_jobs_done_failed_and_cancelled_as_psij_sees_them(cluster: Cluster, psij_bin: Path, tmp_path: Path,
                                                         kind: str) -> None:
    compat = tmp_path / "compat-bin"
    cluster.run("wulf", "compat", str(compat))
    work = cluster.work / "psij"
    work.mkdir()
    env = {**cluster.env, "PATH": f"{compat}:{os.environ['PATH']}", "HOME": str(tmp_path),
           "WULF_COMPAT_FLAVOUR": "pbs"}
    p = subprocess.run([str(psij_bin / "python"), str(DRIVER), kind, str(work)], capture_output=True, text=True,
                       cwd=work, env=env, timeout=600)
    aux = "".join(f"--- {f}\n{f.read_text(errors='replace')[-1500:]}" for f in sorted((work / "psij-work").rglob("*"))
                  if f.is_file())
    assert p.returncode == 0, p.stderr[-4000:] + aux
    out = json.loads(p.stdout.strip().splitlines()[-1])
    ok, bad, long = out["ok"], out["bad"], out["long"]
    assert (ok["state"], ok["exit_code"]) == ("COMPLETED", 0), (out, aux)
    # the job's id as the submit command printed it, and its node from the node file psij made (Slurm: with
    # `scontrol show hostnames`) or PBS made
    assert (work / "ok.out").read_text() == f"hello from {ok['id']} on n1\n"
    assert (bad["state"], bad["exit_code"]) == ("FAILED", 3), (out, aux)
    # psij's PBS executor reads only Exit_status 265 (SIGKILL) as cancelled; wulf's job ended on qdel's SIGTERM,
    # and qstat says 271 (256 + 15), as PBS Pro does for a job that ends on it: psij calls it failed
    assert long["state"] == ("CANCELED" if kind == "slurm" else "FAILED"), (out, aux)
    assert cluster.job(int(long["id"].split(".")[0]))["state"] == "cancelled"
