"""The compatibility commands' pieces without a cluster: sbatch's command line, squeue's formats, states."""

from __future__ import annotations

import pytest

from wulf.cli.compat.common import hms, int_ids, slurm_state, with_directives
from wulf.cli.compat.pbs import parse_qsub as pbs_qsub
from wulf.cli.compat.sge import parse_qsub as sge_qsub
from wulf.cli.compat.slurm import parse_fields, parse_format, parse_sbatch, render
from wulf.compat.directives import read
from wulf.compat.request import Where
from wulf.errors import UsageError

JOB = {"id": 12, "user": "ann", "state": "queued", "name": "fit", "queue": "default", "reason": "",
       "submitted": 0.0, "started": None, "ended": None, "time_limit": 3600.0, "cpu_req": 2.0, "mem_req_mb": 100.0}


def test_sbatch_splits_options_script_and_its_words() -> None:
    a = parse_sbatch(["-J", "x", "--time=5", "-c2", "--parsable", "job.sh", "-J", "arg"])
    assert a.directives == ["-J", "x", "--time=5", "-c2"] and a.parsable
    assert (a.script, a.script_args) == ("job.sh", ["-J", "arg"])
    w = parse_sbatch(["--wrap", "echo hi", "--wait"])
    assert (w.wrap, w.wait, w.script) == ("echo hi", True, None)
    with pytest.raises(UsageError, match="unrecognized option '--nope'"):
        parse_sbatch(["--nope", "job.sh"])
    with pytest.raises(UsageError, match="needs a value"):
        parse_sbatch(["-J"])


def test_command_line_options_win_over_the_scripts_directives() -> None:
    script = "#!/bin/sh\n#SBATCH -J script --time=10\necho run\n#SBATCH -J too_late\n"
    text = with_directives(script, "slurm", ["-J", "cli"])
    assert text.splitlines()[:3] == ["#!/bin/sh", "#SBATCH -J script --time=10", "#SBATCH -J cli"]
    req = read(text, Where("/w", "/h", "job.sh"))
    assert (req.name, req.time_limit, req.dialect) == ("cli", 600.0, "slurm")
    # a script without directives of its own is read as the command's dialect
    assert read(with_directives("#!/bin/sh\necho\n", "pbs", []), Where("/w", "/h", "j")).dialect == "pbs"
    assert with_directives("echo\n", "slurm", ["-c", "2"]).startswith("#SBATCH -c 2\n")


def test_squeue_formats() -> None:
    pieces = parse_format("%.6i|%-5j|%t|%l|%R")
    assert render(pieces, None, 0.0) == " JOBID|NAME |ST|TIME_LIMIT|NODELIST(REASON)"
    assert render(pieces, JOB, 0.0) == "    12|fit  |PD|1:00:00|(Priority)"
    assert render(parse_format("%3j"), {**JOB, "name": "longname"}, 0.0) == "lon"  # cut, as squeue cuts
    assert render(parse_fields("JobID:5,State:.9"), JOB, 0.0) == "12      PENDING"
    with pytest.raises(UsageError):
        parse_format("%b")
    with pytest.raises(UsageError):
        parse_fields("JobID,Nope")


def test_squeue_field_lists_with_suffixes_as_open_ondemand_asks() -> None:
    """``name:`` is unpadded; ``name:SUFFIX`` puts the suffix after the value in place of the space (OOD's
    slurm.rb asks ``-O JobID:\\x1F,StateCompact:\\x1F,`` and splits on the unit separator); JobID is a task's
    own id, JobArrayID its ``array_task`` form."""
    task = {**JOB, "id": 15, "array_id": 12, "array_index": 3}
    pieces = parse_fields("JobID:\x1f,JobArrayID:\x1f,StateCompact:\x1f,")
    assert render(pieces, None, 0.0) == "JOBID\x1fJOBID\x1fST\x1f"  # (the header keeps its last separator)
    assert render(pieces, task, 0.0) == "15\x1f12_3\x1fPD\x1f"
    assert render(parse_fields("Name:,State:.9|"), JOB, 0.0) == "fit   PENDING|"
    assert render(parse_fields("Name"), JOB, 0.0) == "fit".ljust(20)


