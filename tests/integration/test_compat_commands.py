"""Slurm's, PBS's and Grid Engine's commands (`wulf compat DIR`) on a real local cluster: what they print is
what the tools that parse those systems' output read (psij-python, Snakemake, Dask-jobqueue)."""

from __future__ import annotations

import getpass
import json
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from wulfproc import Cluster, running_cluster, wait_until

SHORT_HOST = socket.gethostname().split(".")[0]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """One node placed by allocations only: what else the machine runs does not hold these jobs back."""
    with running_cluster(tmp_path, config="[scheduler]\nuse_observed = false\n") as c:
        c.agent("n1", cpus=2)
        yield c


@pytest.fixture
def compat(cluster: Cluster, tmp_path: Path) -> Path:
    bin_dir = tmp_path / "compat-bin"
    p = cluster.run("wulf", "compat", str(bin_dir))
    assert "sbatch" in p.stdout
    return bin_dir


def run(cluster: Cluster, bin_dir: Path, *argv: str, check: bool = True, flavour: str = "pbs",
        input: str | None = None) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([str(bin_dir / argv[0]), *argv[1:]], capture_output=True, text=True, cwd=cluster.work,
                       env={**cluster.env, "WULF_COMPAT_FLAVOUR": flavour}, timeout=60, input=input)
    if check:
        assert p.returncode == 0, (argv, p.returncode, p.stderr)
    return p


def ended(cluster: Cluster, job_id: int) -> dict[str, object]:
    cluster.run("qwait", str(job_id), check=False)
    return cluster.job(job_id)


def test_compat_writes_its_commands_and_keeps_others_files(cluster: Cluster, tmp_path: Path) -> None:
    d = tmp_path / "bin"
    d.mkdir()
    (d / "squeue").write_text("#!/bin/sh\necho the real one\n")
    p = cluster.run("wulf", "compat", str(d), check=False)
    assert p.returncode == 2 and "squeue" in p.stderr and len(p.stderr.splitlines()) == 1
    assert (d / "squeue").read_text() == "#!/bin/sh\necho the real one\n"
    cluster.run("wulf", "compat", "--force", str(d))
    cluster.run("wulf", "compat", str(d))  # its own files are replaced without --force
    assert sorted(x.name for x in d.iterdir()) == ["pbsnodes", "qacct", "qdel", "qhold", "qrls", "qselect", "qstat",
                                                   "qsub", "sacct", "sbatch", "scancel", "scontrol", "sinfo", "squeue",
                                                   "srun"]


def test_sbatch_command_line_wins_over_directives(cluster: Cluster, compat: Path) -> None:
    script = cluster.work / "job.sh"
    script.write_text("#!/bin/sh\n#SBATCH -J from_script\n#SBATCH --cpus-per-task=2\n"
                      'echo "$SLURM_JOB_NAME $SLURM_CPUS_PER_TASK $SLURM_JOB_ID"\n')
    p = run(cluster, compat, "sbatch", "--parsable", "-J", "from_cli", "--mem=100M", str(script))
    job_id = int(p.stdout.strip())
    job = ended(cluster, job_id)
    assert (job["state"], job["name"], job["cpu_req"], job["mem_req_mb"], job["dialect"]) == \
        ("done", "from_cli", 2.0, 100.0, "slurm")
    assert (cluster.work / f"slurm-{job_id}.out").read_text() == f"from_cli 2 {job_id}\n"
    assert "#SBATCH" not in cluster.run("jstat", "--json").stdout or True
    stored = (cluster.work / "job.sh").read_text()
    assert "from_cli" not in stored  # the script runs as written


