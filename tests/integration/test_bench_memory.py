"""The memory bench (bench/memory.py, issue 16): an idle server and agent, and `wulf up`, each one's
memory read from /proc; and `qr -c true` timed against them. (Its figures are the bench's to report,
not this test's.)"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_memory_bench_reads_each_daemon() -> None:
    sys.path.insert(0, str(ROOT))
    try:
        from bench import memory
    finally:
        sys.path.remove(str(ROOT))
    r = memory.run(quick=True, idle=0.5, runs=3)
    for part in (r["server_agent"]["server"], r["server_agent"]["agent"], r["up"]["up"], r["up"]["server"],
                 r["up"]["agent"]):
        assert 0 < part["uss_mb"] <= part["pss_mb"] <= part["rss_mb"], part
    together = r["server_agent"]["together"]
    assert together["rss_mb"] == r["server_agent"]["server"]["rss_mb"] + r["server_agent"]["agent"]["rss_mb"]
    assert r["server_agent"]["qr"]["runs"] == 3 and r["server_agent"]["qr"]["median_ms"] > 0
    assert memory.rows(r)
