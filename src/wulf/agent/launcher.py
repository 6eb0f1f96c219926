"""Start batch jobs on this node.

Pure parts (the environment, the output path, the command line) are separate from the one call that
starts a process, so they are tested without processes.

A job runs under a small *supervisor*: a ``/bin/sh`` in a session of its own, which prepares the job
(cgroup, rlimits, umask, directory, output), starts it as its child in a session of its own
(util-linux ``setsid``), waits for it, and writes its exit status to a file in the agent's runtime
directory (tmpfs, handed to it as fd 8). The job's own shell is the job: it may ``exec``, set its own
EXIT trap, or trap a signal that ``jkill`` sends it (signals go to the job's session and cgroup, not
to the supervisor), and its exit status is still known. The agent waits for the supervisor (its
child) and reads the status file only when it was restarted meanwhile and can no longer wait.

The supervisor first puts itself in the job's cgroup (when it has one), so that nothing the job starts
escapes it, and sets the job's rlimits (see :func:`wulf.agent.limits.rlimit_lines`). Should it fail to
join its cgroup, the job still runs: it says so in its output, takes the memory rlimit a job without
a cgroup has, and the agent, not finding it in its cgroup, measures it from its processes.

A job runs with its owner's umask. When the agent is root and the job is someone else's (see
:mod:`wulf.agent.owner`), the supervisor starts as the owner (through util-linux's ``setpriv``, else a
fork that changes user: see :func:`become_argv`), and everything that touches the owner's files
is done as them: the shell changes to the job's directory and opens the output file itself (so the
file is theirs, and a directory they may not write stays closed to them). Nothing of the user's
reaches a process while it is root: setpriv starts with a fixed environment, and the supervisor reads
the job's own from a descriptor once it is the owner's. The agent puts the supervisor in its cgroup
from outside (a user may not move a process between root's cgroups): the shell waits on its standard
input until the agent says it is done. Anything the shell says before the job's output is open goes
to a small file in the runtime directory, from which the agent takes the reason a job could not start.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from wulf.agent.limits import Limits, open_files_lines, rlimit_lines
from wulf.agent.owner import Owner, cached_getpwuid, umask_of
from wulf.model import outpath
from wulf.model.tasks import compact, node_file, parse_alloc, tasks_per_node
from wulf.protocol import StartJob

SHELL = "/bin/sh"


def job_env(job: StartJob, node: str, hosts_file: str | None = None, nodes_file: str | None = None) -> dict[str, str]:
    """The job's environment: what it was submitted with, wulf's ``WULF_*``, and the variables of the
    system its script was written for (see :func:`dialect_env`); a job of several tasks's allocation
    (see :func:`tasks_env`), its node file at ``nodes_file``."""
    env = dict(job.env)
    env.update(
        WULF_JOB_ID=str(job.id),
        WULF_JOB_NAME=job.name,
        WULF_NODE=node,
        WULF_QUEUE=job.queue,
        WULF_SUBMIT_DIR=job.cwd,
        WULF_RESTART_COUNT=str(job.restarts),
    )
    if job.checkpoint_exit is not None:  # the exit code that says "checkpointed: run me again"
        env["WULF_CHECKPOINT_EXIT"] = str(job.checkpoint_exit)
    env.setdefault("PATH", os.defpath)
    if job.array_id is not None:
        env.update(array_env(job))
    dialect_env(env, job, node, hosts_file)
    if job.alloc:
        env.update(tasks_env(job, nodes_file))
    return env


def tasks_env(job: StartJob, nodes_file: str | None) -> dict[str, str]:
    """A job of several tasks's allocation: ``WULF_NODELIST`` (compact: ``node[1-3,7]``), ``WULF_NNODES``,
    ``WULF_NTASKS``, ``WULF_TASKS_PER_NODE`` (``2(x3)``), ``WULF_NODEFILE`` (a node a line, once per
    slot, as ``mpirun -machinefile`` reads it); and the same in the job's dialect's names."""
    slots = parse_alloc(job.alloc)
    names = [n for n, _ in slots]
    nodelist, ntasks, per_node = compact(names), str(job.ntasks), tasks_per_node(slots)
    env = {"WULF_NODELIST": nodelist, "WULF_NNODES": str(len(names)), "WULF_NTASKS": ntasks,
           "WULF_TASKS_PER_NODE": per_node}
    if nodes_file:
        env["WULF_NODEFILE"] = nodes_file
    if job.launch_key:
        env["WULF_LAUNCH_KEY"] = job.launch_key
        env.update(mpi_env(env, nodes_file))
    if job.dialect == "slurm":
        env.update(SLURM_JOB_NODELIST=nodelist, SLURM_NODELIST=nodelist, SLURM_JOB_NUM_NODES=str(len(names)),
                   SLURM_NNODES=str(len(names)), SLURM_NTASKS=ntasks, SLURM_NPROCS=ntasks,
                   SLURM_TASKS_PER_NODE=per_node)
    elif job.dialect == "pbs":
        env.update(PBS_NUM_NODES=str(len(names)), PBS_NP=ntasks)
        if nodes_file:
            env["PBS_NODEFILE"] = nodes_file
    elif job.dialect == "sge":
        env.update(NSLOTS=ntasks, NHOSTS=str(len(names)))
    return env


def array_env(job: StartJob) -> dict[str, str]:
    """A task of an array: wulf's ``WULF_ARRAY_*``, and its dialect's array variables (Slurm's
    ``SLURM_ARRAY_*``, PBS's ``PBS_ARRAY_*``, Grid Engine's ``SGE_TASK_*``)."""
    aid, index = str(job.array_id), str(job.array_index)
    count, first, last = (str(v if v is not None else "") for v in (job.array_count, job.array_min, job.array_max))
    step = str(job.array_step or 1)
    env = {"WULF_ARRAY_JOB_ID": aid, "WULF_ARRAY_TASK_ID": index, "WULF_ARRAY_TASK_COUNT": count,
           "WULF_ARRAY_TASK_MIN": first, "WULF_ARRAY_TASK_MAX": last}
    if job.dialect == "slurm":
        env.update(SLURM_ARRAY_JOB_ID=aid, SLURM_ARRAY_TASK_ID=index, SLURM_ARRAY_TASK_COUNT=count,
                   SLURM_ARRAY_TASK_MIN=first, SLURM_ARRAY_TASK_MAX=last, SLURM_ARRAY_TASK_STEP=step)
    elif job.dialect == "pbs":  # PBS Pro's names, and Torque's PBS_ARRAYID
        env.update(PBS_ARRAY_ID=f"{aid}[]", PBS_ARRAY_INDEX=index, PBS_ARRAYID=index)
    return env


def dialect_env(env: dict[str, str], job: StartJob, node: str, hosts_file: str | None) -> None:
    """Add the variables a Slurm, PBS or Grid Engine script reads, with what wulf knows: the job runs as one
    task on one node, with all its cpus. Where it was submitted from (``SLURM_SUBMIT_DIR``, ``PBS_O_*``,
    ``SGE_O_*``) comes with the job from qr; the job's directory stands in when it did not."""
    cpus = str(max(1, math.ceil(job.cpu)))
    jid = str(job.id)
    if job.dialect == "slurm":
        env.update(SLURM_JOB_ID=jid, SLURM_JOBID=jid, SLURM_JOB_NAME=job.name, SLURM_CPUS_PER_TASK=cpus,
                   SLURM_CPUS_ON_NODE=cpus, SLURM_JOB_CPUS_PER_NODE=cpus, SLURM_NTASKS="1", SLURM_NPROCS="1",
                   SLURM_JOB_NUM_NODES="1", SLURM_NNODES="1", SLURM_JOB_NODELIST=node, SLURM_NODELIST=node,
                   SLURMD_NODENAME=node, SLURM_JOB_PARTITION=job.queue, SLURM_MEM_PER_NODE=str(round(job.mem_mb)),
                   SLURM_RESTART_COUNT=str(job.restarts), SLURM_CLUSTER_NAME="wulf", SLURM_JOB_USER=job.user,
                   SLURM_JOB_UID=str(job.uid))
        env.setdefault("SLURM_SUBMIT_DIR", job.cwd)
        env.setdefault("SLURM_SUBMIT_HOST", node)
    elif job.dialect == "pbs":
        env.setdefault("PBS_O_HOST", node)
        # the id as qsub printed it, ID.HOST (the submit host's short name): tools name files by it
        pbs_id = f"{jid}.{env['PBS_O_HOST'].split('.')[0]}"
        env.update(PBS_JOBID=pbs_id, PBS_JOBNAME=job.name, PBS_QUEUE=job.queue, PBS_O_QUEUE=job.queue, PBS_NP=cpus,
                   PBS_NUM_NODES="1", PBS_NUM_PPN=cpus, NCPUS=cpus, OMP_NUM_THREADS=cpus,
                   PBS_ENVIRONMENT="PBS_BATCH", PBS_TASKNUM="1", PBS_NODENUM="0", PBS_VNODENUM="0")
        if hosts_file:
            env["PBS_NODEFILE"] = hosts_file
        env.setdefault("PBS_O_WORKDIR", job.cwd)
    elif job.dialect == "sge":
        env.update(JOB_ID=jid, JOB_NAME=job.name, NSLOTS=cpus, NHOSTS="1", QUEUE=job.queue, ENVIRONMENT="BATCH",
                   SGE_TASK_ID="undefined", SGE_TASK_FIRST="undefined", SGE_TASK_LAST="undefined",
                   SGE_TASK_STEPSIZE="undefined")
        if job.array_id is not None:  # a task: JOB_ID is its array's, as in Grid Engine
            env.update(JOB_ID=str(job.array_id), SGE_TASK_ID=str(job.array_index),
                       SGE_TASK_FIRST=str(job.array_min), SGE_TASK_LAST=str(job.array_max),
                       SGE_TASK_STEPSIZE=str(job.array_step or 1))
        if hosts_file:
            env["PE_HOSTFILE"] = hosts_file
            env.setdefault("TMPDIR", os.path.dirname(hosts_file))
        env.setdefault("SGE_O_WORKDIR", job.cwd)
        env.setdefault("SGE_O_HOST", node)


