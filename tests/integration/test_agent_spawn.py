"""How the agent starts a job's shell: as root's own (posix_spawn), or as its owner through setpriv
or, without it, a fork that changes user. Either way the job has its owner's ids, groups and umask,
and the signals Python ignores (SIGPIPE, SIGXFSZ) with their default action. Needs root."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from wulf.agent import launcher
from wulf.agent.owner import Owner
from wulf.protocol import StartJob

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

SHOW = "id -u; id -g; id -G; umask; grep SigIgn /proc/self/status | cut -f2"


def _job(job_id: int, cwd: Path, uid: int) -> StartJob:
    return StartJob(id=job_id, name="t", user="u", uid=uid, umask=0o027, queue="default", command=SHOW, script=None,
                    cwd=str(cwd), env={"PATH": os.defpath}, output="", keep_script=False, cpu=1.0, mem_mb=32.0)


def _nobody() -> Owner:
    try:
        pw = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody'")
    return Owner(pw.pw_uid, pw.pw_gid, (pw.pw_gid,), pw.pw_name, pw.pw_dir, pw.pw_shell)


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory anyone may write, where 'nobody' can get to (pytest's own is root's alone)."""
    d = Path(tempfile.mkdtemp(prefix="wulf-spawn-", dir="/tmp"))
    d.chmod(0o777)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _run(tmp_path: Path, job: StartJob, owner: Owner | None) -> list[str]:
    pid, launch = launcher.spawn(job, "n1", str(tmp_path), str(tmp_path), (), owner)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, launcher.start_error(launch.err_file)
    return (tmp_path / f"wulf-{job.id}.out").read_text().split()


def _ignored(mask: str) -> set[int]:
    bits = int(mask, 16)
    return {s for s in (signal.SIGPIPE, signal.SIGXFSZ) if bits & (1 << (s - 1))}


def test_a_job_of_roots_own(tmp_path: Path) -> None:
    out = _run(tmp_path, _job(1, tmp_path, 0), None)
    assert out[0] == "0" and out[-2] == "0027" and _ignored(out[-1]) == set()


@pytest.mark.parametrize("with_setpriv", [True, False])
def test_a_job_run_as_its_owner(shared: Path, monkeypatch: pytest.MonkeyPatch, with_setpriv: bool) -> None:
    if with_setpriv and launcher.setpriv() is None:
        pytest.skip("no setpriv here")
    if not with_setpriv:
        monkeypatch.setattr(launcher, "setpriv", lambda: None)
    owner = _nobody()
    out = _run(shared, _job(2, shared, owner.uid), owner)
    assert out[:3] == [str(owner.uid), str(owner.gid), str(owner.gid)]
    assert out[-2] == "0027" and _ignored(out[-1]) == set()
    st = (shared / "wulf-2.out").stat()
    assert (st.st_uid, st.st_gid) == (owner.uid, owner.gid)


def test_setpriv_takes_the_owners_ids_and_groups() -> None:
    owner = Owner(1000, 100, (100, 200), "alice", "/home/alice", "/bin/sh")
    assert launcher.become_argv("/usr/bin/setpriv", owner) == [
        "/usr/bin/setpriv", "--reuid=1000", "--regid=100", "--groups=100,200", "--"]
    assert launcher.become_argv("sp", Owner(1000, 100, (), "a", "/", "/bin/sh"))[3] == "--clear-groups"
