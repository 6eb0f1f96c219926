"""The web interface in a real browser: Debian's chromium driven by Playwright (no browser download).

Sign in, submit from the form and see the job run and end, follow its output, cancel another; another
user's job has no cancel button and a forged post is refused; a job named ``<script>...`` is text.
Screenshots of the overview, a node and a job go to test-artifacts/web (or $WULF_TEST_ARTIFACTS/web).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from users import Users
from wulfproc import BIN, Cluster, busy_loop_of, free_port, running_cluster, wait_until

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("WULF_TEST_ARTIFACTS") or Path(__file__).parents[2] / "test-artifacts") / "web"
WAIT = 30_000  # ms: what Playwright waits for a thing to show at most (a loaded machine is slow)

if not CHROMIUM.exists() or os.geteuid() != 0:
    if os.environ.get("CI"):
        pytest.fail("the browser tests need /usr/bin/chromium (.ci/run installs it) and root", pytrace=False)
    pytest.skip("the browser tests need /usr/bin/chromium and root", allow_module_level=True)

sync_api = pytest.importorskip("playwright.sync_api")
sync_api.expect.set_options(timeout=WAIT)  # (expect's own deadline: the page's default is not its)


@pytest.fixture
def web(shared_tmp: Path, users: Users) -> Iterator[Cluster]:
    port = free_port()
    with running_cluster(shared_tmp, listen=f"127.0.0.1:{port}",
                         config=f'[server]\nadmin_group = "{users.admins}"\n') as c:
        c.base = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
        c.agent("n1", cpus=4, interval=0.5)
        yield c


class Watched:
    """A page, and what went wrong in it: script errors, console errors (a CSP violation is one), dialogs."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.problems: list[str] = []
        page.on("pageerror", lambda e: self.problems.append(f"script error: {e}"))
        page.on("console", lambda m: m.type == "error" and self.problems.append(f"console: {m.text}"))
        page.on("dialog", lambda d: (self.problems.append(f"dialog: {d.message}"), d.dismiss()))


@pytest.fixture
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield b
        finally:
            b.close()


def signed_in(browser: Any, c: Cluster, user: Any, *token_args: str, **context: Any) -> Watched:
    token = c.run_as(user, "wulf", "token", "create", *token_args).stdout.strip()
    page = browser.new_context(viewport={"width": 1200, "height": 800}, **context).new_page()
    page.set_default_timeout(WAIT)
    w = Watched(page)
    page.goto(c.base + "/")  # type: ignore[attr-defined]
    page.fill("input[name=token]", token)
    page.click("button")
    page.wait_for_url(c.base + "/")  # type: ignore[attr-defined]
    sync_api.expect(page.locator("#who")).to_contain_text(user.name)
    w.problems.clear()  # (the sign-in page was answered 401)
    return w


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def submit_form(page: Any, c: Cluster, command: str, name: str) -> int:
    page.goto(c.base + "/submit")  # type: ignore[attr-defined]
    page.fill("#command", command)
    page.fill("#cwd", str(c.work))
    page.fill("#name", name)
    page.fill("#cpu", "0.5")
    page.click("#submit")
    page.wait_for_url(re.compile(r"/jobs/\d+$"))
    return int(page.url.rsplit("/", 1)[1])


def test_sign_in_submit_watch_it_run_and_end_follow_its_output_and_cancel_another(
        web: Cluster, users: Users, browser: Any) -> None:
    w = signed_in(browser, web, users.alice)
    page, expect = w.page, sync_api.expect
    jid = submit_form(page, web, "for i in 1 2 3 4; do echo line $i; sleep 1; done; echo finished", "counting")
    assert web.job(jid)["user"] == users.alice.name
    expect(page.locator("#state")).to_have_text("running")  # live: no reload
    expect(page.locator("#output")).to_contain_text("line 1")
    expect(page.locator("#state")).to_have_text("done")
    expect(page.locator("#output")).to_contain_text("line 4\nfinished")
    shot(page, "job.png")
    page.click("text=Submit again")  # an ended job's settings, filled in
    sync_api.expect(page.locator("#name")).to_have_value("counting")
    page.click("#submit")
    page.wait_for_url(re.compile(r"/jobs/\d+$"))
    again = int(page.url.rsplit("/", 1)[1])
    assert again != jid and web.job(again)["command"] == web.job(jid)["command"]
    other = submit_form(page, web, "while :; do :; done", "busy")  # (busy for the screenshots: cancelled soon)
    expect(page.locator("#state")).to_have_text("running")
    page.goto(web.base + "/")  # type: ignore[attr-defined]
    expect(page.locator("#running")).to_have_text("1")
    expect(page.locator("svg.plot")).to_have_count(2)
    shot(page, "overview.png")
    page.goto(web.base + "/nodes/n1")  # type: ignore[attr-defined]
    expect(page.locator("h1")).to_have_text("Node n1")
    expect(page.locator(f"a[href='/jobs/{other}']")).to_have_count(1)
    expect(page.locator("svg.plot")).to_have_count(2)  # cpu and memory over the last hour
    shot(page, "node.png")
    page.goto(web.base + f"/jobs?user={users.alice.name}")  # type: ignore[attr-defined]
    page.locator(f"tr[data-id='{other}'] button.cancel").click()
    expect(page.locator(f"tr[data-id='{other}'] td.cancelled")).to_have_text("cancelled")
    assert web.job(other)["state"] == "cancelled"
    expect(page.locator(f"tr[data-id='{jid}'] button.cancel")).to_have_count(0)  # it has ended
    assert w.problems == []