def hosts_text(job: StartJob, node: str) -> str | None:
    """The node file of a PBS job (its node once per cpu) or the ``PE_HOSTFILE`` of a Grid Engine job
    (``host slots queue processors``); None for other jobs."""
    cpus = max(1, math.ceil(job.cpu))
    if job.dialect == "pbs":
        return f"{node}\n" * cpus
    if job.dialect == "sge":
        return f"{node} {cpus} {job.queue}@{node} UNDEFINED\n"
    return None


def hosts_path(script_file: str | None) -> str | None:
    """Where a script job's hosts file is: beside its staged script (a job without one has none)."""
    return None if script_file is None else script_file + ".hosts"


def output_path(job: StartJob, node: str = "") -> str:
    """Where stdout and stderr go: ``-o``, else ``wulf-<id>.out``, in its cwd (see
    :func:`wulf.model.outpath.output_path` for the patterns)."""
    return outpath.output_path(job.output, job.cwd, job.id, job.name, job.user, node, job.array_id,
                               job.array_index)


def rc_path(runtime: str, job_id: int) -> str:
    return os.path.join(runtime, f"{job_id}.rc")


def script_path(scratch: str, job_id: int) -> str:
    return os.path.join(scratch, f"wulf-{job_id}.script")


@functools.cache
def _rsh() -> str:
    """wulf-rsh: where it is installed (beside the agent's Python in a virtual environment), else by name."""
    beside = os.path.join(os.path.dirname(sys.executable), "wulf-rsh")
    return shutil.which("wulf-rsh") or (beside if os.access(beside, os.X_OK) else "wulf-rsh")


