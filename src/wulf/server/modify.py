"""jmod: which changes a job may take, checked before any is made (no I/O).

A job that waits (queued or held) may take any change; one that runs only what can change under it:
its niceness (lower: administrators only, as with jnice), its time limit (raised: administrators
only) and its name. An array named by its id is changed task by task: those that wait take every
change, those that run what a running job may take, those that ended nothing; its throttle is the
array's own. A request is all or nothing: the first job that cannot take what is asked refuses the
whole request (:class:`~wulf.errors.UsageError`: exit 2; :class:`~wulf.errors.Forbidden`: exit 5)
before anything changes, as qcancel's checks do. :class:`~wulf.server.state.ServerState` makes the
changes (see ``_modify`` there).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from wulf.errors import Forbidden, UsageError
from wulf.model import depend
from wulf.model.job import Job, JobState, Origin
from wulf.policy.limits import format_duration
from wulf.policy.settings import Policy
from wulf.server.events import JobChanges
from wulf.server.queues import check_queue_name

#: what only a job that waits may change: it is what the scheduler placed a running job by
WAITING_ONLY = ("cpu", "mem_mb", "queue", "depend")

#: how each change is named to users (as jmod's options)
OPTION = {"cpu": "--cpu", "mem_mb": "--mem", "time_limit": "--time", "queue": "--queue", "name": "--name",
          "nice": "--nice", "throttle": "--throttle", "depend": "--after"}


@dataclass(slots=True)
class Plan:
    """What a checked request changes: each job with the changes it takes (checked, resolved as a
    submission's would be), and the arrays' new throttles."""

    jobs: list[tuple[Job, JobChanges]] = field(default_factory=list)
    throttles: dict[int, int] = field(default_factory=dict)


def limit_text(value: float | None) -> str:
    return "none" if value is None else format_duration(value)


def _running_changes(job: Job, asked: JobChanges, admin: bool, whole: bool) -> JobChanges:
    """What a running job takes of ``asked`` (refused: a change it cannot take, unless it is a task of an
    array named whole, which simply keeps what it runs with)."""
    waiting_only = [k for k in WAITING_ONLY if getattr(asked, k) is not None]
    if waiting_only and not whole:
        names = ", ".join(OPTION[k] for k in waiting_only)
        raise UsageError(f"job {job.id} is running: {names} can change only while a job waits (queued or "
                         f"held); a running job takes --nice, --time (lower) and --name")
    if asked.nice is not None and asked.nice < job.nice and not admin:
        raise Forbidden(f"job {job.id} runs at nice {job.nice}; only an administrator may lower it")
    limit = asked.time_limit
    if limit is not None:
        if job.origin is not Origin.BATCH:
            raise UsageError(f"job {job.id} is an interactive session: its time limit cannot change")
        if job.time_limit is not None and limit > job.time_limit and not admin:  # (none: any is lower)
            raise Forbidden(f"job {job.id} runs with a time limit of {limit_text(job.time_limit)}: you may "
                            f"lower it; only an administrator may raise it while it runs")
    return replace(asked, cpu=None, mem_mb=None, queue=None, depend=None)


def _waiting_changes(job: Job, asked: JobChanges, policy: Policy, admin: bool) -> JobChanges:
    """What a waiting job takes: all of ``asked``, checked as a submission's would be."""
    nice = None if asked.nice is None else policy.start_nice(asked.nice, job.origin is Origin.BATCH, admin)
    limit = None if asked.time_limit is None else policy.time.resolve(asked.time_limit)
    return replace(asked, nice=nice, time_limit=limit)


def _job_changes(job: Job, asked: JobChanges, whole: bool, policy: Policy, admin: bool) -> JobChanges | None:
    """The changes ``job`` takes; None: it takes none (a task of an array named whole that ended, or that
    runs and was asked only what a running job cannot take)."""
    if job.final:
        if whole:
            return None
        raise UsageError(f"job {job.id} has ended ({job.state}): there is nothing left to change")
    if job.state is JobState.RUNNING:
        took = _running_changes(job, asked, admin, whole)
        return took if took.given() else None
    return _waiting_changes(job, asked, policy, admin)


def _check_throttle(jobs: Iterable[Job], arrays: frozenset[int], throttle: int) -> dict[int, int]:
    named: set[int] = set()
    for job in jobs:
        if job.array_id is None or job.array_id not in arrays:
            what = f"job {job.id} is not an array" if job.array_id is None else \
                f"job {job.id} is task {job.array_index} of array {job.array_id}"
            raise UsageError(f"--throttle: {what}; a throttle is an array's (name the array by its id)")
        named.add(job.array_id)
    return dict.fromkeys(sorted(named), throttle)


def _normal(changes: JobChanges) -> JobChanges:
    """The request with its queue name and dependency checked, the dependency in its usual form."""
    queue = None if changes.queue is None else check_queue_name(changes.queue)
    dep = changes.depend
    if dep:
        dep = depend.text(depend.parse(dep))
    return replace(changes, queue=queue, depend=dep, throttle=None)


def _sort_out(jobs: list[Job], asked: JobChanges, arrays: frozenset[int], policy: Policy, admin: bool,
              out: Plan) -> None:
    """Each job's changes into ``out``; refused when no job named can take what only a waiting job takes."""
    want = asked.given().keys()
    for job in jobs:
        took = _job_changes(job, asked, job.array_id in arrays, policy, admin)
        if took is not None:
            out.jobs.append((job, took))
    waiting_only = [k for k in WAITING_ONLY if k in want]
    if waiting_only and not any(getattr(t, k) is not None for _, t in out.jobs for k in waiting_only):
        raise UsageError(f"no job named waits: {', '.join(OPTION[k] for k in waiting_only)} can change only "
                         f"while a job waits (queued or held)")
    if not out.jobs:
        raise UsageError("every job named has ended: there is nothing left to change")


def plan(jobs: Iterable[Job], changes: JobChanges, arrays: frozenset[int], policy: Policy, admin: bool,
         exists: Callable[[int], bool], waits_on: Callable[[int], Iterable[int]]) -> Plan:
    """Check a request (see the module's text) and say what it changes. ``exists``: whether a job was ever
    queued; ``waits_on``: the jobs that a job (or the tasks of an array) waits for now, for cycles."""
    if not changes.given():
        raise UsageError("nothing to change: give --cpu, --mem, --time, --queue, --name, --nice, --throttle "
                         "or --after")
    jobs = list({j.id: j for j in jobs}.values())
    asked = _normal(changes)
    out = Plan()
    if changes.throttle is not None:
        out.throttles = _check_throttle(jobs, arrays, changes.throttle)
    if asked.given():
        _sort_out(jobs, asked, arrays, policy, admin, out)
    if asked.depend:
        check_dependency(asked.depend, [j for j, took in out.jobs if took.depend is not None], exists, waits_on)
    return out


def check_dependency(text: str, dependents: list[Job], exists: Callable[[int], bool],
                     waits_on: Callable[[int], Iterable[int]]) -> None:
    """Refuse (UsageError) a dependency on a job that never existed, or one that would close a cycle: a
    job named (or one it waits for, and so on) is one of ``dependents``, or an array one of them is in."""
    ours = {j.id for j in dependents} | {j.array_id for j in dependents if j.array_id is not None}
    named = sorted(depend.ids_of(depend.parse(text)))
    for i in named:
        if not exists(i):
            raise UsageError(f"no job {i}: a job can only wait for a job that exists")
    seen: set[int] = set()
    for n in named:
        todo = [n]
        while todo:
            i = todo.pop()
            if i in ours:
                why = "it is one of the jobs changed" if i == n else f"it waits, directly or not, for job {i}"
                raise UsageError(f"a job changed here cannot wait for job {n}: {why} (a dependency cycle)")
            if i not in seen:
                seen.add(i)
                todo.extend(j for j in waits_on(i) if j not in seen)


def describe(job: Job, took: JobChanges) -> str:
    """``cpu 1.0 -> 2.0, queue 'default' -> 'big'``, as the log shows a change, from the job before it."""
    before = {"cpu": job.cpu_req, "mem_mb": job.mem_req, "time_limit": job.time_limit, "queue": job.queue,
              "name": job.name, "nice": job.nice, "depend": job.depend}
    parts = []
    for k, v in took.given().items():
        if k == "time_limit":
            parts.append(f"time {limit_text(job.time_limit)} -> {limit_text(v)}")
        else:
            parts.append(f"{k} {before.get(k)!r} -> {v!r}")
    return ", ".join(parts)