def test_sbatch_wrap_squeue_and_sacct_like_states(cluster: Cluster, compat: Path) -> None:
    p = run(cluster, compat, "sbatch", "--wrap", "sleep 30", "-J", "sleeper", "-t", "5")
    m = re.fullmatch(r"Submitted batch job (\d+)\n", p.stdout)
    assert m, p.stdout
    job_id = int(m.group(1))
    wait_until("the job to run", lambda: cluster.job(job_id)["state"] == "running")
    line = run(cluster, compat, "squeue", "-h", "-j", str(job_id), "-o", "%i %t %T %j %l %P").stdout
    assert line == f"{job_id} R RUNNING sleeper 5:00 default\n"
    table = run(cluster, compat, "squeue").stdout.splitlines()
    assert table[0].split() == ["JOBID", "PARTITION", "NAME", "USER", "ST", "TIME", "NODES", "NODELIST(REASON)"]
    assert table[1].split()[0] == str(job_id) and table[1].split()[-1] == "n1"
    fields = run(cluster, compat, "squeue", "--noheader", "-O", "JobID,State,Name:10").stdout
    assert fields.split() == [str(job_id), "RUNNING", "sleeper"]
    data = json.loads(run(cluster, compat, "squeue", "--json", "--me").stdout)
    assert [(j["job_id"], j["job_state"]) for j in data["jobs"]] == [(job_id, ["RUNNING"])]
    run(cluster, compat, "scancel", str(job_id))
    assert ended(cluster, job_id)["state"] == "cancelled"
    assert run(cluster, compat, "squeue", "-h").stdout == ""  # ended jobs are not in the queue...
    line = run(cluster, compat, "squeue", "-h", "-j", str(job_id), "-o", "%i %T").stdout
    assert line == f"{job_id} CANCELLED\n"  # ...but one asked for by id is shown
    again = run(cluster, compat, "scancel", str(job_id))
    assert "already completing or completed" in again.stderr


def test_sbatch_wait_gives_the_jobs_exit_code(cluster: Cluster, compat: Path) -> None:
    p = run(cluster, compat, "sbatch", "--wait", "--wrap", "exit 3", check=False)
    assert p.returncode == 3 and p.stdout.startswith("Submitted batch job ")


def test_sinfo_shows_the_node(cluster: Cluster, compat: Path) -> None:
    lines = run(cluster, compat, "sinfo").stdout.splitlines()
    assert lines[0].split() == ["PARTITION", "AVAIL", "TIMELIMIT", "NODES", "STATE", "NODELIST"]
    # idle, or mix (alloc) when work outside wulf (other tests) takes some (all) of the machine's cpus
    row = lines[1].split()
    assert row[:4] + row[5:] == ["default*", "up", "infinite", "1", "n1"] and row[4] in ("idle", "mix", "alloc")
    assert run(cluster, compat, "sinfo", "-N", "-h").stdout.split()[:3] == ["n1", "1", "default*"]
    assert run(cluster, compat, "sinfo", "-o", "%P").stdout == "PARTITION\ndefault*\n"  # what Snakemake asks
    assert run(cluster, compat, "sinfo", "-h", "-N", "-o", "%N|%c|%T").stdout.split("|")[:2] == ["n1", "2"]
    drained = cluster.run("jobmgr", "drain", "n1")
    assert drained.returncode == 0
    assert run(cluster, compat, "sinfo", "-h").stdout.split()[4] == "drain"


def test_slurm_commands_refuse_bad_input_in_one_line(cluster: Cluster, compat: Path) -> None:
    for argv in (("sbatch", "--bogus", "x.sh"), ("squeue", "-o", "%b"), ("squeue", "-t", "NOPE"),
                 ("scancel",), ("scancel", "abc"), ("scancel", "12_[3-1]"), ("sbatch", "--wrap", "true", "x.sh"),
                 ("scancel", "-s", "NOSUCH", "1"), ("scancel", "-s", "NOSUCH", "999999")):
        p = run(cluster, compat, *argv, check=False)
        assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, (argv, p.stderr)
        assert "Traceback" not in p.stderr
    p = run(cluster, compat, "sbatch", input="echo no shebang\n", check=False)
    assert p.returncode == 2 and "#!" in p.stderr