def mpi_env(env: dict[str, str], nodes_file: str | None) -> dict[str, str]:
    """What makes MPI start its ranks through wulf (``wulf-rsh``, no ssh) on the job's nodes: MPICH's Hydra
    (HYDRA_LAUNCHER, HYDRA_LAUNCHER_EXEC, and its host file) and Open MPI (plm_rsh_agent, its host file).
    What the job was submitted with wins (a user may choose another launcher)."""
    out = {"HYDRA_LAUNCHER": "rsh", "HYDRA_LAUNCHER_EXEC": _rsh(), "OMPI_MCA_plm_rsh_agent": _rsh()}
    if nodes_file:
        out.update(HYDRA_HOST_FILE=nodes_file, OMPI_MCA_orte_default_hostfile=nodes_file)
    return {k: v for k, v in out.items() if k not in env}


def nodes_path(scratch: str, job_id: int) -> str:
    """Where a job of several tasks's node file is (WULF_NODEFILE)."""
    return os.path.join(scratch, f"wulf-{job_id}.nodes")


def err_path(runtime: str, job_id: int) -> str:
    return os.path.join(runtime, f"{job_id}.err")


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    rc_file: str
    script_file: str | None
    err_file: str | None = None  # what the shell of a job run as its owner says before its output is open
    nodes_file: str | None = None  # a job of several tasks's node file (WULF_NODEFILE)


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