def test_states_and_times_in_slurms_words() -> None:
    assert slurm_state({"state": "failed", "reason": "exceeded its time limit of 0:00:01"}) == "TIMEOUT"
    assert slurm_state({"state": "failed", "reason": "exceeded its memory limit of 5 MB"}) == "OUT_OF_MEMORY"
    assert slurm_state({"state": "held"}) == "PENDING"
    assert [hms(s) for s in (5, 65, 3600, 90061, None)] == ["0:05", "1:05", "1:00:00", "1-01:01:01", "UNLIMITED"]
    assert int_ids(["12.host", "13,14"]) == [12, 13, 14]
    with pytest.raises(UsageError):
        int_ids(["x12"])


def test_qsub_command_lines() -> None:
    q = pbs_qsub(["-N", "a", "-lwalltime=1:00", "-F", "x 'y z'", "job.sh"])
    assert (q.words, q.script, q.command, q.quiet, q.args) == (["-N", "a", "-lwalltime=1:00"], "job.sh", [], False,
                                                               ["x", "y z"])
    q = pbs_qsub(["-z", "--", "sleep", "1"])
    assert (q.words, q.script, q.command, q.quiet) == ([], None, ["sleep", "1"], True)
    with pytest.raises(UsageError):
        pbs_qsub(["-I"])
    q = sge_qsub(["-cwd", "-pe", "smp", "4", "-b", "y", "-terse", "sleep", "9"])
    assert (q.words, q.binary, q.terse, q.rest) == (["-cwd", "-pe", "smp", "4"], True, True, ["sleep", "9"])
    with pytest.raises(UsageError):
        sge_qsub(["-nonsense"])


def test_script_arguments_are_set_where_the_directives_end() -> None:
    from wulf.compat.directives import interpreter, with_arguments

    script = "#!/bin/bash\n#SBATCH -J x\n\n# a comment\necho \"$1\"\n"
    assert with_arguments(script, ["a b", "it's"]) == \
        "#!/bin/bash\n#SBATCH -J x\n\n# a comment\nset -- 'a b' 'it'\"'\"'s'\necho \"$1\"\n"
    assert with_arguments("#SBATCH -J x", ["1"]) == "#SBATCH -J x\nset -- 1\n"
    assert with_arguments("#!/bin/tcsh\necho $1\n", ["1"]) == "#!/bin/tcsh\nset argv = ( 1 )\necho $1\n"
    assert with_arguments(script, []) == script
    assert [interpreter(s) for s in ("#!/usr/bin/env -S bash -l\n", "echo\n", "#! /usr/bin/python3 -u\n")] == \
        ["bash", "sh", "python3"]
    with pytest.raises(UsageError, match="python3"):
        with_arguments("#!/usr/bin/env python3\nprint(1)\n", ["x"])


def test_srun_options_and_the_steps_variables() -> None:
    from wulf.cli.compat.srun import parse, step_env

    given, command = parse(["-n1", "--cpu-bind=q", "--cpus-per-task=3", "--mem", "10", "python", "-c", "x"])
    assert (given, command) == ({"ntasks": "1", "cpu-bind": "q", "cpus-per-task": "3", "mem": "10"},
                                ["python", "-c", "x"])
    env = step_env(given, {"SLURM_CPUS_PER_TASK": "8", "SLURMD_NODENAME": "n1", "PATH": "/bin"})
    assert (env["SLURM_CPUS_PER_TASK"], env["SLURM_NTASKS"], env["SLURM_STEP_NODELIST"], env["PATH"]) == \
        ("3", "1", "n1", "/bin")
    assert step_env({}, {"SLURM_CPUS_PER_TASK": "8"})["SLURM_CPUS_PER_TASK"] == "8"  # the job's
    for bad in (["--bogus", "x"], ["-n"], ["-n", "0", "x"], ["-c", "2"]):
        with pytest.raises(UsageError):
            step_env(*parse(bad)[:1], {})


