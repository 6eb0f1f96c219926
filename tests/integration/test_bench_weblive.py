"""The live-page benchmark (bench/weblive.py, issue 14) in a real browser: every job submitted shows in
the open jobs list and leaves it when it ends, each moment noted by the page. (Its figures are the
bench's to report, not this test's.)"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

if not Path("/usr/bin/chromium").exists():
    if os.environ.get("CI"):
        pytest.fail("the live-page bench needs /usr/bin/chromium (.ci/run installs it)", pytrace=False)
    pytest.skip("the live-page bench needs /usr/bin/chromium", allow_module_level=True)
pytest.importorskip("playwright.sync_api")


def test_the_live_page_bench_sees_each_job_come_and_go() -> None:
    sys.path.insert(0, str(ROOT))
    try:
        from bench import weblive
    finally:
        sys.path.remove(str(ROOT))
    r = weblive.run(quick=True)
    assert r["jobs"] == 4
    for measure in ("submit_to_row_ms", "end_to_row_gone_ms"):
        assert 0 < r[measure]["median"] <= r[measure]["max"], r
