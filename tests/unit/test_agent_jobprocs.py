"""A job measured process by process: stat and smaps_rollup parsing, and the PSS of real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from programs import copy_on_write
from wulf.agent import jobprocs
from wulf.agent.jobprocs import parse_children, parse_pss_kb, parse_stat_use

STAT = (b"4242 (odd) name)) S 1 4242 4242 0 -1 4194560 500 0 0 0 "
        b"150 50 30 20 20 0 1 0 12345 104857600 2560 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n")

SMAPS_ROLLUP = """\
55c373291000-7ffdb1780000 ---p 00000000 00:00 0                          [rollup]
Rss:              102400 kB
Pss:                5120 kB
Pss_Dirty:           112 kB
Pss_Anon:           5000 kB
Shared_Clean:       1568 kB
"""


def test_stat_use_counts_waited_children_and_survives_odd_names() -> None:
    use = parse_stat_use(STAT)
    assert use.cpu_ticks == 150 + 50 + 30 + 20
    assert use.rss_pages == 2560


def test_children_and_pss() -> None:
    assert parse_children("12 345 \n") == [12, 345]
    assert parse_children("") == []
    assert parse_pss_kb(SMAPS_ROLLUP) == 5120
    assert parse_pss_kb("Rss: 12 kB\n") is None


COW = copy_on_write(20, "ready")


def test_copy_on_write_children_count_once() -> None:
    """20 children of a 100 MB parent: resident sizes add up to 2 GB, PSS to about 100 MB."""
    parent = subprocess.Popen([sys.executable, "-c", COW], stdout=subprocess.PIPE, text=True,
                              start_new_session=True)
    assert parent.stdout is not None
    try:
        assert parent.stdout.readline() == "ready\n"
        deadline = time.monotonic() + 10
        while len(pids := jobprocs.tree(parent.pid)) < 21 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(pids) == 21 and pids[0] == parent.pid
        summed = jobprocs.use(pids)
        pss = jobprocs.pss_mb(pids)
        assert summed.rss_mb > 20 * 100
        assert pss is not None and 100 <= pss < 160
    finally:
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()
        parent.stdout.close()


def test_a_gone_process() -> None:
    p = subprocess.Popen(["true"])
    p.wait()
    assert jobprocs.tree(p.pid) == []
    assert jobprocs.use([p.pid]) == (0.0, 0.0)
    assert jobprocs.pss_mb([p.pid]) is None