ENV_FD: Final = 9
"""The descriptor on which a job run through setpriv finds its environment (see :func:`env_script`)."""


@functools.cache
def _setsid() -> str | None:
    """util-linux's ``setsid``: the job runs in a session of its own, apart from its supervisor."""
    return shutil.which("setsid", path="/usr/bin:/bin:/usr/sbin:/sbin")


def run_line(job: StartJob, script_file: str | None) -> str:
    """The supervisor's last line (see :func:`prologue`): run the job as a child in a session of its
    own, write its exit status to fd 8, and end with it. The job gets neither fd 8 nor fd 9. Its
    command is the supervisor's ``$1``, so it is never quoted into the supervisor's own text."""
    if script_file is None:
        run = f'{SHELL} -c "$1"'
    elif job.script is not None and job.script.startswith("#!"):
        run = shlex.quote(script_file)
    else:
        run = f"{SHELL} {shlex.quote(script_file)}"
    setsid = _setsid()
    if setsid is not None:
        run = f"{shlex.quote(setsid)} {run}"
    return f'{run} 8>&- {ENV_FD}<&-; _wulf_rc=$?; echo "$_wulf_rc" >&8; exit "$_wulf_rc"'


def prologue(job: StartJob, cgroup_procs: Sequence[str] = ()) -> str:
    """What the supervisor of a job run as the agent's own user does before the job: join its cgroup,
    set rlimits and its umask, change directory. Its output is open already (see :func:`spawn`) and
    the agent hands it the exit-status file as fd 8."""
    lines = [
        *join_lines(job, cgroup_procs),
        *open_files_lines(),
        f"umask {umask_of(job):04o}",
        f"cd -- {shlex.quote(job.cwd)} || exit 1",
    ]
    return "".join(line + "\n" for line in lines)


def owner_prologue(job: StartJob, in_cgroup: bool, env_fd: bool = False, node: str = "") -> str:
    """What the supervisor of a job run as its owner does before the job (see the module's doc): wait
    until the agent has put it in its cgroup (``in_cgroup``: the job has one), take the exit-status
    file as fd 8, set the umask, change directory, open the output, set rlimits (the memory rlimit when
    it is in no cgroup after all), and, with ``env_fd``, take the job's environment from fd 9: it
    started with a fixed one, so that nothing of the user's reached it while it was root."""
    limits = Limits.of(job)
    warn = f"wulf: job {job.id} could not join its cgroup; its limits are enforced without it"
    fallback = "; ".join([f"echo {shlex.quote(warn)} >&2", *rlimit_lines(limits, memory=True)])
    lines = [
        "read _wulf_joined || :",  # the agent writes 1 once the shell is in its cgroup, 0 if it is not
        "exec </dev/null 8>&1",
        f"umask {umask_of(job):04o}",
        f"cd -- {shlex.quote(job.cwd)} || exit 1",
        f"exec >{'>' if job.append_output else ''}{shlex.quote(output_path(job, node))} 2>&1",
        *([f'[ "$_wulf_joined" = 1 ] || {{ {fallback}; }}', *rlimit_lines(limits, memory=False)] if in_cgroup
          else rlimit_lines(limits, memory=True)),
        *open_files_lines(),
        "unset _wulf_joined",
        *([f". /proc/self/fd/{ENV_FD}"] if env_fd else []),
    ]
    return "".join(line + "\n" for line in lines)


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def env_script(env: dict[str, str]) -> bytes:
    """The job's environment as lines its supervisor sources once it is its owner. Names that are
    not shell names (``BASH_FUNC_x%%``) are left out, as /bin/sh leaves them out of what it passes on."""
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items() if _NAME.match(k)).encode()


