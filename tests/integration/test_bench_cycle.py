"""The job-cycle benchmark (bench/cycle.py, issue 16) against a real server and agent with
``WULF_TRACE_CYCLE`` set: every step of the path from one job's exit to the next one's start is noted
by the daemon that takes it, and the bench pairs each exit with the job started in its room. (Its
figures are the bench's to report, not this test's.)"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_cycle_bench_sees_every_step_of_each_cycle() -> None:
    sys.path.insert(0, str(ROOT))
    try:
        from bench import cycle
    finally:
        sys.path.remove(str(ROOT))
    r = cycle.run_wulf(slots=1, n=6, command="sleep 0.01")
    steps = r["steps"]
    # one slot: each job after the first starts in the room the one before it left
    for name, _ in cycle.STEPS[1:]:
        assert steps[name]["n"] == 5, (name, steps[name])
    assert steps["gap: reap to next spawn"]["n"] == 5
    assert steps["job: spawn to reap, beyond its work"]["n"] == 6
    assert steps["store commits (fsyncs)"]["n"] >= 6  # at least one for each exit
    assert r["jobs"] == 6 and r["jobs_per_s"] > 0
