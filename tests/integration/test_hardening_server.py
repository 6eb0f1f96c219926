"""The server's reliability under faults (issue 10, Reliability): one test per finding, each written
from the reproduction that found it, with real servers and agents as processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wulf.client import Client
from wulf.errors import WulfError
from wulfproc import BIN, Cluster, Daemon, running_cluster, wait_until


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def _running(cluster: Cluster) -> list[int]:
    """The wulf jobs the server thinks run (not the machine's other processes: external jobs)."""
    return [j["id"] for j in cluster.status()["jobs"] if j["state"] == "running" and j["origin"] != "external"]


def _submit(url: str, spec: list[dict[str, Any]], key: str) -> list[int]:
    with contextlib.closing(Client(url)) as client:
        return client.submit(spec, {}, key=key)


# ---------------------------------------------------------------- 1. the store's writer survives


def test_text_the_store_cannot_hold_does_not_stop_every_write(cluster: Cluster) -> None:
    """`cd "$(printf '/tmp/x\\xff')"; qr -c true` ended the store's writer thread: every later submit,
    placement and exit hung. Now that submission gets a clear error, and the next one works."""
    odd = Path(os.fsdecode(bytes(cluster.work) + b"/x\xff"))
    odd.mkdir()
    p = cluster.run("qr", "-c", "true", cwd=odd, check=False, timeout=30)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    # a command with such bytes, too: `qr -c "$(printf 'echo \xff')"`
    p = cluster.run("qr", "-c", os.fsdecode(b"echo \xff"), check=False, timeout=30)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    [jid] = cluster.submit("--cpu", "0.1", "-c", "true")
    cluster.run("qwait", str(jid), timeout=30)
    assert cluster.job(jid)["state"] == "done"


@contextlib.contextmanager
def _small_disk(path: Path, size: str = "4m") -> Iterator[None]:
    """A tmpfs of ``size`` at ``path`` (a state directory that can be filled up)."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)], check=True)
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(path: Path) -> Path:
    """Fill the file system of ``path`` to the last byte; returns the filler (remove it to free)."""
    filler = path / "filler"
    with open(filler, "wb", buffering=0) as f:
        for size in (65536, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * size)
    return filler


@contextlib.contextmanager
def _cluster_on_small_disk(tmp_path: Path) -> Iterator[Cluster]:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small file system")
    c = Cluster(tmp_path)
    with _small_disk(c.state):
        try:
            c.start_server()
            yield c
        except BaseException:
            print(c.logs())
            raise
        finally:
            c.stop()


BIG = {"WULF_BIG": "b" * 100_000, "WULF_MARK": "kept"}


def test_a_full_disk_is_said_in_the_error_shape(tmp_path: Path) -> None:
    """On a full state disk, a submission answers the error shape saying the disk is full (it was a
    plain-text 500); once there is room again, submissions work."""
    with _cluster_on_small_disk(tmp_path) as c:
        filler = _fill(c.state)
        p = c.run("qr", "-c", "true", check=False, env_extra=BIG, timeout=30)
        assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
        assert "disk is full" in p.stderr, p.stderr
        with pytest.raises(WulfError) as e, contextlib.closing(Client(c.url)) as client:
            client.submit([{"command": "true", "cwd": str(c.work)}], BIG)
        assert "disk is full" in e.value.message and e.value.exit_code == 1
        filler.unlink()
        assert len(c.submit("-c", "true")) == 1


def test_an_acknowledged_job_keeps_its_environment_after_a_failed_insert(tmp_path: Path) -> None:
    """An insert fails (full disk); the next job with the same environment is acknowledged: it must
    have it after a restart (the environment was cached before the failed insert, and the next insert
    went without it: the job ran with an empty environment)."""
    with _cluster_on_small_disk(tmp_path) as c:
        filler = _fill(c.state)
        c.run("qr", "-c", "true", check=False, env_extra=BIG, timeout=30)
        filler.unlink()
        p = c.run("qr", "--json", "--cpu", "0.1", "-c", 'printf "%s %s" "${#WULF_BIG}" "$WULF_MARK"', env_extra=BIG)
        [jid] = json.loads(p.stdout)["jobs"]
        assert c.server is not None
        c.server.kill()
        c.start_server()
        c.agent("n1")
        c.run("qwait", str(jid), timeout=60)
        assert (c.work / f"wulf-{jid}.out").read_text() == "100000 kept"


# ---------------------------------------------------------------- 2. reconcile: the agent's or requeued


def test_jobs_placed_on_a_reconnecting_agent_run_once(tmp_path: Path) -> None:
    """An agent comes back with exits to report; the room they leave is given to waiting jobs and sent
    to that agent at once. Those jobs were then also put back in line (as never received): run twice,
    or left `running`. Each job appends its id to a file; every id must be there once, every job done."""
    with running_cluster(tmp_path) as c:
        c.agent("n1", cpus=4)
        marker, ran = c.work / "go", c.work / "ran"
        [first] = c.submit("--cpu", "0.1", "-c", f"while [ ! -e '{marker}' ]; do sleep 0.05; done")
        pid = wait_until("the first job to start", lambda: c.job(first)["pid"])
        c.agents["n1"].kill()
        c.wait_node("n1", "down")
        # these wait (no node is up) until the agent is back: then the first one's exit makes a pass
        small = c.submit("--cpu", "0.1", *[a for _ in range(8) for a in ("-c", f"echo $WULF_JOB_ID >> '{ran}'")])
        marker.touch()
        wait_until("the first job to end", lambda: not os.path.exists(f"/proc/{pid}"))
        c.agent("n1", cpus=4)
        c.run("qwait", str(first), *map(str, small), timeout=60)
        assert {c.job(i)["state"] for i in [first, *small]} == {"done"}
        # nothing runs again later: the server thinks nothing of ours runs
        wait_until("no job to run", lambda: not _running(c))
        assert sorted(map(int, _lines(ran))) == small


# ---------------------------------------------------------------- 4. two agents with one name


def test_a_second_agent_with_the_same_name_is_refused(tmp_path: Path) -> None:
    with running_cluster(tmp_path) as c:
        c.agent("n1", cpus=2)
        ids = c.submit("--cpu", "0.1", "-c", "sleep 4", "-c", "sleep 4")
        wait_until("the jobs to start", lambda: all(c.job(i)["pid"] for i in ids))
        twin_log = tmp_path / "agent-twin.log"
        argv = [str(BIN / "wulf"), "agent", "--server", c.url, "--name", "n1", "--cpus", "2", "--mem", "4G",
                "--state", str(tmp_path / "agent-twin"), "--interval", "0.5", "--key", str(c.key_path),
                "--socket", str(tmp_path / "agent-twin.sock")]
        twin = Daemon(argv, twin_log, c.env).start()
        c.agents["twin"] = twin  # stopped with the cluster
        try:
            wait_until("the twin to be refused",
                       lambda: "another agent is connected as node n1" in twin_log.read_text(errors="replace"))
            assert "another agent is connected as node n1" in (tmp_path / "server.log").read_text()
            c.run("qwait", *map(str, ids), timeout=60)
            assert [c.job(i)["state"] for i in ids] == ["done", "done"]
            assert [c.job(i)["exit_code"] for i in ids] == [0, 0]
            assert "dropping its old connection" not in (tmp_path / "server.log").read_text()
        finally:
            twin.kill(signal.SIGTERM)


def test_an_agent_that_is_really_gone_is_replaced(cluster: Cluster) -> None:
    """The refusal holds only while the first agent is connected: a restarted agent comes back."""
    [jid] = cluster.submit("--cpu", "0.1", "-c", "sleep 2")
    wait_until("the job to start", lambda: cluster.job(jid)["pid"])
    cluster.agents["n1"].kill()
    cluster.agent("n1", cpus=2)
    cluster.run("qwait", str(jid), timeout=60)
    assert cluster.job(jid)["state"] == "done"


# ---------------------------------------------------------------- 5. a node that never comes back


def test_running_jobs_of_a_node_that_stays_down_end_lost(tmp_path: Path) -> None:
    with running_cluster(tmp_path, config="[server]\nnode_lost_after = 2\n") as c:
        c.agent("n1", cpus=2)
        [jid] = c.submit("--cpu", "0.1", "-c", "sleep 600")
        pid = wait_until("the job to start", lambda: c.job(jid)["pid"])
        c.agents["n1"].kill()
        p = c.run("qwait", str(jid), check=False, timeout=60)
        assert p.returncode == 1, p.stderr
        job = c.job(jid)
        assert job["state"] == "failed" and job["reason"].startswith("node lost: n1 down since "), job
        # the agent comes back and still runs it: the job is killed, its record stays as it is
        assert os.path.exists(f"/proc/{pid}")
        c.agent("n1", cpus=2)
        wait_until("the lost job's process to be killed", lambda: not os.path.exists(f"/proc/{pid}"))
        job = c.job(jid)
        assert job["state"] == "failed" and job["reason"].startswith("node lost: n1 down since ")
        assert not _running(c)


# ---------------------------------------------------------------- 6. qwait across a server restart


def test_qwait_keeps_waiting_across_a_server_restart(cluster: Cluster) -> None:
    marker = cluster.work / "go"
    [jid] = cluster.submit("--cpu", "0.1", "-c", f"while [ ! -e '{marker}' ]; do sleep 0.1; done; exit 0")
    wait_until("the job to start", lambda: cluster.job(jid)["pid"])
    waiting = subprocess.Popen([str(BIN / "qwait"), str(jid)], env=cluster.env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert cluster.server is not None
        cluster.server.kill()
        with pytest.raises(subprocess.TimeoutExpired):
            waiting.wait(timeout=1.5)  # it does not give up while the server is away
        cluster.start_server()
        cluster.wait_node("n1")
        marker.touch()
        out, err = waiting.communicate(timeout=60)
        assert waiting.returncode == 0, err
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait()


# ---------------------------------------------------------------- 7. idempotent submission


class _CountingClient(Client):
    """The real client, counting the requests it sends (to see that it tried again)."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.sent = 0

    def _exchange(self, method: str, path: str, data: bytes | None, timeout: float | None) -> tuple[int, bytes]:
        self.sent += 1
        return super()._exchange(method, path, data, timeout)


def _count(cluster: Cluster, command: str) -> int:
    return sum(1 for j in cluster.status()["jobs"] if j["command"] == command)


def test_a_submission_tried_again_is_queued_once(tmp_path: Path) -> None:
    with running_cluster(tmp_path) as c:
        spec = [{"command": "echo once", "cwd": str(c.work), "cpu": 64.0}]  # waits: no node has 64 cpus
        first = _submit(c.url, spec, "k-1")
        assert _submit(c.url, spec, "k-1") == first
        assert _count(c, "echo once") == 1
        assert c.server is not None
        c.server.kill()
        c.start_server()
        assert _submit(c.url, spec, "k-1") == first
        assert _count(c, "echo once") == 1
        assert _submit(c.url, spec, "k-2") != first  # another key: another submission
        assert _count(c, "echo once") == 2


def test_a_submission_that_timed_out_is_retried_with_its_key(tmp_path: Path) -> None:
    """The client gives up waiting while the server (stopped) will still commit the job later: it tries
    again with the same key, and the job is queued once."""
    with running_cluster(tmp_path) as c:
        spec = [{"command": "echo slow", "cwd": str(c.work), "cpu": 64.0}]
        client = _CountingClient(c.url, timeout=0.5)
        assert c.server is not None and c.server.proc is not None
        result: list[Any] = []
        c.server.proc.send_signal(signal.SIGSTOP)
        try:
            t = threading.Thread(target=lambda: result.append(_submit_or_error(client, spec)))
            t.start()
            wait_until("the client to try again", lambda: client.sent >= 3)
        finally:
            c.server.proc.send_signal(signal.SIGCONT)
        t.join(timeout=60)
        client.close()
        [ids] = result
        assert isinstance(ids, list) and len(ids) == 1, ids
        assert _count(c, "echo slow") == 1


def _submit_or_error(client: Client, spec: list[dict[str, Any]]) -> list[int] | WulfError:
    try:
        return client.submit(spec, {})
    except WulfError as e:
        return e
