"""Start batch jobs on this node.

Pure parts (the environment, the output path, the command line) are separate from the one call that
starts a process, so they are tested without processes.

A job runs under ``/bin/sh`` in its own session (so signals reach its whole process group). The shell
first changes to the job's directory and sets an EXIT trap that writes the job's exit status to a
small file in the agent's runtime directory (tmpfs): if the agent is restarted while the job runs, the new agent
cannot wait for the job (it is no longer its child) and reads its exit status from that file instead.

Before that, the shell puts itself in the job's cgroup (when it has one), so that nothing the job starts
escapes it, and sets the job's rlimits (see :func:`wulf.agent.limits.rlimit_lines`). Should it fail to
join its cgroup, the job still runs: it says so in its output, takes the memory rlimit a job without
a cgroup has, and the agent, not finding it in its cgroup, measures it from its processes.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from wulf.agent.limits import Limits, rlimit_lines
from wulf.protocol import StartJob

SHELL = "/bin/sh"


def job_env(job: StartJob, node: str) -> dict[str, str]:
    env = dict(job.env)
    env.update(
        WULF_JOB_ID=str(job.id),
        WULF_JOB_NAME=job.name,
        WULF_NODE=node,
        WULF_QUEUE=job.queue,
        WULF_SUBMIT_DIR=job.cwd,
    )
    env.setdefault("PATH", os.defpath)
    return env


def output_path(job: StartJob) -> str:
    """Where stdout and stderr go: ``-o`` (``%j`` is the job id), else ``wulf-<id>.out`` in its cwd."""
    out = job.output.replace("%j", str(job.id)) if job.output else f"wulf-{job.id}.out"
    return os.path.join(job.cwd, out)


def rc_path(runtime: str, job_id: int) -> str:
    return os.path.join(runtime, f"{job_id}.rc")


def script_path(scratch: str, job_id: int) -> str:
    return os.path.join(scratch, f"wulf-{job_id}.script")


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    rc_file: str
    script_file: str | None


def join_lines(job: StartJob, cgroup_procs: Sequence[str]) -> list[str]:
    """Shell lines that put the shell in its cgroup (``cgroup_procs``: the files to write its pid to,
    none without a cgroup) and set its rlimits; the memory rlimit only when it is in no cgroup."""
    limits = Limits.of(job)
    if not cgroup_procs:
        return rlimit_lines(limits, memory=True)
    join = " && ".join(f"echo $$ > {shlex.quote(path)}" for path in cgroup_procs)
    warn = f"wulf: job {job.id} could not join its cgroup; its limits are enforced without it"
    fallback = "; ".join([f"echo {shlex.quote(warn)} >&2", *rlimit_lines(limits, memory=True)])
    return [f"{{ {join}; }} 2>/dev/null || {{ {fallback}; }}", *rlimit_lines(limits, memory=False)]


def prologue(job: StartJob, rc: str, cgroup_procs: Sequence[str] = ()) -> str:
    """What the job's shell does before the job: join its cgroup, set rlimits, change directory, and
    arrange to leave its exit status in ``rc``."""
    lines = [
        *join_lines(job, cgroup_procs),
        f"cd -- {shlex.quote(job.cwd)} || exit 1",
        f"trap {shlex.quote('echo $? > ' + shlex.quote(rc))} EXIT",
    ]
    return "".join(line + "\n" for line in lines)


def build_launch(job: StartJob, scratch: str, runtime: str, cgroup_procs: Sequence[str] = ()) -> Launch:
    """The command line that runs ``job`` (its script staged at ``script_file``), in its cgroup if
    ``cgroup_procs`` names one."""
    rc = rc_path(runtime, job.id)
    prologue_text = prologue(job, rc, cgroup_procs)
    if job.script is None:
        return Launch([SHELL, "-c", prologue_text + job.command], rc, None)
    script = script_path(scratch, job.id)
    if job.script.startswith("#!"):
        run = shlex.quote(script)
    else:
        run = f"{SHELL} {shlex.quote(script)}"
    return Launch([SHELL, "-c", prologue_text + run], rc, script)


def stage_script(launch: Launch, job: StartJob) -> None:
    if launch.script_file is None or job.script is None:
        return
    fd = os.open(launch.script_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o700)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(job.script)


def spawn(job: StartJob, node: str, scratch: str, runtime: str,
          cgroup_procs: Sequence[str] = ()) -> tuple[int, Launch]:
    """Start ``job``; returns its pid. Raises OSError when it cannot start."""
    launch = build_launch(job, scratch, runtime, cgroup_procs)
    stage_script(launch, job)
    out = output_path(job)
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    pid = os.posix_spawn(launch.argv[0], launch.argv, job_env(job, node), file_actions=actions, setsid=True)
    return pid, launch


def cleanup(rc_file: str, script_file: str | None, keep_script: bool) -> None:
    """Remove a finished job's exit-status file and (unless kept, qr -Z) its staged script."""
    for path in (rc_file, None if keep_script else script_file):
        if path:
            try:
                os.unlink(path)
            except OSError:
                pass


def read_rc(path: str) -> int | None:
    """The exit status a job's shell wrote at its end, or None if it wrote none."""
    try:
        with open(path, encoding="ascii") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None
