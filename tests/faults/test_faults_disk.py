"""The server's state directory on a full file system: a small tmpfs mounted for the test, filled up."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ledger import CONFIG, Ledger, by_id, check, clear_error, qr

from wulfproc import Cluster, running_cluster, wait_until

TMPFS_SIZE = "4m"
ENV = {"FAULT_ENV": "kept"}


@contextlib.contextmanager
def small_state_fs(root: Path) -> Iterator[Path]:
    """``root/server`` (the server's --state, see wulfproc.Cluster) on its own small tmpfs."""
    state = root / "server"
    state.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700", "wulf-faults", str(state)],
                   check=True)
    try:
        yield state
    finally:
        subprocess.run(["umount", "-l", str(state)], check=False)


def fill(state: Path) -> Path:
    """Fill the file system of ``state`` to the last byte; return the filler (remove it to free space)."""
    filler = state / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 1 << 12, 1):
            try:
                while os.write(fd, b"\0" * size):
                    pass
            except OSError as e:
                assert e.errno == errno.ENOSPC, e
    finally:
        os.close(fd)
    return filler


@pytest.fixture
def full_disk_cluster(needs_root: None, tmp_path: Path) -> Iterator[tuple[Cluster, Path]]:
    with small_state_fs(tmp_path) as state, running_cluster(tmp_path, config=CONFIG) as c:
        c.agent("n1", cpus=2)
        yield c, state


def submit(c: Cluster, ledger: Ledger, n: int, then: str = "") -> subprocess.CompletedProcess[str]:
    p = qr(c, *(["-c", ledger.command(then)] * n), timeout=90)
    if p.returncode == 0:
        ledger.acknowledge(json.loads(p.stdout)["jobs"])
    return p


def run_out_of_space(c: Cluster, state: Path, ledger: Ledger) -> tuple[list[subprocess.CompletedProcess[str]],
                                                                     list[dict[str, Any]]]:
    """Jobs before, submissions on the full disk, space back, more jobs: what the full disk answered
    (each answered: qr's timeout would have ended a hang), and the listing once all have ended."""
    assert submit(c, ledger, 20).returncode == 0
    filler = fill(state)
    refused = [submit(c, ledger, 5) for _ in range(3)]
    filler.unlink()
    wait_until("a submission to be taken again", lambda: submit(c, ledger, 20).returncode == 0, timeout=30,
               every=0.5)
    return refused, ledger.final_only_states(c, timeout=60)


def test_full_state_disk_loses_nothing_and_the_server_recovers(
        full_disk_cluster: tuple[Cluster, Path], ledger: Ledger) -> None:
    c, state = full_disk_cluster
    refused, listed = run_out_of_space(c, state, ledger)
    fig = ledger.figures("state directory on a full file system", listed)
    check(fig)
    assert {(j["state"], j["exit_code"]) for j in by_id(listed, ledger.acked).values()} == {("done", 0)}
    assert any(p.returncode != 0 for p in refused), "nothing was refused on a full disk"


def test_full_state_disk_refuses_submissions_with_a_clear_error(
        full_disk_cluster: tuple[Cluster, Path], ledger: Ledger) -> None:
    c, state = full_disk_cluster
    refused, listed = run_out_of_space(c, state, ledger)
    errors = [clear_error(p) for p in refused if p.returncode != 0]
    print(f"\nsubmissions on the full disk: {len(errors)} of {len(refused)} refused, saying {errors}")
    assert errors, "nothing was refused on a full disk"
    for err in errors:
        said = err.replace(str(c.socket), "SOCKET").lower()  # (the test's own path says 'full_state_disk')
        assert "no space" in said or "disk full" in said or "disk is full" in said, err


def test_jobs_acknowledged_after_a_full_disk_keep_their_environment(
        full_disk_cluster: tuple[Cluster, Path], ledger: Ledger) -> None:
    c, state = full_disk_cluster
    c.run("jobmgr", "drain", "n1")  # the jobs wait, and run only after the server's restart
    c.env.update(ENV)  # the refused job and the later ones have one environment
    filler = fill(state)
    p = qr(c, "-c", ledger.command('echo "$FAULT_ENV"'), timeout=90)  # refused: nothing stored
    filler.unlink()
    ok = wait_until("a submission to be taken again", lambda: submit(c, ledger, 3, 'echo "$FAULT_ENV"')
                    .returncode == 0, timeout=30, every=0.5)
    assert c.server is not None
    c.server.kill()
    c.start_server()
    c.run("jobmgr", "resume", "n1")
    listed = ledger.final_only_states(c, timeout=60)
    fig = ledger.figures("full disk, then a restart: environment of later jobs", listed)
    check(fig)
    assert ok and p.returncode != 0
    for i in ledger.acked:
        assert (c.work / f"wulf-{i}.out").read_text() == "kept\n", f"job {i} ran without its environment"


def test_jobs_placed_while_the_disk_is_full_start_once_space_is_back(
        needs_root: None, tmp_path: Path, ledger: Ledger) -> None:
    """The scheduling pass that places jobs cannot record the placement: the jobs must not stay 'running'
    in the server's memory without ever being sent; they start once the disk has room again."""
    with small_state_fs(tmp_path) as state, running_cluster(tmp_path, config=CONFIG) as c:
        assert submit(c, ledger, 20).returncode == 0  # no agent yet: they wait
        filler = fill(state)
        c.agent("n1", cpus=2)  # the pass its arrival makes fails to commit
        wait_until("the node to be up", lambda: (s := c.try_status()) is not None
                   and any(n["name"] == "n1" and n["state"] == "up" for n in s["nodes"]), timeout=30)
        filler.unlink()
        listed = ledger.final_only_states(c, timeout=60)
        fig = ledger.figures("jobs placed while the disk is full", listed)
        check(fig)
