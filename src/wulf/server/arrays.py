"""Job arrays in the server's state machine: which tasks may wait in their queue, so that an array's
throttle (``%N``) is never exceeded (no I/O).

Each task of an array is a job of its own (its own id, one block per array: see wulf.model.array), so
everything that acts on jobs (cancel, hold, wait, reconcile, the end of a job) acts on tasks
unchanged. What arrays add is admission: a task of a throttled array waits *parked* (queued, but not
in its user's queue, so the scheduler does not see it) until fewer than N of its array's tasks are
*active*: in the queue or running. The scheduler places only what is in a queue, so at most N tasks
of an array can ever run at once, however many a pass places.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

from wulf.errors import UsageError
from wulf.model.array import ArraySpec, parse_array, parse_job_ref
from wulf.model.job import Job, JobState


@dataclass(slots=True, eq=False)
class ArrayRecord:
    """One array: its spec, and (throttled arrays only) its active and parked tasks' ids."""

    id: int
    spec: ArraySpec
    active: set[int] = field(default_factory=set)  # in a queue or running
    parked: set[int] = field(default_factory=set)  # queued, waiting for room under the throttle
    order: list[int] = field(default_factory=list)  # the parked as a heap (lazily pruned): lowest id first
    # how its tasks ended, for the jobs that wait for the whole array (see state): tasks not ended yet,
    # and whether one failed or was cancelled
    left: int = 0
    failed: bool = False
    cancelled: bool = False

    def state(self) -> JobState:
        """The array as a dependency sees it: waiting while a task has not ended; then failed if one
        failed, cancelled if one was cancelled, else done."""
        if self.left > 0:
            return JobState.QUEUED
        return JobState.FAILED if self.failed else JobState.CANCELLED if self.cancelled else JobState.DONE

    def ended(self, state: JobState) -> bool:
        """One of its tasks ended in ``state``; True if it was the last."""
        self.left -= 1
        self.failed |= state is JobState.FAILED
        self.cancelled |= state is JobState.CANCELLED
        return self.left == 0

    @property
    def text(self) -> str:
        return self.spec.text()

    def task_id(self, index: int) -> int | None:
        """The id of the task of this index (None: the array has no such task)."""
        pos = self.spec.position(index)
        return None if pos is None else self.id + pos

    def task_ids(self) -> range:
        return range(self.id, self.id + self.spec.count)

    def index_of(self, job_id: int) -> int:
        return self.spec.indices[job_id - self.id]


class ArrayBook:
    """The arrays the server knows, by id, and the admission of their tasks to their queues."""

    def __init__(self) -> None:
        self.arrays: dict[int, ArrayRecord] = {}

    def add(self, array_id: int, spec: ArraySpec) -> ArrayRecord:
        rec = self.arrays[array_id] = ArrayRecord(array_id, spec)
        return rec

    def load(self, specs: dict[int, str]) -> None:
        """The arrays as stored (their specs' text; a spec that no longer parses is skipped)."""
        for array_id, text in specs.items():
            try:
                self.add(array_id, parse_array(text))
            except UsageError:
                continue

    def of(self, job: Job) -> ArrayRecord | None:
        """The throttled array ``job`` is a task of (None: not a task, or its array has no throttle)."""
        if job.array_id is None:
            return None
        rec = self.arrays.get(job.array_id)
        return rec if rec is not None and rec.spec.throttle else None

    def admit(self, job: Job) -> bool:
        """A task is to wait: True if it may wait in its queue now (it is active), False if it is parked."""
        rec = self.of(job)
        if rec is None:
            return True
        if len(rec.active) < rec.spec.throttle or job.id in rec.active:
            rec.active.add(job.id)
            return True
        if job.id not in rec.parked:
            rec.parked.add(job.id)
            heapq.heappush(rec.order, job.id)
        return False

    def admit_all(self, tasks: list[Job]) -> list[Job]:
        """:meth:`admit` for many tasks at once (a new array's, in id order); returns those that may wait
        in their queue now."""
        out: list[Job] = []
        by_array: dict[int | None, list[Job]] = {}
        for job in tasks:
            by_array.setdefault(job.array_id, []).append(job)
        for array_id, jobs in by_array.items():
            rec = self.arrays.get(array_id) if array_id is not None else None
            if rec is None or not rec.spec.throttle:
                out += jobs
                continue
            room = max(0, rec.spec.throttle - len(rec.active))
            out += jobs[:room]
            rec.active.update(j.id for j in jobs[:room])
            parked = [j.id for j in jobs[room:] if j.id not in rec.parked]
            rec.parked.update(parked)
            if rec.order:
                for job_id in parked:
                    heapq.heappush(rec.order, job_id)
            else:
                rec.order = sorted(parked)  # a sorted list is a heap
        return out

    def running(self, job: Job) -> None:
        """A task runs (also one that started without being admitted: see ServerState._adopt)."""
        rec = self.of(job)
        if rec is not None:
            rec.parked.discard(job.id)
            rec.active.add(job.id)

    def leave(self, job: Job) -> list[int]:
        """A task is no longer active or parked (it ended, or is held); returns the ids of the parked
        tasks now admitted (lowest first), which the caller puts in their queues."""
        rec = self.of(job)
        if rec is None:
            return []
        rec.active.discard(job.id)
        rec.parked.discard(job.id)
        admitted = []
        while rec.parked and len(rec.active) < rec.spec.throttle:
            nxt = heapq.heappop(rec.order)
            if nxt in rec.parked:
                rec.parked.discard(nxt)
                rec.active.add(nxt)
                admitted.append(nxt)
        if not rec.parked:
            rec.order.clear()
        return admitted

    def rethrottle(self, array_id: int, throttle: int, running: Iterable[int],
                   waiting: Iterable[int]) -> tuple[list[int], list[int]]:
        """The array's throttle is now ``throttle`` (0: none). ``running``: its tasks that run;
        ``waiting``: those queued in line or parked (not those waiting for a dependency or an earlier
        run). Returns the tasks that wait in line now and those parked: the lowest ids wait in line, as
        many as the new throttle leaves room for beside the running ones (running tasks go on, even
        past a lowered throttle)."""
        rec = self.arrays[array_id]
        rec.spec = replace(rec.spec, throttle=throttle)
        rec.active, rec.parked, rec.order = set(running), set(), []
        ids = sorted(waiting)
        if not throttle:
            rec.active.clear()
            return ids, []
        room = max(0, throttle - len(rec.active))
        line, parked = ids[:room], ids[room:]
        rec.active.update(line)
        rec.parked.update(parked)
        rec.order = list(parked)  # sorted: a heap
        return line, parked

    def is_parked(self, job: Job) -> bool:
        rec = self.of(job)
        return rec is not None and job.id in rec.parked

    def resolve(self, refs: Iterable[int | str]) -> Iterator[int]:
        """The job ids that refs name: ``12`` is job 12, or every task of array 12; ``"12[5]"`` is task 5
        of array 12 (UsageError: no such array or task)."""
        for ref in refs:
            if isinstance(ref, int):
                rec = self.arrays.get(ref)
                yield from (rec.task_ids() if rec is not None else (ref,))
                continue
            array_id, index = parse_job_ref(ref)
            if index is None:
                rec = self.arrays.get(array_id)
                yield from (rec.task_ids() if rec is not None else (array_id,))
                continue
            rec = self.arrays.get(array_id)
            if rec is None:
                raise UsageError(f"{ref}: job {array_id} is not an array")
            task = rec.task_id(index)
            if task is None:
                raise UsageError(f"{ref}: array {array_id} ({rec.text}) has no task {index}")
            yield task
