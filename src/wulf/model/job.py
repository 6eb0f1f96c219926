"""Job states, origins and the one table of allowed transitions."""

from __future__ import annotations

from enum import StrEnum

from wulf.errors import InvalidTransition


class JobState(StrEnum):
    QUEUED = "queued"
    HELD = "held"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Origin(StrEnum):
    BATCH = "batch"  # queued with qr
    INTERACTIVE = "interactive"  # started now with jr
    EXTERNAL = "external"  # found running on a node, not started by wulf


FINAL_STATES = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED})
WAITING_STATES = frozenset({JobState.QUEUED, JobState.HELD})
ACTIVE_STATES = frozenset({JobState.QUEUED, JobState.HELD, JobState.RUNNING})

TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.HELD, JobState.CANCELLED, JobState.FAILED}),
    JobState.HELD: frozenset({JobState.QUEUED, JobState.CANCELLED}),
    # running -> queued: the node never started it (lost before start) and it goes back in line
    JobState.RUNNING: frozenset(
        {JobState.DONE, JobState.FAILED, JobState.CANCELLED, JobState.QUEUED}
    ),
    JobState.DONE: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}


def check_transition(job_id: int, old: JobState, new: JobState) -> None:
    """Raise :class:`InvalidTransition` unless ``old -> new`` is in the table."""
    if new not in TRANSITIONS[old]:
        raise InvalidTransition(f"job {job_id}: {old} -> {new} is not allowed")
