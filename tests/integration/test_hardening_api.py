"""Issue 10: what an authenticated user can send is validated and bounded, one test per finding.

Security 2 (validation), 5 (one request must not freeze the server), 6 (NaN limits), 7 (mail
addresses, other users' command lines, mail domains) and reliability 10 (big scripts and a node's
start messages), each from its reproduction, against the real server, agent and commands.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from users import User, Users
from wulf.client import Client
from wulf.errors import Refused, UsageError
from wulfproc import BIN, Cluster, free_port, running_cluster, wait_until

_OPEN: list[Client] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def _api(c: Cluster, user: User | None = None) -> Client:
    """A client of the API as ``user`` (root if None), closed after the test."""
    client = c.client(user)
    _OPEN.append(client)
    return client


def _spec(c: Cluster, **kw: Any) -> dict[str, Any]:
    return {"command": "true", "cwd": str(c.work), **kw}


def _queued(c: Cluster) -> int:
    return sum(1 for j in c.status()["jobs"] if j["origin"] == "batch")


def _one_line(p: subprocess.CompletedProcess[Any], code: int, *words: str) -> str:
    err = p.stderr if isinstance(p.stderr, str) else p.stderr.decode(errors="replace")
    assert p.returncode == code, (p.returncode, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err
    return err


def _still_runs_jobs(c: Cluster) -> None:
    """The agent is up and the store takes writes: a plain job runs to its end."""
    [jid] = c.submit("-c", "true")
    c.run("qwait", str(jid), timeout=30)
    assert c.job(jid)["state"] == "done"


# ---------------------------------------------------------------- security 2: validation at submission


@pytest.mark.parametrize(("job", "env", "words"), [
    ({"command": "echo a\x00b"}, None, ["command", "NUL"]),
    ({"script": "echo a\x00b\n"}, None, ["script", "NUL"]),
    ({"cwd": "/tmp\x00x"}, None, ["cwd", "NUL"]),
    ({}, {"A=B": "x"}, ["env", "not an environment variable name"]),
    ({}, {"HOME": "/x\x00y"}, ["env", "NUL"]),
    ({"mem_limit_mb": 1e308}, None, ["mem_limit_mb"]),
    ({"cpu": 1e308}, None, ["cpu"]),
])
def test_what_would_crash_an_agent_is_refused_at_submission(cluster: Cluster, job: dict[str, Any],
                                                             env: dict[str, str] | None, words: list[str]) -> None:
    client = _api(cluster)
    with pytest.raises(UsageError) as e:
        client.submit([_spec(cluster, **job)], env if env is not None else {"PATH": "/bin:/usr/bin"})
    message = e.value.message
    assert "\n" not in message and all(w in message for w in words), message
    assert _queued(cluster) == 0
    _still_runs_jobs(cluster)


def test_text_that_is_not_utf8_is_refused_with_a_clear_error(cluster: Cluster) -> None:
    # qr -c "$(printf 'echo \xff')": Python reads the byte as a lone surrogate
    _one_line(cluster.run("qr", "-c", "echo \udcff", check=False), 2, "UTF-8")
    # cd "$(printf '/tmp/x\xff')"; qr -c true
    odd = Path(os.fsdecode(bytes(cluster.work) + b"/x\xff"))
    odd.mkdir()
    _one_line(cluster.run("qr", "-c", "true", cwd=odd, check=False), 2, "UTF-8")
    # head -c 64k /dev/urandom | qr
    noise = os.urandom(65536)
    p = subprocess.run([str(BIN / "qr")], input=noise, capture_output=True, env=cluster.env, cwd=cluster.work)
    _one_line(p, 2, "UTF-8")
    # the same, straight to the API (a client that is not qr)
    with pytest.raises(UsageError, match="UTF-8"):
        _api(cluster).submit([_spec(cluster, command="echo \udcff")], {})
    assert _queued(cluster) == 0
    # a variable of the user's environment that is not UTF-8 is left out, with a warning
    p = cluster.run("qr", "--json", "-c", 'test -z "${ODD+set}"', env_extra={"ODD": "\udcff"})
    assert "ODD" in p.stderr
    [jid] = json.loads(p.stdout)["jobs"]
    cluster.run("qwait", str(jid))
    assert cluster.job(jid)["state"] == "done"
    _still_runs_jobs(cluster)


# ---------------------------------------------------------------- security 6: NaN limits


def test_a_nan_time_limit_does_not_bypass_the_sites_maximum(tmp_path: Path) -> None:
    with running_cluster(tmp_path, config='[limits]\ntime_max = "1:00:00"\n') as c:
        for field in ("time_limit", "cputime_limit", "mem_limit_mb", "cpu", "mem_mb"):
            for value in (math.nan, math.inf):
                with pytest.raises(UsageError, match=field):
                    _api(c).submit([_spec(c, **{field: value})], {})
        assert _queued(c) == 0


# ---------------------------------------------------------------- security 5: one request must not freeze the server


def test_a_request_naming_too_many_jobs_is_refused(cluster: Cluster) -> None:
    client = _api(cluster)
    for path in ("/api/v1/wait", "/api/v1/jobs/cancel"):
        with pytest.raises(UsageError, match="ids"):
            client.post(path, {"ids": list(range(1, 1_000_001))})
    body = {"jobs": [_spec(cluster, command="sleep 60")] * 10_001, "env": {}}
    with pytest.raises(UsageError, match="jobs"):
        client.post("/api/v1/jobs", body)
    assert _queued(cluster) == 0


def test_the_client_splits_what_one_request_may_not_carry(tmp_path: Path) -> None:
    with running_cluster(tmp_path) as c:  # no agent: the jobs stay queued
        client = _api(c)
        ids = client.submit([_spec(c, command="true")] * 10_050, {})
        assert len(ids) == len(set(ids)) == 10_050
        reply = client.cancel(ids)
        assert sorted(reply["cancelled"]) == sorted(ids)
        assert client.wait(ids, timeout=30)["done"]


def test_queued_jobs_per_user_are_bounded(shared_tmp: Path, users: Users) -> None:
    with running_cluster(shared_tmp, config="[limits]\nmax_queued_per_user = 3\n") as c:
        alice = _api(c, users.alice)
        alice.submit([_spec(c)] * 2, {})
        with pytest.raises(Refused, match="max_queued_per_user"):
            alice.submit([_spec(c)] * 2, {})  # 4 would be queued: all or nothing
        alice.submit([_spec(c)], {})
        p = c.run_as(users.alice, "qr", "-c", "true", cwd=shared_tmp, check=False)
        _one_line(p, 5, "3 jobs")
        _api(c, users.bob).submit([_spec(c)] * 3, {})  # each user their own
        assert _queued(c) == 6


def test_status_replies_are_paged_and_carry_a_cut_command(tmp_path: Path) -> None:
    with running_cluster(tmp_path, config="[server]\njobs_per_page = 10\n") as c:  # no agent
        client = _api(c)
        long = "true " + "x" * 100_000
        ids = client.submit([_spec(c, command=long)] + [_spec(c)] * 24, {})
        page = client.get("/api/v1/status?limit=1000")
        assert len(page["jobs"]) == 10 and page["next"] == ids[9]
        rest = client.get(f"/api/v1/status?after={page['next']}&limit=10")
        assert [j["id"] for j in rest["jobs"]] == ids[10:20]
        assert len(page["jobs"][0]["command"]) < 2000 and page["jobs"][0]["command"].startswith("true xxx")
        assert client.job(ids[0])["command"] == long
        # jstat fetches every page: users see no change
        assert sorted(j["id"] for j in c.status()["jobs"]) == ids
        assert str(ids[-1]) in c.run("jstat", "--jobs").stdout


class _Box:
    """An SMTP server that keeps what it gets."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content.decode())
        return "250 OK"


