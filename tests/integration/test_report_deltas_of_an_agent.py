"""Reports as deltas between a real agent and a real server (issue 16 §2): outside work that starts after
the first (full) report comes in a delta, and outside work that ends goes in one."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from users import User, Users
from wulfproc import running_cluster, wait_until

BUSY = "/bin/sh -c 'while :; do :; done' </dev/null >/dev/null 2>&1 & echo $!"


def _busy(user: User, cwd: Path) -> int:
    """A busy shell of ``user``'s, outside wulf and outside this test's process tree."""
    return int(subprocess.run(["/bin/sh", "-c", BUSY], user=user.uid, group=user.gid, cwd=cwd,
                              capture_output=True, text=True, check=True).stdout)


def test_outside_work_comes_and_goes_in_deltas(shared_tmp: Path, users: Users) -> None:
    with running_cluster(shared_tmp, config="[agent]\nexternal_min_cpu = 0.02\n") as c:
        c.agent("n1", cpus=2)
        pids = []
        client = c.client()
        try:
            def outside() -> dict[int, dict[str, Any]]:
                return {j["pid"]: j for j in client.status(external=True)["jobs"]
                        if j["origin"] == "external" and j["user"] == users.alice.name}

            pids.append(_busy(users.alice, shared_tmp))  # (in the first, full, report or in a delta)
            first = wait_until("alice's busy shell to show", lambda: outside().get(pids[0]), timeout=30)
            pids.append(_busy(users.alice, shared_tmp))  # (in a delta: the first report has gone)
            wait_until("her second busy shell to show", lambda: outside().get(pids[1]), timeout=30)
            os.kill(pids[0], signal.SIGKILL)
            wait_until("the first one's job to end", lambda: c.job(first["id"])["state"] == "done", timeout=30)
            assert outside()[pids[1]]["state"] == "running"
            log = (shared_tmp / "server.log").read_text()
            assert "bad message" not in log
        finally:
            client.close()
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
