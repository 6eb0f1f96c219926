"""The fake-agent load generator (bench/fakeagents.py, issue 16) against a real server: every fake node
comes up and reports, the jobs run across them to the end, and the server's log stays clean. (Its
figures are the bench's to report, not this test's.)"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_fake_agents_bring_up_their_nodes_and_run_jobs_to_the_end() -> None:
    sys.path.insert(0, str(ROOT))
    try:
        from bench import fakeagents
    finally:
        sys.path.remove(str(ROOT))
    r = fakeagents.run(nodes=30, clusters=5, interval=1.0, jobs=150, seconds=1.0)
    assert r["up"] == 30 and r["reports"] >= 30
    assert r["jobs_done"] == 150
    assert r["server_log_tracebacks"] == 0
    assert r["listing_mb"] > 0 and r["server_cpu_pct_reports_only"] >= 0
