"""Scratch cleaning with real processes: `wulf purge-scratch`, and a real agent purging on its timer while
a real job of a real user runs."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from users import Users
from wulfproc import running_cluster, wait_until

DAY = 86400


def _old(path: Path, uid: int) -> Path:
    path.write_text("left behind\n")
    os.chown(path, uid, uid)
    os.utime(path, (time.time() - 4 * DAY, time.time() - 4 * DAY))
    return path


def test_the_agent_purges_but_never_a_running_jobs_files(shared_tmp: Path, users: Users) -> None:
    scratch = shared_tmp / "scratch"
    scratch.mkdir()
    scratch.chmod(0o1777)
    config = "[agent]\npurge_scratch_hours = 0.002\n"  # unused for 7 s; a pass every 2 s
    with running_cluster(shared_tmp / "c", config=config) as c:
        c.agent("n1", extra=["--scratch", str(scratch)])
        script = shared_tmp / "job.sh"
        script.write_text("#!/bin/sh\nsleep 120\n")
        script.chmod(0o755)
        [jid] = json.loads(c.run_as(users.alice, "qr", "--json", "-s", str(script), cwd=c.work).stdout)["jobs"]
        wait_until("the job to run", lambda: c.job(jid)["state"] == "running")
        staged = scratch / f"wulf-{jid}.script"
        assert staged.exists()
        os.utime(staged, (time.time() - 4 * DAY, time.time() - 4 * DAY))  # as if it had run for days
        alices = _old(scratch / "alice-data", users.alice.uid)  # her job runs here
        bobs = _old(scratch / "bob-data", users.bob.uid)  # he has none
        log = shared_tmp / "c" / "agent-n1.log"
        wait_until("a purge that removed bob's file",
                   lambda: "bob-data" in log.read_text() and "purged scratch" in log.read_text(), timeout=30)
        assert not bobs.exists()
        assert staged.exists() and alices.exists()
        c.run("qcancel", str(jid))
        wait_until("the job to end", lambda: c.job(jid)["state"] == "cancelled")


def test_purge_scratch_command(shared_tmp: Path, users: Users) -> None:
    import subprocess

    from wulfproc import BIN

    scratch = shared_tmp / "scratch"
    scratch.mkdir()
    old = _old(scratch / "old", users.bob.uid)
    new = scratch / "new"
    new.write_text("fresh\n")
    os.chown(new, users.bob.uid, users.bob.uid)
    wulf = str(BIN / "wulf")
    p = subprocess.run([wulf, "purge-scratch", "--scratch", str(scratch), "--dry-run"], capture_output=True,
                       text=True, env={**os.environ, "WULF_CONFIG": "/dev/null"})
    assert p.returncode == 0, p.stderr
    assert f"would remove {old} (" in p.stdout and "would remove 1 files and directories" in p.stdout
    assert old.exists()
    p = subprocess.run([wulf, "purge-scratch", "--scratch", str(scratch), "--json"], capture_output=True,
                       text=True, env={**os.environ, "WULF_CONFIG": "/dev/null"})
    reply = json.loads(p.stdout)
    assert [r["path"] for r in reply["removed"]] == ["old"] and reply["freed"] > 0 and not reply["errors"]
    assert not old.exists() and new.exists()
    p = subprocess.run([wulf, "purge-scratch", "--hours", "-1"], capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "--hours" in p.stderr
