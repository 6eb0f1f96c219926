"""Jobs from clients: what a submission asks for, checked and made into jobs (no I/O)."""

from __future__ import annotations

import gc
import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import fields

from wulf.auth.identity import Caller
from wulf.config import Config
from wulf.errors import Refused, UsageError
from wulf.model import checkpoint, depend
from wulf.model.array import ArraySpec
from wulf.model.job import Job, JobState, Origin
from wulf.model.tasks import shape
from wulf.policy.constraint import parse_constraint
from wulf.policy.settings import Policy
from wulf.protocol import JobSpec
from wulf.server import jobmail
from wulf.server.queues import DEFAULT_QUEUE, check_queue_name


def _wire_size(text: str | None) -> int:
    """Bytes ``text`` takes in a JSON message: six at most a character (an escaped control character),
    counted exactly only when that bound is not small enough to tell."""
    return 0 if not text else 6 * len(text)


def _exact_size(text: str | None) -> int:
    return len(json.dumps(text, ensure_ascii=False).encode()) if text else 0


def env_hash(env: dict[str, str]) -> tuple[str, str]:
    text = json.dumps(env, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32], text


def new_job(job_id: int, spec: JobSpec, caller: Caller, env_hash: str, origin: Origin, now: float,
            config: Config, policy: Policy, umask: int | None = None, env: dict[str, str] | None = None) -> Job:
    """The job ``spec`` asks for, checked (UsageError), with the site's defaults and limits."""
    sched = config.scheduler
    cpu = spec.cpu if spec.cpu is not None else sched.default_cpu
    mem = spec.mem_mb if spec.mem_mb is not None else sched.default_mem_mb
    if not spec.cwd.startswith("/"):
        raise UsageError(f"the working directory must be an absolute path, not {spec.cwd!r}")
    if spec.script is None and not spec.command.strip():
        raise UsageError("a job needs a command or a script")
    if spec.script is not None and not spec.script.strip():
        raise UsageError("the script is empty")
    if not (cpu > 0 and mem > 0):
        raise UsageError("cpu and memory requests must be more than zero")
    queue = check_queue_name(spec.queue or DEFAULT_QUEUE)
    constraint = str(parse_constraint(spec.constraint)) if spec.constraint.strip() else ""
    nice = policy.start_nice(spec.nice, origin is Origin.BATCH, caller.admin)
    mail_type, mail_user = jobmail.resolve(spec.mail_type, spec.mail_user, caller.user, config)
    tasks = shape(spec.ntasks, spec.nodes, spec.tasks_per_node)
    if not tasks.single and origin is not Origin.BATCH:
        raise UsageError("only queued jobs (qr) run several tasks or on several nodes")
    job = Job(
        id=job_id,
        user=caller.user,
        uid=caller.uid,
        gid=caller.gid,
        umask=umask,
        origin=origin,
        state=JobState.HELD if spec.hold else JobState.QUEUED,
        command=spec.command if spec.script is None else (spec.command or spec.name or "(script)"),
        cwd=spec.cwd,
        name=spec.name,
        queue=queue,
        script=spec.script,
        env_hash=env_hash,
        output=spec.output,
        keep_script=spec.keep_script,
        cpu_req=cpu,
        mem_req=mem,
        cpu=cpu,
        mem_mb=mem,
        submitted=now,
        constraint=constraint,
        time_limit=policy.time.resolve(spec.time_limit),
        cputime_limit=policy.cputime.resolve(spec.cputime_limit),
        mem_limit_mb=policy.mem_limit.resolve(spec.mem_limit_mb),
        nice=nice,
        dialect=spec.dialect,
        depend=depend.text(depend.parse(spec.depend)) if spec.depend.strip() else "",
        retries=spec.retries if spec.retries is not None else sched.default_retries,
        mail_type=mail_type,
        mail_user=mail_user,
        ntasks=tasks.ntasks,
        nodes_req=tasks.nodes,
        tasks_per_node=tasks.per_node,
    )
    job.requeue = spec.requeue
    if spec.hold:
        job.reason = f"held at submission (qrls {job_id} releases it)"
    _notices(job, spec, config, env)
    return job


