"""jacct and jeff end to end: jobs run on a real agent, the server restarts, and what they used is still
told, in every shape; who sees whose jobs; jobs older than [server] keep_days are forgotten."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from users import User, Users
from wulf.model.accounting import CSV_COLUMNS
from wulfproc import Cluster, running_cluster, wait_until

# about two seconds of cpu, however loaded the machine (a shell loop that counts to a number of its own ticks)
BURN = "python3 -c 'import time\nt = time.process_time()\nwhile time.process_time() - t < 1.5: pass'"


# the machine is shared: work of other processes that the agent would take for outside jobs is not counted
QUIET = "[agent]\nexternal_min_cpu = 1000.0\nexternal_min_mem_mb = 1e9\n"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A server and one agent ('n1', 2 cpus) that finds no outside jobs; pages of two jobs (jacct fetches
    them all)."""
    with running_cluster(tmp_path, config=QUIET + "[server]\njobs_per_page = 2\n") as c:
        c.agent("n1", cpus=2)
        yield c


def _acct(c: Cluster, *args: str, user: User | None = None) -> list[dict[str, Any]]:
    argv = ("jacct", "-S", "-1h", *args, "--json")
    p = c.run_as(user, *argv) if user else c.run(*argv)
    return list(json.loads(p.stdout)["jobs"])


def _one_line_error(p: Any, code: int, says: str) -> None:
    assert p.returncode == code, p.stderr
    assert p.stderr.count("\n") == 1 and says in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_jacct_after_a_server_restart(cluster: Cluster) -> None:
    [burn] = cluster.submit("-c", BURN, "--name", "burner")
    [bad] = cluster.submit("-c", "exit 3")
    [never] = cluster.submit("--cpu", "8", "-c", "true")  # more than the node has: waits until cancelled
    cluster.run("qcancel", str(never))
    cluster.run("qwait", str(burn), str(bad), str(never), check=False)
    assert cluster.server is not None
    cluster.server.kill()
    cluster.start_server()

    jobs = {j["id"]: j for j in _acct(cluster)}
    assert list(jobs) == sorted(jobs, key=lambda i: jobs[i]["ended"])  # by end time
    b, f, n = jobs[burn], jobs[bad], jobs[never]
    assert (b["state"], b["exit_code"], b["node"], b["name"], b["attempts"]) == ("done", 0, "n1", "burner", 1)
    assert b["cpu_time"] >= 1.0 and 0 < b["cpu_eff"] <= 1.05 and b["run"] >= 1.0 and b["wait"] >= 0
    assert b["cpu_req"] == 1 and b["mem_req_mb"] == 32
    assert b["submitted"] <= b["started"] <= b["ended"]
    assert (f["state"], f["exit_code"]) == ("failed", 3)
    assert (n["state"], n["started"], n["attempts"], n["cpu_eff"]) == ("cancelled", None, 0, None)
    assert [j["id"] for j in _acct(cluster, "--state", "failed,cancelled")] == sorted(
        [bad, never], key=lambda i: jobs[i]["ended"])
    assert [j["id"] for j in _acct(cluster, str(bad))] == [bad]

    table = cluster.run("jacct", "-S", "-1h").stdout.splitlines()
    assert table[0].split()[:4] == ["ID", "USER", "STATE", "EXIT"] and len(table) == 4
    assert any(line.split()[:4] == [str(bad), "root", "failed", "3"] for line in table)

    rows = list(csv.reader(io.StringIO(cluster.run("jacct", "-S", "-1h", "--csv").stdout)))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 4
    burned = dict(zip(CSV_COLUMNS, next(r for r in rows if r[0] == str(burn)), strict=True))
    assert burned["state"] == "done" and burned["ended"][:4].isdigit() and "T" in burned["ended"]
    assert float(burned["cpu_time"]) == b["cpu_time"]

    [totals] = json.loads(cluster.run("jacct", "-S", "-1h", "--summary", "--json").stdout)["users"]
    assert totals["user"] == "root" and totals["jobs"] == 3
    assert totals["cpu_hours"] == pytest.approx((b["cpu_time"] + (f["cpu_time"] or 0)) / 3600, abs=1e-4)
    assert totals["mean_wait"] >= 0 and 0 < totals["cpu_eff"] <= 1.05
    assert cluster.run("jacct", "-S", "-1h", "--summary").stdout.split()[5:7] == ["root", "3"]

    words = cluster.run("jeff", str(burn)).stdout
    assert f"Job {burn} (burner) of root, queue default, on node n1" in words
    assert "State: done (exit code 0)" in words and "% efficiency" in words and "Attempts: 1" in words
    assert "State: failed (exit code 3)" in cluster.run("jeff", str(bad)).stdout
    assert json.loads(cluster.run("jeff", str(bad), "--json").stdout)["exit_code"] == 3