def test_pbs_qsub_qstat_qdel(cluster: Cluster, compat: Path) -> None:
    script = cluster.work / "pbs.sh"
    script.write_text("#!/bin/sh\n#PBS -N pbsjob\n#PBS -l walltime=00:10:00\n"
                      'cd "$PBS_O_WORKDIR"; echo "$PBS_JOBNAME $PBS_JOBID"\nsleep 30\n')
    p = run(cluster, compat, "qsub", "-l", "ncpus=1", str(script))
    pbs_id = p.stdout.strip()
    assert re.fullmatch(rf"\d+\.{re.escape(SHORT_HOST)}", pbs_id), pbs_id
    job_id = int(pbs_id.split(".")[0])
    wait_until("the job to run", lambda: cluster.job(job_id)["state"] == "running")
    table = run(cluster, compat, "qstat").stdout.splitlines()
    assert table[0].split()[:2] == ["Job", "id"] and table[2].split()[0] == pbs_id[:16]
    assert table[2].split()[-2:] == ["R", "default"]
    full = run(cluster, compat, "qstat", "-f", pbs_id).stdout
    assert f"Job Id: {pbs_id}" in full and "    job_state = R" in full and "    Job_Name = pbsjob" in full
    run(cluster, compat, "qdel", pbs_id)
    assert ended(cluster, job_id)["state"] == "cancelled"
    gone = run(cluster, compat, "qstat", pbs_id, check=False)
    assert gone.returncode == 35 and "Job has finished" in gone.stderr
    data = json.loads(run(cluster, compat, "qstat", "-f", "-F", "json", "-x", pbs_id).stdout)
    attrs = data["Jobs"][pbs_id]
    assert attrs["job_state"] == "F" and attrs["Job_Name"] == "pbsjob" and attrs["Exit_status"] != 0
    unknown = run(cluster, compat, "qstat", "999999", check=False)
    assert unknown.returncode == 153 and "Unknown Job Id" in unknown.stderr


def test_pbs_qsub_of_a_command_and_exit_status(cluster: Cluster, compat: Path) -> None:
    job_id = int(run(cluster, compat, "qsub", "-N", "five", "--", "/bin/sh", "-c", "exit 5").stdout.split(".")[0])
    ended(cluster, job_id)
    attrs = json.loads(run(cluster, compat, "qstat", "-x", "-f", "-F", "json", str(job_id)).stdout)["Jobs"]
    assert [(a["Job_Name"], a["Exit_status"]) for a in attrs.values()] == [("five", 5)]


def test_sge_qsub_qstat_qdel(cluster: Cluster, compat: Path) -> None:
    p = run(cluster, compat, "qsub", "-b", "y", "-N", "sgejob", "-cwd", "sleep", "30", flavour="sge")
    m = re.fullmatch(r'Your job (\d+) \("sgejob"\) has been submitted\n', p.stdout)
    assert m, p.stdout
    job_id = int(m.group(1))
    wait_until("the job to run", lambda: cluster.job(job_id)["state"] == "running")
    table = run(cluster, compat, "qstat", flavour="sge").stdout.splitlines()
    assert table[0].split()[:4] == ["job-ID", "prior", "name", "user"]
    row = table[2].split()
    assert (row[0], row[2], row[4]) == (str(job_id), "sgejob", "r")
    assert f"job_number:                 {job_id}" in run(cluster, compat, "qstat", "-j", str(job_id),
                                                         flavour="sge").stdout
    out = run(cluster, compat, "qdel", str(job_id), flavour="sge").stdout
    assert re.fullmatch(rf"\S+ has deleted job {job_id}\n", out), out
    assert ended(cluster, job_id)["state"] == "cancelled"
    terse = run(cluster, compat, "qsub", "-terse", "-sync", "y", "-b", "y", "true", flavour="sge")
    assert terse.stdout.strip().isdigit()