def _notices(job: Job, spec: JobSpec, config: Config, env: dict[str, str] | None) -> None:
    """A job's warning signal and checkpoint (issue 13 §2), checked (UsageError): a warning before the
    time limit needs one; a checkpoint by CRIU cannot be done by wulf's agents (qr says why first)."""
    if spec.warn_signal:
        job.warn_signal = checkpoint.parse_signal(spec.warn_signal, "signal").text()
        if job.time_limit is None:
            raise UsageError("signal: a warning before the time limit needs a time limit (give --time)")
    if spec.checkpoint:
        notice = checkpoint.parse_checkpoint(spec.checkpoint, "checkpoint")
        if notice is None:
            raise UsageError("checkpoint: criu: the nodes cannot dump and restore jobs with CRIU; "
                             "use --checkpoint SIG[@INTERVAL] (the job saves its own state)")
        job.checkpoint = notice.text()
        job.checkpoint_exit = checkpoint.exit_code_of(env, config.scheduler.checkpoint_exit_code)


def new_tasks(first: Job, spec: ArraySpec) -> list[Job]:
    """The tasks of an array whose first task is ``first`` (made by :func:`new_job`): one job a task,
    ids ``first.id`` onwards, each sharing the first's strings (one script, not one a task)."""
    first.array_id = first.id
    first.array_index = spec.first
    values = [getattr(first, f.name) for f in fields(Job)]  # positional: three times quicker than by name
    at_id, at_index = _FIELDS.index("id"), _FIELDS.index("array_index")
    tasks = [first]
    indices = spec.indices
    collecting = gc.isenabled()
    gc.disable()  # jobs hold no cycles; collections as 100,000 are made would take longer than making them
    try:
        for k in range(1, spec.count):
            values[at_id] = first.id + k
            values[at_index] = indices[k]
            tasks.append(Job(*values))
    finally:
        if collecting:
            gc.enable()
    return tasks


_FIELDS = [f.name for f in fields(Job)]


def check_sizes(jobs: Sequence[JobSpec], env: dict[str, str], limit_mb: float) -> None:
    """Refuse a job larger than [limits] job_max_mb as sent to its node (UsageError): what an agent
    cannot take in one message would stall its node."""
    limit = int(limit_mb * 1024 * 1024)
    env_size = sum(_wire_size(k) + _wire_size(v) for k, v in env.items())
    exact_env: int | None = None
    for n, spec in enumerate(jobs, 1):
        texts = (spec.command, spec.script, spec.cwd, spec.output, spec.name)
        if env_size + sum(map(_wire_size, texts)) <= limit:
            continue
        if exact_env is None:
            exact_env = sum(_exact_size(k) + _exact_size(v) for k, v in env.items())
        size = exact_env + sum(map(_exact_size, texts))
        if size > limit:
            which = f"job {n} of {len(jobs)}" if len(jobs) > 1 else "the job"
            raise UsageError(f"{which} takes {size / 1048576:.1f} MB (script, command, environment and paths), "
                             f"more than the {limit_mb:g} MB this site allows ([limits] job_max_mb): "
                             f"keep big data in files the job reads")


def check_queued(jobs: Iterable[Job], caller: Caller, more: int, cap: int) -> None:
    """Refuse jobs past ``cap`` ([limits] max_queued_per_user) waiting (queued or held) for one user
    (root, or cap 0: no limit)."""
    if not cap or caller.uid == 0:
        return
    waiting = sum(1 for j in jobs
                  if j.uid == caller.uid and (j.state is JobState.QUEUED or j.state is JobState.HELD))
    if waiting + more > cap:
        raise Refused(f"{caller.user} has {waiting} jobs waiting: {more} more would be over the {cap} jobs one "
                      f"user may have waiting ([limits] max_queued_per_user); wait for some to start")


def check_dependencies(jobs: Sequence[Job], exists: Callable[[int], bool]) -> set[int]:
    """Refuse (UsageError) a dependency on a job that does not exist, or on a job of the same submission
    (a job cannot wait for itself, nor for one queued with it: that could make a cycle). Returns the ids
    named. ``exists`` says whether a job was ever queued (in memory or in the store)."""
    ours = {j.id for j in jobs}
    named: set[int] = set()
    for job in jobs:
        if not job.depend:
            continue
        for i in sorted(depend.ids_of(depend.parse(job.depend))):
            if i in ours:
                raise UsageError(f"job {job.id} cannot wait for job {i}: "
                                 + ("itself" if i == job.id else "it is queued in the same submission")
                                 + " (a dependency cycle)")
            named.add(i)
    for i in sorted(named):
        if not exists(i):
            raise UsageError(f"no job {i}: a job can only wait for a job that exists")
    return named
