"""Who may do what, end to end: real users, the real server, the real commands, and raw HTTP.

Alice, bob and carol are real Unix users (carol an administrator by group); the commands run as them
(tests/asuser.py), so the server learns who they are from the kernel on its Unix socket, or from a
credential the agent of this machine signs for them over TCP, or from their API token.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from users import User, Users
from wulf.auth import credential, vouch
from wulf.auth.key import ClusterKey, load_key
from wulfproc import Cluster, free_port, running_cluster, wait_until


@pytest.fixture
def secure(shared_tmp: Path, users: Users) -> Iterator[Cluster]:
    """A server on its Unix socket and on TCP (loopback), with an agent, and carol's group as the
    administrators' group; the agent's credential service is this process's (WULF_AGENT_SOCKET)."""
    port = free_port()
    config = f'[server]\nadmin_group = "{users.admins}"\n'
    with running_cluster(shared_tmp, listen=f"127.0.0.1:{port}", config=config) as c:
        c.tcp = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
        c.port = port  # type: ignore[attr-defined]
        c.agent("n1", cpus=4)
        server = vouch.serve(shared_tmp / "agent.sock", load_key(c.key_path), "here")
        assert server is not None
        c.env["WULF_AGENT_SOCKET"] = str(shared_tmp / "agent.sock")
        try:
            yield c
        finally:
            server.close()
            for j in c.status()["jobs"]:
                if j["state"] in ("queued", "held", "running") and j["origin"] == "batch":
                    c.run("qcancel", str(j["id"]), check=False)


def submit_as(c: Cluster, user: User, *args: str) -> int:
    p = c.run_as(user, "qr", "--json", *args)
    [jid] = json.loads(p.stdout)["jobs"]
    return int(jid)