def test_sacct_and_qacct_tell_how_jobs_ended(cluster: Cluster, compat: Path) -> None:
    ids = {}
    for name, cmd in (("a1", "true"), ("a2", "exit 2"), ("a3", "sleep 60")):
        ids[name] = int(run(cluster, compat, "sbatch", "--parsable", "-J", name, "--wrap", cmd).stdout)
    cluster.run("qwait", str(ids["a1"]), str(ids["a2"]), check=False)
    wait_until("a3 to run", lambda: cluster.job(ids["a3"])["state"] == "running")
    # what Snakemake's Slurm executor asks
    out = run(cluster, compat, "sacct", "-X", "--parsable2", "--noheader", "--format=JobIdRaw,State",
              "--name", "a1,a2,a3", "--starttime", "now-1days", "--endtime", "now").stdout
    assert sorted(out.splitlines()) == sorted([f"{ids['a1']}|COMPLETED", f"{ids['a2']}|FAILED",
                                               f"{ids['a3']}|RUNNING"])
    assert run(cluster, compat, "sacct", "-j", str(ids["a2"]), "-o", "JobID,ExitCode", "-P", "-n").stdout == \
        f"{ids['a2']}|2:0\n"
    table = run(cluster, compat, "sacct", "-j", f"{ids['a1']},{ids['a2']}").stdout.splitlines()
    assert table[0].split() == ["JobID", "JobName", "Partition", "Account", "AllocCPUS", "State", "ExitCode"]
    assert table[2].split()[0] == str(ids["a1"]) and table[2].split()[-2:] == ["COMPLETED", "0:0"]
    # the Reason column in Slurm's words, whatever wulf's sentence
    reasons = run(cluster, compat, "sacct", "-j", f"{ids['a1']},{ids['a2']},{ids['a3']}", "-o", "JobID,Reason",
                  "-P", "-n").stdout
    assert sorted(reasons.splitlines()) == sorted([f"{ids['a1']}|None", f"{ids['a2']}|NonZeroExitCode",
                                                   f"{ids['a3']}|None"])
    bad = run(cluster, compat, "sacct", "--format", "Bogus", check=False)
    assert bad.returncode == 2 and "Invalid field" in bad.stderr and len(bad.stderr.splitlines()) == 1
    record = run(cluster, compat, "qacct", "-j", str(ids["a2"]), flavour="sge").stdout
    assert f"jobnumber    {ids['a2']}\n" in record and "exit_status  2\n" in record and "jobname      a2\n" in record
    run(cluster, compat, "scancel", str(ids["a3"]))


def test_scancel_of_one_array_task(cluster: Cluster, compat: Path) -> None:
    script = cluster.work / "arr.sh"
    script.write_text("#!/bin/sh\n#SBATCH --array=1-3\nsleep 60\n")
    array = int(run(cluster, compat, "sbatch", "--parsable", str(script)).stdout)
    run(cluster, compat, "scancel", f"{array}_2")
    states = {j["array_index"]: j["state"] for j in cluster.status()["jobs"] if j.get("array_id") == array}
    assert states[2] == "cancelled" and states[1] != "cancelled" and states[3] != "cancelled"
    run(cluster, compat, "scancel", str(array))
    states = {j["array_index"]: j["state"] for j in cluster.status()["jobs"] if j.get("array_id") == array}
    assert set(states.values()) == {"cancelled"}


def test_sbatch_passes_arguments_to_the_script(cluster: Cluster, compat: Path) -> None:
    script = cluster.work / "args.sh"
    script.write_text('#!/bin/bash\n#SBATCH -J argjob\necho "$#:$1:$2:$0"\n')
    job_id = int(run(cluster, compat, "sbatch", "--parsable", str(script), "one two", "it's").stdout)
    assert ended(cluster, job_id)["state"] == "done"
    count, one, two, zero = (cluster.work / f"slurm-{job_id}.out").read_text().strip().split(":")
    assert (count, one, two) == ("2", "one two", "it's") and zero.endswith(".script")
    py = cluster.work / "args.py"
    py.write_text("#!/usr/bin/env python3\nimport sys\nprint(sys.argv[1:])\n")
    bad = run(cluster, compat, "sbatch", str(py), "x", check=False)
    assert bad.returncode == 2 and "python3" in bad.stderr and len(bad.stderr.splitlines()) == 1
    sge = run(cluster, compat, "qsub", "-terse", "-sync", "y", str(script), "a", "b", flavour="sge")
    home_out = Path.home() / f"args.sh.o{sge.stdout.strip()}"  # Grid Engine's default: the home directory
    text = home_out.read_text()
    home_out.unlink()
    assert text.startswith("2:a:b:")
    torque = run(cluster, compat, "qsub", "-F", "x y", str(script)).stdout.split(".")[0]
    ended(cluster, int(torque))
    assert (cluster.work / f"args.sh.o{torque}").read_text().startswith("2:x:y:")


