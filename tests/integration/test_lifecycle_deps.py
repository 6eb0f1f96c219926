"""Dependencies and retries end to end (issue 11 §3, §4), with the real server and agents as processes."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from wulfproc import Cluster, running_cluster, wait_until


def test_a_pipeline_whose_middle_step_fails_cancels_the_last_at_once(cluster: Cluster) -> None:
    [first] = cluster.submit("-c", "sleep 1; echo one > step1")
    [middle] = cluster.submit("--after", str(first), "-c", "test -s step1 && exit 4")
    [last] = cluster.submit("--dependency", f"afterok:{middle}", "-c", "touch step3")
    waiting = cluster.job(last)
    assert waiting["state"] == "queued" and waiting["reason"] == f"waiting for job {middle} (after ok)", waiting
    assert cluster.job(middle)["reason"] == f"waiting for job {first} (after ok)"
    jstat = cluster.run("jstat", "--jobs").stdout
    assert f"[waiting for job {middle} (after ok)]" in jstat
    p = cluster.run("qwait", str(last), check=False, timeout=60)
    assert p.returncode == 1, p.stderr
    assert cluster.job(first)["state"] == "done"
    assert (cluster.job(middle)["state"], cluster.job(middle)["exit_code"]) == ("failed", 4)
    job = cluster.job(last)
    assert job["state"] == "cancelled" and job["reason"] == f"dependency never satisfied: job {middle} failed", job
    assert job["started"] is None and not (cluster.work / "step3").exists()
    assert job["ended"] == cluster.job(middle)["ended"]  # in the same event as the middle step's end


def test_after_any_and_after_notok_and_bad_dependencies(cluster: Cluster) -> None:
    [bad] = cluster.submit("-c", "exit 1")
    [cleanup] = cluster.submit("--after-notok", str(bad), "-c", "echo cleaning")
    [report] = cluster.submit("--after-any", f"{bad},{cleanup}", "-c", "echo report")
    cluster.run("qwait", str(report), timeout=60)
    assert cluster.job(cleanup)["state"] == "done" and cluster.job(report)["state"] == "done"
    # decided at once: a dependency on a job that ended done, for after-not-ok, can never hold
    [never] = cluster.submit("--after-notok", str(cleanup), "-c", "true")
    job = cluster.job(never)
    assert job["state"] == "cancelled" and job["reason"] == f"dependency never satisfied: job {cleanup} succeeded"
    for args, message in ((["--after", "999999"], "no job 999999"),
                          (["--after", "x1"], "is not a job id"),
                          (["--dependency", "after:1"], "afterok:ID"),
                          (["--dependency", "afterok:0"], "is not a job id")):
        before = len(cluster.status()["jobs"])
        p = cluster.run("qr", *args, "-c", "true", check=False)
        assert p.returncode == 2 and message in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
        assert len(cluster.status()["jobs"]) == before  # nothing queued


def test_a_job_waiting_for_itself_is_refused(cluster: Cluster) -> None:
    [jid] = cluster.submit("-c", "true")
    p = cluster.run("qr", "--after", str(jid + 1), "-c", "true", check=False)
    assert p.returncode == 2 and "cannot wait for job" in p.stderr and "itself" in p.stderr, p.stderr


def test_dependencies_survive_a_server_restart(tmp_path: Path) -> None:
    with running_cluster(tmp_path) as c:
        c.agent("n1", cpus=2)
        [first] = c.submit("-c", "sleep 3")
        [then] = c.submit("--after", str(first), "-c", "echo after")
        assert c.server is not None
        c.server.kill(signal.SIGKILL)
        c.start_server()
        assert c.job(then)["reason"] == f"waiting for job {first} (after ok)"
        c.run("qwait", str(then), timeout=60)
        assert c.job(then)["state"] == "done" and c.job(then)["started"] >= c.job(first)["ended"]


def test_a_retried_job_succeeds_on_its_third_attempt(cluster: Cluster) -> None:
    count = cluster.work / "attempts"
    script = (f'echo "$WULF_RESTART_COUNT" >> {count}; n=$(wc -l < {count}); '
              'sleep 0.5; test "$n" -ge 3 || exit 7')
    [jid] = cluster.submit("--retries", "5", "-c", script)
    [after] = cluster.submit("--after", str(jid), "-c", "true")
    cluster.run("qwait", str(after), timeout=90)
    job = cluster.job(jid)
    assert job["state"] == "done" and job["restarts"] == 2 and job["attempts"] == 3, job
    assert count.read_text().split() == ["0", "1", "2"]  # one at a time, each told which attempt it is
    assert cluster.job(after)["state"] == "done"  # the failed attempts did not end its dependent
    [out_of_retries] = cluster.submit("--retries", "1", "-c", "exit 3")
    cluster.run("qwait", str(out_of_retries), check=False, timeout=60)
    job = cluster.job(out_of_retries)
    assert (job["state"], job["exit_code"], job["attempts"]) == ("failed", 3, 2), job
    assert "try 2" in cluster.run("jstat", "-a", "--jobs").stdout


def test_a_job_over_its_own_limit_is_not_retried(cluster: Cluster) -> None:
    [jid] = cluster.submit("--retries", "3", "--time", "00:00:01", "-c", "sleep 30")
    cluster.run("qwait", str(jid), check=False, timeout=60)
    job = cluster.job(jid)
    assert job["state"] == "failed" and job["reason"].startswith("exceeded its time limit"), job
    assert job["restarts"] == 0


def test_a_lost_node_fails_its_job_or_queues_it_again(tmp_path: Path) -> None:
    with running_cluster(tmp_path, config="[server]\nnode_lost_after = 2\n") as c:
        c.agent("n1", cpus=2)
        marks = c.work / "runs"
        [plain] = c.submit("--cpu", "0.1", "-c", "sleep 600")
        [retried] = c.submit("--cpu", "0.1", "--retries", "1", "-c",
                             f'echo "$WULF_RESTART_COUNT" >> {marks}; test "$WULF_RESTART_COUNT" = 1 || sleep 600')
        pids = [wait_until("the jobs to start", lambda j=j: c.job(j)["pid"]) for j in (plain, retried)]
        c.agents["n1"].kill(signal.SIGKILL)
        wait_until("the job to be queued again", lambda: c.job(retried)["restarts"] == 1, timeout=60)
        p = c.run("qwait", str(plain), check=False, timeout=60)
        assert p.returncode == 1
        job = c.job(plain)
        assert job["state"] == "failed" and job["reason"].startswith("node lost: n1 down since "), job
        job = c.job(retried)
        assert job["state"] == "queued" and job["attempts"] == 1, job  # (why it waits now: no node is up)
        assert f"job {retried}: queued again after attempt 1 of 2 failed: node lost" in (c.root / "server.log").read_text()
        # the node comes back still running the lost runs: they are killed, the retried job runs anew
        c.agent("n1", cpus=2)
        for pid in pids:
            wait_until("the lost run to be killed", lambda pid=pid: not os.path.exists(f"/proc/{pid}"))
        c.run("qwait", str(retried), timeout=60)
        job = c.job(retried)
        assert (job["state"], job["attempts"]) == ("done", 2), job
        assert marks.read_text().split() == ["0", "1"]
