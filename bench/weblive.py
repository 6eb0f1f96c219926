"""How soon a change shows on a live web page, measured in a real browser (issue 14: at most 2 s).

A real server (on loopback TCP) and agent; Debian's chromium driven by Playwright signs in and keeps the
jobs list of the running and waiting jobs open. Then, one at a time: a job is submitted (through the API,
as `qr` does) and the moment its row appears in the page is taken; the job ends and the moment its row
leaves the page is taken. The page records both moments itself (a MutationObserver, with the browser's
clock, which is this machine's), so the figures are from the event to the page showing it: the
submission's round trip, the server's event stream, the page's read of the list and its drawing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import print_table
from wulf.client import Client

BIN = Path(sys.executable).parent
CHROMIUM = Path("/usr/bin/chromium")

# rows by job id: when each was first seen, and when it left the list
WATCH = """() => {
  window.__shown = {}; window.__gone = {};
  const look = () => {
    const now = Date.now(), here = new Set();
    for (const tr of document.querySelectorAll("table#jobs tr[data-id]")) {
      const id = tr.dataset.id;
      here.add(id);
      if (!(id in window.__shown)) window.__shown[id] = now;
    }
    for (const id of Object.keys(window.__shown)) {
      if (!here.has(id) && !(id in window.__gone)) window.__gone[id] = now;
    }
  };
  new MutationObserver(look).observe(document.body, {childList: true, subtree: true});
  look();
}"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(check: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise RuntimeError("timed out")


def run(quick: bool) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    jobs = 4 if quick else 12
    with tempfile.TemporaryDirectory(prefix="wulf-bench-") as d:
        root = Path(d)
        port = _free_port()
        url = f"unix:{root}/server/wulf.sock"
        env = dict(os.environ, WULF_SERVER=url)
        env.pop("WULF_CONFIG", None)
        log = open(root / "daemons.log", "ab")
        procs = [subprocess.Popen([str(BIN / "wulf"), "server", "--state", str(root / "server"), "--listen",
                                   f"127.0.0.1:{port}"], stdout=log, stderr=log, env=env)]
        client = Client(url)
        try:
            _wait(lambda: (root / "server" / "wulf.sock").exists())
            procs.append(subprocess.Popen(
                [str(BIN / "wulf"), "agent", "--server", url, "--name", "bench", "--cpus", "4", "--mem", "8G",
                 "--state", str(root / "agent")], stdout=log, stderr=log,
                env=dict(env, WULF_IGNORE_PIDS=str(os.getpid()))))
            _wait(lambda: any(n["state"] == "up" for n in client.status().get("nodes", [])))
            token = subprocess.run([str(BIN / "wulf"), "token", "create", "--name", "bench"], env=env, check=True,
                                   capture_output=True, text=True).stdout.strip()
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=str(CHROMIUM))
                page = browser.new_page()
                base = f"http://127.0.0.1:{port}"
                page.goto(base + "/")
                page.fill("input[name=token]", token)
                page.click("button")
                page.wait_for_url(base + "/")
                page.goto(base + "/jobs?state=active")
                page.wait_for_selector("table#jobs")
                page.evaluate(WATCH)
                shown, gone = [], []
                for i in range(jobs):
                    # (a page is told of changes at most once a second: a submission soon after the last
                    # change it was told of waits for that second to pass; spaced out, it is told at once)
                    time.sleep(i % 4 * 0.4)
                    t = time.time() * 1000
                    [job_id] = client.submit([{"command": "sleep 3", "cwd": d, "output": "/dev/null"}])
                    page.wait_for_function(f"() => window.__shown['{job_id}'] !== undefined", timeout=30_000)
                    shown.append(page.evaluate(f"window.__shown['{job_id}']") - t)
                    client.wait([job_id], timeout=60)
                    ended = client.job(job_id)["ended"] * 1000
                    page.wait_for_function(f"() => window.__gone['{job_id}'] !== undefined", timeout=30_000)
                    gone.append(page.evaluate(f"window.__gone['{job_id}']") - ended)
                browser.close()
        finally:
            client.close()
            for proc in reversed(procs):
                proc.terminate()
                proc.wait(timeout=20)
            log.close()
    return {"jobs": jobs, "submit_to_row_ms": _stats(shown), "end_to_row_gone_ms": _stats(gone)}


def _stats(ms: list[float]) -> dict[str, float]:
    return {"median": statistics.median(ms), "max": max(ms)}


def rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    s, g = r["submit_to_row_ms"], r["end_to_row_gone_ms"]
    return [
        ("web live: a submitted job shows in the open jobs list (median, max)",
         f"{s['median'] / 1000:.2f} s, {s['max'] / 1000:.2f} s", "<= 2 s"),
        ("web live: an ended job leaves the list (median, max)",
         f"{g['median'] / 1000:.2f} s, {g['max'] / 1000:.2f} s", "<= 2 s"),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(prog="bench.weblive", description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not CHROMIUM.exists():
        print("bench.weblive: needs /usr/bin/chromium (Debian's chromium)", file=sys.stderr)
        return 2
    results = run(args.quick)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print_table(rows(results), 16)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
