"""A script's dialect carried to the job: qr's spec, the store, the agent's environment and output names."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from wulf.agent import launcher
from wulf.cli.qr import _parser, build_specs
from wulf.errors import UsageError
from wulf.model.job import Job, JobState, Origin
from wulf.protocol import StartJob
from wulf.store import open_store
from wulf.store.sqlite import MIGRATIONS, SqliteStore, migrate


def _job(**kw: Any) -> StartJob:
    base: dict[str, Any] = dict(id=42, name="run", user="alice", uid=1000, queue="short", command="job.sh",
                                script="echo\n", cwd="/work", env={"PBS_O_WORKDIR": "/sub"}, output="",
                                keep_script=False, cpu=4.0, mem_mb=2048.0)
    base.update(kw)
    return StartJob(**base)


def test_slurm_environment() -> None:
    env = launcher.job_env(_job(dialect="slurm"), "n1")
    assert {k: env[k] for k in ("SLURM_JOB_ID", "SLURM_JOB_NAME", "SLURM_CPUS_PER_TASK", "SLURM_NTASKS",
                                "SLURM_JOB_NUM_NODES", "SLURM_JOB_NODELIST", "SLURMD_NODENAME",
                                "SLURM_JOB_PARTITION", "SLURM_MEM_PER_NODE", "SLURM_RESTART_COUNT",
                                "SLURM_SUBMIT_DIR")} == {
        "SLURM_JOB_ID": "42", "SLURM_JOB_NAME": "run", "SLURM_CPUS_PER_TASK": "4", "SLURM_NTASKS": "1",
        "SLURM_JOB_NUM_NODES": "1", "SLURM_JOB_NODELIST": "n1", "SLURMD_NODENAME": "n1",
        "SLURM_JOB_PARTITION": "short", "SLURM_MEM_PER_NODE": "2048", "SLURM_RESTART_COUNT": "0",
        "SLURM_SUBMIT_DIR": "/work"}
    assert env["WULF_JOB_ID"] == "42" and not any(k.startswith(("PBS_", "SGE_")) for k in env if k != "PBS_O_WORKDIR")


def test_pbs_and_sge_environment() -> None:
    env = launcher.job_env(_job(dialect="pbs", cpu=2.5), "n1", "/scratch/wulf-42.script.hosts")
    # PBS_JOBID is the id as qsub printed it (ID.HOST, HOST the submit host's short name): psij-python names
    # its exit code file by it
    assert env["PBS_JOBID"] == "42.n1" and env["PBS_JOBNAME"] == "run" and env["PBS_QUEUE"] == "short"
    assert env["PBS_O_WORKDIR"] == "/sub" and env["PBS_O_HOST"] == "n1"  # what qr sent wins
    sent = {"PBS_O_WORKDIR": "/sub", "PBS_O_HOST": "login1.example.org"}
    assert launcher.job_env(_job(dialect="pbs", env=sent), "n1")["PBS_JOBID"] == "42.login1"
    assert env["PBS_NP"] == env["NCPUS"] == env["OMP_NUM_THREADS"] == env["PBS_NUM_PPN"] == "3"
    assert env["PBS_NODEFILE"] == "/scratch/wulf-42.script.hosts" and "SLURM_JOB_ID" not in env
    env = launcher.job_env(_job(dialect="sge", env={}), "n1", "/scratch/wulf-42.script.hosts")
    assert env["JOB_ID"] == "42" and env["JOB_NAME"] == "run" and env["NSLOTS"] == "4"
    assert env["SGE_O_WORKDIR"] == "/work" and env["PE_HOSTFILE"].endswith(".hosts") and env["TMPDIR"] == "/scratch"
    assert "JOB_ID" not in launcher.job_env(_job(), "n1")


def test_hosts_files() -> None:
    assert launcher.hosts_text(_job(dialect="pbs", cpu=2.0), "n1") == "n1\nn1\n"
    assert launcher.hosts_text(_job(dialect="sge"), "n1") == "n1 4 short@n1 UNDEFINED\n"
    assert launcher.hosts_text(_job(dialect="slurm"), "n1") is None


@pytest.mark.parametrize(("pattern", "path"), [
    ("slurm-%j.out", "/work/slurm-42.out"), ("%x-%A_%a.out", "/work/run-42_4294967294.out"),
    ("/logs/%u/%N.%5j", "/logs/alice/n1.00042"), ("100%%.o%j", "/work/100%.o42"), ("a%zb", "/work/a%zb"),
    ("", "/work/wulf-42.out"),
])
def test_output_patterns(pattern: str, path: str) -> None:
    assert launcher.output_path(_job(output=pattern), "n1") == path


def test_staged_hosts_file_is_removed(tmp_path: Path) -> None:
    job = _job(dialect="pbs", cpu=2.0)
    launch = launcher.build_launch(job, str(tmp_path), str(tmp_path), node="n1")
    launcher.stage_script(launch, job, node="n1")
    hosts = launcher.hosts_path(launch.script_file)
    assert hosts is not None and Path(hosts).read_text() == "n1\nn1\n"
    launcher.cleanup(launch.rc_file, launch.script_file, False)
    assert not os.path.exists(hosts) and not os.path.exists(launch.script_file or "")


def test_store_keeps_the_dialect(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    saved = MIGRATIONS[:]
    try:  # a database of before the migration gets it, and its jobs have no dialect
        MIGRATIONS[:] = [m for m in saved if m[0] != "0006_job_dialect"]
        migrate(conn)
    finally:
        MIGRATIONS[:] = saved
    assert migrate(conn) == ["0006_job_dialect"]
    conn.close()

    async def go() -> list[str]:
        store = SqliteStore(path)
        try:
            job = Job(id=1, user="u", uid=1000, origin=Origin.BATCH, state=JobState.QUEUED, command="x", cwd="/",
                      dialect="pbs")
            await asyncio.wait_for(store.insert([job], {}), 10)
            return [j.dialect for j in store.load(10)[0]]
        finally:
            store.close()

    assert asyncio.run(go()) == ["pbs"]


def _specs(tmp_path: Path, script: str, *argv: str) -> list[dict[str, Any]]:
    path = tmp_path / "job.sh"
    path.write_text(script)
    return build_specs(_parser().parse_args([*argv, "-s", str(path)]), str(tmp_path))


SLURM = "#!/bin/bash\n#SBATCH -J fromscript -c 2 --mem=1G -t 10 -p long --export=NONE\n#SBATCH -o logs\necho\n"


def test_qr_applies_directives_under_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "logs").mkdir()
    [spec] = _specs(tmp_path, SLURM)
    assert {k: spec[k] for k in ("name", "cpu", "mem_mb", "mem_limit_mb", "time_limit", "queue", "dialect",
                                 "_env", "output", "cwd")} == {
        "name": "fromscript", "cpu": 2.0, "mem_mb": 1024.0, "mem_limit_mb": 1024.0, "time_limit": 600.0,
        "queue": "long", "dialect": "slurm", "_env": "NONE", "output": "logs/slurm-%j.out", "cwd": str(tmp_path)}
    assert spec["_env_add"]["SLURM_SUBMIT_DIR"] == str(tmp_path)
    [spec] = _specs(tmp_path, SLURM, "--cpu", "3", "-N", "cli", "--env", "ALL", "-q", "q2", "-o", "x.out")
    assert (spec["cpu"], spec["name"], spec["_env"], spec["queue"], spec["output"]) == (3.0, "cli", "ALL", "q2", "x.out")
    assert capsys.readouterr().err == ""


def test_qr_wulf_lines_win_over_the_dialect(tmp_path: Path) -> None:
    [spec] = _specs(tmp_path, "#!/bin/sh\n#SBATCH -c 2 --mem=2G\n#WULF --cpu 4 --nice 3\necho\n")
    assert (spec["cpu"], spec["mem_mb"], spec["nice"]) == (4.0, 2048.0, 3)
    with pytest.raises(UsageError, match="#WULF"):
        _specs(tmp_path, "#WULF -c 'rm -rf'\necho\n")


def test_qr_warns_and_strict_refuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = "#!/bin/sh\n#SBATCH --gres=gpu:1 --account=x --bogus\necho\n"
    [spec] = _specs(tmp_path, script)
    err = capsys.readouterr().err
    assert "qr: job.sh: warning: #SBATCH --gres: generic resources (GPUs) are not supported yet; none are " \
           "allocated" in err
    assert "#SBATCH --bogus: not an sbatch option wulf knows" in err and "#SBATCH --account" in err
    with pytest.raises(UsageError, match=r"^job.sh: #SBATCH --gres: generic .* \(qr --strict"):
        _specs(tmp_path, script, "--strict")
    _specs(tmp_path, "#SBATCH --account=x\necho\n", "--strict")  # meaningless in wulf: still a warning
    with pytest.raises(UsageError, match="^job.sh line 2: #SBATCH --time"):
        _specs(tmp_path, "#!/bin/sh\n#SBATCH --time=soon\necho\n")


def test_qr_array_directives_queue_arrays(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    [spec] = _specs(tmp_path, "#!/bin/sh\n#SBATCH --array=1-3%2\necho\n", "--strict")
    assert (spec["array"], spec["output"]) == ("1-3%2", "slurm-%A_%a.out")
    assert "array" not in capsys.readouterr().err
    [spec] = _specs(tmp_path, "#!/bin/sh\n#$ -t 2-10:2\n#$ -tc 3\necho\n", "--strict")
    assert (spec["array"], spec["output"]) == ("2-10:2%3", f"{os.path.expanduser('~')}/job.sh.o%A.%a")
    [spec] = _specs(tmp_path, "#!/bin/sh\n#PBS -J 0-7\necho\n")
    assert spec["array"] == "0-7"
    [spec] = _specs(tmp_path, "#!/bin/sh\n#SBATCH --array=1-3\necho\n", "--array", "5-6")
    assert spec["array"] == "5-6"  # the command line wins
    with pytest.raises(UsageError, match="^job.sh line 2: #SBATCH --array"):
        _specs(tmp_path, "#!/bin/sh\n#SBATCH --array=1-3%0\necho\n")
    with pytest.raises(UsageError, match="#NEXTSCRIPT"):
        _specs(tmp_path, "#!/bin/sh\n#SBATCH --array=1-3\necho\n#NEXTSCRIPT\necho\n")


def test_qr_pbs_runs_in_home_with_its_shell(tmp_path: Path) -> None:
    [spec] = _specs(tmp_path, "#!/bin/csh\n#PBS -S /bin/bash\n#PBS -l nodes=1:ppn=3\necho\n")
    assert spec["cwd"] == os.path.expanduser("~") and spec["cpu"] == 3.0
    assert spec["output"] == f"{tmp_path}/job.sh.o%j"
    assert spec["script"] == "#!/bin/bash\n#PBS -S /bin/bash\n#PBS -l nodes=1:ppn=3\necho\n"


def test_qr_stdin_script_takes_its_name_from_its_directives() -> None:
    args = _parser().parse_args([])
    [named] = build_specs(args, "/tmp", "#SBATCH -J fromdirective\necho\n")
    [plain] = build_specs(args, "/tmp", "echo\n")
    assert (named["name"], named["command"], plain["name"]) == ("fromdirective", "(stdin)", "stdin")


def test_command_output_directory_and_dialect_bounds(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from wulf.protocol import JobSpec

    [spec] = build_specs(_parser().parse_args(["-o", str(tmp_path), "-c", "true"]), "/tmp")
    assert spec["output"] == f"{tmp_path}/wulf-%j.out"
    assert JobSpec(cwd="/", command="x", dialect="pbs").dialect == "pbs"
    with pytest.raises(ValidationError):
        JobSpec(cwd="/", command="x", dialect="lsf")  # type: ignore[arg-type]


def test_scripts_wait_for_what_their_directives_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    [spec] = _specs(tmp_path, "#!/bin/sh\n#SBATCH --dependency=afterok:12:13,afterany:14\necho\n", "--strict")
    assert spec["depend"] == "afterok:12:13,afterany:14"
    [spec] = _specs(tmp_path, "#!/bin/sh\n#PBS -W depend=afternotok:7\necho\n", "--strict")
    assert spec["depend"] == "afternotok:7"
    [spec] = _specs(tmp_path, "#!/bin/sh\n#$ -hold_jid 5,6\necho\n", "--strict")
    assert spec["depend"] == "afterany:5:6"
    [spec] = _specs(tmp_path, "#!/bin/sh\n#SBATCH -d afterok:3\necho\n", "--after-any", "4")
    assert spec["depend"] == "afterany:4"  # the command line wins
    assert capsys.readouterr().err == ""
    for script, message in (("#SBATCH --dependency=singleton\n", "afterok:ID"),
                            ("#$ -hold_jid prep,12\n", "job ids only"),
                            ("#PBS -W depend=before:3\n", "afterok:ID")):
        with pytest.raises(UsageError, match=message):  # never only a warning: the job would not wait
            _specs(tmp_path, "#!/bin/sh\n" + script + "echo\n")


def test_a_job_is_told_which_attempt_it_is() -> None:
    env = launcher.job_env(_job(dialect="slurm", restarts=2), "n1")
    assert (env["WULF_RESTART_COUNT"], env["SLURM_RESTART_COUNT"]) == ("2", "2")
    assert launcher.job_env(_job(), "n1")["WULF_RESTART_COUNT"] == "0"


def test_store_keeps_dependencies_and_attempts(store_url: str) -> None:
    async def go() -> tuple[str, int, int]:
        store = open_store(store_url)
        try:
            job = Job(id=1, user="u", uid=1000, origin=Origin.BATCH, state=JobState.QUEUED, command="x", cwd="/",
                      depend="afterok:12", retries=3)
            await asyncio.wait_for(store.insert([job], {}), 10)
            job.restarts = 2
            await asyncio.wait_for(store.update([job]), 10)
            [back] = store.load(10)[0]
            return back.depend, back.retries, back.restarts
        finally:
            store.close()

    assert asyncio.run(go()) == ("afterok:12", 3, 2)
