"""Scratch cleaning (wulf.agent.purge): the decision, and the walk on a real directory tree."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from wulf.agent import purge
from wulf.agent.purge import Entry, InUse, keep_reason

DAY = 86400.0
NOW = 1_000_000_000.0
OLD, NEW = NOW - 4 * DAY, NOW - 3600
CUTOFF = NOW - 3 * DAY  # 72 hours
USER, JOB_OWNER = 4242, 4243  # no such users are needed: root gives files and processes any uid

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")


def _entry(path: str = "x", kind: str = "file", uid: int = USER, used: float = OLD, ino: int = 1) -> Entry:
    return Entry(path, kind, uid, used, 4096, 1, ino)


@pytest.mark.parametrize("entry, in_use, reason", [
    (_entry(), InUse(), ""),
    (_entry(used=NEW), InUse(), "used recently"),
    (_entry(uid=0), InUse(), "root's"),
    (_entry(kind="other"), InUse(), "not a file, directory or link"),
    (_entry("wulf-7.script"), InUse(job_ids=frozenset({7})), "a running job's"),
    (_entry("wulf-7.script"), InUse(job_ids=frozenset({71})), ""),
    (_entry("d/wulf-7/out"), InUse(job_ids=frozenset({7})), "a running job's"),
    (_entry(), InUse(uids=frozenset({USER})), "its owner has a job running here"),
    (_entry(ino=9), InUse(open_files=frozenset({(1, 9)})), "in use by a process"),
    (_entry(kind="link"), InUse(), ""),
    (_entry(kind="dir"), InUse(), ""),
])
def test_keep_reason(entry: Entry, in_use: InUse, reason: str) -> None:
    assert keep_reason(entry, CUTOFF, in_use) == reason


def test_job_ids_in_names() -> None:
    assert purge.job_ids_in("wulf-12.script") == {12}
    assert purge.job_ids_in("a/wulf-3/b-wulf-40.out") == {3, 40}
    assert purge.job_ids_in("wulf-x.script") == set()


def _file(path: Path, age: float, uid: int = USER, data: bytes = b"x" * 10000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chown(path, uid, uid)
    os.utime(path, (time.time() - age, time.time() - age))
    return path


def _age(path: Path, age: float) -> None:
    os.utime(path, (time.time() - age, time.time() - age), follow_symlinks=False)


@pytest.fixture
def running_job(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A real process of job 77, run by JOB_OWNER, holding open a file that no name ties to it."""
    held = _file(tmp_path / "scratch" / "held-open", 4 * DAY)
    with open(held, "rb") as f:  # the process inherits it
        proc = subprocess.Popen(["sleep", "60"], user=JOB_OWNER, pass_fds=(f.fileno(),),
                                env={"WULF_JOB_ID": "77", "PATH": os.environ["PATH"]})
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


@root_only
def test_purge_removes_old_leftovers_and_nothing_else(tmp_path: Path,
                                                      running_job: subprocess.Popen[bytes]) -> None:
    scratch = tmp_path / "scratch"
    outside = tmp_path / "outside"
    secret = _file(outside / "secret", 4 * DAY)
    old = _file(scratch / "old.dat", 4 * DAY)
    new = _file(scratch / "new.dat", 3600)
    read = _file(scratch / "read-lately.dat", 4 * DAY)
    os.utime(read, (time.time() - 60, time.time() - 4 * DAY))  # read a minute ago, written long ago
    roots = _file(scratch / "systemd-thing", 4 * DAY, uid=0)
    script = _file(scratch / "wulf-77.script", 4 * DAY)  # job 77 runs: its staged script stays
    other_script = _file(scratch / "wulf-76.script", 4 * DAY)  # job 76 does not
    owners = _file(scratch / "owner-file", 4 * DAY, uid=JOB_OWNER)  # the running job's owner's
    (scratch / "link-out").symlink_to(secret)
    (scratch / "dir-link-out").symlink_to(outside, target_is_directory=True)
    for link in ("link-out", "dir-link-out"):
        os.lchown(scratch / link, USER, USER)
        _age(scratch / link, 4 * DAY)
    gone_dir = scratch / "run1" / "deep"
    _file(gone_dir / "a", 4 * DAY)
    kept_dir = scratch / "run2"
    _file(kept_dir / "old", 4 * DAY)
    _file(kept_dir / "new", 60)
    for d in (gone_dir, gone_dir.parent, kept_dir):
        os.chown(d, USER, USER)
        _age(d, 4 * DAY)
    os.mkfifo(scratch / "fifo")
    os.chown(scratch / "fifo", USER, USER)
    _age(scratch / "fifo", 4 * DAY)

    in_use = purge.in_use(str(scratch))
    assert 77 in in_use.job_ids and JOB_OWNER in in_use.uids
    dry = purge.purge(str(scratch), 3 * DAY, in_use, time.time(), dry_run=True)
    assert old.exists() and (scratch / "run1").exists()
    report = purge.purge(str(scratch), 3 * DAY, in_use, time.time())

    removed = sorted(path for path, _ in report.removed)
    assert removed == sorted(path for path, _ in dry.removed) == [
        "dir-link-out", "link-out", "old.dat", "run1/", "run1/deep/", "run1/deep/a", "run2/old", "wulf-76.script"]
    assert report.freed >= 3 * 10000 and not report.errors
    assert not old.exists() and not other_script.exists() and not (scratch / "run1").exists()
    for path in (new, read, roots, script, owners, kept_dir / "new", scratch / "fifo", scratch / "held-open"):
        assert path.exists(), path
    assert secret.read_bytes() == b"x" * 10000 and (outside / "secret").exists()  # never followed
    assert scratch.is_dir()


@root_only
def test_an_open_file_stays(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    held = _file(scratch / "held", 4 * DAY)
    with open(held, "rb"):
        report = purge.purge(str(scratch), 3 * DAY, purge.in_use(str(scratch)), time.time())
    assert held.exists() and report.removed == []
    report = purge.purge(str(scratch), 3 * DAY, purge.in_use(str(scratch)), time.time())
    assert not held.exists() and report.removed == [("held", 12288)]


@root_only
def test_another_file_system_inside_is_left_alone(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    mnt = scratch / "mnt"
    mnt.mkdir(parents=True)
    if subprocess.run(["mount", "-t", "tmpfs", "none", str(mnt)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        inside = _file(mnt / "old", 4 * DAY)
        os.chown(mnt, USER, USER)
        _age(mnt, 4 * DAY)
        purge.purge(str(scratch), 3 * DAY, InUse(), time.time())
        assert inside.exists()
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
