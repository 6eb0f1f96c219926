"""Faults of the server: killed mid-burst, stopped, restarted while qwait waits."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from ledger import SMALL, Gate, Ledger, agent_exits, by_id, check, clear_error, qr

from wulfproc import BIN, Cluster, wait_until

BURST = 10_000  # jobs, as in the issue
PER_FILE = 250  # scripts in each `qr -s` file: 40 files
CLIENTS = 4  # submitting at once
KILL_AT = 0.4  # the server is killed once this share of the burst is acknowledged
STOP_SECONDS = 30.0  # as long as the issue stopped it (the agents' ping timeout is 60 s)


def submit_files(c: Cluster, ledger: Ledger, files: list[Path], errors: list[str],
                 deadline: float) -> list[threading.Thread]:
    """CLIENTS clients take the files in turn; a client whose `qr` fails (the server is down) tries the
    same file again, as a user would, until it is acknowledged."""
    todo: queue.SimpleQueue[Path] = queue.SimpleQueue()
    for f in files:
        todo.put(f)

    def client() -> None:
        try:
            while True:
                try:
                    f = todo.get_nowait()
                except queue.Empty:
                    return
                while True:
                    p = qr(c, "-s", str(f))
                    if p.returncode == 0:
                        ledger.acknowledge(json.loads(p.stdout)["jobs"])
                        break
                    errors.append(clear_error(p))
                    if time.monotonic() > deadline:
                        raise AssertionError(f"{f.name} never acknowledged: {p.stderr.strip()}")
                    time.sleep(0.1)
        except BaseException as e:  # seen by the test, not lost in the thread
            errors.append(f"client failed: {e!r}")

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    return threads


@pytest.mark.timeout(360)
def test_server_killed_mid_burst_loses_no_acknowledged_job(cluster: Cluster, ledger: Ledger,
                                                           tmp_path: Path) -> None:
    files = [ledger.script_file(tmp_path / f"burst-{k}.jobs", PER_FILE) for k in range(BURST // PER_FILE)]
    errors: list[str] = []
    clients = submit_files(cluster, ledger, files, errors, time.monotonic() + 120)
    wait_until("part of the burst to be acknowledged", lambda: len(ledger.acked) >= KILL_AT * BURST,
               timeout=60, every=0.005)
    assert cluster.server is not None
    cluster.server.kill()  # SIGKILL, mid-burst
    at_kill = len(ledger.acked)
    cluster.start_server()
    for t in clients:
        t.join(timeout=150)
    print(f"\nclients while the server was down: {len(errors)} failed qr, saying {sorted(set(errors))}")
    assert not [e for e in errors if e.startswith("client failed")], errors
    cluster.wait_node("n1")
    listed = ledger.final_only_states(cluster, timeout=180)
    fig = ledger.figures(f"server kill -9 at {at_kill} of a {BURST}-job burst", listed)
    check(fig)
    assert fig.acknowledged == BURST
    jobs = by_id(listed, ledger.acked)
    assert {(j["state"], j["exit_code"]) for j in jobs.values()} == {("done", 0)}


@pytest.mark.timeout(240)
def test_server_stopped_and_continued_finishes_every_job_once(cluster: Cluster, ledger: Ledger,
                                                               tmp_path: Path) -> None:
    gate = Gate(tmp_path / "gate")
    ids = cluster.submit("--cpu", SMALL, *(["-c", ledger.command(f"{gate.wait()}; {ledger.end()}")] * 60))
    ledger.acknowledge(ids)
    wait_until("the jobs to run", lambda: all(cluster.job(i)["pid"] for i in ids))
    assert cluster.server is not None and cluster.server.proc is not None
    cluster.server.proc.send_signal(signal.SIGSTOP)
    try:
        gate.open()  # they end while the server is stopped
        late: list[subprocess.CompletedProcess[str]] = []
        submitting = threading.Thread(target=lambda: late.append(
            qr(cluster, *(["-c", ledger.command()] * 40), timeout=120)))
        submitting.start()  # a user submits while the server is stopped: it waits for the server
        wait_until("the jobs to end on their node", lambda: ledger.ended() >= set(ids), timeout=30)
        time.sleep(STOP_SECONDS)  # the fault itself: the server stays stopped this long
    finally:
        cluster.server.proc.send_signal(signal.SIGCONT)
    submitting.join(timeout=60)
    assert late and late[0].returncode == 0, late and late[0].stderr
    ledger.acknowledge(json.loads(late[0].stdout)["jobs"])
    listed = ledger.final_only_states(cluster, timeout=60)
    fig = ledger.figures(f"server SIGSTOP {STOP_SECONDS:g} s", listed)
    check(fig)
    assert {(j["state"], j["exit_code"]) for j in by_id(listed, ledger.acked).values()} == {("done", 0)}
    assert cluster.status()["nodes"][0]["state"] == "up"


def test_server_back_with_jobs_ended_and_a_queue_waiting_runs_each_job_once(cluster: Cluster, ledger: Ledger,
                                                                           tmp_path: Path) -> None:
    """Jobs end while the server is down, and others wait for the room they leave: when the agent is back,
    its ended jobs make room that the waiting jobs take. Each must run once."""
    gate = Gate(tmp_path / "gate")
    ids = cluster.submit("--cpu", "0.039", *(["-c", ledger.command(f"{gate.wait()}; {ledger.end()}")] * 50))
    wait_until("all of them to run", lambda: all(cluster.job(i)["pid"] for i in ids), timeout=60)
    waiting = cluster.submit("--cpu", "0.1", *(["-c", ledger.command(ledger.end())] * 20))
    ledger.acknowledge(ids + waiting)
    wait_until("the others to wait for room", lambda: all(cluster.job(i)["state"] == "queued" for i in waiting))
    assert cluster.server is not None
    cluster.server.kill(signal.SIGTERM)
    gate.open()
    wait_until("the agent to see them end", lambda: agent_exits(cluster, "n1") >= set(ids))
    cluster.start_server()
    listed = ledger.final_only_states(cluster, timeout=30)
    fig = ledger.figures("server down while jobs end, a queue waiting", listed)
    check(fig)
    assert {(j["state"], j["exit_code"]) for j in by_id(listed, ledger.acked).values()} == {("done", 0)}


@pytest.mark.parametrize("how", ["restart", "kill -9"])
def test_qwait_waits_across_a_server_restart(cluster: Cluster, ledger: Ledger, tmp_path: Path, how: str) -> None:
    gate = Gate(tmp_path / "gate")
    ids = cluster.submit("--cpu", SMALL, *(["-c", ledger.command(f"{gate.wait()}; exit 0")] * 5))
    ledger.acknowledge(ids)
    wait_until("the jobs to run", lambda: all(cluster.job(i)["pid"] for i in ids))
    qwait = subprocess.Popen([str(BIN / "qwait"), "--quiet", *map(str, ids)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=cluster.env, cwd=cluster.work)
    try:
        time.sleep(0.5)  # qwait is in its long poll (nothing to wait for that could be observed)
        assert cluster.server is not None
        cluster.server.kill(signal.SIGTERM if how == "restart" else signal.SIGKILL)
        cluster.start_server()
        cluster.wait_node("n1")
        gate.open()
        out, err = qwait.communicate(timeout=90)
    finally:
        qwait.kill()
        gate.open()
    listed = ledger.final_only_states(cluster, timeout=30)
    fig = ledger.figures(f"server {how} while qwait waits", listed)
    check(fig)
    assert qwait.returncode == 0, err
    assert {j["state"] for j in by_id(listed, ids).values()} == {"done"}