def test_another_users_job_has_no_cancel_button_and_a_forged_post_is_refused(
        web: Cluster, users: Users, browser: Any) -> None:
    client = web.client(users.bob)
    try:
        [bobs] = client.submit([{"command": "sleep 300", "cwd": str(web.work), "cpu": 0.5}])
    finally:
        client.close()
    w = signed_in(browser, web, users.alice)
    page, expect, base = w.page, sync_api.expect, web.base  # type: ignore[attr-defined]
    mine = submit_form(page, web, "sleep 300", "mine")
    expect(page.locator("#cancel")).to_be_visible()
    page.goto(base + "/jobs?state=active")
    expect(page.locator(f"tr[data-id='{mine}'] button.cancel")).to_have_count(1)
    expect(page.locator(f"tr[data-id='{bobs}']")).to_have_count(1)
    expect(page.locator(f"tr[data-id='{bobs}'] button.cancel")).to_have_count(0)
    page.goto(base + f"/jobs/{bobs}")
    expect(page.locator("#state")).to_be_visible()
    expect(page.locator("#cancel")).to_have_count(0)
    expect(page.locator("#output")).to_have_count(0)  # nor is its output alice's to read
    # the page's own origin, with the cookie, without the CSRF token: refused
    status = page.evaluate("""id => fetch('/api/v1/jobs/cancel', {method: 'POST',
        headers: {'content-type': 'application/json'}, body: JSON.stringify({ids: [id]})}).then(r => r.status)""", mine)
    assert status == 403
    # another site's page that posts a form at the API (JSON in a text/plain body): refused
    forged = (f"<form method=post action='{base}/api/v1/jobs/cancel' enctype='text/plain'>"
              f"<input name='{{\"ids\":[{mine}],\"x\":\"' value='\"}}'></form>"
              "<script>document.forms[0].submit()</script>")
    evil = page.context.new_page()
    evil.route("http://evil.test/", lambda route: route.fulfill(body=forged, content_type="text/html"))
    with evil.expect_response(re.compile(r"/api/v1/jobs/cancel$")) as answer:
        evil.goto("http://evil.test/")
    assert answer.value.status in (401, 403)
    assert web.job(mine)["state"] == "running" and web.job(bobs)["state"] == "running"
    assert w.problems == ["console: Failed to load resource: the server responded with a status of 403 (Forbidden)"]


def test_a_job_named_like_a_script_is_shown_as_text(web: Cluster, users: Users, browser: Any) -> None:
    name = "<script>alert(1)</script>"
    client = web.client(users.alice)
    try:
        [jid] = client.submit([{"command": "echo '<img src=x onerror=alert(2)>'", "cwd": str(web.work),
                                "name": name, "cpu": 0.5}])
    finally:
        client.close()
    web.run("qwait", str(jid))
    w = signed_in(browser, web, users.alice)
    page, expect = w.page, sync_api.expect
    page.goto(web.base + f"/jobs?user={users.alice.name}")  # type: ignore[attr-defined]
    expect(page.locator(f"tr[data-id='{jid}'] td.cmd")).to_have_text(name)
    page.goto(web.base + f"/jobs/{jid}")  # type: ignore[attr-defined]
    expect(page.locator("#job-name")).to_have_text(name)
    expect(page.locator("#output")).to_have_text("<img src=x onerror=alert(2)>\n")
    assert page.locator("main script, main img").count() == 0
    assert w.problems == []


def test_a_read_only_token_gets_a_read_only_page(web: Cluster, users: Users, browser: Any) -> None:
    client = web.client(users.alice)
    try:
        [jid] = client.submit([{"command": "sleep 300", "cwd": str(web.work), "cpu": 0.5}])
    finally:
        client.close()
    w = signed_in(browser, web, users.alice, "--read-only")
    page, expect = w.page, sync_api.expect
    expect(page.locator("#who")).to_contain_text("read-only")
    expect(page.locator("#nav-submit")).to_be_hidden()
    page.goto(web.base + f"/jobs/{jid}")  # type: ignore[attr-defined]
    expect(page.locator("#state")).to_be_visible()
    expect(page.locator("#cancel")).to_have_count(0)
    assert w.problems == []


