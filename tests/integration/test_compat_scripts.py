"""Job scripts from Slurm, PBS and Grid Engine (tests/data/scripts) queued with `qr -s` on a real local
cluster: the environment the job sees, where its output goes, and what jstat says it asked for."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from wulfproc import Cluster

SCRIPTS = Path(__file__).parent.parent / "data" / "scripts"
PREFIXES = ("#SBATCH", "#PBS", "#$")


def directives_of(name: str) -> str:
    """The script up to its last directive line: its program is left out, for the test's to follow."""
    lines = (SCRIPTS / name).read_text().splitlines(keepends=True)
    last = max(i for i, line in enumerate(lines) if line.lstrip().startswith(PREFIXES))
    return "".join(lines[:last + 1])


def queue(cluster: Cluster, name: str, body: str, *args: str) -> tuple[int, str]:
    """Queue the script's directives followed by ``body`` with qr -s; its id and what qr said on stderr."""
    path = cluster.work / name
    path.write_text(directives_of(name) + body)
    p = cluster.run("qr", "--json", *args, "-s", str(path))
    [jid] = json.loads(p.stdout)["jobs"]
    cluster.run("qwait", str(jid), check=False)
    return jid, p.stderr


def env_of(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


PRINT_ENV = "env | grep -E '^(SLURM|SLURMD|PBS|SGE|WULF|NCPUS|OMP|JOB|NSLOTS|PE_|TMPDIR)' | sort\n"


def test_slurm_openmp_script(cluster: Cluster) -> None:
    jid, err = queue(cluster, "slurm_openmp_hello.sh", PRINT_ENV)
    assert err == ""
    job = cluster.job(jid)
    assert (job["state"], job["name"], job["cpu_req"], job["mem_req_mb"], job["time_limit"], job["dialect"]) == \
        ("done", "omp_hello_world", 2.0, 200.0, 600.0, "slurm")
    assert job["mem_limit_mb"] == 200.0
    env = env_of((cluster.work / "res_omp_hello_world.out").read_text())
    assert {k: env[k] for k in ("SLURM_JOB_ID", "SLURM_JOB_NAME", "SLURM_CPUS_PER_TASK", "SLURM_NTASKS",
                                "SLURM_JOB_NUM_NODES", "SLURM_JOB_NODELIST", "SLURMD_NODENAME",
                                "SLURM_JOB_PARTITION", "SLURM_MEM_PER_NODE", "SLURM_SUBMIT_DIR",
                                "SLURM_SUBMIT_HOST", "WULF_JOB_ID")} == {
        "SLURM_JOB_ID": str(jid), "SLURM_JOB_NAME": "omp_hello_world", "SLURM_CPUS_PER_TASK": "2",
        "SLURM_NTASKS": "1", "SLURM_JOB_NUM_NODES": "1", "SLURM_JOB_NODELIST": "n1", "SLURMD_NODENAME": "n1",
        "SLURM_JOB_PARTITION": "default", "SLURM_MEM_PER_NODE": "200", "SLURM_SUBMIT_DIR": str(cluster.work),
        "SLURM_SUBMIT_HOST": socket.gethostname(), "WULF_JOB_ID": str(jid)}
    assert not any(k.startswith(("PBS_", "SGE_")) for k in env)


def test_slurm_default_output_and_command_line_wins(cluster: Cluster) -> None:
    jid, err = queue(cluster, "slurm_mpi_tasks.sh", 'echo "cpus=$SLURM_CPUS_PER_TASK"\n', "--cpu", "1", "--mem", "64")
    assert "mail-type" not in err  # applied: the job mails its owner (qr --mail-type)
    job = cluster.job(jid)
    assert (job["state"], job["cpu_req"], job["mem_req_mb"], job["mem_limit_mb"]) == ("done", 1.0, 64.0, 8192.0)
    assert (cluster.work / f"slurm-{jid}.out").read_text() == "cpus=1\n"


def test_slurm_time_limit_is_enforced(cluster: Cluster) -> None:
    path = cluster.work / "short.sh"
    path.write_text("#!/bin/sh\n#SBATCH --time=0:01   # a second (minutes:seconds)\n#SBATCH -o short.%j.log\n"
                    "sleep 60\n")
    [jid] = cluster.submit("-s", str(path))
    cluster.run("qwait", str(jid), check=False, timeout=60)
    job = cluster.job(jid)
    assert (job["state"], job["time_limit"]) == ("failed", 1.0) and "time" in job["reason"]


def test_pbs_script_runs_in_home_with_node_file(cluster: Cluster) -> None:
    body = 'echo "start=$PWD"\ncd "$PBS_O_WORKDIR"\n' + PRINT_ENV + 'echo "nodes=$(cat "$PBS_NODEFILE" | wc -l)"\n'
    jid, err = queue(cluster, "pbs_vsc_indented.sh", body)
    assert "#PBS -e: a separate file for stderr is not supported yet" in err and "#PBS -m" not in err
    job = cluster.job(jid)
    assert (job["mail_type"], job["mail_user"]) == ("END", "root")  # #PBS -m e: its owner, at the end
    assert (job["state"], job["name"], job["cpu_req"], job["time_limit"], job["dialect"], job["cwd"]) == \
        ("done", "my_serial_job", 1.0, 3600.0, "pbs", os.path.expanduser("~"))
    text = (cluster.work / "stdout").read_text()  # -o stdout: in the directory qsub ran in
    env = env_of(text)
    assert env["start"] == os.path.expanduser("~") and env["nodes"] == "1"
    assert (env["PBS_JOBID"], env["PBS_JOBNAME"], env["PBS_O_WORKDIR"], env["PBS_QUEUE"], env["PBS_NP"],
            env["NCPUS"], env["OMP_NUM_THREADS"]) == (f"{jid}.{socket.gethostname().split('.')[0]}", "my_serial_job", str(cluster.work), "default",
                                                      "1", "1", "1")
    assert env["PBS_O_HOST"] == socket.gethostname() and not os.path.exists(env["PBS_NODEFILE"])  # removed after


def test_pbs_output_directory_gets_the_default_name(cluster: Cluster) -> None:
    out = cluster.work / "logs"
    out.mkdir()
    path = cluster.work / "basic.pbs"
    path.write_text((SCRIPTS / "pbs_basic_dir_output.sh").read_text().replace("OUTDIR", str(out)))
    [jid] = cluster.submit("-s", str(path))
    cluster.run("qwait", str(jid))
    assert (out / f"script_name.o{jid}").read_text() == "start\nfinished\n"
    assert cluster.job(jid)["queue"] == "route"


def test_sge_script_with_cwd_slots_and_paths(cluster: Cluster) -> None:
    body = PRINT_ENV + 'echo "pe=$(cat "$PE_HOSTFILE")"\necho "dir=$PWD"\n'
    jid, err = queue(cluster, "sge_snakemake_template.sh", body)
    assert "#$ -e: a separate file for stderr is not supported yet" in err
    job = cluster.job(jid)
    assert (job["state"], job["name"], job["queue"], job["mem_limit_mb"], job["mem_req_mb"], job["dialect"]) == \
        ("done", "test", "all.q", 2048.0, 2048.0, "sge")
    env = env_of((cluster.work / f"log.test.{jid}.out").read_text())
    assert (env["JOB_ID"], env["JOB_NAME"], env["NSLOTS"], env["SGE_O_WORKDIR"], env["dir"], env["SGE_TASK_ID"]) == \
        (str(jid), "test", "1", str(cluster.work), str(cluster.work), "undefined")
    assert env["pe"] == "n1 1 all.q@n1 UNDEFINED"


def test_strict_refuses_and_bad_values_queue_nothing(cluster: Cluster) -> None:
    before = len(cluster.status()["jobs"])
    path = cluster.work / "array.sh"
    path.write_text("#!/bin/sh\n#SBATCH --gres=gpu:1\necho never\n")
    p = cluster.run("qr", "--strict", "-s", str(path), check=False)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.startswith("qr: array.sh: #SBATCH --gres") and p.stderr.count("\n") == 1
    path.write_text((SCRIPTS / "slurm_array_basic.sh").read_text())  # its --mail-user=<email_address>
    p = cluster.run("qr", "-s", str(path), check=False)
    assert p.returncode == 2 and "bad mail address" in p.stderr and p.stderr.count("\n") == 1
    path.write_text((SCRIPTS / "pbs_torque_placeholders.sh").read_text())
    p = cluster.run("qr", "-s", str(path), check=False)
    assert p.returncode == 2 and p.stderr == (
        "qr: array.sh line 6: #PBS -l nodes ppn: 'XXXthreadsXXX' is not a whole number from 1 to 100000\n")
    p = cluster.run("qr", input=(SCRIPTS / "slurm_placeholders_relion.sh").read_text(), check=False)
    assert p.returncode == 2 and "(stdin) line 4: #SBATCH --ntasks" in p.stderr
    assert len(cluster.status()["jobs"]) == before
