"""Snakemake (from PyPI, with snakemake-executor-plugin-slurm) runs a three-rule workflow on a local wulf
cluster through wulf's Slurm commands (`wulf compat`): sbatch, squeue/sacct, scontrol, sinfo, and srun in
the jobs, as on a Slurm cluster.

Snakemake and the plugin run from a venv of their own (see tests/toolenv.py), which ./dev test makes
before the tests start.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import toolenv
from wulfproc import Cluster, running_cluster

SNAKEFILE = """\
rule all:
    input: "c.txt"

rule a:
    output: "a.txt"
    resources: mem_mb=600, runtime=5
    shell: "echo \\"a on $SLURMD_NODENAME in job $SLURM_JOB_ID\\" > {output}"

rule b:
    input: "a.txt"
    output: "b.txt"
    threads: 2
    resources: mem_mb=600, runtime=5
    shell: "cat {input} > {output}; echo \\"b with $SLURM_CPUS_PER_TASK cpus\\" >> {output}"

rule c:
    input: "b.txt"
    output: "c.txt"
    resources: mem_mb=600, runtime=5
    shell: "cat {input} > {output}; echo c >> {output}"
"""


@pytest.fixture(scope="module")
def snakemake_bin() -> Path:
    return toolenv.ensure("snakemake")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(tmp_path, config="[scheduler]\nuse_observed = false\n") as c:
        c.agent("n1", cpus=2)
        yield c


@pytest.mark.parametrize("status", ["sacct", "squeue"])  # the two ways the executor asks how its jobs are
def test_a_three_rule_workflow_runs_through_the_slurm_executor(cluster: Cluster, snakemake_bin: Path,
                                                               tmp_path: Path, status: str) -> None:
    compat = tmp_path / "slurm-bin"
    cluster.run("wulf", "compat", str(compat))
    flow = cluster.work / "flow"
    flow.mkdir()
    (flow / "Snakefile").write_text(SNAKEFILE)
    env = {**cluster.env, "PATH": f"{compat}:{snakemake_bin}:{os.environ['PATH']}", "HOME": str(tmp_path)}
    p = subprocess.run([str(snakemake_bin / "snakemake"), "--executor", "slurm", "--jobs", "3", "--cores", "2",
                        "--slurm-init-seconds-before-status-checks", "1", "--slurm-status-command", status,
                        "--latency-wait", "5",
                        "--directory", str(flow)],
                       capture_output=True, text=True, cwd=flow, env=env, timeout=600)
    log = p.stdout + p.stderr
    jobs_logs = "".join(f"--- {f}\n{f.read_text()[-3000:]}" for f in sorted(flow.glob(".snakemake/slurm_logs/*/*.log")))
    assert p.returncode == 0, log[-4000:] + jobs_logs
    assert "Falling back" not in log  # (to sacct, when squeue's MinJobAge would not do)
    assert "3 of 4 steps (75%) done" in log and "4 of 4 steps (100%) done" in log, log[-3000:]
    a, b = (flow / "c.txt").read_text().splitlines()[:2]
    assert a.startswith("a on n1 in job ") and b == "b with 2 cpus"
    job = int(a.rsplit(" ", 1)[1])
    done = cluster.job(job)
    assert (done["state"], done["dialect"], done["mem_req_mb"]) == ("done", "slurm", 600.0)
    ran = [j for j in cluster.status()["jobs"] if j.get("dialect") == "slurm"]
    assert len(ran) == 3 and {j["state"] for j in ran} == {"done"}