def test_jacct_bad_input_is_one_line(cluster: Cluster) -> None:
    for argv, code, says in [
        (("jacct", "-S", "last tuesday"), 2, "is not a time"),
        (("jacct", "-S", "-7"), 2, "needs a unit"),
        (("jacct", "-S", "today", "-E", "yesterday"), 2, "is not before"),
        (("jacct", "--state", "running"), 2, "is not how a job ends"),
        (("jacct", "x12"), 2, "is not a job id"),
        (("jacct", "--json", "--csv"), 2, "not allowed with"),
        (("jacct", "-u", "root", "-a"), 2, "give one"),
        (("jacct", "--summary", "12"), 2, "not job ids"),
        (("jeff", "99999"), 4, "no job 99999"),
        (("jeff",), 2, "required"),
    ]:
        _one_line_error(cluster.run(*argv, check=False), code, says)


@pytest.fixture
def people(shared_tmp: Path, users: Users) -> Iterator[Cluster]:
    """A server whose administrators are carol's group, and an agent that runs everyone's jobs."""
    with running_cluster(shared_tmp, config=f'{QUIET}[server]\nadmin_group = "{users.admins}"\n') as c:
        c.agent("n1", cpus=4)
        yield c


def _submit_as(c: Cluster, user: User, *args: str) -> int:
    [jid] = json.loads(c.run_as(user, "qr", "--json", *args).stdout)["jobs"]
    return int(jid)


def test_who_sees_whose_jobs(people: Cluster, users: Users) -> None:
    alice, bob, carol = users.alice, users.bob, users.carol
    mine = _submit_as(people, alice, "-c", "true")
    theirs = _submit_as(people, bob, "-c", "exit 1")
    people.run("qwait", str(mine), str(theirs), check=False)
    # by default one's own; others' when asked for (as jstat shows everyone's jobs); an administrator: all
    assert [j["id"] for j in _acct(people, user=alice)] == [mine]
    assert [j["id"] for j in _acct(people, "-u", bob.name, user=alice)] == [theirs]
    assert {j["id"] for j in _acct(people, "-a", user=carol)} == {mine, theirs}
    summary = json.loads(people.run_as(carol, "jacct", "-a", "-S", "-1h", "--summary", "--json").stdout)["users"]
    assert [(u["user"], u["jobs"]) for u in summary] == sorted([(alice.name, 1), (bob.name, 1)])

    cfg = people.root / "wulf.toml"
    cfg.write_text(cfg.read_text() + "private_accounting = true\n")
    people.run("jobmgr", "reload")
    _one_line_error(people.run_as(alice, "jacct", "-u", bob.name, check=False), 5, "only administrators")
    _one_line_error(people.run_as(alice, "jacct", "-a", check=False), 5, "only administrators")
    _one_line_error(people.run_as(alice, "jeff", str(theirs), check=False), 5, f"belongs to {bob.name}")
    assert [j["id"] for j in _acct(people, user=alice)] == [mine]
    assert "State: done" in people.run_as(alice, "jeff", str(mine)).stdout
    assert [j["id"] for j in _acct(people, "-u", bob.name, user=carol)] == [theirs]


KEEP_DAYS = 0.0002  # 17.3 seconds


def test_jobs_older_than_keep_days_are_forgotten(tmp_path: Path) -> None:
    with running_cluster(tmp_path, config=f"{QUIET}[server]\nkeep_days = {KEEP_DAYS}\n") as c:
        c.agent("n1")
        [old] = c.submit("-c", "true")
        c.run("qwait", str(old))
        ended = _acct(c, str(old))[0]["ended"]
        wait_until("the job to be older than keep_days", lambda: time.time() > ended + KEEP_DAYS * 86400 + 1,
                   timeout=60, every=0.5)
        [new] = c.submit("-c", "true")
        c.run("qwait", str(new))
        assert c.server is not None
        c.server.kill()
        c.start_server()  # the server deletes old jobs at start (then hourly)
        wait_until("the old job to be forgotten", lambda: not _acct(c, str(old)), timeout=30)
        assert [j["id"] for j in _acct(c)] == [new]
        _one_line_error(c.run("jeff", str(old), check=False), 4, f"no job {old}")
