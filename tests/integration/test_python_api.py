"""The Python API (wulf.Client, wulf.AsyncClient; docs/python-api.md) against a real server and agent:
typed answers, submissions as qr makes them, and the errors the commands turn into their exit codes."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import wulf
from users import User, Users
from wulf import AsyncClient, Client, Job, JobState
from wulf.errors import Forbidden, NotFound, ServerUnreachable, TimedOut, UsageError, WulfError
from wulfproc import Cluster, running_cluster, wait_until

DOCS = Path(__file__).resolve().parents[2] / "docs" / "python-api.md"
QUIET = "[agent]\nexternal_min_cpu = 1000.0\nexternal_min_mem_mb = 1e9\n"
NOWHERE = "arch=nowhere"  # a constraint no node meets: the job waits


@pytest.fixture
def small_pages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    """A server that lists two jobs a page (so that jobs() has to ask for the next), and an agent; the
    jobs run in its work directory (the API's default cwd is this process's)."""
    with running_cluster(tmp_path, config=f"{QUIET}[server]\njobs_per_page = 2\n") as c:
        c.agent("n1", cpus=4)
        monkeypatch.chdir(c.work)
        yield c


@pytest.fixture
def people(shared_tmp: Path, users: Users, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    """A server whose administrators are carol's group, and an agent that runs everyone's jobs."""
    with running_cluster(shared_tmp, config=f'{QUIET}[server]\nadmin_group = "{users.admins}"\n') as c:
        c.agent("n1", cpus=4)
        monkeypatch.chdir(c.work)
        yield c


def client_of(c: Cluster, user: User | None = None) -> Client:
    return Client(transport=lambda: c.client(user))


def _fenced(after: str) -> str:
    """The fenced block of docs/python-api.md that follows the line ``<!-- after -->``."""
    m = re.search(rf"<!-- {after} -->\n```[a-z]*\n(.*?)```", DOCS.read_text(), re.S)
    assert m is not None, f"no block after <!-- {after} --> in {DOCS}"
    return m.group(1)


# ---------------------------------------------------------------------------- the documented script


def test_the_documented_fan_out_script_runs_as_shown(small_pages: Cluster) -> None:
    script = _fenced("fan-out script")
    assert len(script.strip().splitlines()) <= 10
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=small_pages.env,
                       cwd=small_pages.work, timeout=300)
    assert (p.returncode, p.stderr) == (0, "")
    assert p.stdout == _fenced("fan-out output")


# ---------------------------------------------------------------------------- submit, wait, output


def test_submit_wait_and_read_output(small_pages: Cluster) -> None:
    with client_of(small_pages) as api:
        ok = api.submit("echo hello $GREETING", name="greet", cpu=0.5, mem="64M", env={"GREETING": "world"},
                        cwd=str(small_pages.work))
        bad = api.submit(script="#!/bin/sh\necho oops >&2\nexit 3\n", name="bad", cwd=str(small_pages.work))
        assert isinstance(ok, int) and bad > ok
        jobs = api.wait([ok, bad])
        assert [type(j) for j in jobs] == [Job, Job]
        done, failed = jobs
        assert (done.id, done.state, done.ok, done.finished, done.exit_code, done.name) == \
            (ok, JobState.DONE, True, True, 0, "greet")
        assert (done.cpu_req, done.mem_req_mb, done.node, done.user, done.ref) == (0.5, 64.0, "n1", "root", str(ok))
        assert done.started is not None and done.ended is not None and done.ended >= done.started
        assert (failed.state, failed.ok, failed.exit_code, failed.name) == ("failed", False, 3, "bad")
        assert api.output(ok) == b"hello world\n"
        assert api.output(bad) == b"oops\n"
        chunk = api.read_output(ok, 6, 3)
        assert (chunk.data, chunk.offset, chunk.next, chunk.size, chunk.state, chunk.ended) == \
            (b"wor", 6, 9, 12, JobState.DONE, False)
        assert api.job(ok) == done or api.job(ok).state is JobState.DONE


def test_follow_yields_output_as_it_is_written(small_pages: Cluster) -> None:
    go = small_pages.work / "go"
    with client_of(small_pages) as api:
        jid = api.submit(f"echo start; while [ ! -e '{go}' ]; do sleep 0.1; done; echo end", cwd=str(small_pages.work))
        follow = api.follow(jid, every=0.1)
        assert next(follow) == b"start\n"  # the job is still running: it waits for the file
        assert api.job(jid).state is JobState.RUNNING
        go.touch()
        assert b"".join(follow) == b"end\n"  # ... and the iterator ends with the job
        assert api.job(jid).state is JobState.DONE


def test_wait_that_runs_out_of_time_is_timed_out_as_qwait(small_pages: Cluster) -> None:
    with client_of(small_pages) as api:
        jid = api.submit("true", constraint=NOWHERE)
        with pytest.raises(TimedOut) as e:
            api.wait(jid, timeout=0.5)
        assert e.value.exit_code == 124 and f"job {jid} is queued" in e.value.message
        assert small_pages.run("qwait", "--timeout", "0.5", str(jid), check=False).returncode == 124
        api.cancel(jid)


# ---------------------------------------------------------------------------- what qr sends


COMPARED = ("state", "name", "queue", "command", "cpu_req", "mem_req_mb", "depend", "retries", "time_limit",
            "nice", "constraint", "array_index", "output", "cwd")


def _same(job: Job) -> tuple[object, ...]:
    return tuple(getattr(job, f) for f in COMPARED)


def test_a_submission_is_what_qr_sends(small_pages: Cluster) -> None:
    """Arrays, dependencies, retries, limits: the API's job and qr's job of the same options are alike."""
    c = small_pages
    with client_of(c) as api:
        [first] = c.submit("--constraint", NOWHERE, "-c", "true")
        [by_qr] = c.submit("--array", "1-5:2%2", "--after", str(first), "--retries", "2", "--cpu", "2", "--mem", "1G",
                           "--time", "1:00:00", "-N", "sweep", "--nice", "5", "--constraint", NOWHERE, "-q", "q1",
                           "-o", "out-%j", "-c", "echo $WULF_ARRAY_TASK_ID")
        by_api = api.submit("echo $WULF_ARRAY_TASK_ID", array="1-5:2%2", after=first, retries=2, cpu=2, mem="1G",
                            time_limit="1:00:00", name="sweep", nice=5, constraint=NOWHERE, queue="q1",
                            output="out-%j", cwd=str(c.work))
        qr_tasks = [api.job(by_qr + i) for i in range(3)]
        api_tasks = [api.job(by_api + i) for i in range(3)]
        assert [_same(j) for j in api_tasks] == [_same(j) for j in qr_tasks]
        assert [j.ref for j in api_tasks] == [f"{by_api}[{i}]" for i in (1, 3, 5)]
        assert api_tasks[0].depend == f"afterok:{first}" and api_tasks[0].retries == 2
        # Slurm's form, and the three kinds together, as qr -d and qr --after/--after-any/--after-notok
        a = api.submit("true", depend=f"afterany:{first}", after_notok=[first, by_qr], constraint=NOWHERE)
        [b] = c.submit("-d", f"afterany:{first}", "--after-notok", f"{first},{by_qr}", "--constraint", NOWHERE,
                       "-c", "true")
        assert api.job(a).depend == api.job(b).depend
        api.cancel([first, by_qr, by_api, a, b])


def test_arrays_dependencies_and_retries_run(small_pages: Cluster) -> None:
    c = small_pages
    with client_of(c) as api:
        flaky = c.work / "flaky"
        first = api.submit(f"if [ -e '{flaky}' ]; then echo second try; else touch '{flaky}'; exit 1; fi", retries=1)
        array = api.submit("echo task $WULF_ARRAY_TASK_ID", array="1-4%2", after=first)
        never = api.submit("echo never", after_notok=first)
        last = api.submit("echo last", after=array)
        tasks = api.wait(array)
        assert [t.array_index for t in tasks] == [1, 2, 3, 4] and all(t.ok for t in tasks)
        assert [api.output(t.id) for t in tasks] == [f"task {i}\n".encode() for i in range(1, 5)]
        [again] = api.wait(first)
        assert (again.ok, again.attempts, api.output(first)) == (True, 2, b"second try\n")
        [after_all] = api.wait(last)
        assert after_all.ok and after_all.started is not None
        assert after_all.started >= max(t.ended or 0 for t in tasks)
        [skipped] = api.wait(never, timeout=60)
        assert skipped.state is JobState.CANCELLED and skipped.started is None


# ---------------------------------------------------------------------------- listing, acting


def test_jobs_pages_and_filters(small_pages: Cluster) -> None:
    with client_of(small_pages) as api:
        waiting = api.submit_many([f"echo {i}" for i in range(5)], constraint=NOWHERE, queue="pages")
        assert len(waiting) == 5 and waiting == sorted(waiting)
        assert [j.name for j in map(api.job, waiting)] == ["echo"] * 5
        api.hold(waiting[:2])
        listed = [j for j in api.jobs(queue="pages")]  # five jobs, two a page
        assert [(j.id, j.state) for j in listed] == [(i, "held") for i in waiting[:2]] + \
            [(i, "queued") for i in waiting[2:]]
        assert [j.id for j in api.jobs("root", state="held")] == waiting[:2]
        assert [j.id for j in api.jobs(state=["held", "queued"], queue="pages")] == waiting
        assert list(api.jobs(user="nobody-such")) == []
        with pytest.raises(UsageError):
            list(api.jobs(state="sleeping"))
        api.cancel(waiting)
        assert [j.id for j in api.jobs(queue="pages", ended=False)] == []
        assert [j.state for j in api.jobs(queue="pages")] == ["cancelled"] * 5


def test_many_jobs_are_read_from_the_listing_as_by_id(small_pages: Cluster) -> None:
    """wait() reads many ended jobs a page at a time (two a page here): the same jobs as one by one, a
    command the listing cuts short in full, and jobs far apart by id one by one."""
    with client_of(small_pages) as api:
        long = "true " + "x" * 1500
        ids = api.submit_many([f"echo {i}" for i in range(24)] + [long], constraint=NOWHERE)
        api.cancel(ids)
        one_by_one = [api.job(i) for i in ids]
        assert one_by_one[-1].command == long
        assert api.jobs_by_id(ids) == one_by_one
        assert api.wait(ids) == one_by_one
        assert [j.state for j in api.jobs(queue="default")][-1] == "cancelled"
        assert next(j for j in api.jobs() if j.id == ids[-1]).command.endswith("…")  # (cut in the listing)
        assert api.jobs_by_id(ids[::-1]) == one_by_one[::-1]
        with pytest.raises(NotFound):
            api.jobs_by_id([*ids, 999999])


def test_hold_release_renice_signal_cancel_answer_what_changed(small_pages: Cluster) -> None:
    with client_of(small_pages) as api:
        waits = api.submit("true", constraint=NOWHERE)
        runs = api.submit("trap 'echo got USR1; exit 5' USR1; echo ready; sleep 60 & wait", cwd=str(small_pages.work))
        wait_until("the job to run", lambda: api.output(runs) == b"ready\n", timeout=90)
        assert api.hold([waits, runs]) == wulf.Changed(changed=(waits,), unchanged=(runs,))
        assert api.job(waits).state is JobState.HELD
        assert api.release(str(waits)) == wulf.Changed((waits,), ())
        assert api.renice([runs, waits], 7) == wulf.Changed((runs,), (waits,))
        wait_until("the job's new niceness", lambda: api.job(runs).nice == 7)
        assert api.signal(runs, 10) == wulf.Changed((runs,), ())
        [ended] = api.wait(runs, timeout=60)
        assert (ended.state, ended.exit_code, api.output(runs)) == (JobState.FAILED, 5, b"ready\ngot USR1\n")
        assert api.cancel([waits, runs]) == wulf.Changed((waits,), (runs,))


def test_nodes_queues_whoami(small_pages: Cluster) -> None:
    with client_of(small_pages) as api:
        [node] = api.nodes()
        assert (node.name, node.state, node.cpus, node.mem_total_mb, node.drained) == ("n1", "up", 4.0, 4096.0, False)
        assert isinstance(node.features, tuple)
        me = api.whoami()
        assert (me.user, me.uid, me.admin) == ("root", 0, True)
        jid = api.submit("true", constraint=NOWHERE, queue="mine")
        [queue] = [q for q in api.queues(me.user) if q.name == "mine"]
        assert (queue.user, queue.queued, queue.running, queue.stopped, queue.window) == ("root", 1, 0, False, "always")
        api.cancel(jid)


def test_accounting(small_pages: Cluster) -> None:
    with client_of(small_pages) as api:
        before = datetime.datetime.now() - datetime.timedelta(minutes=5)
        ok, bad = api.submit("true", name="fine"), api.submit("exit 2", name="broken")
        api.wait([ok, bad])
        records = api.accounting(ids=[ok, bad])
        # (accounting lists jobs in the order they ended: the two run side by side, either may end first)
        assert sorted((r.id, r.name, r.state, r.exit_code) for r in records) == [(ok, "fine", "done", 0),
                                                                                (bad, "broken", "failed", 2)]
        assert all(r.run is not None and r.wait is not None and r.attempts == 1 for r in records)
        assert [r.id for r in api.accounting(start=before, states=["failed"])] == [bad]
        assert api.accounting(start=before - datetime.timedelta(hours=1), end=before) == []
        with pytest.raises(UsageError, match="must be before the end"):
            api.accounting(start=datetime.datetime.now() + datetime.timedelta(hours=1))
        [me] = api.accounting_summary(start=before)
        assert (me.user, me.jobs) == ("root", 2)
        # the same as jacct --json shows
        shown = json.loads(small_pages.run("jacct", "--json", str(ok)).stdout)["jobs"]
        assert [r["id"] for r in shown] == [ok] and shown[0]["run"] == {r.id: r for r in records}[ok].run


# ---------------------------------------------------------------------------- the errors of the commands


def test_errors_are_the_commands_errors(small_pages: Cluster) -> None:
    c = small_pages
    with client_of(c) as api:
        for call, error, argv in [
            (lambda: api.job(999999), NotFound, ("jeff", "999999")),
            (lambda: api.cancel(999999), NotFound, ("qcancel", "999999")),
            (lambda: api.output(999999), NotFound, ("jtail", "999999")),
            (lambda: api.submit(""), UsageError, ("qr", "-c", "")),
            (lambda: api.submit("true", array="5-1"), UsageError, ("qr", "--array", "5-1", "-c", "true")),
            (lambda: api.submit("true", after="x1"), UsageError, ("qr", "--after", "x1", "-c", "true")),
            (lambda: api.submit("true", after=999999), UsageError, ("qr", "--after", "999999", "-c", "true")),
            (lambda: api.submit("true", mem="lots"), UsageError, ("qr", "--mem", "lots", "-c", "true")),
            (lambda: api.submit("true", retries=1000), UsageError, ("qr", "--retries", "1000", "-c", "true")),
            (lambda: api.submit("true", time_limit="1:xx"), UsageError, ("qr", "--time", "1:xx", "-c", "true")),
            (lambda: api.hold("12[x]"), UsageError, ("qhold", "12[x]")),
        ]:
            with pytest.raises(error) as e:
                call()
            p = c.run(*argv, check=False)
            assert (e.value.exit_code, "\n" not in e.value.message) == (p.returncode, True), (argv, p.stderr)
        with pytest.raises(TypeError):
            api.submit("true", memory="1G")  # type: ignore[call-arg]
        assert list(api.jobs()) == []  # nothing of the bad ones was queued
    with pytest.raises(ServerUnreachable) as gone:
        Client(f"unix:{c.root}/nowhere.sock").nodes()
    p = c.run("jstat", check=False, env_extra={"WULF_SERVER": f"unix:{c.root}/nowhere.sock"})
    assert gone.value.exit_code == p.returncode == 3


def test_another_users_job_is_not_for_others(people: Cluster, users: Users) -> None:
    alice, bob, carol = users.alice, users.bob, users.carol
    with client_of(people, alice) as as_alice, client_of(people, bob) as as_bob:
        jid = as_alice.submit("true", constraint=NOWHERE, cwd=str(people.work))
        assert as_alice.job(jid).user == alice.name
        for act, command in [(as_bob.cancel, "qcancel"), (as_bob.hold, "qhold"), (as_bob.release, "qrls")]:
            with pytest.raises(Forbidden) as e:
                act(jid)
            p = people.run_as(bob, command, str(jid), check=False)
            assert (e.value.exit_code, p.stderr.strip()) == (p.returncode, f"{command}: {e.value.message}")
            assert f"belongs to {alice.name}" in e.value.message
        with pytest.raises(Forbidden):
            as_bob.renice(jid, 10)
        with pytest.raises(Forbidden):
            as_bob.output(jid)
        assert isinstance(Forbidden("x"), WulfError)
        assert as_bob.job(jid).state is JobState.QUEUED  # seen (as jstat shows it), and left as it was
        with client_of(people, carol) as as_carol:  # an administrator may
            assert as_carol.whoami().admin
            assert as_carol.cancel(jid).changed == (jid,)


# ---------------------------------------------------------------------------- asyncio


def test_async_client(small_pages: Cluster) -> None:
    c = small_pages
    go = c.work / "go-async"

    async def main() -> None:
        async with AsyncClient(transport=lambda: c.client()) as api:
            ids = await asyncio.gather(*(api.submit(f"echo {n}", cwd=str(c.work)) for n in range(6)))
            assert len(set(ids)) == 6
            slow = await api.submit(f"echo a; while [ ! -e '{go}' ]; do sleep 0.1; done; echo b", cwd=str(c.work))
            follow = api.follow(slow, every=0.1)
            assert await follow.__anext__() == b"a\n"
            go.touch()
            assert [chunk async for chunk in follow] == [b"b\n"]
            jobs = await api.wait([*ids, slow])
            assert [j.ok for j in jobs] == [True] * 7
            outputs = await asyncio.gather(*(api.output(i) for i in ids))
            assert outputs == [f"{n}\n".encode() for n in range(6)]
            assert [j.id async for j in api.jobs(state="done")] == sorted([*ids, slow])  # (pages of two)
            assert (await api.nodes())[0].name == "n1"
            assert sorted(r.id for r in await api.accounting(ids=ids)) == sorted(ids)
            with pytest.raises(NotFound):
                await api.job(999999)
            [me] = await api.accounting_summary()
            assert me.jobs == 7
            waiting = await api.submit_many(["true", "false"], constraint=NOWHERE, queue="aq")
            with pytest.raises(TimedOut):
                await api.wait(waiting, timeout=0.2)
            assert await api.hold(waiting) == wulf.Changed(tuple(waiting), ())
            assert await api.release(waiting[0]) == wulf.Changed((waiting[0],), ())
            assert await api.renice(waiting, 5) == wulf.Changed((), tuple(waiting))
            assert await api.signal(waiting, 10) == wulf.Changed((), tuple(waiting))
            [queue] = [q for q in await api.queues((await api.whoami()).user) if q.name == "aq"]
            assert (queue.queued, queue.running) == (1, 0)
            assert await api.cancel(waiting) == wulf.Changed(tuple(waiting), ())
            with pytest.raises(UsageError):
                await api.submit("true", array="x")

    asyncio.run(main())
    assert os.path.exists(go)


def test_a_waiting_jobs_reason_is_the_same_by_id_as_in_the_listing(small_pages: Cluster) -> None:
    with client_of(small_pages) as api:
        jid = api.submit("true", constraint=NOWHERE)
        [listed] = [j for j in api.jobs() if j.id == jid]
        assert "arch=nowhere" in listed.reason
        assert api.job(jid).reason == listed.reason
        api.cancel(jid)
