"""The monitor on this very machine: one real sample, with a real job root and a real cluster."""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from wulf.agent.monitor import Monitor, cpu_shares


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A ``sleep`` in its own session, as the launcher starts a job."""
    child = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        # until it sleeps: just after exec, before it has run, its memory is nearly nothing (a loaded
        # machine may not run it for a while)
        deadline = time.monotonic() + 30
        while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "S":
            assert time.monotonic() < deadline, "sleep did not start"
            time.sleep(0.005)
        yield child
    finally:
        child.kill()
        child.wait()


@pytest.fixture
def monitor(tmp_path: Path) -> Iterator[Monitor]:
    m = Monitor(str(tmp_path), set(), min_cpu=0.0, min_mem_mb=0.0)
    try:
        yield m
    finally:
        m.close()


def test_node_info(monitor: Monitor) -> None:
    info = monitor.node_info("n1", None, None, 4321)
    assert info.name == "n1" and info.hostname == socket.gethostname()
    assert info.cpus == os.cpu_count() and info.mem_mb > 0
    assert info.arch == os.uname().machine and info.kernel == os.uname().release and info.os
    assert info.session_port == 4321
    forced = monitor.node_info("n1", 2.5, 1024.0, 0)
    assert (forced.cpus, forced.mem_mb) == (2.5, 1024.0)


def test_one_sample_of_this_machine(monitor: Monitor, sleeper: subprocess.Popen[bytes]) -> None:
    me = os.getpid()
    node, jobs, clusters = monitor.sample({sleeper.pid: 7, me: 8})
    by_id = {j.id: j for j in jobs}
    assert by_id[7].nprocs == 1 and by_id[7].mem_mb > 0
    assert by_id[8].nprocs >= 1 and by_id[8].mem_mb > 1  # this process, as a job root
    assert node.nprocs >= 3 and node.used_mem_mb >= by_id[7].mem_mb + by_id[8].mem_mb
    assert node.used_cpu >= 0.0 and node.mem_total_mb >= node.mem_available_mb > 0
    assert node.cpu_user + node.cpu_system + node.cpu_idle == pytest.approx(1.0, abs=0.01)
    assert node.scratch_free_mb > 0 and node.load1 >= 0.0
    assert all(c.pid not in (me, sleeper.pid) for c in clusters)
    again, _, _ = monitor.sample({sleeper.pid: 7, me: 8})  # now with a previous sample to compare
    assert again.io_read_mbps >= 0.0 and again.io_write_mbps >= 0.0


def test_a_process_outside_wulf_is_a_cluster(monitor: Monitor, sleeper: subprocess.Popen[bytes]) -> None:
    _, jobs, clusters = monitor.sample({})
    assert jobs == []
    mine = [c for c in clusters if c.pid == sleeper.pid]
    assert len(mine) == 1, "a session leader is the top of its own cluster"
    c = mine[0]
    assert c.command == "sleep 300" and c.nprocs == 1 and c.uid == os.geteuid()
    assert c.user == pwd.getpwuid(os.geteuid()).pw_name
    assert c.key.startswith(f"{sleeper.pid}:")
    assert abs(c.started - time.time()) < 120


def test_ignored_roots_and_their_children_are_not_load(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    m = Monitor(str(tmp_path), {os.getpid()}, min_cpu=0.0, min_mem_mb=0.0)
    try:
        _, _, clusters = m.sample({})
    finally:
        m.close()
    assert all(c.pid != sleeper.pid for c in clusters)  # our child, though a session leader


def test_small_clusters_are_not_reported(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    m = Monitor(str(tmp_path), set(), min_cpu=1000.0, min_mem_mb=10_000_000.0)
    try:
        node, _, clusters = m.sample({})
    finally:
        m.close()
    assert clusters == [] and node.used_mem_mb > 0  # still counted as the node's use


def test_cpu_shares() -> None:
    assert cpu_shares({"user": 3.0, "nice": 1.0, "system": 1.0, "irq": 0.5, "softirq": 0.5, "idle": 3.0,
                       "iowait": 1.0, "guest": 2.0}) == pytest.approx((0.4, 0.2, 0.4))
    assert cpu_shares({"user": 1.0, "idle": 1.0, "steal": 2.0}) == pytest.approx((0.25, 0.0, 0.25))
    assert cpu_shares({}) == (0.0, 0.0, 1.0)
