"""Users' queues: their settings (qset), and the waiting jobs of each, in the order they are served."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

from wulf.errors import UsageError
from wulf.model.job import Job
from wulf.policy.windows import WINDOW_KINDS

DEFAULT_QUEUE = "default"


def check_queue_name(name: str) -> str:
    if not name or ":" in name or not name.isprintable() or len(name) > 64 or name != name.strip():
        raise UsageError(f"{name!r} is not a queue name (printable, no ':', at most 64 characters)")
    return name


@dataclass(frozen=True)
class QueueSettings:
    user: str
    name: str
    priority: int = 0
    stopped: bool = False
    window: str = "always"  # always, nights, weekends
    mail: str = ""  # mail this address when a job of the queue ends

    def public(self) -> dict[str, Any]:
        return asdict(self)


class Queue:
    """One user's queue: its settings and its waiting jobs, by job id (the order they are served)."""

    __slots__ = ("jobs", "settings", "sorted_to")

    def __init__(self, settings: QueueSettings) -> None:
        self.settings = settings
        self.jobs: dict[int, Job] = {}
        self.sorted_to = 0  # the largest id added in order; a smaller one means the order must be restored

    def add(self, job: Job) -> None:
        self.jobs[job.id] = job
        if job.id < self.sorted_to:
            self.jobs = dict(sorted(self.jobs.items()))
        else:
            self.sorted_to = job.id


class QueueBook:
    """Every queue, by (user, name). A queue exists when it has settings or waiting jobs."""

    def __init__(self) -> None:
        self.queues: dict[tuple[str, str], Queue] = {}
        self.changed = True  # a job came or left, or settings changed, since the scheduler last looked

    def load(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            s = QueueSettings(row["user"], row["name"], int(row["priority"]), bool(row["stopped"]),
                              str(row["window"]), str(row["mail"]))
            self.queue(s.user, s.name).settings = s
        self.changed = True

    def queue(self, user: str, name: str) -> Queue:
        q = self.queues.get((user, name))
        if q is None:
            q = self.queues[(user, name)] = Queue(QueueSettings(user, name))
        return q

    def settings(self, user: str, name: str) -> QueueSettings:
        q = self.queues.get((user, name))
        return q.settings if q else QueueSettings(user, name)

    def add(self, job: Job) -> None:
        self.queue(job.user, job.queue).add(job)
        self.changed = True

    def remove(self, job: Job) -> None:
        q = self.queues.get((job.user, job.queue))
        if q is not None and q.jobs.pop(job.id, None) is not None:
            self.changed = True

    def holds(self, job: Job) -> bool:
        """Whether ``job`` waits in line in its queue (the scheduler sees it)."""
        q = self.queues.get((job.user, job.queue))
        return q is not None and job.id in q.jobs

    def waiting(self) -> Iterator[Queue]:
        return (q for q in self.queues.values() if q.jobs)

    def any_waiting(self) -> bool:
        return any(q.jobs for q in self.queues.values())

    def change(self, user: str, name: str, **changes: Any) -> QueueSettings:
        """New settings for a queue (checked); the caller stores them."""
        window = changes.get("window")
        if window is not None and window not in WINDOW_KINDS:
            raise UsageError(f"a queue's window is one of {', '.join(WINDOW_KINDS)}, not {window!r}")
        priority = changes.get("priority")
        if priority is not None and not -1_000_000 <= priority <= 1_000_000:
            raise UsageError("a queue's priority is a whole number between -1000000 and 1000000")
        q = self.queue(user, check_queue_name(name))
        q.settings = replace(q.settings, **{k: v for k, v in changes.items() if v is not None})
        self.changed = True
        return q.settings
