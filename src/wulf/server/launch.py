"""``wulf launch`` (and ``wulf-rsh``): tasks of a running job, started across its allocation through
the agents (issue 13 §1). Pure: who may, and which task goes where.

Only the job itself may launch: the request must come from its owner *and* carry the job's launch key,
which the server derives from its own key and the job's run (id, attempt, first node) and gives only
to the job's environment (``WULF_LAUNCH_KEY``). Tasks go only to the nodes of the job's own
allocation. The agents start each task as the job's owner, in the job's cgroup on its node
(:class:`wulf.protocol.Session` with a ``task``), and relay its output to ``wulf launch``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence

from wulf.errors import Forbidden, Refused, UsageError
from wulf.model.job import Job, JobState
from wulf.model.tasks import compact, parse_alloc


def launch_key(key: bytes, job: Job) -> str:
    """The job's launch key for this run: another attempt, or a run on other nodes, has another."""
    text = f"launch\0{job.id}\0{job.restarts}\0{job.alloc}".encode()
    return hmac.new(key, text, hashlib.sha256).hexdigest()


def check(job: Job | None, job_id: int, uid: int, given: str, key: bytes) -> Job:
    """The job ``wulf launch`` may start tasks of, or why not (Refused, Forbidden, UsageError)."""
    if job is None or job.state is not JobState.RUNNING:
        raise Refused(f"job {job_id} is not running: wulf launch starts tasks only of a running job")
    if not job.alloc:
        raise UsageError(f"job {job_id} has no tasks to launch: wulf launch runs in jobs queued with "
                         "qr --ntasks, --nodes or --ntasks-per-node")
    if uid != job.uid or not hmac.compare_digest(given.encode(), launch_key(key, job).encode()):
        raise Forbidden(f"wulf launch runs only from inside job {job_id} (its WULF_LAUNCH_KEY), as its owner")
    return job


def place_tasks(job: Job, ntasks: int | None) -> list[tuple[str, int, int]]:
    """(node, task id, task id on that node) for ``ntasks`` tasks (None: one a slot), in blocks: the
    first node's slots first, as its node file lists them."""
    slots = parse_alloc(job.alloc)
    total = sum(k for _, k in slots)
    want = total if ntasks is None else ntasks
    if want > total:
        raise UsageError(f"wulf launch: -n {want} is more tasks than job {job.id} has slots ({total} on "
                         f"{compact(n for n, _ in slots)})")
    out: list[tuple[str, int, int]] = []
    task = 0
    for node, k in slots:
        for local in range(k):
            if task == want:
                return out
            out.append((node, task, local))
            task += 1
    return out


def on_hosts(job: Job, hosts: Sequence[str], hostnames: Mapping[str, str]) -> list[tuple[str, int, int]]:
    """One task on each of ``hosts`` (``wulf-rsh``): each must be a node of the job's allocation, by its
    name or its host name (``hostnames``: node -> host name); else Forbidden."""
    mine = [n for n, _ in parse_alloc(job.alloc)]
    out: list[tuple[str, int, int]] = []
    for task, host in enumerate(hosts):
        node = host if host in mine else next((n for n in mine if hostnames.get(n) == host), None)
        if node is None:
            raise Forbidden(f"{host} is not a node of job {job.id}'s allocation ({compact(mine)})")
        out.append((node, task, 0))
    return out


def task_env(env: Mapping[str, str], task: int, local: int, ntasks: int, node: str) -> dict[str, str]:
    """A task's environment: what ``wulf launch`` ran with, and which task it is."""
    return {**env, "WULF_TASK_ID": str(task), "WULF_LOCAL_TASK_ID": str(local), "WULF_LAUNCH_NTASKS": str(ntasks),
            "WULF_NODE": node}