MINIMAL_PATH: Final = "/usr/local/bin:/usr/bin:/bin"


def helper_env(job: StartJob) -> dict[str, str]:
    """The fixed environment of a job's supervisor while it is root (setpriv), before it takes the
    job's own: the job id, so that a restarted agent can find it."""
    return {"PATH": MINIMAL_PATH, "WULF_JOB_ID": str(job.id)}


def build_launch(job: StartJob, scratch: str, runtime: str, cgroup_procs: Sequence[str] = (),
                 owner: Owner | None = None, env_fd: bool = False, node: str = "") -> Launch:
    """The command line that runs ``job`` under its supervisor shell (its script staged at
    ``script_file``), in its cgroup if ``cgroup_procs`` names one, as ``owner`` if there is one."""
    rc = rc_path(runtime, job.id)
    script = None if job.script is None else script_path(scratch, job.id)
    if owner is None:
        prologue_text, err = prologue(job, cgroup_procs), None
    else:
        prologue_text, err = owner_prologue(job, bool(cgroup_procs), env_fd, node), err_path(runtime, job.id)
    return Launch([SHELL, "-c", prologue_text + run_line(job, script), f"wulf-{job.id}", job.command],
                  rc, script, err, nodes_path(scratch, job.id) if job.alloc else None)


_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _create(path: str, mode: int) -> int:
    """A new file at ``path``, never through a link planted there (the scratch directory is shared):
    whatever is at ``path`` already is removed first."""
    try:
        return os.open(path, _NEW_FILE, mode)
    except FileExistsError:
        os.unlink(path)
        return os.open(path, _NEW_FILE, mode)


def stage_script(launch: Launch, job: StartJob, owner: Owner | None = None, node: str = "") -> None:
    """Write the job's script (and, for a PBS or Grid Engine job, its hosts file beside it), and a job of
    several tasks's node file, as its owner's."""
    if launch.nodes_file is not None:
        _write_new(launch.nodes_file, node_file(parse_alloc(job.alloc)), 0o644, owner)
    if launch.script_file is None or job.script is None:
        return
    _write_new(launch.script_file, job.script, 0o700, owner)
    hosts = hosts_text(job, node)
    if hosts is not None:
        _write_new(hosts_path(launch.script_file) or "", hosts, 0o644, owner)


def _write_new(path: str, text: str, mode: int, owner: Owner | None) -> None:
    fd = _create(path, mode)
    try:
        if owner is not None:
            os.fchown(fd, owner.uid, owner.gid)
        data = memoryview(text.encode("utf-8"))
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)


def job_env_as(job: StartJob, node: str, owner: Owner | None, hosts_file: str | None = None,
               nodes_file: str | None = None) -> dict[str, str]:
    """The job's environment: its owner's USER, LOGNAME, HOME and SHELL when it runs as them, else
    the ones it was submitted with, or its user's where it came without them (qr --env NONE)."""
    env = job_env(job, node, hosts_file, nodes_file)
    if owner is not None:
        return owner.env(env)
    if not all(k in env for k in ("USER", "LOGNAME", "HOME", "SHELL")):
        try:
            pw = cached_getpwuid(job.uid)
        except KeyError:
            return env
        for k, v in (("USER", pw.pw_name), ("LOGNAME", pw.pw_name), ("HOME", pw.pw_dir), ("SHELL", pw.pw_shell)):
            env.setdefault(k, v)
    return env


RESTORE_SIGNALS: Final = (signal.SIGPIPE, signal.SIGXFSZ)
"""Signals Python ignores, which a job must get with their default action (as subprocess restores
them): a job in a pipeline ends at a closed pipe, not with an error on every write."""

_OUTPUT = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
_APPEND = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC  # a run after a checkpoint