def test_submitted_held_until_released(cluster: Cluster, compat: Path) -> None:
    job_id = int(run(cluster, compat, "sbatch", "--parsable", "-H", "--wrap", "true").stdout)
    assert cluster.job(job_id)["state"] == "held"
    line = run(cluster, compat, "squeue", "-h", "-j", str(job_id), "-o", "%i %t %r").stdout
    assert line == f"{job_id} PD JobHeldUser\n"
    pbs = int(run(cluster, compat, "qsub", "-h", "--", "/bin/true").stdout.split(".")[0])
    sge = int(run(cluster, compat, "qsub", "-terse", "-h", "-b", "y", "true", flavour="sge").stdout)
    [qr] = cluster.submit("--hold", "-c", "true")
    assert [cluster.job(i)["state"] for i in (pbs, sge, qr)] == ["held"] * 3
    cluster.run("qrls", str(job_id), str(pbs), str(sge), str(qr))
    assert [ended(cluster, i)["state"] for i in (job_id, pbs, sge, qr)] == ["done"] * 4
    script = cluster.work / "held.sh"
    script.write_text("#!/bin/sh\n#SBATCH --hold\n#SBATCH --array=1-2\ntrue\n")
    array = int(run(cluster, compat, "sbatch", "--parsable", str(script)).stdout)
    assert {j["state"] for j in cluster.status()["jobs"] if j.get("array_id") == array} == {"held"}
    cluster.run("qrls", str(array))
    assert ended(cluster, array + 1)["state"] == "done"


def test_task_ranges_and_pending_arrays_as_slurm_shows_them(cluster: Cluster, compat: Path) -> None:
    script = cluster.work / "arr.sh"
    script.write_text("#!/bin/sh\n#SBATCH --array=1-1000%2\n#SBATCH -J many\nsleep 300\n")
    array = int(run(cluster, compat, "sbatch", "--parsable", str(script)).stdout)
    wait_until("two tasks to run", lambda: sum(j["state"] == "running" for j in cluster.status()["jobs"]
                                                if j.get("array_id") == array) == 2)
    lines = run(cluster, compat, "squeue", "-h", "-j", str(array), "-o", "%i %t").stdout.splitlines()
    assert lines == [f"{array}_[3-1000%2] PD", f"{array}_1 R", f"{array}_2 R"]
    assert run(cluster, compat, "squeue", "-h", "-j", f"{array}_2", "-o", "%i %F %K %A").stdout == \
        f"{array}_2 {array} 2 {array + 1}\n"
    run(cluster, compat, "scancel", f"{array}_[1-2,5]")
    states = {j["array_index"]: j["state"] for j in cluster.status()["jobs"] if j.get("array_id") == array}
    assert [i for i, s in states.items() if s == "cancelled"] == [1, 2, 5]
    wait_until("two more tasks to run", lambda: sum(j["state"] == "running" for j in cluster.status()["jobs"]
                                                     if j.get("array_id") == array) == 2)
    lines = run(cluster, compat, "squeue", "-h", "-j", str(array), "-t", "PD,R", "-o", "%i %t").stdout.splitlines()
    assert lines == [f"{array}_[6-1000%2] PD", f"{array}_3 R", f"{array}_4 R"]
    assert len(run(cluster, compat, "squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i").stdout.splitlines()) == 997
    run(cluster, compat, "scancel", str(array))


