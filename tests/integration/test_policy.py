"""The scheduling policy end to end: real server, real agent, the real commands."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from users import User, Users
from wulfproc import Cluster, free_port, running_cluster, wait_until


def _as(c: Cluster, user: User, *commands: str, **spec: Any) -> list[int]:
    """Submit as ``user`` through the API (with a credential signed by the cluster key)."""
    client = c.client(user)
    try:
        return client.submit([{"command": cmd, "cwd": str(c.work), **spec} for cmd in commands])
    finally:
        client.close()


def _post(c: Cluster, path: str, body: dict[str, Any]) -> Any:
    client = c.client()
    try:
        return client.post(path, body)
    finally:
        client.close()


def _states(c: Cluster, ids: list[int]) -> dict[int, dict[str, Any]]:
    jobs = {j["id"]: j for j in c.status()["jobs"]}
    return {i: jobs[i] for i in ids}


def _cancel_all(c: Cluster) -> None:
    ids = [str(j["id"]) for j in c.status()["jobs"] if j["state"] in ("queued", "held", "running")
           and j["origin"] == "batch"]
    if ids:
        _post(c, "/api/v1/jobs/cancel", {"ids": [int(i) for i in ids]})


@pytest.fixture
def eight(shared_tmp: Path) -> Iterator[Cluster]:
    with running_cluster(shared_tmp) as c:
        c.agent("n1", cpus=8, mem="8G")
        yield c
        _cancel_all(c)


def test_a_flooding_user_does_not_starve_another(eight: Cluster, users: Users) -> None:
    alice, bob = users.alice.name, users.bob.name
    eight.run("jobmgr", "drain", "n1")  # both queue up before anything starts
    flood = _as(eight, users.alice, *["sleep 60"] * 300)
    other = _as(eight, users.bob, *["sleep 60"] * 20)
    eight.run("jobmgr", "resume", "n1")

    def running() -> Counter[str]:
        return Counter(j["user"] for j in _states(eight, flood + other).values() if j["state"] == "running")

    # however much of the node is free (other work on this machine counts), they share it equally
    wait_until("both to run", lambda: len(running()) == 2 and sum(running().values()) >= 4)
    time.sleep(1.0)
    counts = running()
    assert abs(counts[alice] - counts[bob]) <= 1, counts
    # as jobs end, the room goes to whoever has fewer running
    mine = [i for i, j in _states(eight, other).items() if j["state"] == "running"]
    _post(eight, "/api/v1/jobs/cancel", {"ids": mine[:2]})
    wait_until("bob to get his turn back", lambda: all(eight.job(i)["state"] == "cancelled" for i in mine[:2])
               and abs((c := running())[alice] - c[bob]) <= 1 and c[bob] >= counts[bob] - 1)
    time.sleep(1.0)  # and nothing more goes to alice meanwhile
    counts = running()
    assert abs(counts[alice] - counts[bob]) <= 1, counts


def test_priorities_hold_release_and_stop_with_reasons(eight: Cluster) -> None:
    eight.run("qset", "low", "--priority", "1")
    eight.run("qset", "high", "--priority", "5")
    eight.run("jobmgr", "drain", "n1")
    low = eight.submit("-q", "low", "-c", "sleep 60")
    high = eight.submit("-q", "high", "-c", "sleep 60", "-c", "sleep 60")
    held = eight.run("qhold", str(high[1])).stdout
    assert f"held {high[1]}" in held
    jobs = _states(eight, low + high)
    assert jobs[high[1]]["state"] == "held" and "held by" in jobs[high[1]]["reason"]
    eight.run("qset", "low", "--stop")
    assert "is stopped" in eight.job(low[0])["reason"]
    queues = {q["name"]: q for q in eight.json("qset")["queues"]}
    assert queues["high"]["priority"] == 5 and queues["low"]["stopped"] is True
    # room comes: the high queue starts, the held job stays, the stopped queue starts nothing
    eight.run("jobmgr", "resume", "n1")
    wait_until("high to run", lambda: eight.job(high[0])["state"] == "running")
    time.sleep(1.0)
    jobs = _states(eight, low + high)
    assert jobs[high[1]]["state"] == "held" and jobs[low[0]]["state"] == "queued"
    eight.run("qrls", str(high[1]))
    eight.run("qset", "low", "--start")
    wait_until("the rest to run", lambda: all(j["state"] == "running" for j in _states(eight, low + high).values()))
    bad = eight.run("qset", "low", "--priority", "soon", check=False)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert eight.run("qrls", str(high[1]), check=False).returncode == 1  # not held any more


def _span(start: datetime, hours: float) -> str:
    end = start + timedelta(hours=hours)
    return f"{start:%H:%M}-{end:%H:%M}"


def test_a_night_queue_waits_outside_its_window(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    closed = f'[windows]\ntimezone = "UTC"\nnights = "{_span(now + timedelta(hours=2), 3)}"\nweekends = []\n'
    with running_cluster(tmp_path, config=closed) as c:
        c.agent("n1", cpus=8)
        c.run("qset", "overnight", "--nights")
        [jid] = c.submit("-q", "overnight", "-c", "true")
        day = c.submit("-c", "true")
        c.run("qwait", str(day[0]))
        job = c.job(jid)
        assert job["state"] == "queued" and job["reason"] == "queue overnight runs at nights only"
        # night falls: the window now spans the present
        cfg = Path(c.env["WULF_CONFIG"])
        cfg.write_text(f'[windows]\ntimezone = "UTC"\nnights = "{_span(now - timedelta(hours=1), 3)}"\n'
                       "weekends = []\n")
        c.run("jobmgr", "reload")
        c.run("qwait", str(jid))
        assert c.job(jid)["state"] == "done"


def test_a_user_over_their_cpu_limit_waits_with_the_reason(shared_tmp: Path, users: Users) -> None:
    # (alice, not the user running the tests: everything on this machine runs as root, and a user's
    # work outside wulf counts towards their limit too)
    alice = users.alice.name
    with running_cluster(shared_tmp, config=f'[limits]\nusers = {{ "{alice}" = 2 }}\n') as c:
        c.agent("n1", cpus=8)
        ids = _as(c, users.alice, "sleep 60", "sleep 60", "sleep 60")
        wait_until("two to run", lambda: [j["state"] for j in _states(c, ids).values()].count("running") == 2)
        time.sleep(0.5)
        third = _states(c, ids)[ids[2]]
        assert third["state"] == "queued"
        assert third["reason"] == f"user limit: {alice} occupies 2 of 2 cpus"
        _cancel_all(c)


def test_constraints_and_features(tmp_path: Path) -> None:
    with running_cluster(tmp_path, config='[nodes]\nfeatures = { n1 = ["bigmem"] }\n') as c:
        c.agent("n1", cpus=8)
        c.agent("n2", cpus=8)
        big = c.submit("--constraint", "bigmem", "-c", "true", "-c", "true", "-c", "true")
        c.run("qwait", *map(str, big))
        assert {c.job(i)["node"] for i in big} == {"n1"}
        arch = os.uname().machine
        [plain] = c.submit("--constraint", f"arch={arch},!bigmem", "-c", "true")
        c.run("qwait", str(plain))
        assert c.job(plain)["node"] == "n2"
        [never] = c.submit("--constraint", "gpu", "-c", "true")
        wait_until("the reason", lambda: c.job(never)["reason"])
        assert c.job(never)["reason"] == "no node matches the constraint 'gpu'"
        nodes = {n["name"]: n for n in c.status()["nodes"]}
        assert nodes["n1"]["features"] == ["bigmem"]
        bad = c.run("qr", "--constraint", "arch==x", "-c", "true", check=False)
        assert bad.returncode == 2 and "constraint" in bad.stderr and bad.stderr.count("\n") == 1
        c.run("qcancel", str(never))


def test_mail_when_a_job_of_the_queue_ends(tmp_path: Path) -> None:
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Sink

    class Box(Sink):
        def __init__(self) -> None:
            self.messages: list[bytes] = []

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            self.messages.append(envelope.content)
            return "250 OK"

    box = Box()
    port = free_port()
    smtp = Controller(box, hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        config = f'[mail]\nsmtp = "127.0.0.1:{port}"\nfrom = "wulf@test"\n'
        with running_cluster(tmp_path, config=config) as c:
            c.agent("n1", cpus=8)
            c.run("qset", "tell", "--mail", "alice@example.org")
            [jid] = c.submit("-q", "tell", "-N", "answer", "-c", "exit 3")
            c.run("qwait", str(jid), check=False)
            wait_until("the mail", lambda: box.messages)
            text = box.messages[0].decode()
            assert "To: alice@example.org" in text and f"job {jid}" in text and "failed" in text
            bad = c.run("qset", "tell", "--mail", "not an address", check=False)
            assert bad.returncode == 2
    finally:
        smtp.stop()


def test_a_job_that_outgrows_its_allocation_on_a_full_node_is_reniced(tmp_path: Path) -> None:
    with running_cluster(tmp_path, config="[scheduler]\nsettle_seconds = 3600.0\n") as c:
        # a node with 1.5 cpus on the books, and a job given a quarter of a cpu that takes two:
        # there is no room for what it takes, so it is reniced (and gets no more)
        c.agent("n1", cpus=1.5, interval=0.3)
        burn = "while :; do :; done"
        [greedy] = c.submit("--cpu", "0.25", "-c", f"({burn}) & ({burn}) & wait")
        try:
            wait_until("it to run", lambda: c.job(greedy)["state"] == "running")
            job = wait_until("the penalty", lambda: (j := c.job(greedy))["penalized"] and j)
            assert job["reason"].startswith("reniced: uses")
            pid = job["pid"]

            def nice_of(p: int) -> int:
                return int(Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[16])

            wait_until("the job's processes to be reniced", lambda: nice_of(pid) == 10)
        finally:
            c.run("qcancel", str(greedy))
            c.run("qwait", str(greedy), check=False)


def test_batch_jobs_start_at_the_sites_niceness(shared_tmp: Path, users: Users) -> None:
    # [scheduler] job_nice: people's own work on a node comes before the jobs there; qr --nice goes higher
    with running_cluster(shared_tmp, config="[scheduler]\njob_nice = 5\n") as c:
        c.agent("n1", cpus=8)
        [plain] = c.submit("-c", "sleep 60")
        [nicer] = c.submit("--nice", "12", "-c", "sleep 60")
        [mine] = _as(c, users.alice, "sleep 60")
        for jid, nice in ((plain, 5), (nicer, 12), (mine, 5)):
            pid = wait_until(f"job {jid} to start", lambda jid=jid: c.job(jid)["pid"])
            assert os.getpriority(os.PRIO_PROCESS, pid) == nice and c.job(jid)["nice"] == nice
        p = c.run_as(users.alice, "qr", "--nice", "2", "-c", "true", check=False)
        assert p.returncode == 5 and "run at nice 5 or more" in p.stderr
        p = c.run_as(users.alice, "jnice", str(mine), "3", check=False)
        assert p.returncode == 5 and "only an administrator may lower it" in p.stderr
        assert c.run("jr", "sh", "-c", "nice").stdout.strip() == "0"  # jr runs as a login would
        _cancel_all(c)


def test_jobs_of_a_kind_start_with_what_the_last_ones_used(tmp_path: Path) -> None:
    # a job that ends done after history_min_seconds teaches its kind (user, name, request) its mean cpu
    # and peak memory; the next of the kind starts with that when it is less than it asks for
    with running_cluster(tmp_path, config="[scheduler]\nhistory_min_seconds = 1.0\n") as c:
        c.agent("n1", cpus=16, mem="8G", interval=0.3)  # room for all of them at once, as asked
        one_cpu = "timeout 1.5 sh -c 'while :; do :; done'"  # about one cpu for a second and a half
        ask = ("--cpu", "3", "--mem", "500")
        [teacher] = c.submit("-N", "burn", *ask, "-c", f"{one_cpu}; true")
        [failed] = c.submit("-N", "broken", *ask, "-c", f"{one_cpu}; false")  # exit 1: teaches nothing
        [short] = c.submit("-N", "quick", *ask, "-c", "true")  # too short to teach
        c.run("qwait", str(teacher), str(failed), str(short), check=False)
        taught = c.job(teacher)
        assert taught["state"] == "done" and 0.3 < taught["cpu_time"] < 2.5 and 0 < taught["peak_mem_mb"] < 500
        ids = {}
        for name, extra in (("burn", ()), ("burn[2]", ()), ("other", ()), ("broken", ()), ("quick", ()),
                            ("burn", ("--cpu", "2"))):  # asking otherwise is another kind
            [ids[(name, extra)]] = c.submit("-N", name, *ask, *extra, "-c", "sleep 60")
        try:
            jobs = {key: wait_until(f"{key} to start", lambda jid=jid: (j := c.job(jid))["pid"] and j)
                    for key, jid in ids.items()}
            ran = taught["ended"] - taught["started"]
            for key in (("burn", ()), ("burn[2]", ())):  # the number of a script in a file is not its kind
                job = jobs[key]
                assert job["cpu_req"] == 3 and job["mem_req_mb"] == 500
                assert job["cpu"] == pytest.approx(taught["cpu_time"] / ran, abs=0.011)
                assert job["mem_mb"] == pytest.approx(taught["peak_mem_mb"], abs=1)
            for key in (("other", ()), ("broken", ()), ("quick", ())):
                assert (jobs[key]["cpu"], jobs[key]["mem_mb"]) == (3, 500), key
            assert jobs[("burn", ("--cpu", "2"))]["cpu"] == 2
            # what was taught outlives the server: it is learnt again from the jobs kept in the store
            _cancel_all(c)
            assert c.server is not None
            c.server.kill()
            c.start_server()
            c.wait_node("n1")
            [again] = c.submit("-N", "burn", *ask, "-c", "sleep 60")
            job = wait_until("it to start", lambda: (j := c.job(again))["pid"] and j)
            assert job["cpu"] == jobs[("burn", ())]["cpu"] and job["mem_mb"] == jobs[("burn", ())]["mem_mb"]
        finally:
            _cancel_all(c)