def test_scontrol_update_words_as_jmods_changes() -> None:
    from wulf.cli.compat.scupdate import parse_update

    ids, changes = parse_update(["JobId=12", "TimeLimit=1-02:00:00", "MinCPUsNode=4", "MinMemoryNode=2G",
                                 "JobName=fit 2", "Partition=long", "Nice=3", "Dependency=afterok:5:6,afterany:7",
                                 "ArrayTaskThrottle=0"])
    assert ids == [12]
    assert changes == {"time_limit": 93600.0, "cpu": 4.0, "mem_mb": 2048.0, "name": "fit 2", "queue": "long",
                       "nice": 3, "depend": "afterok:5:6,afterany:7", "throttle": 0}
    assert parse_update(["jobid=12_3,14", "timelimit=90", "NUMCPUS=2"]) == (["12[3]", 14],
                                                                           {"time_limit": 5400.0, "cpu": 2.0})
    assert parse_update(["JobId=12_[1-2]", "Dependency="]) == (["12[1]", "12[2]"], {"depend": ""})
    assert parse_update(["JobId=12", "mem=100"])[1] == {"mem_mb": 100.0}


@pytest.mark.parametrize(("words", "message"), [
    (["JobId=12", "Account=lab", "TimeLimit=5", "QOS=high"], r"cannot change Account, QOS \(it changes TimeLimit"),
    (["JobId=12"], "nothing to change"),
    (["TimeLimit=5"], "which job?"),
    (["JobId=12", "TimeLimit"], "'TimeLimit' is not Key=Value"),
    (["JobId=12", "TimeLimit=UNLIMITED"], "cannot lift a time limit"),
    (["JobId=12", "TimeLimit=+30"], "does not add to one"),
    (["JobId=12", "TimeLimit=soon"], "is not a Slurm time"),
    (["JobId=12", "NumCPUs=0"], "NumCPUs: '0' is not a whole number"),
    (["JobId=12", "MinMemoryNode=lots"], "is not a size"),
    (["JobId=12", "Nice=99"], "from -20 to 19"),
    (["JobId=12", "Dependency=after:5"], "Dependency"),
    (["JobId=12", "NumCPUs=1", "MinCPUsNode=2"], "MinCPUsNode repeats"),
    (["JobId=x", "Nice=1"], "Invalid job id|not a job id"),
])
def test_scontrol_update_refuses_in_one_line(words: list[str], message: str) -> None:
    from wulf.cli.compat.scupdate import parse_update

    with pytest.raises(UsageError, match=message) as e:
        parse_update(words)
    assert "\n" not in e.value.message


def test_an_ended_jobs_reason_is_one_of_slurms_words() -> None:
    """psij-python splits squeue's lines on blanks, and looks a failed job's reason up in Slurm's list."""
    from wulf.cli.compat.slurm import reason_of

    cases = [({"state": "done", "reason": ""}, "None"), ({"state": "cancelled", "reason": "cancelled by ann"}, "None"),
             ({"state": "failed", "reason": "exit code 3"}, "NonZeroExitCode"),
             ({"state": "failed", "reason": "exceeded its time limit of 0:00:01"}, "TimeLimit"),
             ({"state": "failed", "reason": "exceeded its memory limit of 5 MB"}, "OutOfMemory"),
             ({"state": "failed", "reason": "node lost: n1"}, "NodeDown"),
             ({"state": "queued", "reason": "odd new reason"}, "odd_new_reason")]
    assert [reason_of(j) for j, _ in cases] == [want for _, want in cases]


def test_scontrol_show_hostnames_expands_slurms_host_lists() -> None:
    from wulf.cli.compat.scontrol import hostnames

    assert hostnames("n1") == ["n1"]
    assert hostnames("n[1-3,7],gpu[08-10]x,m") == ["n1", "n2", "n3", "n7", "gpu08x", "gpu09x", "gpu10x", "m"]
    assert hostnames("r[1-2]n[1-2]") == ["r1n1", "r1n2", "r2n1", "r2n2"]
    for bad in ("n[1-", "n[3-1]", "n[a-b]", "", "n[1-99999999]"):
        with pytest.raises(UsageError, match="host list"):
            hostnames(bad)