@contextlib.contextmanager
def _smtp() -> Iterator[tuple[_Box, int]]:
    from aiosmtpd.controller import Controller

    box, port = _Box(), free_port()
    smtp = Controller(box, hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        yield box, port
    finally:
        smtp.stop()


def test_many_jobs_ending_at_once_make_one_mail(tmp_path: Path) -> None:
    with _smtp() as (box, port):
        config = f'[mail]\nsmtp = "127.0.0.1:{port}"\nfrom = "wulf@test"\ndigest_seconds = 0.5\n'
        with running_cluster(tmp_path, config=config) as c:  # no agent: the jobs wait until cancelled
            c.run("qset", "tell", "--mail", "alice@example.org")
            ids = _api(c).submit([_spec(c, queue="tell")] * 300, {})
            c.run("qcancel", *map(str, ids))
            wait_until("a mail", lambda: box.messages)
            text = box.messages[0]
            assert "300 jobs" in text and all(f"\n{i} " in text for i in ids), text[:2000]
            assert len(box.messages) == 1


# ---------------------------------------------------------------- security 7: what others see, where mail goes


def _as_json(c: Cluster, user: User, *argv: str) -> Any:
    return json.loads(c.run_as(user, *argv, "--json").stdout)


def test_a_queues_mail_address_shows_only_to_its_owner_and_administrators(shared_tmp: Path, users: Users) -> None:
    with running_cluster(shared_tmp, config=f'[server]\nadmin_group = "{users.admins}"\n') as c:
        c.run_as(users.alice, "qset", "tell", "--mail", "alice@example.org")

        def mail_seen(user: User) -> str:
            [q] = [q for q in _as_json(c, user, "jstat", "--queues")["queues"] if q["name"] == "tell"]
            return str(q.get("mail") or "")

        assert mail_seen(users.alice) == "alice@example.org"
        assert mail_seen(users.carol) == "alice@example.org"
        assert mail_seen(users.bob) == ""


def test_mail_goes_only_to_the_sites_domains(tmp_path: Path) -> None:
    with running_cluster(tmp_path, config='[mail]\nallowed_domains = ["example.org"]\n') as c:
        c.run("qset", "tell", "--mail", "alice@example.org")
        c.run("qset", "tell", "--mail", "bob@cs.example.org")
        c.run("qset", "tell", "--mail", "carol")  # a local user of the mail host
        _one_line(c.run("qset", "tell", "--mail", "eve@elsewhere.test", check=False), 2, "example.org")
        _one_line(c.run("qset", "tell", "--mail", "eve@notexample.org", check=False), 2, "example.org")


def test_others_see_the_program_of_a_busy_process_not_its_command_line(shared_tmp: Path, users: Users) -> None:
    config = f'[server]\nadmin_group = "{users.admins}"\n[agent]\nexternal_min_cpu = 0.02\n'
    with running_cluster(shared_tmp, config=config) as c:
        c.agent("n1", cpus=2)
        secret = "--password=hunter2-do-not-show"
        # alice's busy shell, started outside wulf and outside this test's process tree (the agent
        # counts that as the test's own, not as anyone's work)
        loop = "/bin/sh -c 'while :; do :; done' \"$0\" </dev/null >/dev/null 2>&1 & echo $!"
        pid = int(subprocess.run(["/bin/sh", "-c", loop, secret], user=users.alice.uid, group=users.alice.gid,
                                 cwd=shared_tmp, capture_output=True, text=True, check=True).stdout)
        try:
            def mine(user: User) -> list[dict[str, Any]]:
                return [j for j in _as_json(c, user, "jstat", "--jobs", "--external")["jobs"]
                        if j["origin"] == "external" and j["user"] == users.alice.name]

            [job] = wait_until("alice's busy process to show", lambda: mine(users.alice), timeout=30)
            # without --external: summed per node and user, no command line at all
            listed = _as_json(c, users.bob, "jstat")
            [alices] = [o for o in listed["outside"] if o["user"] == users.alice.name]
            assert set(alices) == {"node", "user", "clusters", "cpu", "mem_mb"}
            assert (alices["node"], alices["clusters"]) == ("n1", 1) and alices["cpu"] > 0
            assert all(j["origin"] != "external" for j in listed["jobs"]) and secret not in json.dumps(listed)
            table = c.run_as(users.bob, "jstat").stdout
            assert "outside work" in table and users.alice.name in table and secret not in table
            assert secret in job["command"]
            assert secret in mine(users.carol)[0]["command"]
            [seen] = mine(users.bob)
            assert secret not in json.dumps(seen)
            assert seen["command"] == "sh"
            assert secret in _api(c).job(job["id"])["command"]  # root is an administrator
            bob = _api(c, users.bob)
            assert secret not in json.dumps(bob.job(job["id"]))
            assert secret not in json.dumps(bob.get("/api/v1/jobs"))
        finally:
            os.kill(pid, signal.SIGKILL)


# ---------------------------------------------------------------- reliability 10: big scripts


def test_a_script_over_the_sites_limit_is_refused(tmp_path: Path) -> None:
    with running_cluster(tmp_path, config="[limits]\njob_max_mb = 1\n") as c:
        big = tmp_path / "big.sh"
        big.write_text("true\n" + "#" * (2 * 1024 * 1024) + "\n")
        _one_line(c.run("qr", "-s", str(big), check=False), 2, "job_max_mb", "1 MB")
        with pytest.raises(UsageError, match="job_max_mb"):
            _api(c).submit([_spec(c)], {"BIG": "x" * (2 * 1024 * 1024)})
        assert _queued(c) == 0


def test_big_scripts_all_start_without_stalling_their_node(tmp_path: Path) -> None:
    with running_cluster(tmp_path) as c:
        # twelve scripts of 6 MB each: over the 64 MiB an agent takes in one message
        scripts = []
        for i in range(12):
            path = tmp_path / f"big{i}.sh"
            path.write_text(f"echo {i}\n#" + "x" * (6 * 1024 * 1024) + "\n")
            scripts.append(path)
        c.agent("n1", cpus=12)
        c.run("qset", "big", "--stop")
        ids: list[int] = []
        for half in (scripts[:6], scripts[6:]):
            ids += c.submit("-q", "big", *[a for s in half for a in ("-s", str(s))])
        c.run("qset", "big", "--start")  # all of them placed in one pass, on one node
        c.run("qwait", *map(str, ids), timeout=120)
        assert {c.job(i)["state"] for i in ids} == {"done"}
        # and the node took them without dropping its connection (an agent refuses a message over
        # 64 MiB, reconnects, and was sent the same again: its jobs went back and forth meanwhile)
        log = (tmp_path / "agent-n1.log").read_text()
        assert log.count("connected to") == 1 and "too big" not in log, log[-2000:]


def test_an_interactive_job_cannot_be_held(cluster: Cluster) -> None:
    with pytest.raises(UsageError, match="held"):
        _api(cluster).post("/api/v1/interactive", {"job": _spec(cluster, hold=True)})