def _record(text: str) -> dict[str, str]:
    """scontrol's key=value words (values without blanks, as in what these tests ask)."""
    return dict(w.split("=", 1) for w in text.split() if "=" in w)


def test_scontrol_show_job_hold_release_and_config(cluster: Cluster, compat: Path) -> None:
    script = cluster.work / "sc.sh"
    script.write_text("#!/bin/sh\n#SBATCH -J scjob\n#SBATCH -c 2\n#SBATCH --mem=100M\n#SBATCH -t 10\nsleep 60\n")
    job_id = int(run(cluster, compat, "sbatch", "--parsable", str(script)).stdout)
    wait_until("the job to run", lambda: cluster.job(job_id)["state"] == "running")
    out = run(cluster, compat, "scontrol", "show", "job", str(job_id)).stdout
    assert out.startswith(f"JobId={job_id} JobName=scjob\n   UserId=")
    rec = _record(out)
    assert (rec["JobState"], rec["Reason"], rec["NodeList"], rec["NumCPUs"], rec["MinMemoryNode"],
            rec["TimeLimit"], rec["ExitCode"], rec["Partition"]) == \
        ("RUNNING", "None", "n1", "2", "100M", "00:10:00", "0:0", "default")
    assert rec["WorkDir"] == str(cluster.work) and rec["StdOut"] == str(cluster.work / f"slurm-{job_id}.out")
    assert re.fullmatch(r"\d\d:\d\d:\d\d", rec["RunTime"]) and rec["StartTime"] != "Unknown"
    one = run(cluster, compat, "scontrol", "-o", "show", "job", str(job_id)).stdout
    assert one.count("\n") == 1 and _record(one)["JobId"] == str(job_id)
    second = int(run(cluster, compat, "sbatch", "--parsable", "-c", "2", "--wrap", "true").stdout)  # no room yet
    run(cluster, compat, "scontrol", "hold", str(second))
    assert cluster.job(second)["state"] == "held"
    run(cluster, compat, "scontrol", "release", str(second))
    assert cluster.job(second)["state"] == "queued"
    run(cluster, compat, "scancel", str(job_id))
    assert ended(cluster, second)["state"] == "done"
    ended(cluster, job_id)
    assert _record(run(cluster, compat, "scontrol", "show", "job", str(job_id)).stdout)["JobState"] == "CANCELLED"
    # an array's tasks, held and released
    arr = cluster.work / "sc_arr.sh"
    arr.write_text("#!/bin/sh\n#SBATCH --array=1-2\nexit 3\n")
    array = int(run(cluster, compat, "sbatch", "--parsable", "-H", str(arr)).stdout)
    task = _record(run(cluster, compat, "scontrol", "show", "job", f"{array}_2").stdout)
    assert (task["JobId"], task["ArrayJobId"], task["ArrayTaskId"], task["JobState"], task["Reason"]) == \
        (str(array + 1), str(array), "2", "PENDING", "JobHeldUser")
    run(cluster, compat, "scontrol", "release", str(array))
    assert ended(cluster, array + 1)["state"] == "failed"
    assert _record(run(cluster, compat, "scontrol", "show", "job", f"{array}_2").stdout)["ExitCode"] == "3:0"
    # what wulf does not do is refused in one line
    for argv in (("scontrol", "requeue", str(job_id)), ("scontrol", "update", f"JobId={job_id}", "Account=x"),
                 ("scontrol", "show", "job", "999999"), ("scontrol", "show", "bogus")):
        p = run(cluster, compat, *argv, check=False)
        assert p.returncode != 0 and len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr, argv
    config = run(cluster, compat, "scontrol", "show", "config").stdout
    keys = {line.split("=")[0].strip(): line.split("=", 1)[1].strip() for line in config.splitlines() if "=" in line}
    assert keys["ClusterName"] == "wulf" and keys["SlurmctldHost[0]"] and keys["SLURM_VERSION"]
    assert re.fullmatch(r"\d+ sec", keys["MinJobAge"]) and keys["KillWait"] == "10 sec"
    assert keys["DefMemPerNode"] == "32" and keys["MaxArraySize"] == str(10**9 + 1)


