"""The web interface's server side: its sessions (sign-in by token and by one-time link), the CSRF
check, its security headers, the jobs list paged and filtered on the server, live updates (server-sent
events), and `wulf up`'s address and link. What the browser does with them: test_web_browser.py."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from users import Users
from wulfproc import BIN, Cluster, Daemon, free_port, running_cluster, wait_until


@pytest.fixture
def web(shared_tmp: Path, users: Users) -> Iterator[Cluster]:
    """A server on its socket and on TCP (loopback), an agent, carol's group the administrators'."""
    port = free_port()
    with running_cluster(shared_tmp, listen=f"127.0.0.1:{port}",
                         config=f'[server]\nadmin_group = "{users.admins}"\n') as c:
        c.port = port  # type: ignore[attr-defined]
        c.agent("n1", cpus=2)
        yield c


class Browser:
    """What a browser sends: a cookie once signed in, and (for a change) the CSRF token and its Origin."""

    def __init__(self, port: int) -> None:
        self.port, self.cookie, self.csrf, self.set_cookie = port, "", "", ""

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
             form: str | None = None) -> tuple[int, Any, dict[str, str]]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        sent = {"Host": f"127.0.0.1:{self.port}", **({"Cookie": self.cookie} if self.cookie else {})}
        if form is not None:
            data: bytes | None = form.encode()
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        else:
            data = json.dumps(body).encode() if body is not None else None
            sent["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=data, headers={**sent, **(headers or {})})
            resp = conn.getresponse()
            raw = resp.read()
            head = {k.lower(): v for k, v in resp.getheaders()}
        finally:
            conn.close()
        try:
            payload: Any = json.loads(raw)
        except ValueError:
            payload = raw.decode(errors="replace")
        return resp.status, payload, head

    def sign_in(self, form: str) -> int:
        status, _, head = self.call("POST", "/login", form=form, headers={"Origin": f"http://127.0.0.1:{self.port}"})
        if status == 303:
            self.set_cookie = head["set-cookie"]
            self.cookie = self.set_cookie.split(";", 1)[0]
            _, me, _ = self.call("GET", "/api/v1/web/session")
            self.csrf = me["csrf"]
        return status

    def act(self, path: str, body: Any, **headers: str) -> tuple[int, Any, dict[str, str]]:
        return self.call("POST", path, body, {"X-Wulf-CSRF": self.csrf, "Origin": f"http://127.0.0.1:{self.port}",
                                              **headers})


def submit_as(c: Cluster, user: Any, jobs: list[dict[str, Any]]) -> list[int]:
    client = c.client(user)
    try:
        return client.submit(jobs)
    finally:
        client.close()


def token_of(c: Cluster, user: Any, *more: str) -> str:
    return c.run_as(user, "wulf", "token", "create", *more).stdout.strip()


def test_a_session_reads_and_acts_only_with_its_csrf_token(web: Cluster, users: Users) -> None:
    alice = Browser(web.port)  # type: ignore[attr-defined]
    status, page, _ = alice.call("GET", "/jobs")
    assert status == 401 and 'action="/login"' in page  # a page asks who you are
    assert alice.sign_in(f"token={token_of(web, users.alice)}") == 303
    assert alice.csrf and "HttpOnly" in alice.set_cookie and "SameSite=strict" in alice.set_cookie
    status, me, _ = alice.call("GET", "/api/v1/web/session")
    assert status == 200 and me["user"] == users.alice.name and not me["read_only"]
    status, made, _ = alice.act("/api/v1/jobs", {"jobs": [{"command": "sleep 300", "cwd": str(web.work)}]})
    assert status == 200, made
    [jid] = made["jobs"]
    assert web.job(jid)["user"] == users.alice.name
    # the cookie alone, a wrong token, another site's page: refused, and the job runs on
    for headers in ({"X-Wulf-CSRF": ""}, {"X-Wulf-CSRF": alice.csrf[:-1] + "x"},
                    {"Origin": "http://evil.example"}):
        status, refused, _ = alice.act("/api/v1/jobs/cancel", {"ids": [jid]}, **headers)
        assert status == 403 and refused["error"]["kind"] == "forbidden", (headers, refused)
    status, refused, _ = alice.call("POST", "/api/v1/jobs/cancel", {"ids": [jid]})
    assert status == 403 and "CSRF" in refused["error"]["message"]
    # and with its token, nothing but the page's own requests (no tokens made from a browser)
    status, refused, _ = alice.act("/api/v1/tokens", {"name": "x"})
    assert status == 403 and refused["error"]["kind"] == "forbidden"
    assert web.job(jid)["state"] in ("queued", "running")
    status, done, _ = alice.act("/api/v1/jobs/cancel", {"ids": [jid]})
    assert status == 200 and done["cancelled"] == [jid]
    # a sign-in posted from another site's page is refused (a forged sign-in)
    status, _, _ = alice.call("POST", "/login", form="token=x", headers={"Origin": "http://evil.example"})
    assert status == 403
    # signing out ends the session on the server: its cookie reads nothing more
    alice.call("GET", "/logout")
    status, _, _ = alice.call("GET", "/api/v1/web/session")
    assert status == 401


def test_a_session_holds_releases_and_renices_its_jobs(web: Cluster, users: Users) -> None:
    waits, runs = submit_as(web, users.alice, [{"command": "true", "cwd": str(web.work), "cpu": 9},
                                               {"command": "sleep 300", "cwd": str(web.work), "cpu": 0.5}])
    alice = Browser(web.port)  # type: ignore[attr-defined]
    alice.sign_in(f"token={token_of(web, users.alice)}")
    assert alice.act("/api/v1/jobs/hold", {"ids": [waits]})[0] == 200
    _, seen, _ = alice.call("GET", f"/api/v1/web/jobs/{waits}")
    assert seen["state"] == "held" and seen["may"]["release"] and not seen["may"]["hold"]
    assert alice.act("/api/v1/jobs/release", {"ids": [waits]})[0] == 200
    _, seen, _ = alice.call("GET", f"/api/v1/web/jobs/{waits}")
    # and says why it waits: its 9 cpus (also while other work on this machine fills the node)
    why = seen["waiting_reason"]
    assert seen["state"] == "queued" and "9 cpus" in why, why
    wait_until("the other to run", lambda: web.job(runs)["state"] == "running")
    status, done, _ = alice.act("/api/v1/jobs/nice", {"ids": [runs], "nice": 5})
    assert status == 200, done
    assert wait_until("the renice", lambda: web.job(runs)["nice"] == 5)


def test_others_jobs_are_not_a_sessions_to_cancel_and_read_only_tokens_read_only(web: Cluster, users: Users) -> None:
    [bobs] = submit_as(web, users.bob, [{"command": "sleep 300", "cwd": str(web.work)}])
    alice = Browser(web.port)  # type: ignore[attr-defined]
    alice.sign_in(f"token={token_of(web, users.alice)}")
    status, refused, _ = alice.act("/api/v1/jobs/cancel", {"ids": [bobs]})
    assert status == 403 and refused["error"]["kind"] == "forbidden", refused
    _, seen, _ = alice.call("GET", f"/api/v1/web/jobs/{bobs}")
    assert not any(seen["may"].values())
    reader = Browser(web.port)  # type: ignore[attr-defined]
    reader.sign_in(f"token={token_of(web, users.alice, '--read-only')}")
    _, me, _ = reader.call("GET", "/api/v1/web/session")
    assert me["read_only"]
    status, refused, _ = reader.act("/api/v1/jobs", {"jobs": [{"command": "true", "cwd": str(web.work)}]})
    assert status == 403 and "read-only" in refused["error"]["message"]
    assert web.job(bobs)["state"] in ("queued", "running")


def test_a_session_stops_its_queues_and_an_administrators_drains_nodes(web: Cluster, users: Users) -> None:
    alice, carol = Browser(web.port), Browser(web.port)  # type: ignore[attr-defined]
    alice.sign_in(f"token={token_of(web, users.alice)}")
    carol.sign_in(f"token={token_of(web, users.carol)}")
    status, _, _ = alice.act("/api/v1/queues", {"queue": "default", "stopped": True})
    assert status == 200
    queue = f"{users.alice.name}:default"
    _, seen, _ = alice.call("GET", "/api/v1/web/overview")
    assert [q["stopped"] for q in seen["queues"] if f"{q['user']}:{q['name']}" == queue] == [True]
    status, refused, _ = alice.act("/api/v1/admin/nodes/n1/drain", {})
    assert status == 403 and "not an administrator" in refused["error"]["message"]
    status, _, _ = carol.act("/api/v1/admin/nodes/n1/drain", {})
    assert status == 200
    web.wait_node("n1", "drain")
    status, refused, _ = carol.act("/api/v1/admin/nodes/n1/quit", {})  # not a button of the page
    assert status == 403 and "web page" in refused["error"]["message"]
    status, _, _ = carol.act("/api/v1/admin/nodes/n1/resume", {})
    assert status == 200
    web.wait_node("n1", "up")


def test_a_user_signs_in_with_their_unix_password_where_the_site_allows(shared_tmp: Path, users: Users) -> None:
    password = "web-Pass-" + str(os.getpid())
    subprocess.run(["chpasswd"], input=f"{users.bob.name}:{password}\n", text=True, check=True)
    port = free_port()
    with running_cluster(shared_tmp, listen=f"127.0.0.1:{port}", config='[web]\npam_service = "login"\n') as c:
        b = Browser(port)
        status, page, _ = b.call("GET", "/login")
        assert status == 200 and 'name="password"' in page
        assert b.sign_in(f"user={users.bob.name}&password=wrong") == 401
        assert b.sign_in(f"user=root&password={password}") == 401  # root signs in with `wulf web`
        assert b.sign_in(f"user={users.bob.name}&password={password}") == 303
        _, me, _ = b.call("GET", "/api/v1/web/session")
        assert me["user"] == users.bob.name and not me["admin"] and me["csrf"]
        status, made, _ = b.act("/api/v1/jobs", {"jobs": [{"command": "true", "cwd": str(c.work)}]})
        assert status == 200 and c.job(made["jobs"][0])["user"] == users.bob.name
    # a personal cluster (`wulf up`: --owner-only) is its owner's alone (here root's, who never signs in so)
    c = Cluster(shared_tmp / "mine", listen=f"127.0.0.1:{free_port()}", config='[web]\npam_service = "login"\n')
    try:
        c.server = Daemon([str(BIN / "wulf"), "server", "--state", str(c.state), "--listen", c.listen,
                           "--owner-only"], c.root / "server.log", c.env).start()
        wait_until("the server to answer", lambda: c.try_status() is not None)
        assert Browser(int(c.listen.rpartition(":")[2])).sign_in(f"user={users.bob.name}&password={password}") == 401
    finally:
        c.stop()
    with running_cluster(shared_tmp / "off", listen=f"127.0.0.1:{free_port()}") as c:  # by default: no passwords
        b = Browser(int(c.listen.rpartition(":")[2]))
        status, page, _ = b.call("GET", "/login")
        assert 'name="password"' not in page
        assert b.sign_in(f"user={users.bob.name}&password={password}") == 401


def test_a_personal_cluster_on_loopback_tcp_is_its_owner_s_alone(shared_tmp: Path, users: Users) -> None:
    """`wulf up` listens on loopback TCP, which every user of the machine reaches, and a browser sends a
    host's cookies to every port of it: a page of bob's own server (another port) gets the cookie of the
    owner's session. With it, or the owner's token, bob still gets nowhere: over loopback, the server
    asks the kernel whose the connecting socket is, and serves only its owner (and root)."""
    port = free_port()
    c = Cluster(shared_tmp / "mine", listen=f"127.0.0.1:{port}")
    try:
        c.server = Daemon([str(BIN / "wulf"), "server", "--state", str(c.state), "--listen", c.listen,
                           "--owner-only"], c.root / "server.log", c.env).start()
        wait_until("the server to answer", lambda: c.try_status() is not None)
        token = c.run("wulf", "token", "create").stdout.strip()  # the owner's (root's)
        ask = ("import http.client, sys; c = http.client.HTTPConnection('127.0.0.1', int(sys.argv[1]), timeout=10); "
               "c.request('GET', '/api/v1/jobs', headers={'Authorization': 'Bearer ' + sys.argv[2]}); "
               "r = c.getresponse(); print(r.status, r.read().decode())")
        mine = subprocess.run([sys.executable, "-c", ask, str(port), token], capture_output=True, text=True,
                              check=True).stdout
        assert mine.startswith("200 "), mine
        bobs = subprocess.run(["/usr/bin/python3", "-I", "-c", ask, str(port), token], capture_output=True, text=True,
                              check=True, user=users.bob.uid, group=users.bob.gid, extra_groups=[]).stdout
        assert bobs.startswith("403 ") and "alone" in bobs, bobs
    finally:
        c.stop()


def test_every_answer_has_a_strict_content_security_policy(web: Cluster) -> None:
    b = Browser(web.port)  # type: ignore[attr-defined]
    for path in ("/login", "/static/wulf.js", "/healthz", "/jobs"):
        _, _, head = b.call("GET", path)
        csp = head["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp, path
        assert head["x-content-type-options"] == "nosniff" and head["referrer-policy"] == "same-origin"
    status, js, head = b.call("GET", "/static/wulf.js")
    assert status == 200 and head["content-type"].startswith("text/javascript") and ".innerHTML" not in js and "insertAdjacentHTML" not in js
    status, _, _ = b.call("GET", "/static/..%2f..%2fweb.py")
    assert status == 404
    for cdn in ("/docs", "/redoc"):  # pages whose scripts come from a CDN: not on this origin
        assert b.call("GET", cdn)[0] == 404


def test_the_jobs_list_is_paged_filtered_and_sorted_on_the_server(web: Cluster, users: Users) -> None:
    work = str(web.work)
    mine = submit_as(web, users.alice, [{"command": "true", "cwd": work, "cpu": 9, "name": f"a{i:02d}"} for i in range(30)])
    bobs = submit_as(web, users.bob, [{"command": "true", "cwd": work, "cpu": 9, "name": "b"}] * 5)
    b = Browser(web.port)  # type: ignore[attr-defined]
    b.sign_in(f"token={token_of(web, users.carol)}")
    _, page, _ = b.call("GET", f"/api/v1/web/jobs?user={users.alice.name}&limit=10&offset=10")
    assert page["total"] == 30 and [j["id"] for j in page["jobs"]] == mine[10:20]
    assert all(j["reason"] for j in page["jobs"])  # 9 cpus: why they wait is said
    _, page, _ = b.call("GET", "/api/v1/web/jobs?state=queued&sort=id&desc=1&limit=3")
    assert page["total"] == 35 and [j["id"] for j in page["jobs"]] == bobs[::-1][:3]
    _, page, _ = b.call("GET", "/api/v1/web/jobs?name=a2&sort=name")
    assert [j["name"] for j in page["jobs"]] == [f"a2{i}" for i in range(10)]
    _, page, _ = b.call("GET", f"/api/v1/web/jobs?state=running&user={users.alice.name}")
    assert page["total"] == 0 and page["jobs"] == []
    for bad in ("state=sleeping", "sort=colour", "limit=100000"):
        status, refused, _ = b.call("GET", f"/api/v1/web/jobs?{bad}")
        assert status == 400 and refused["error"]["kind"] == "usage", (bad, refused)


def test_the_load_of_each_node_and_of_the_cluster_is_kept_for_the_plots(web: Cluster, users: Users) -> None:
    [jid] = submit_as(web, users.alice, [{"command": "sleep 300", "cwd": str(web.work), "cpu": 0.5}])
    b = Browser(web.port)  # type: ignore[attr-defined]
    b.sign_in(f"token={token_of(web, users.alice)}")

    def points(query: str) -> list[list[float]]:
        status, got, _ = b.call("GET", f"/api/v1/web/history?{query}")
        assert status == 200, got
        return list(got["points"])

    [*_, last] = wait_until("a point of n1's load", lambda: points("node=n1&span=hour"), timeout=40)
    fields = b.call("GET", "/api/v1/web/history?node=n1")[1]["fields"]
    assert dict(zip(fields, last, strict=True))["cpus"] == 2.0  # the agent offers 2
    assert points("span=day")  # the whole cluster's
    [*_, used] = wait_until("a point of the job's use", lambda: points(f"job={jid}"), timeout=40)
    assert len(used) == 3 and used[2] >= 0  # time, cpu, memory
    for bad in ("node=nosuch", "span=week"):
        status, refused, _ = b.call("GET", f"/api/v1/web/history?{bad}")
        assert status in (400, 404) and refused["error"]["kind"] in ("usage", "not_found"), refused


def test_the_plots_survive_a_restart_of_the_server(web: Cluster, users: Users) -> None:
    """The server saves the plots' points when it stops and reads them back when it starts: a restart
    leaves a gap in the plots, not an empty page (one killed keeps what it saved last)."""
    token = token_of(web, users.alice)
    b = Browser(web.port)  # type: ignore[attr-defined]
    b.sign_in(f"token={token}")
    before = wait_until("a point of n1's load", lambda: b.call("GET", "/api/v1/web/history?node=n1")[1]["points"],
                        timeout=40)
    assert web.server is not None
    web.server.kill(signal.SIGTERM)  # (and waits for it to end)
    assert (web.state / "loadhistory.json").stat().st_mode & 0o077 == 0  # (the server's alone)
    web.start_server()
    b = Browser(web.port)  # type: ignore[attr-defined]
    b.sign_in(f"token={token}")  # (sessions end with the server; tokens are kept)
    after = b.call("GET", "/api/v1/web/history?node=n1")[1]["points"]
    assert after[:len(before)] == before


def test_live_updates_arrive_as_server_sent_events(web: Cluster, users: Users) -> None:
    b = Browser(web.port)  # type: ignore[attr-defined]
    b.sign_in(f"token={token_of(web, users.alice)}")
    conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=20)  # type: ignore[attr-defined]
    try:
        conn.request("GET", "/api/v1/events", headers={"Cookie": b.cookie})
        resp = conn.getresponse()
        assert resp.status == 200 and resp.getheader("content-type", "").startswith("text/event-stream")

        def change() -> int:
            while True:
                line = resp.readline().decode()
                if line.startswith("data: "):
                    return int(json.loads(line[6:])["changes"])

        first = change()
        submit_as(web, users.alice, [{"command": "true", "cwd": str(web.work)}])
        assert change() > first  # (readline's timeout fails the test if none comes)
    finally:
        conn.close()


def test_a_user_keeps_a_bounded_number_of_live_pages_open(web: Cluster, users: Users) -> None:
    from wulf.server.web import MAX_STREAMS

    b = Browser(web.port)  # type: ignore[attr-defined]
    b.sign_in(f"token={token_of(web, users.alice)}")
    streams = []
    try:
        for _ in range(MAX_STREAMS):
            conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=20)  # type: ignore[attr-defined]
            conn.request("GET", "/api/v1/events", headers={"Cookie": b.cookie})
            resp = conn.getresponse()
            assert resp.status == 200 and resp.readline().startswith(b"retry:")  # it runs
            streams.append(conn)
        status, refused, head = b.call("GET", "/api/v1/events")
        assert status == 429 and refused["error"]["kind"] == "slow_down" and "live pages" in refused["error"]["message"]
        streams.pop().close()  # one closed: room for another (once the server has seen it go)
        wait_until("room for a live page", lambda: _opens(b), timeout=20)
    finally:
        for conn in streams:
            conn.close()


def _opens(b: Browser) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", b.port, timeout=20)
    try:
        conn.request("GET", "/api/v1/events", headers={"Cookie": b.cookie})
        return conn.getresponse().status == 200
    finally:
        conn.close()


def test_wulf_up_prints_the_web_interface_and_a_one_time_sign_in_link(shared_tmp: Path) -> None:
    state = shared_tmp / "up"
    config = shared_tmp / "wulf.toml"
    config.write_text('[auth]\nagent_socket = ""\n')
    env = {**os.environ, "WULF_CONFIG": str(config), "WULF_IGNORE_PIDS": str(os.getpid())}
    env.pop("WULF_SERVER", None)
    wulf = str(BIN / "wulf")
    taken = socket.socket()
    try:  # the default port is taken (by this, or by another): wulf up takes another of its own choosing
        taken.bind(("127.0.0.1", 7878))
        taken.listen(1)
    except OSError:
        pass
    try:
        p = subprocess.run([wulf, "up", "-d", "--state", str(state), "--name", "mine"], env=env, capture_output=True,
                           text=True, timeout=60)
        assert p.returncode == 0, p.stdout + p.stderr
        url = re.search(r"web interface: http://127\.0\.0\.1:(\d+)/", p.stdout)
        link = re.search(r"sign in as root .*: (http://127\.0\.0\.1:\d+)(/login\?once=\S+)", p.stdout)
        assert url and link, p.stdout
        port = int(url.group(1))
        assert port != 7878
        b = Browser(port)
        status, page, _ = b.call("GET", link.group(2))
        assert status == 200 and "Sign in as root" in page
        code = link.group(2).partition("once=")[2]
        assert b.sign_in(f"once={code}") == 303
        _, me, _ = b.call("GET", "/api/v1/web/session")
        assert me["user"] == "root" and me["admin"] and me["csrf"]
        assert Browser(port).sign_in(f"once={code}") == 401  # once only
        # `wulf web` makes another
        p = subprocess.run([wulf, "web"], env={**env, "WULF_SERVER": f"unix:{state / 'wulf.sock'}"},
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 0 and f"http://127.0.0.1:{port}/login?once=" in p.stdout, p.stdout + p.stderr
    finally:
        taken.close()
        subprocess.run([wulf, "down", "--state", str(state)], env=env, capture_output=True, timeout=60)
        wait_until("wulf down", lambda: not (state / "up.pids").exists(), timeout=30)