def test_change_a_waiting_job_from_its_page(web: Cluster, users: Users, browser: Any) -> None:
    """jmod from the page: a held job's name, cpus, memory, queue and time limit; only what was changed
    is sent; a change the server refuses is said on the page and nothing changes; another user's job
    has no form."""
    client = web.client(users.alice)
    bob = web.client(users.bob)
    try:
        [jid] = client.submit([{"command": "sleep 300", "cwd": str(web.work), "cpu": 0.5, "name": "before",
                                "hold": True}])
        [bobs] = bob.submit([{"command": "sleep 300", "cwd": str(web.work), "cpu": 0.5, "hold": True}])
    finally:
        client.close()
        bob.close()
    w = signed_in(browser, web, users.alice)
    page, expect, base = w.page, sync_api.expect, web.base  # type: ignore[attr-defined]
    page.goto(base + f"/jobs/{jid}")
    expect(page.locator("#state")).to_have_text("held")
    expect(page.locator("#mod-name")).to_have_value("before")
    page.fill("#mod-name", "after")
    page.fill("#mod-cpu", "1.5")
    page.fill("#mod-time_limit", "2h")
    page.click("#modify")
    expect(page.locator("#job-name")).to_have_text("after")
    job = web.job(jid)
    assert (job["name"], job["cpu_req"], job["time_limit"], job["mem_req_mb"]) == ("after", 1.5, 7200, 32)
    page.fill("#mod-cpu", "2")
    page.fill("#mod-depend", "afterok:999999")  # no such job: all refused, and nothing changes
    page.click("#modify")
    expect(page.locator("#error")).to_contain_text("no job 999999")
    assert (web.job(jid)["cpu_req"], web.job(jid)["depend"]) == (1.5, "")
    page.goto(base + f"/jobs/{bobs}")
    expect(page.locator("#state")).to_have_text("held")
    expect(page.locator("#modify")).to_have_count(0)
    assert w.problems == ["console: Failed to load resource: the server responded with a status of 400 (Bad Request)"]


def test_the_page_on_the_server_s_tls_port(shared_tmp: Path, users: Users, browser: Any) -> None:
    """On a real cluster the server speaks only TLS on TCP (`wulf init`): the page is there too, its
    cookie is a secure one, and it acts (submit, cancel) as on loopback."""
    etc = shared_tmp / "etc"
    port = free_port()
    subprocess.run([str(BIN / "wulf"), "init", "--dir", str(etc), "--host", "127.0.0.1", "--port", str(port),
                    "--state", str(shared_tmp / "server")], check=True, capture_output=True, timeout=60)
    with running_cluster(shared_tmp, listen=f"127.0.0.1:{port}", config=(etc / "wulf.toml").read_text()) as c:
        c.key_file = etc / "cluster.key"
        c.base = f"https://127.0.0.1:{port}"  # type: ignore[attr-defined]
        c.agent("n1", cpus=4, server=c.base)  # type: ignore[attr-defined]
        # (the cluster's own CA signed the certificate: this browser does not know it)
        w = signed_in(browser, c, users.alice, ignore_https_errors=True)
        page = w.page
        [cookie] = page.context.cookies()
        assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        jid = submit_form(page, c, "sleep 300", "over-tls")
        sync_api.expect(page.locator("#state")).to_have_text("running")
        page.click("#cancel")
        sync_api.expect(page.locator("#state")).to_have_text("cancelled")
        assert c.job(jid)["state"] == "cancelled" and w.problems == []


def test_a_workstation_whose_owner_is_back_says_so(shared_tmp: Path, users: Users, browser: Any) -> None:
    """As `jstat --nodes` does: `up (owner)` on the overview, the nodes list and the node's page, and plain
    `up` again once the owner has gone."""
    port = free_port()
    config = (f'[nodes]\nowners = {{ n1 = "{users.alice.name}" }}\n'
              "[migrate]\nbusy_cpu = 0.3\nbusy_seconds = 1\naway_seconds = 1\n[agent]\nexternal_min_cpu = 0.02\n")
    with running_cluster(shared_tmp, listen=f"127.0.0.1:{port}", config=config) as c:
        c.base = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
        c.agent("n1", cpus=4, interval=0.5)
        w = signed_in(browser, c, users.alice)
        page, expect = w.page, sync_api.expect
        hog = busy_loop_of(users.alice, shared_tmp)
        try:
            wait_until("the owner to be back", lambda: c.status()["nodes"][0]["owner_back"], timeout=60)
            for where, cell in (("/", "td.up"), ("/nodes", "td.up"), ("/nodes/n1", "dl.fields dd >> nth=0")):
                page.goto(c.base + where)  # type: ignore[attr-defined]
                expect(page.locator(cell)).to_have_text("up (owner)")
        finally:
            os.kill(hog, signal.SIGKILL)
        wait_until("the owner to be away", lambda: not c.status()["nodes"][0]["owner_back"], timeout=60)
        page.goto(c.base + "/nodes")  # type: ignore[attr-defined]
        expect(page.locator("td.up")).to_have_text("up")
        assert w.problems == []