def test_scontrol_update_is_jmods_change(cluster: Cluster, compat: Path) -> None:
    first = int(run(cluster, compat, "sbatch", "--parsable", "--wrap", "sleep 30").stdout)
    held = int(run(cluster, compat, "sbatch", "--parsable", "-H", "-c", "2", "-t", "10", "--wrap", "true").stdout)
    run(cluster, compat, "scontrol", "update", f"JobId={held}", "TimeLimit=1:30:00", "NumCPUs=1", "mem=200M",
        "JobName=renamed", "Nice=5", f"Dependency=afterok:{first}")
    job = cluster.job(held)
    assert (job["state"], job["time_limit"], job["cpu_req"], job["mem_req_mb"], job["name"], job["nice"],
            job["depend"]) == ("held", 5400.0, 1.0, 200.0, "renamed", 5, f"afterok:{first}")
    rec = _record(run(cluster, compat, "scontrol", "show", "job", str(held)).stdout)
    assert (rec["TimeLimit"], rec["NumCPUs"], rec["MinMemoryNode"], rec["JobName"]) == ("01:30:00", "1", "200M", "renamed")
    run(cluster, compat, "scontrol", "update", f"jobid={held}", "Dependency=", "MinMemoryNode=1G")  # keys in any case
    assert (cluster.job(held)["depend"], cluster.job(held)["mem_req_mb"]) == ("", 1024.0)
    # keys wulf cannot change are refused together, in one line, and nothing changes
    p = run(cluster, compat, "scontrol", "update", f"JobId={held}", "Account=lab", "JobName=no", "QOS=high", check=False)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "Account, QOS" in p.stderr, p.stderr
    assert cluster.job(held)["name"] == "renamed"
    # what the server refuses (a running job's cpus) is one line too
    wait_until("the first job to run", lambda: cluster.job(first)["state"] == "running")
    p = run(cluster, compat, "scontrol", "update", f"JobId={first}", "NumCPUs=2", check=False)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "running" in p.stderr, p.stderr
    # an array's throttle, and one task of it
    arr = int(run(cluster, compat, "sbatch", "--parsable", "-H", "--array=1-3", "--wrap", "true").stdout)
    run(cluster, compat, "scontrol", "update", f"JobId={arr}", "ArrayTaskThrottle=1")
    run(cluster, compat, "scontrol", "update", f"JobId={arr}_2", "TimeLimit=7")
    assert cluster.json("jstat", "-a")["arrays"][str(arr)]["throttle"] == 1
    assert [cluster.job(arr + i)["time_limit"] for i in range(3)] == [None, 420.0, None]
    run(cluster, compat, "scancel", str(first), str(held), str(arr))


def test_srun_runs_a_step_inside_a_job_only(cluster: Cluster, compat: Path) -> None:
    step = 'srun -n 2 --cpu-bind=q -c 1 sh -c \'echo "task $SLURM_PROCID of $SLURM_NTASKS, $SLURM_CPUS_PER_TASK cpu"\''
    job_id = int(run(cluster, compat, "sbatch", "--parsable", "-c", "2", f"--export=ALL,PATH={compat}:/usr/bin:/bin",
                     "--wrap",
                     f"{step} | sort; srun --ntasks=1 sh -c 'exit 4'").stdout)
    job = ended(cluster, job_id)
    assert (job["state"], job["exit_code"]) == ("failed", 4)  # the last step's status is the job's
    assert (cluster.work / f"slurm-{job_id}.out").read_text() == "task 0 of 2, 1 cpu\ntask 1 of 2, 1 cpu\n"
    outside = run(cluster, compat, "srun", "hostname", check=False)
    assert outside.returncode == 2 and "not inside a job" in outside.stderr and outside.stderr.count("\n") == 1
