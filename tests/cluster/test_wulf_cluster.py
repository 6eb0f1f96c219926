"""wulf across several hosts: namespaced test hosts, an agent in each, the server outside."""

from __future__ import annotations

import json
import subprocess
import threading

from hosts import Host, HostPopen, TestNetwork

from users import User, Users
from wulfproc import BIN, Cluster, wait_until


def busy(host: Host) -> HostPopen:
    """Someone logs in to the host and runs a program that takes a whole cpu (wulf did not start it)."""
    return host.popen(["sh", "-c", "while :; do :; done"])


def node_of(c: Cluster, ids: list[int]) -> dict[int, str]:
    return {i: c.job(i)["node"] for i in ids}


def test_each_host_reports_as_its_own_node(three: Cluster, test_network: TestNetwork) -> None:
    nodes = {n["name"]: n for n in three.status()["nodes"]}
    assert set(nodes) == {"node1", "node2", "node3"}
    assert {n["hostname"] for n in nodes.values()} == {"node1", "node2", "node3"}
    assert all(n["state"] == "up" and n["cpus"] == 2 for n in nodes.values())


def test_jobs_spread_across_hosts(three: Cluster) -> None:
    ids = three.submit(*(["-c", "hostname; sleep 4"] * 6))
    wait_until("all six to run", lambda: all(three.job(i)["state"] == "running" for i in ids))
    placed = node_of(three, ids)
    assert sorted(placed.values()) == ["node1", "node1", "node2", "node2", "node3", "node3"]
    three.run("qwait", *map(str, ids))
    for i in ids:  # each job ran on the host it was given
        assert (three.work / f"wulf-{i}.out").read_text() == f"{placed[i]}\n"


def test_outside_work_shows_as_external_and_steers_jobs_away(three: Cluster, test_network: TestNetwork) -> None:
    hog = busy(test_network["node1"])
    try:
        ext = wait_until("the hog to show as an external job", lambda: [
            j for j in three.status()["jobs"] if j["origin"] == "external" and j["node"] == "node1"])
        assert ext[0]["user"] == "root" and "while" in ext[0]["command"] and ext[0]["cpu"] > 0.2  # (a loaded machine)
        wait_until("node1 to have less than 2 cpus free",
                   lambda: next(n for n in three.status()["nodes"] if n["name"] == "node1")["cpu_free"] < 1.5)
        ids = three.submit("--cpu", "2", "-c", "sleep 3", "-c", "sleep 3", "-c", "sleep 3")
        wait_until("two to run", lambda: sum(three.job(i)["state"] == "running" for i in ids) == 2)
        running = {three.job(i)["node"] for i in ids if three.job(i)["state"] == "running"}
        assert running == {"node2", "node3"}
        waiting = [three.job(i) for i in ids if three.job(i)["state"] == "queued"]
        assert len(waiting) == 1 and waiting[0]["reason"]
        three.run("qwait", *map(str, ids))
        # it took its turn after a job on node2 or node3 ended, never on the busy node1
        assert "node1" not in node_of(three, ids).values()
    finally:
        hog.kill()
        hog.wait()
    wait_until("the external job to end", lambda: all(
        j["state"] == "done" for j in three.status()["jobs"] if j["origin"] == "external" and j["node"] == "node1"))


def test_jr_lands_on_the_least_loaded_host(three: Cluster, test_network: TestNetwork) -> None:
    hogs = [busy(test_network["node1"]), busy(test_network["node3"])]
    try:
        for name in ("node1", "node3"):
            wait_until(f"{name} to look busy",
                       lambda name=name: next(n for n in three.status()["nodes"]
                                              if n["name"] == name)["cpu_free"] < 1.5)
        p = three.run("jr", "sh", "-c", "hostname; echo to-stderr >&2; exit 7", check=False)
        assert p.returncode == 7, p.stderr
        assert p.stdout == "node2\n" and p.stderr == "to-stderr\n"
        p = three.run("jr", "cat", input="piped in\n")
        assert p.stdout == "piped in\n"
        jobs = [j for j in three.status()["jobs"] if j["origin"] == "interactive"]
        assert {j["node"] for j in jobs} == {"node2"} and {j["state"] for j in jobs} <= {"done", "failed"}
    finally:
        for h in hogs:
            h.kill()
            h.wait()