def check_job(job: StartJob) -> None:
    """Refuse (ValueError) what no process can be started with. The server refuses it at submission;
    this is the agent's own guard, so that one bad job fails alone and never stops the agent."""
    texts = [job.command, job.cwd, job.output, job.name, *(job.script,), *job.env.values()]
    if any("\0" in t for t in texts if t):
        raise ValueError("a NUL byte in its command, script, directory, output or environment")
    for name in job.env:
        if not name or "=" in name or "\0" in name:
            raise ValueError(f"{name!r} is not an environment variable name")
    Limits.of(job)  # raises on a limit that is not a finite number within bounds


def spawn(job: StartJob, node: str, scratch: str, runtime: str,
          cgroup_procs: Sequence[str] = (), owner: Owner | None = None) -> tuple[int, Launch]:
    """Start ``job``'s supervisor (as ``owner`` if there is one); returns its pid. Raises OSError when
    it cannot start, ValueError for a job no process can be started with."""
    check_job(job)
    if owner is not None:
        return _spawn_as(job, node, scratch, runtime, cgroup_procs, owner)
    launch = build_launch(job, scratch, runtime, cgroup_procs, node=node)
    stage_script(launch, job, node=node)
    # the output is never opened through a link: a root job's must not follow one a user planted
    out = os.open(output_path(job, node), _APPEND if job.append_output else _OUTPUT, 0o666 & ~umask_of(job))
    try:
        rc = _create(pending_rc(launch.rc_file), 0o600)
    except OSError:
        os.close(out)
        raise
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, out, 1),
        (os.POSIX_SPAWN_DUP2, out, 2),
        (os.POSIX_SPAWN_DUP2, rc, 8),
    ]
    argv = launch.argv
    delta = job.nice - os.getpriority(os.PRIO_PROCESS, 0)
    nice = shutil.which("nice", path="/usr/bin:/bin") if delta else None
    if nice is not None:  # the shell starts at its niceness: nothing it starts runs at the agent's
        argv = [nice, "-n", str(delta), *argv]
    try:
        pid = os.posix_spawn(argv[0], argv, job_env_as(job, node, None, _hosts(launch, job), launch.nodes_file),
                             file_actions=actions,
                             setsid=True, setsigdef=RESTORE_SIGNALS)
    except BaseException:
        _not_spawned(launch.rc_file)
        raise
    finally:
        os.close(out)
        os.close(rc)
    os.rename(pending_rc(launch.rc_file), launch.rc_file)
    if delta and nice is None:
        set_nice(pid, job.nice)
    return pid, launch


def _hosts(launch: Launch, job: StartJob) -> str | None:
    return hosts_path(launch.script_file) if hosts_text(job, "") is not None else None


def set_nice(pid: int, nice: int) -> None:
    """Give the job's shell the niceness it is to run at (it started at the agent's own)."""
    if nice != os.getpriority(os.PRIO_PROCESS, 0):
        with contextlib.suppress(OSError):  # (an agent that is not root cannot lower it: it runs nicer)
            os.setpriority(os.PRIO_PROCESS, pid, nice)


@functools.cache
def setpriv() -> str | None:
    """util-linux's ``setpriv``, which a job run as its owner starts in (see :func:`become_argv`)."""
    return shutil.which("setpriv", path="/usr/bin:/bin:/usr/sbin:/sbin")


def become_argv(setpriv: str, owner: Owner) -> list[str]:
    """The start of a command line that takes ``owner``'s user, group and supplementary groups, then
    runs the rest. The agent starts it with vfork semantics (posix_spawn), which costs it next to
    nothing: a fork that changes user in the child copies the agent's whole address space, over a
    millisecond of the agent's time for every job. The kernel drops root's capabilities at the change
    of user, as it does for ``subprocess``'s ``user=``.

    setpriv runs as root until it changes user, and the dynamic loader reads its environment before
    that (``LD_PRELOAD``, ``LD_LIBRARY_PATH``, ``LD_AUDIT``, ``GCONV_PATH``...). So it is started with a
    fixed environment (:func:`helper_env`), and the job's own reaches the job's shell only once that
    shell is its owner's, on a descriptor (:func:`env_script`): never through a command line, which
    every user may read."""
    groups = ",".join(map(str, owner.groups))
    return [setpriv, f"--reuid={owner.uid}", f"--regid={owner.gid}",
            f"--groups={groups}" if groups else "--clear-groups", "--"]


