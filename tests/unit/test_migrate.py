"""The owner-returns decision (issue 13 §3), without processes: reports in, steps out."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from wulf.policy.migrate import Fate, JobView, Settings, Step, Watch, decide, fate_after, observe

S = Settings(busy_cpu=0.5, busy_seconds=30.0, grace_seconds=120.0)
CKPT = JobView(1, checkpoint=True, requeueable=False)
PLAIN = JobView(2, checkpoint=False, requeueable=False)
RETRY = JobView(3, checkpoint=False, requeueable=True)


def _feed(watch: Watch, loads: list[tuple[float, float]]) -> Watch:
    for now, cpu in loads:
        watch = observe(watch, now, cpu, S)
    return watch


def _apply(jobs: list[JobView], steps: list[tuple[int, Step]]) -> list[JobView]:
    by = dict(steps)
    return [replace(j, fate=fate_after(by[j.id])) if j.id in by else j for j in jobs]


def test_a_short_burst_of_outside_work_is_not_the_owner() -> None:
    w = _feed(Watch(), [(0, 2.0), (10, 2.0), (20, 2.0), (25, 0.1), (30, 2.0), (50, 2.0)])
    assert not w.back  # never 30 s in a row
    assert decide(w, 50, starved=True, jobs=[CKPT, PLAIN], s=S) == []


def test_the_owner_back_checkpoints_some_and_renices_the_rest() -> None:
    w = _feed(Watch(), [(0, 1.0), (15, 1.0), (30, 1.0)])
    assert w.back and w.back_since == 30
    assert decide(w, 30, starved=True, jobs=[CKPT, PLAIN, RETRY], s=S) == [
        (1, Step.CHECKPOINT), (2, Step.RENICE), (3, Step.RENICE)]


def test_the_owner_still_starved_after_the_grace_suspends_or_requeues() -> None:
    w = _feed(Watch(), [(0, 1.0), (30, 1.0)])
    jobs = _apply([CKPT, PLAIN, RETRY], decide(w, 30, True, [CKPT, PLAIN, RETRY], S))
    assert [j.fate for j in jobs] == [Fate.MIGRATING, Fate.RENICED, Fate.RENICED]
    w = observe(w, 100, 1.0, S)
    assert decide(w, 100, True, jobs, S) == []  # within the grace: nothing more
    w = observe(w, 150, 1.0, S)
    assert decide(w, 150, False, jobs, S) == [(1, Step.SUSPEND)]  # not starved: reniced is enough (the job
    # told to checkpoint did not go: stopped whatever the owner's work gets)
    assert decide(w, 150, True, jobs, S) == [(1, Step.SUSPEND), (2, Step.SUSPEND), (3, Step.REQUEUE)]
    jobs = _apply(jobs, decide(w, 150, True, jobs, S))
    assert decide(observe(w, 160, 1.0, S), 160, True, jobs, S) == []  # done once


def test_when_the_owner_goes_jobs_get_back_what_they_had() -> None:
    w = _feed(Watch(), [(0, 1.0), (30, 1.0), (150, 1.0)])
    jobs = [replace(CKPT, fate=Fate.MIGRATING), replace(PLAIN, fate=Fate.SUSPENDED),
            replace(RETRY, fate=Fate.REQUEUED), JobView(4, False, False, Fate.RENICED)]
    w = observe(w, 160, 0.1, S)
    assert w.back  # a pause is not leaving
    assert decide(w, 160, False, jobs, S) == [(1, Step.SUSPEND)]  # (the one told to checkpoint is late)
    w = observe(w, 190, 0.1, S)
    assert not w.back
    assert decide(w, 190, False, jobs, S) == [(1, Step.RESUME), (2, Step.RESUME), (4, Step.RESUME)]


def test_a_job_that_comes_while_the_owner_is_back_is_handled_at_once() -> None:
    w = _feed(Watch(), [(0, 1.0), (30, 1.0), (500, 1.0)])
    new = JobView(9, checkpoint=False, requeueable=True)
    assert decide(w, 500, True, [new], S) == [(9, Step.RENICE)]
    assert decide(w, 501, True, [replace(new, fate=Fate.RENICED)], S) == [(9, Step.REQUEUE)]


_JOBS = st.lists(st.builds(JobView, st.integers(0, 5), st.booleans(), st.booleans(), st.sampled_from(list(Fate))),
                 max_size=6, unique_by=lambda j: j.id)


@given(st.lists(st.tuples(st.floats(0, 50), st.floats(0, 4)), max_size=30), _JOBS, st.booleans())
def test_any_reports(reports: list[tuple[float, float]], jobs: list[JobView], starved: bool) -> None:
    """Whatever the reports: one step at most a job; nothing is done to a job while the owner is away
    but undoing; a job is never suspended or queued again within the grace; a step changes its fate."""
    now, w = 0.0, Watch()
    for dt, cpu in reports:
        now += dt
        w = observe(w, now, cpu, S)
        steps = decide(w, now, starved, jobs, S)
        assert len({i for i, _ in steps}) == len(steps)
        for i, step in steps:
            job = next(j for j in jobs if j.id == i)
            assert fate_after(step) is not job.fate
            if not w.back:
                assert step is Step.RESUME
            elif w.back_since is not None and now - w.back_since < S.grace_seconds:
                assert step in (Step.CHECKPOINT, Step.RENICE)
        jobs = _apply(jobs, steps)


def test_the_owner_is_gone_only_after_away_seconds_below() -> None:
    s = replace(S, away_seconds=600.0)
    w = Watch()
    for now, cpu in [(0, 1.0), (30, 1.0), (40, 0.0), (100, 0.0), (639, 0.0)]:  # thinking: still there
        w = observe(w, now, cpu, s)
    assert w.back
    assert not observe(w, 640, 0.0, s).back
    assert not _feed(Watch(), [(0, 1.0), (30, 1.0), (40, 0.0), (70, 0.0)]).back  # (None: busy_seconds)
