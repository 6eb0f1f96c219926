"""Slurm's ``srun`` inside a job: a step of the job, run where the job runs.

Job scripts and tools call ``srun CMD`` inside a batch job to run a step (Snakemake's Slurm executor runs
each rule as ``srun -n1 --cpu-bind=q --cpus-per-task=N ... snakemake ...``). A wulf job is on one node and
already holds its cpus and memory, so a step is the command itself: one copy (``-n 1``), or N copies at
once with ``SLURM_PROCID``/``SLURM_LOCALID`` 0..N-1 as srun starts them, its exit status the worst of
theirs; its tasks see the variables srun sets (SLURM_CPUS_PER_TASK from ``-c``, SLURM_NTASKS,
SLURM_STEP_ID...). The options that place a step (cpus, memory, binding, nodes) are accepted: the job's own
allocation and limits bind it. Outside a job, srun is refused: ``jr`` is wulf's interactive job.
"""

from __future__ import annotations

import os
import subprocess
import sys

from wulf.compat import slurm as dialect
from wulf.compat.options import Opt
from wulf.errors import UsageError

#: srun's own options (beyond sbatch's, in wulf.compat.slurm): name -> takes a value
_OWN = {"cpu-bind": True, "mem-bind": True, "mpi": True, "jobid": True, "het-group": True, "label": False,
        "unbuffered": False, "overlap": False, "exact": False, "whole": False, "pty": False,
        "multi-prog": False, "kill-on-bad-exit": False}
_OWN_SHORT = {"l": False, "u": False, "K": False}


def _takes_value(word: str) -> tuple[str, bool, bool]:
    """(the option's name, whether it takes a value, whether the value is in the word)."""
    if word.startswith("--"):
        key, eq, _ = word[2:].partition("=")
        if key in _OWN:
            return key, _OWN[key], bool(eq)
        opt: Opt | None = dialect.LONG.get(key)
        if opt is None:
            raise UsageError(f"srun: unrecognized option '--{key}'")
        return opt.name, opt.arity == "value", bool(eq) or opt.arity != "value"
    letter = word[1:2]
    if letter in _OWN_SHORT:
        return letter, False, False
    opt = dialect.SHORT.get(letter)
    if opt is None:
        raise UsageError(f"srun: invalid option -- '{letter}'")
    return opt.name, opt.arity == "value", len(word) > 2


def parse(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """(the options given, by canonical name, with their values; the command)."""
    given: dict[str, str] = {}
    i = 0
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "-":
        w = argv[i]
        if w == "--":
            i += 1
            break
        name, takes, inline = _takes_value(w)
        if takes and not inline and i + 1 >= len(argv):
            raise UsageError(f"srun: option {w} needs a value")
        value = (w.partition("=")[2] if w.startswith("--") else w[2:]) if inline else (argv[i + 1] if takes else "")
        given[name] = value
        i += 1 if inline or not takes else 2
    command = argv[i:]
    if not command:
        raise UsageError("srun: no command given (srun [OPTIONS] COMMAND [ARGS...])")
    return given, command


def _count(given: dict[str, str], name: str, default: int) -> int:
    value = given.get(name)
    if value is None:
        return default
    if not value.isdigit() or not 1 <= int(value) <= 1024:
        raise UsageError(f"srun: --{name} {value!r}: a whole number from 1 to 1024")
    return int(value)


def step_env(given: dict[str, str], environ: dict[str, str]) -> dict[str, str]:
    """The variables srun gives a step's tasks (rank 0's; the others get their own SLURM_PROCID): its
    task count, its cpus per task (-c, else the job's), the node."""
    ntasks = _count(given, "ntasks", 1)
    cpus = str(_count(given, "cpus-per-task", 1)) if "cpus-per-task" in given else environ.get(
        "SLURM_CPUS_PER_TASK", "")
    node = environ.get("SLURMD_NODENAME") or environ.get("WULF_NODE", "")
    env = {**environ, "SLURM_NTASKS": str(ntasks), "SLURM_NPROCS": str(ntasks), "SLURM_STEP_NUM_TASKS": str(ntasks),
           "SLURM_STEP_NUM_NODES": "1", "SLURM_STEP_NODELIST": node, "SLURM_STEP_ID": "0", "SLURM_STEPID": "0",
           "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0"}
    if cpus:
        env["SLURM_CPUS_PER_TASK"] = cpus
    return env


def srun(argv: list[str]) -> int:
    if not (os.environ.get("WULF_JOB_ID") or os.environ.get("SLURM_JOB_ID")):
        raise UsageError("srun: not inside a job; wulf runs a step of a batch job only (jr starts an "
                         "interactive job)")
    given, command = parse(argv)
    if os.environ.get("WULF_LAUNCH_KEY"):
        return _across(given, command)
    env = step_env(given, dict(os.environ))
    ntasks = int(env["SLURM_NTASKS"])
    sys.stdout.flush()
    if ntasks == 1:
        try:
            os.execvpe(command[0], command, env)  # the step is the command: its status is srun's
        except OSError as e:
            raise UsageError(f"srun: {command[0]}: {e.strerror}") from None
    steps: list[subprocess.Popen[bytes]] = []
    for rank in range(ntasks):
        try:
            steps.append(subprocess.Popen(command, env={**env, "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank)},
                                          stdin=subprocess.DEVNULL if rank else None))
        except OSError as e:
            for p in steps:
                p.kill()
            raise UsageError(f"srun: {command[0]}: {e.strerror}") from None
    codes = [p.wait() for p in steps]
    return max(128 - c if c < 0 else c for c in codes)  # (killed by signal N: 128 + N, as a shell says)


#: what a task of a step started across a job's nodes runs first: srun's variables from wulf launch's
_TASK = 'SLURM_PROCID=$WULF_TASK_ID SLURM_LOCALID=$WULF_LOCAL_TASK_ID SLURMD_NODENAME=$WULF_NODE exec "$@"'


def _across(given: dict[str, str], command: list[str]) -> int:
    """A step of a job of several tasks: its tasks across the job's nodes (wulf launch), one a slot of the
    job unless -n says how many."""
    import shlex

    from wulf.cli.launch import launch

    ntasks = _count(given, "ntasks", 0) if "ntasks" in given else None
    env = step_env({**given, "ntasks": str(ntasks or os.environ.get("WULF_NTASKS", "1"))}, dict(os.environ))
    os.environ.update(env)
    sys.stdout.flush()
    return launch("exec " + shlex.join(["/bin/sh", "-c", _TASK, "srun", *command]), ntasks=ntasks,
                  label="label" in given or "l" in given)