def call(c: Cluster, method: str, path: str, body: Any = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any], dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=10)  # type: ignore[attr-defined]
    data = json.dumps(body).encode() if body is not None else None
    try:
        conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        raw = resp.read()
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = {"text": raw.decode(errors="replace")}
        return resp.status, payload, {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


def signed(c: Cluster, user: User, method: str, path: str, body: Any = None, *, key: ClusterKey | None = None,
           when: float | None = None) -> str:
    data = json.dumps(body).encode() if body is not None else b""
    return credential.encode(key or load_key(c.key_path), credential.USER, user.uid, user.gid, "tests",
                             time.time() if when is None else when, credential.request_digest(method, path, data))


def audit(c: Cluster) -> list[dict[str, Any]]:
    path = c.state / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# ---------------------------------------------------------------- identity


def test_the_kernel_names_the_user_on_the_unix_socket(secure: Cluster, users: Users) -> None:
    jid = submit_as(secure, users.alice, "-c", "sleep 30")
    job = secure.job(jid)
    assert (job["user"], job["uid"]) == (users.alice.name, users.alice.uid)


def test_over_tcp_the_local_agent_vouches_for_the_user(secure: Cluster, users: Users) -> None:
    env = {"WULF_SERVER": secure.tcp}  # type: ignore[attr-defined]
    p = secure.run_as(users.bob, "qr", "--json", "-c", "sleep 30", env=env)
    [jid] = json.loads(p.stdout)["jobs"]
    assert secure.job(jid)["user"] == users.bob.name
    assert secure.run_as(users.bob, "jstat", "--json", env=env).returncode == 0
    # without the agent, nobody is taken at their word
    p = secure.run_as(users.bob, "jstat", env={**env, "WULF_AGENT_SOCKET": "/nonexistent"}, check=False)
    assert p.returncode == 5
    assert p.stderr.count("\n") == 1 and "who are you?" in p.stderr and "/nonexistent" in p.stderr


def test_what_a_request_says_about_its_user_is_not_believed(secure: Cluster, users: Users) -> None:
    body = {"jobs": [{"command": "true", "cwd": "/tmp"}], "user": "root", "uid": 0}
    path = "/api/v1/jobs"
    status, payload, _ = call(secure, "POST", path, body, {"X-Wulf-Credential": signed(secure, users.bob, "POST",
                                                                                           path, body)})
    assert status == 400 and payload["error"]["kind"] == "usage" and "user" in payload["error"]["message"]
    body = {"jobs": [{"command": "sleep 30", "cwd": "/tmp"}]}
    status, payload, _ = call(secure, "POST", path, body, {"X-Wulf-Credential": signed(secure, users.bob, "POST",
                                                                                           path, body)})
    assert status == 200
    assert secure.job(payload["jobs"][0])["user"] == users.bob.name


def test_forged_expired_replayed_and_altered_credentials_are_refused(secure: Cluster, users: Users) -> None:
    path = "/api/v1/jobs/cancel"
    jid = submit_as(secure, users.alice, "-c", "sleep 30")
    body = {"ids": [jid]}
    forged = signed(secure, users.alice, "POST", path, body, key=ClusterKey(b"x" * 32))
    expired = signed(secure, users.alice, "POST", path, body, when=time.time() - 300)
    future = signed(secure, users.alice, "POST", path, body, when=time.time() + 300)
    other = signed(secure, users.alice, "POST", path, {"ids": [jid + 1]})
    good = signed(secure, users.alice, "POST", path, body)
    head, payload_b64, sig = good.split(".")
    altered = f"{head}.{payload_b64[:-2]}{'A' if payload_b64[-2] != 'A' else 'B'}{payload_b64[-1]}.{sig}"
    cases = [(forged, "signature"), (expired, "expired"), (future, "future"), (other, "another request"),
             (altered, "signature|malformed"), ("wulf1.e30.AAAA", "signature"), ("nonsense", "not a wulf credential")]
    for cred, why in cases:
        status, payload, headers = call(secure, "POST", path, body, {"X-Wulf-Credential": cred})
        assert status == 401, (why, payload)
        assert payload["error"]["kind"] == "unauthenticated"
        import re
        assert re.search(why, payload["error"]["message"]), (why, payload)
        assert headers["www-authenticate"].startswith("Bearer")
    assert secure.job(jid)["state"] == "running" or secure.job(jid)["state"] == "queued"
    status, _, _ = call(secure, "POST", path, body, {"X-Wulf-Credential": good})
    assert status == 200 and secure.job(jid)["state"] == "cancelled"
    status, payload, _ = call(secure, "POST", path, body, {"X-Wulf-Credential": good})
    assert status == 401 and "used before" in payload["error"]["message"]
    status, payload, _ = call(secure, "GET", "/api/v1/status")
    assert status == 401 and "who are you?" in payload["error"]["message"]


# ---------------------------------------------------------------- authorisation


def test_nobody_touches_what_is_not_theirs(secure: Cluster, users: Users) -> None:
    alice, bob = users.alice, users.bob
    secure.run_as(alice, "qset", "later", "--stop")
    running = submit_as(secure, alice, "-c", "sleep 60")
    queued = submit_as(secure, alice, "--queue", "later", "-c", "sleep 60")
    wait_until("alice's job to run", lambda: secure.job(running)["state"] == "running")
    for argv in (["qcancel", str(running)], ["jkill", "-s", "KILL", str(running)], ["jnice", str(running), "5"],
                 ["qhold", str(queued)], ["qrls", str(queued)], ["qset", f"{alice.name}:later", "--start"]):
        p = secure.run_as(bob, *argv, check=False)
        assert p.returncode == 5, (argv, p.stderr)
        assert p.stderr.count("\n") == 1 and f"belongs to {alice.name}, not to {bob.name}" in p.stderr, p.stderr
    # nor through the HTTP API
    for path, body in (("/api/v1/jobs/cancel", {"ids": [running]}), ("/api/v1/jobs/signal", {"ids": [running]}),
                       ("/api/v1/jobs/nice", {"ids": [running], "nice": 5}), ("/api/v1/jobs/hold", {"ids": [queued]}),
                       ("/api/v1/queues", {"queue": f"{alice.name}:later", "stopped": False})):
        status, payload, _ = call(secure, "POST", path, body,
                                  {"X-Wulf-Credential": signed(secure, bob, "POST", path, body)})
        assert status == 403 and payload["error"]["kind"] == "forbidden", (path, payload)
    assert secure.job(running)["state"] == "running" and secure.job(running)["nice"] == 0
    assert secure.job(queued)["state"] == "queued"
    # everyone sees every job
    seen = {j["id"] for j in json.loads(secure.run_as(bob, "jstat", "--json").stdout)["jobs"]}
    assert {running, queued} <= seen
    # the owner may
    secure.run_as(alice, "jnice", str(running), "5")
    p = secure.run_as(alice, "jnice", str(running), "1", check=False)
    assert p.returncode == 5 and "only an administrator may lower it" in p.stderr
    secure.run_as(alice, "qhold", str(queued))
    secure.run_as(alice, "qrls", str(queued))
    secure.run_as(alice, "qcancel", str(queued))
    assert not [a for a in audit(secure) if a["who"] in (alice.name, bob.name) and a["action"] != "token create"]


def test_administrators_may_act_on_all_and_it_is_audited(secure: Cluster, users: Users) -> None:
    alice, carol = users.alice, users.carol
    jid = submit_as(secure, alice, "-c", "sleep 60")
    wait_until("alice's job to run", lambda: secure.job(jid)["state"] == "running")
    secure.run_as(carol, "jnice", str(jid), "7")
    secure.run_as(carol, "qset", f"{alice.name}:default", "--priority", "3")
    secure.run_as(carol, "qcancel", str(jid))
    assert secure.job(jid)["reason"] == f"cancelled by {carol.name}"
    entries = [a for a in audit(secure) if a["who"] == carol.name]
    assert [(a["action"], a["result"]) for a in entries] == [("renice 7", "ok"), ("qset", "ok"), ("cancel", "ok")]
    assert entries[0]["target"] == f"jobs {jid} ({alice.name})" and entries[0]["via"] == "socket"
    assert entries[1]["target"] == f"queue {alice.name}:default" and entries[1]["changes"] == {"priority": 3}


def test_only_administrators_run_jobmgr(secure: Cluster, users: Users) -> None:
    p = secure.run_as(users.alice, "jobmgr", "drain", "n1", check=False)
    assert p.returncode == 5 and p.stderr.count("\n") == 1 and "not an administrator" in p.stderr
    assert secure.status()["nodes"][0]["state"] == "up"
    secure.run_as(users.carol, "jobmgr", "drain", "n1")
    secure.wait_node("n1", "drain")
    secure.run("jobmgr", "resume", "n1")
    secure.run_as(users.carol, "jobmgr", "reload")
    entries = [(a["who"], a["action"], a["target"], a["result"]) for a in audit(secure)]
    assert entries[-4:] == [(users.alice.name, "drain", "node n1", "refused: not an administrator"),
                            (users.carol.name, "drain", "node n1", "ok"), ("root", "resume", "node n1", "ok"),
                            (users.carol.name, "reload", secure.env["WULF_CONFIG"], "ok")]
    assert oct((secure.state / "audit.jsonl").stat().st_mode & 0o777) == "0o600"


# ---------------------------------------------------------------- API tokens and the web page


def test_api_tokens(secure: Cluster, users: Users) -> None:
    alice, bob = users.alice, users.bob
    token = secure.run_as(alice, "wulf", "token", "create", "--name", "ci").stdout.strip()
    assert token.startswith("wulf_")
    status, me, _ = call(secure, "GET", "/api/v1/whoami", headers={"Authorization": f"Bearer {token}"})
    assert status == 200 and (me["user"], me["via"]) == (alice.name, "token")
    p = secure.run_as(alice, "jstat", env={"WULF_SERVER": secure.tcp, "WULF_TOKEN": token,  # type: ignore[attr-defined]
                                           "WULF_AGENT_SOCKET": "/nonexistent"})
    assert p.returncode == 0
    # a token cannot make tokens; bob cannot see or revoke alice's
    status, payload, _ = call(secure, "POST", "/api/v1/tokens", {}, {"Authorization": f"Bearer {token}"})
    assert status == 403 and "cannot make tokens" in payload["error"]["message"]
    listed = json.loads(secure.run_as(alice, "wulf", "token", "list", "--json").stdout)["tokens"]
    assert [(t["user"], t["name"]) for t in listed] == [(alice.name, "ci")] and "hash" not in listed[0]
    assert json.loads(secure.run_as(bob, "wulf", "token", "list", "--json").stdout)["tokens"] == []
    p = secure.run_as(bob, "wulf", "token", "revoke", str(listed[0]["id"]), check=False)
    assert p.returncode == 4
    # the store keeps only its hash
    import sqlite3

    with sqlite3.connect(secure.state / "wulf.db") as db:
        assert token not in json.dumps(db.execute("SELECT * FROM tokens").fetchall())
    secure.run_as(alice, "wulf", "token", "revoke", str(listed[0]["id"]))
    status, payload, _ = call(secure, "GET", "/api/v1/whoami", headers={"Authorization": f"Bearer {token}"})
    assert status == 401 and "not good" in payload["error"]["message"]


def test_a_read_only_token_looks_and_changes_nothing(secure: Cluster, users: Users) -> None:
    alice = users.alice
    jid = submit_as(secure, alice, "-c", "sleep 60")
    token = secure.run_as(alice, "wulf", "token", "create", "--read-only", "--name", "dash").stdout.strip()
    bearer = {"Authorization": f"Bearer {token}"}
    status, jobs, _ = call(secure, "GET", "/api/v1/jobs", headers=bearer)
    assert status == 200 and jid in [j["id"] for j in jobs["jobs"]]
    status, waited, _ = call(secure, "POST", "/api/v1/wait", {"ids": [jid], "timeout": 0.1}, bearer)
    assert status == 200 and not waited["done"]  # waiting changes nothing
    for method, path, body in (("POST", "/api/v1/jobs/cancel", {"ids": [jid]}),
                               ("POST", "/api/v1/jobs", {"jobs": [{"command": "true", "cwd": "/tmp"}]}),
                               ("DELETE", "/api/v1/tokens/1", None)):
        status, payload, _ = call(secure, method, path, body, bearer)
        assert status == 403 and "read-only" in payload["error"]["message"], (path, payload)
    assert secure.job(jid)["state"] == "running"
    p = secure.run_as(alice, "qcancel", str(jid), check=False,
                      env={"WULF_SERVER": secure.tcp, "WULF_TOKEN": token,  # type: ignore[attr-defined]
                           "WULF_AGENT_SOCKET": "/nonexistent"})
    assert p.returncode == 5 and "read-only" in p.stderr and "Traceback" not in p.stderr
    listed = json.loads(secure.run_as(alice, "wulf", "token", "list", "--json").stdout)["tokens"]
    assert [(t["name"], t["read_only"]) for t in listed] == [("dash", True)]
    assert "read-only" in secure.run_as(alice, "wulf", "token", "list").stdout


def test_the_web_page_asks_for_a_token_and_reads_with_it(secure: Cluster, users: Users) -> None:
    token = secure.run_as(users.alice, "wulf", "token", "create").stdout.strip()
    conn = http.client.HTTPConnection("127.0.0.1", secure.port, timeout=10)  # type: ignore[attr-defined]
    try:
        conn.request("GET", "/")
        resp = conn.getresponse()
        assert resp.status == 401 and b'<form method="post" action="/login">' in resp.read()
        conn.request("POST", "/login", body=f"token={token}",
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 303
        cookie = resp.getheader("set-cookie", "")
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        jar = cookie.split(";", 1)[0]
        conn.request("GET", "/table", headers={"Cookie": jar})
        resp = conn.getresponse()
        assert resp.status == 200 and b"n1" in resp.read()
        # the cookie reads; it does not act (without the session's CSRF token: see test_web_api.py)
        conn.request("POST", "/api/v1/jobs/cancel", body=b'{"ids": [1]}',
                     headers={"Cookie": jar, "Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 403 and b"CSRF" in resp.read()
        conn.request("POST", "/login", body="token=wulf_wrong", headers={"Content-Type": "application/x-www-form-urlencoded"})
        resp = conn.getresponse()
        assert resp.status == 401 and b"not good" in resp.read()
    finally:
        conn.close()


def test_the_web_page_sums_up_users_and_lists_the_first_waiting_jobs(secure: Cluster, users: Users) -> None:
    from wulf.server.page import MAX_WAITING

    client = secure.client(users.alice)
    try:
        ids = client.submit([{"command": "sleep 60", "cwd": str(secure.work), "cpu": 4}] * (MAX_WAITING + 5))
    finally:
        client.close()
    wait_until("one to run", lambda: secure.job(ids[0])["state"] == "running")
    token = secure.run_as(users.alice, "wulf", "token", "create", "--read-only").stdout.strip()
    conn = http.client.HTTPConnection("127.0.0.1", secure.port, timeout=10)  # type: ignore[attr-defined]
    try:
        conn.request("GET", "/table", headers={"Authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        page = resp.read().decode()
    finally:
        conn.close()
    assert resp.status == 200
    assert f"<tr class=''><td>{users.alice.name}</td><td>1</td><td>4</td><td>{MAX_WAITING + 4}</td><td>0</td></tr>" in page
    assert f"{MAX_WAITING + 4:,} waiting" in page and "and 4 more waiting" in page
    assert page.count("<tr class='queued'>") == MAX_WAITING and f"<td>{ids[-1]}</td>" not in page


# ---------------------------------------------------------------- the network allow-list


def test_the_allow_list_filters_tcp_not_the_unix_socket(shared_tmp: Path) -> None:
    port = free_port()
    with running_cluster(shared_tmp, listen=f"127.0.0.1:{port}",
                         config='[server]\nallow = ["192.0.2.0/24"]\n') as c:
        c.port = port  # type: ignore[attr-defined]
        status, payload, _ = call(c, "GET", "/api/v1/status")
        assert status == 403 and "not allowed" in payload["error"]["message"]
        status, _, _ = call(c, "GET", "/healthz")
        assert status == 403
        assert c.status()["nodes"] == []  # the Unix socket is this machine's


# ---------------------------------------------------------------- agents


def test_an_agent_without_the_cluster_key_cannot_register(secure: Cluster, shared_tmp: Path) -> None:
    from wulf.auth.key import write_key

    wrong = shared_tmp / "wrong.key"
    write_key(wrong)
    d = secure.agent("intruder", wait=False, extra=["--key", str(wrong)])
    log = shared_tmp / "agent-intruder.log"
    wait_until("the server to refuse it", lambda: "refused this agent" in log.read_text())
    assert "signature does not match" in log.read_text()
    assert "intruder" not in {n["name"] for n in secure.status()["nodes"]}
    assert "refused node intruder" in (shared_tmp / "server.log").read_text()
    d.kill()
    p = secure.run("wulf", "agent", "--server", secure.url, "--name", "keyless", "--key", str(shared_tmp / "none"),
                   "--socket", "", check=False)
    assert p.returncode == 2 and "no cluster key at" in p.stderr and p.stderr.count("\n") == 1
