"""Every public job script of tests/data/scripts submitted through the real `sbatch` and `qsub` (`wulf compat`)
to a real server and agent: each is queued with what the directive tables (tests/compat_expected.py) say it
asks for, with a warning naming each directive wulf does not carry out, or refused in one line; a sample,
their programs replaced by lines that print what they would use, runs to its end."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from compat_expected import EXPECTED, SCRIPTS
from wulfproc import Cluster, running_cluster, wait_until

PREFIXES = ("#SBATCH", "#PBS", "#$")
#: how each dialect's wrapper is called: its command, the flavour of qsub, its options that print the id
#: alone, and its option that submits held
SUBMIT = {"slurm": ("sbatch", "pbs", ["--parsable"], "-H"), "pbs": ("qsub", "pbs", [], "-h"),
          "sge": ("qsub", "sge", ["-terse"], "-h")}
#: the scripts the server refuses although their directives read well, and why
REFUSED = {
    "slurm_array_basic.sh": "bad mail address",  # --mail-user=<email_address>, a placeholder
    "pbs_depend.sh": "11111",  # -W depend=afterok:11111: no such job here
    "sge_hold_after_command.sh": "job ids only",  # -hold_jid prep,12: a job's name
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("scripts")
    with running_cluster(root, config="[scheduler]\nuse_observed = false\n") as c:
        c.agent("n1", cpus=2, mem="16G")
        c.run("wulf", "compat", str(root / "bin"))
        yield c


def dialect(name: str) -> str:
    return name.split("_", 1)[0]


def submit(cluster: Cluster, name: str, text: str, held: bool = False) -> subprocess.CompletedProcess[str]:
    command, flavour, terse, hold = SUBMIT[dialect(name)]
    path = cluster.work / name
    path.write_text(text)
    argv = [str(cluster.work.parent / "bin" / command), *terse, *([hold] if held else []), str(path)]
    return subprocess.run(argv, capture_output=True,
                          text=True, cwd=cluster.work, env={**cluster.env, "WULF_COMPAT_FLAVOUR": flavour},
                          timeout=60)


def job_id(p: subprocess.CompletedProcess[str]) -> int:
    """The id as each wrapper prints it: ``12`` (--parsable, -terse), ``12.host`` (PBS), ``12[].host`` (a PBS
    array)."""
    assert p.returncode == 0, p.stderr
    return int(p.stdout.strip().split(".")[0].removesuffix("[]"))


def held_body(name: str) -> str:
    """The script as written, its program cut off after its directives (it is submitted held, and only
    what it asks for is looked at; nothing of it runs)."""
    lines = (SCRIPTS / name).read_text().splitlines(keepends=True)
    last = max(i for i, line in enumerate(lines) if line.lstrip().startswith(PREFIXES))
    return "".join(lines[:last + 1]) + "exit 0\n"


def _asked(job: dict[str, Any], arrays: dict[str, Any]) -> dict[str, Any]:
    """What jstat --json says the job asked for, in the directive table's names."""
    array = arrays.get(str(job.get("array_id")), {}).get("spec")
    return {"name": job["name"], "cpu": job["cpu_req"], "mem_mb": job["mem_req_mb"], "time_limit": job["time_limit"],
            "queue": job["queue"], "array": array, "mem_limit_mb": job["mem_limit_mb"]}


COMPARED = ("name", "cpu", "mem_mb", "time_limit", "queue", "array", "mem_limit_mb")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_script_is_queued_as_its_directives_say_or_refused(cluster: Cluster, name: str) -> None:
    fields, strict_notes = EXPECTED[name]
    p = submit(cluster, name, held_body(name), held=True)
    assert "Traceback" not in p.stderr
    error = str(fields.get("error") or "")
    if error.startswith("line ") or name in REFUSED:
        assert p.returncode == 2 and p.stdout == "", (p.stdout, p.stderr)
        [said] = [line for line in p.stderr.splitlines() if ": warning: " not in line]
        assert said.startswith(f"{SUBMIT[dialect(name)][0]}: ") and (REFUSED.get(name) or error) in said, p.stderr
        return
    jid = job_id(p)
    status = cluster.status()
    job = next(j for j in status["jobs"] if j["id"] == jid)
    assert (job["state"], job["dialect"]) == ("held", dialect(name))
    asked = _asked(job, status["arrays"])
    for key in COMPARED:
        if key not in fields or (fields.get("wulf_args") and key in ("name", "mem_mb")):  # #WULF wins
            continue
        want = fields[key]
        if key == "cpu" and want is None:
            want = 1.0  # wulf's default
        if key == "mem_limit_mb" and want is None:
            continue  # the site's default applies
        assert asked[key] == want, (key, asked[key], want)
    for directive in strict_notes:
        assert f"warning: {directive}" in p.stderr, (directive, p.stderr)
    cluster.run("qcancel", str(jid))


def program(name: str, body: str) -> str:
    """The script's directives (and what comes before them), then ``body`` for its program."""
    return held_body(name).removesuffix("exit 0\n") + body


ENV = "env | grep -E '^(SLURM_JOB_ID|SLURM_ARRAY_TASK_ID|PBS_JOBID|PBS_JOBNAME|JOB_ID|SGE_TASK_ID)=' | sort\n"


def _env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def _wait(cluster: Cluster, *ids: int) -> None:
    cluster.run("qwait", *map(str, ids), check=False, timeout=300)


def test_a_sample_runs_to_its_end(cluster: Cluster) -> None:
    work = cluster.work
    slurm = job_id(submit(cluster, "slurm_openmp_hello.sh", program("slurm_openmp_hello.sh", ENV)))
    array = job_id(submit(cluster, "slurm_array_nonsequential.sh", program("slurm_array_nonsequential.sh", ENV)))
    pbs = job_id(submit(cluster, "pbs_vsc_indented.sh", program("pbs_vsc_indented.sh", 'cd "$PBS_O_WORKDIR"\n' + ENV)))
    (work / "logs").mkdir()
    sge = job_id(submit(cluster, "sge_array_logs.sh", program("sge_array_logs.sh", ENV)))
    _wait(cluster, slurm, array, pbs, sge)
    assert cluster.job(slurm)["state"] == "done"
    assert _env(work / "res_omp_hello_world.out")["SLURM_JOB_ID"] == str(slurm)
    tasks = {j["array_index"]: j for j in cluster.status()["jobs"] if j.get("array_id") == array}
    assert sorted(tasks) == [1, 6, 7, 12] and {j["state"] for j in tasks.values()} == {"done"}
    for i, task in tasks.items():
        env = _env(work / f"{task['name']}-{array}_{i}.out")  # %x-%A_%a.out
        assert (env["SLURM_JOB_ID"], env["SLURM_ARRAY_TASK_ID"]) == (str(task["id"]), str(i))
    assert cluster.job(pbs)["state"] == "done"
    env = _env(work / "stdout")  # -o stdout, in the directory qsub ran in
    # PBS_JOBID as qsub printed it: ID.HOST
    assert env["PBS_JOBID"] == f"{pbs}.{socket.gethostname().split('.')[0]}" and env["PBS_JOBNAME"] == "my_serial_job"
    wait_until("the array's 90 output files", lambda: len(list((work / "logs").iterdir())) == 90)
    logs = sorted((work / "logs").iterdir())
    assert logs[0].name.startswith(f"optim_S2S3.o{sge}.")
    assert {_env(f)["SGE_TASK_ID"] for f in logs} == {str(i) for i in range(1, 91)}