def _env_memfd(env: dict[str, str]) -> int:
    fd = os.memfd_create("wulf-env", os.MFD_CLOEXEC)
    data = memoryview(env_script(env))
    while data:
        data = data[os.write(fd, data):]
    return fd


def _spawn_as(job: StartJob, node: str, scratch: str, runtime: str, cgroup_procs: Sequence[str],
              owner: Owner) -> tuple[int, Launch]:
    """Start the job's shell as ``owner`` (with setpriv, else with a fork that changes user), put it in
    its cgroup from outside, then let it go on (see the module's notes)."""
    helper = setpriv()
    launch = build_launch(job, scratch, runtime, cgroup_procs, owner, env_fd=helper is not None, node=node)
    assert launch.err_file is not None
    stage_script(launch, job, owner, node)
    env = job_env_as(job, node, owner, _hosts(launch, job), launch.nodes_file)
    fds: list[int] = []
    pid = 0
    try:
        rc = _create(pending_rc(launch.rc_file), 0o600)
        fds.append(rc)
        err = _create(launch.err_file, 0o600)
        fds.append(err)
        wait_r, wait_w = os.pipe2(os.O_CLOEXEC)
        fds += [wait_r, wait_w]
        if helper is not None:
            env_fd = _env_memfd(env)
            fds.append(env_fd)
            argv = [*become_argv(helper, owner), *launch.argv]
            actions = [(os.POSIX_SPAWN_DUP2, wait_r, 0), (os.POSIX_SPAWN_DUP2, rc, 1), (os.POSIX_SPAWN_DUP2, err, 2),
                       (os.POSIX_SPAWN_DUP2, env_fd, ENV_FD)]
            pid = os.posix_spawn(helper, argv, helper_env(job), file_actions=actions, setsid=True,
                                 setsigdef=RESTORE_SIGNALS)
        else:  # the child changes user before it runs anything: the environment is safe to pass
            try:
                popen = subprocess.Popen(
                    launch.argv, executable=SHELL, stdin=wait_r, stdout=rc, stderr=err, cwd="/", env=env,
                    user=owner.uid, group=owner.gid, extra_groups=list(owner.groups), start_new_session=True,
                    close_fds=True,
                )
            except subprocess.SubprocessError as e:
                raise OSError(f"cannot become {owner.name}: {e}") from None
            popen.returncode = 0  # the agent reaps the job itself (through a pidfd); this must never wait for it
            pid = popen.pid
        os.rename(pending_rc(launch.rc_file), launch.rc_file)
        joined = _join(pid, cgroup_procs)
        set_nice(pid, job.nice)  # before it goes on
        os.write(wait_w, b"1\n" if joined else b"0\n")
    except BaseException:
        if not pid:
            _not_spawned(launch.rc_file)
        raise
    finally:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
    return pid, launch


def _join(pid: int, cgroup_procs: Sequence[str]) -> bool:
    """Put process ``pid`` in the cgroup whose ``cgroup.procs`` files are these; whether it went."""
    if not cgroup_procs:
        return False
    data = str(pid).encode()
    try:
        for path in cgroup_procs:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
    except OSError:
        return False
    return True


def start_error(err_file: str | None) -> str:
    """Why a job run as its owner did not start, from what its shell said before its output was open."""
    if not err_file:
        return ""
    try:
        with open(err_file, encoding="utf-8", errors="replace") as f:
            text = f.read(2000).strip()
    except OSError:
        return ""
    return f"could not start: {text.splitlines()[0]}" if text else ""


def pending_rc(rc_file: str) -> str:
    """Where a job's exit-status file is made, before its supervisor is spawned; it is renamed to
    ``rc_file`` once the spawn is done (the supervisor writes to it whatever its name). So an agent that
    died meanwhile tells, at its restart, a job that never started (this file, empty) from one that did."""
    return rc_file + ".new"


def _not_spawned(rc_file: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(pending_rc(rc_file))


def cleanup(rc_file: str, script_file: str | None, keep_script: bool, err_file: str | None = None,
            nodes_file: str | None = None) -> None:
    """Remove a finished job's exit-status file, its hosts and node files, and (unless kept, qr -Z) its
    staged script."""
    for path in (rc_file, None if keep_script else script_file, err_file, hosts_path(script_file), nodes_file):
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
