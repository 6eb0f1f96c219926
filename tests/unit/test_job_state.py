from __future__ import annotations

import pytest

from wulf.errors import InvalidTransition
from wulf.model.job import FINAL_STATES, TRANSITIONS, Job, JobState, Origin


def test_final_states_have_no_way_out() -> None:
    for s in FINAL_STATES:
        assert TRANSITIONS[s] == frozenset()


def test_forbidden_transition_raises() -> None:
    job = Job(1, "u", 1, Origin.BATCH, JobState.DONE, "true")
    with pytest.raises(InvalidTransition, match="job 1: done -> running"):
        job.set_state(JobState.RUNNING)
    job = Job(2, "u", 1, Origin.BATCH, JobState.QUEUED, "true")
    job.set_state(JobState.RUNNING)
    assert job.state is JobState.RUNNING
