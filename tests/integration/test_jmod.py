"""jmod end to end (issue 11 §5): the real server and agent as processes, the command as users run it."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from users import Users
from wulfproc import Cluster, running_cluster, wait_until


@pytest.fixture
def shared(shared_tmp: Path, users: Users) -> Iterator[Cluster]:
    """A server (carol's group its administrators) and one agent ('n1', 4 cpus), in a directory every
    test user may enter. Allocations only: what others run on this machine does not keep jobs waiting."""
    config = f'[server]\nadmin_group = "{users.admins}"\n[scheduler]\nuse_observed = false\n'
    with running_cluster(shared_tmp, config=config) as c:
        c.agent("n1", cpus=4)
        try:
            yield c
        finally:
            for j in c.status()["jobs"]:
                if j["state"] in ("queued", "held", "running") and j["origin"] == "batch":
                    c.run("qcancel", str(j["id"]), check=False)


def _one_line_error(p: Any, code: int, says: str) -> None:
    assert p.returncode == code, p.stderr
    assert p.stderr.count("\n") == 1 and says in p.stderr and "Traceback" not in p.stderr, p.stderr


def _audit(c: Cluster) -> list[dict[str, Any]]:
    path = c.state / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_a_queued_job_starts_with_its_new_cpu_and_memory(shared: Cluster) -> None:
    [jid] = shared.submit("--cpu", "8", "--mem", "1G", "-c", "sleep 30")  # more than the node has: never starts
    wait_until("the scheduler to say why it waits", lambda: shared.job(jid)["reason"])
    assert shared.job(jid)["state"] == "queued"
    out = shared.run("jmod", str(jid), "--cpu", "1", "--mem", "256M").stdout
    assert out == f"changed {jid}\n"
    wait_until("the job to start", lambda: shared.job(jid)["state"] == "running")
    job = shared.job(jid)
    assert (job["cpu"], job["cpu_req"], job["mem_mb"], job["mem_req_mb"]) == (1.0, 1.0, 256.0, 256.0)


def test_rename_and_queue_move_reach_the_job(shared: Cluster) -> None:
    shared.run("qset", "night", "--stop")
    [jid] = shared.submit("--cpu", "8", "-N", "old", "-c", 'echo "$WULF_JOB_NAME $WULF_QUEUE"')
    shared.run("jmod", str(jid), "--name", "renamed", "-q", "night", "--cpu", "1")
    job = shared.job(jid)
    assert (job["state"], job["name"], job["queue"]) == ("queued", "renamed", "night")
    wait_until("the stopped queue to be the reason it waits", lambda: "stopped" in shared.job(jid)["reason"])
    shared.run("qset", "night", "--start")
    shared.run("qwait", str(jid))
    assert (shared.work / f"wulf-{jid}.out").read_text() == "renamed night\n"


def test_a_running_jobs_nice_and_lower_time_limit_take_effect(shared: Cluster) -> None:
    [jid] = shared.submit("--time", "10:00", "-c", "sleep 60")
    pid = wait_until("the job to start", lambda: shared.job(jid)["pid"])
    shared.run("jmod", str(jid), "--nice", "6", "--time", "0:00:03")
    wait_until("the nice value to change", lambda: os.getpriority(os.PRIO_PROCESS, pid) == 6)
    shared.run("qwait", str(jid), check=False, timeout=60)
    job = shared.job(jid)
    assert job["state"] == "failed" and "exceeded its time limit of 0:00:03" in job["reason"], job
    assert (job["nice"], job["time_limit"]) == (6, 3.0)
    assert 3.0 <= job["age"]  # (it ran at least its new limit; it was stopped long before its old one)


def test_what_a_running_job_cannot_take_is_refused_and_nothing_changes(shared: Cluster, users: Users) -> None:
    alice = users.alice

    def as_alice(*argv: str) -> Any:
        return shared.run_as(alice, *argv, check=False)

    [running] = json.loads(as_alice("qr", "--json", "--time", "10:00", "-c", "sleep 60").stdout)["jobs"]
    [waiting] = json.loads(as_alice("qr", "--json", "--cpu", "8", "-c", "true").stdout)["jobs"]
    wait_until("the job to start", lambda: shared.job(running)["state"] == "running")
    _one_line_error(as_alice("jmod", str(waiting), str(running), "--cpu", "1"), 2,
                    f"job {running} is running: --cpu can change only while a job waits")
    assert shared.job(waiting)["cpu_req"] == 8.0  # all or nothing
    for argv, says in ((["--cpu", "x"], "not a number of cpus"), (["--time", "soon"], "--time"),
                       (["-q", "a:b"], "not a queue name"), (["--throttle", "2"], "not an array"),
                       (["--after", "999999"], "no job 999999"), (["--after", str(waiting)], "dependency cycle"),
                       ([], "nothing to change")):
        _one_line_error(as_alice("jmod", str(waiting), *argv), 2, says)
    _one_line_error(as_alice("jmod", str(running), "--time", "20:00"), 5, "only an administrator may raise it")
    _one_line_error(as_alice("jmod", str(running), "--nice", "-1"), 5, "only an administrator may lower it")
    assert shared.job(running)["time_limit"] == 600.0


def test_another_users_job_is_refused_an_administrators_change_is_audited(shared: Cluster, users: Users) -> None:
    alice, bob, carol = users.alice, users.bob, users.carol
    [jid] = json.loads(shared.run_as(alice, "qr", "--json", "--cpu", "8", "-c", "true").stdout)["jobs"]
    _one_line_error(shared.run_as(bob, "jmod", str(jid), "--cpu", "1", check=False), 5,
                    f"belongs to {alice.name}, not to {bob.name}")
    assert shared.job(jid)["cpu_req"] == 8.0
    shared.run_as(carol, "jmod", str(jid), "--name", "by-carol")
    shared.run_as(alice, "jmod", str(jid), "--mem", "64")
    assert (shared.job(jid)["name"], shared.job(jid)["mem_req_mb"]) == ("by-carol", 64.0)
    lines = [(a["who"], a["action"], a["result"].split(":")[0], a["changes"]) for a in _audit(shared)
             if a["action"] == "jmod"]
    assert lines == [(bob.name, "jmod", "refused", {"cpu": 1.0}), (carol.name, "jmod", "ok", {"name": "by-carol"}),
                     (alice.name, "jmod", "ok", {"mem_mb": 64.0})]


def test_changes_survive_a_server_restart(shared: Cluster) -> None:
    [first] = shared.submit("-c", "sleep 30")
    [held] = shared.submit("--cpu", "8", "-c", "true")  # (it cannot start before it is held)
    shared.run("qhold", str(held))
    shared.run("jmod", str(held), "--cpu", "0.5", "--mem", "100", "--time", "1:00", "-N", "kept", "-q", "other",
               "--after", str(first))
    [aid] = shared.submit("--array", "1-6%1", "-c", "sleep 30")
    wait_until("one task to run", lambda: shared.json("jstat", "-a")["arrays"][str(aid)]["running"] == 1)
    assert shared.run("jmod", str(aid), "--throttle", "2").stdout == f"array {aid}: at most 2 tasks at once\n"
    wait_until("two tasks to run", lambda: shared.json("jstat", "-a")["arrays"][str(aid)]["running"] == 2)
    assert shared.server is not None
    shared.server.kill()
    shared.start_server()
    shared.wait_node("n1")
    job = shared.job(held)
    assert (job["state"], job["cpu_req"], job["mem_req_mb"], job["time_limit"], job["name"], job["queue"],
            job["depend"]) == ("held", 0.5, 100.0, 60.0, "kept", "other", f"afterok:{first}")
    array = shared.json("jstat", "-a")["arrays"][str(aid)]
    assert (array["spec"], array["throttle"]) == ("1-6%2", 2)
    shared.run("jmod", str(held), "--after", "none")
    assert shared.job(held)["depend"] == ""


def test_a_lowered_time_limit_outlives_a_restart_of_the_agent(shared: Cluster) -> None:
    """The agent keeps a running job's new limit in its journal: restarted, it still stops the job there."""
    [jid] = shared.submit("--time", "10:00", "-c", "sleep 60")
    wait_until("the job to start", lambda: shared.job(jid)["pid"])
    shared.run("jmod", str(jid), "--time", "0:00:08")
    log = shared.root / "agent-n1.log"
    wait_until("the agent to take the new limit", lambda: "its time limit is now 0:00:08" in log.read_text())
    shared.agents["n1"].kill(signal.SIGKILL)
    shared.agent("n1", cpus=4)
    shared.run("qwait", str(jid), check=False, timeout=60)
    job = shared.job(jid)
    assert job["state"] == "failed" and "exceeded its time limit of 0:00:08" in job["reason"], job