def test_killing_the_server_mid_burst_loses_no_acknowledged_job(three: Cluster) -> None:
    acked: list[int] = []
    stop = threading.Event()

    def submitter() -> None:
        while not stop.is_set():
            p = subprocess.run([str(BIN / "qr"), "--json", "-c", "true", "-c", "true"], capture_output=True,
                               text=True, env=three.env, cwd=three.work)
            if p.returncode == 0:
                acked.extend(json.loads(p.stdout)["jobs"])

    t = threading.Thread(target=submitter)
    t.start()
    try:
        wait_until("some jobs to be acknowledged", lambda: len(acked) >= 20)
        assert three.server is not None
        three.server.kill()  # SIGKILL, mid-burst
        n = len(acked)
    finally:
        stop.set()
        t.join()
    assert len(acked) == n  # nothing was acknowledged by a dead server
    three.start_server()
    for host in ("node1", "node2", "node3"):
        three.wait_node(host)
    known = {j["id"] for j in three.status()["jobs"]}
    assert set(acked) <= known
    three.run("qwait", *map(str, acked))
    assert all(three.job(i)["state"] == "done" for i in acked)


def test_killing_and_restarting_an_agent_keeps_its_jobs(three: Cluster, test_network: TestNetwork) -> None:
    marker = three.work / "release"
    ids = three.submit(*(["-c", f"while [ ! -e '{marker}' ]; do sleep 0.1; done; echo ok"] * 6))
    wait_until("all six to run", lambda: all(three.job(i)["pid"] for i in ids))
    on1 = [i for i in ids if three.job(i)["node"] == "node1"]
    assert len(on1) == 2
    three.agents["node1"].kill()  # SIGKILL the agent; its jobs must go on
    three.wait_node("node1", "down")
    inside = {p.ns_pid for p in test_network["node1"].processes()}
    assert all(three.job(i)["pid"] in inside for i in on1)
    three.agent("node1", cpus=2, server=three.tcp, popen=test_network["node1"].popen)  # type: ignore[attr-defined]
    assert all(three.job(i)["state"] == "running" for i in on1)
    marker.touch()
    three.run("qwait", *map(str, ids))
    for i in ids:
        assert three.job(i)["state"] == "done"
        assert (three.work / f"wulf-{i}.out").read_text() == "ok\n"


def test_when_every_host_is_busy_jobs_wait(three: Cluster, test_network: TestNetwork) -> None:
    """People logged in everywhere: queued work waits, with the reason, and starts when they stop."""
    hogs = [busy(h) for h in test_network]  # (this machine has two cores: each hog gets two thirds of one)
    try:
        for host in test_network:
            wait_until(f"{host.name} to look busy", lambda name=host.name: next(
                n for n in three.status()["nodes"] if n["name"] == name)["cpu_free"] < 1.9)
        [jid] = three.submit("--cpu", "2", "-c", "hostname")
        reason = wait_until("a reason", lambda: three.job(jid)["reason"])
        assert three.job(jid)["state"] == "queued" and reason.startswith("waiting for room"), reason
    finally:
        hogs[0].kill()  # node1's user logs out
        hogs[0].wait()
    try:
        three.run("qwait", str(jid))
        assert three.job(jid)["node"] == "node1"
    finally:
        for h in hogs[1:]:
            h.kill()
            h.wait()


def test_two_users_share_the_cluster_equally(three: Cluster, users: Users) -> None:
    def submit(user: User, n: int) -> list[int]:
        client = three.client(user)
        try:
            return client.submit([{"command": "sleep 30", "cwd": str(three.work)}] * n)
        finally:
            client.close()

    for host in ("node1", "node2", "node3"):
        three.run("jobmgr", "drain", host)
    flood, other = submit(users.alice, 200), submit(users.bob, 10)
    for host in ("node1", "node2", "node3"):
        three.run("jobmgr", "resume", host)
    wait_until("six to run", lambda: sum(j["state"] == "running" for j in three.status()["jobs"]) >= 6)
    running = [j for j in three.status()["jobs"] if j["state"] == "running" and j["origin"] == "batch"]
    counts = {u: sum(j["user"] == u for j in running) for u in (users.alice.name, users.bob.name)}
    assert list(counts.values()) == [3, 3], counts
    three.run("qcancel", *map(str, flood + other))
