"""The everyday commands end to end, with the real server and agent as processes."""

from __future__ import annotations

import json
import os
from pathlib import Path

from wulfproc import Cluster, wait_until


def test_command_job_runs_and_writes_its_output(cluster: Cluster) -> None:
    [jid] = cluster.submit("-c", 'echo "id=$WULF_JOB_ID node=$WULF_NODE queue=$WULF_QUEUE dir=$WULF_SUBMIT_DIR"')
    cluster.run("qwait", str(jid))
    job = cluster.job(jid)
    assert job["state"] == "done" and job["exit_code"] == 0 and job["node"] == "n1"
    out = (cluster.work / f"wulf-{jid}.out").read_text()
    assert out == f"id={jid} node=n1 queue=default dir={cluster.work}\n"


def test_failing_job_is_failed_and_qwait_says_so(cluster: Cluster) -> None:
    [ok] = cluster.submit("-c", "true")
    [bad] = cluster.submit("-c", "echo oops >&2; exit 3")
    p = cluster.run("qwait", str(ok), str(bad), check=False)
    assert p.returncode == 1
    assert f"{bad} failed" in p.stderr
    job = cluster.job(bad)
    assert job["state"] == "failed" and job["exit_code"] == 3
    assert (cluster.work / f"wulf-{bad}.out").read_text() == "oops\n"


def test_script_file_with_several_scripts(cluster: Cluster) -> None:
    script = cluster.work / "many.sh"
    script.write_text("#!/bin/bash\necho one $BASH_VERSION\n#NEXTSCRIPT\necho two\n#NEXTSCRIPT\n\n#NEXTSCRIPT\nexit 0\n")
    ids = cluster.submit("-s", str(script), "-o", "out-%j.txt")
    assert len(ids) == 3  # the empty part is no job
    cluster.run("qwait", *map(str, ids))
    first = (cluster.work / f"out-{ids[0]}.txt").read_text()
    assert first.startswith("one ") and len(first.split()) == 2  # bash ran it: the #! line is shared
    assert (cluster.work / f"out-{ids[1]}.txt").read_text() == "two\n"
    assert not list(Path("/tmp").glob(f"wulf-{ids[0]}.script"))


def test_keep_script_and_script_from_stdin(cluster: Cluster) -> None:
    p = cluster.run("qr", "-Z", "--json", input="echo from stdin\n")
    [jid] = json.loads(p.stdout)["jobs"]
    cluster.run("qwait", str(jid))
    assert (cluster.work / f"wulf-{jid}.out").read_text() == "from stdin\n"
    kept = Path("/tmp") / f"wulf-{jid}.script"
    assert kept.read_text() == "echo from stdin\n"
    kept.unlink()


def test_awkward_working_directory(cluster: Cluster) -> None:
    odd = cluster.work / "with space 'quote\" and ünïcödé $HOME"
    odd.mkdir()
    (odd / "s.sh").write_text("pwd\n")
    [a] = cluster.submit("-c", "pwd", cwd=odd)
    [b] = cluster.submit("-s", str(odd / "s.sh"), cwd=odd)
    cluster.run("qwait", str(a), str(b))
    for jid in (a, b):
        assert (odd / f"wulf-{jid}.out").read_text() == f"{odd}\n"


def test_environment_is_passed(cluster: Cluster) -> None:
    cluster.env["WULF_TEST_VALUE"] = "x y 'z'"
    [jid] = cluster.submit("-c", 'printf "%s" "$WULF_TEST_VALUE"')
    cluster.run("qwait", str(jid))
    assert (cluster.work / f"wulf-{jid}.out").read_text() == "x y 'z'"


def test_cpu_request_limits_what_runs_at_once(cluster: Cluster) -> None:
    ids = cluster.submit("--cpu", "2", "-c", "sleep 30", "-c", "sleep 30")
    wait_until("the first job to run", lambda: cluster.job(ids[0])["state"] == "running")
    second = cluster.job(ids[1])
    assert second["state"] == "queued" and second["reason"]
    cluster.run("qcancel", *map(str, ids))
    cluster.run("qwait", *map(str, ids), check=False)
    assert {cluster.job(i)["state"] for i in ids} == {"cancelled"}


def test_cancel_running_and_queued(cluster: Cluster) -> None:
    ids = cluster.submit("--cpu", "2", "-c", "sleep 60", "-c", "sleep 60")
    wait_until("the first job to run", lambda: cluster.job(ids[0])["state"] == "running")
    pid = cluster.job(ids[0])["pid"]
    wait_until("its pid", lambda: cluster.job(ids[0])["pid"])
    pid = cluster.job(ids[0])["pid"]
    out = cluster.run("qcancel", *map(str, ids)).stdout
    assert f"cancelled {ids[0]}" in out and f"cancelled {ids[1]}" in out
    wait_until("the process to be gone", lambda: not os.path.exists(f"/proc/{pid}"))
    assert cluster.run("qwait", *map(str, ids), check=False).returncode == 1


def test_jkill_and_jnice(cluster: Cluster) -> None:
    [jid] = cluster.submit("-c", "sleep 60")
    pid = wait_until("the job to start", lambda: cluster.job(jid)["pid"])
    out = cluster.run("jnice", str(jid), "7").stdout
    assert "nice 7" in out
    wait_until("the nice value to change", lambda: os.getpriority(os.PRIO_PROCESS, pid) == 7)
    cluster.run("jkill", "-s", "KILL", str(jid))
    cluster.run("qwait", str(jid), check=False)
    job = cluster.job(jid)
    assert job["state"] == "failed" and job["signal"] == 9


def test_jstat_json_contract(cluster: Cluster) -> None:
    [jid] = cluster.submit("-c", "true")
    cluster.run("qwait", str(jid))
    data = cluster.json("jstat", "-a")
    node = data["nodes"][0]
    for key in ("name", "state", "cpus", "load", "mem_total_mb", "mem_free_mb"):
        assert key in node
    assert node["name"] == "n1" and node["state"] == "up" and node["cpus"] == 2
    job = next(j for j in data["jobs"] if j["id"] == jid)
    for key in ("id", "user", "origin", "state", "node", "exit_code", "command", "cpu", "mem_mb"):
        assert key in job
    assert job["origin"] == "batch" and job["cpu"] == 1.0 and job["mem_mb"] == 32.0
    text = cluster.run("jstat").stdout
    assert "NODE" in text and "n1" in text


def test_drain_and_resume(cluster: Cluster) -> None:
    cluster.run("jobmgr", "drain", "n1")
    [jid] = cluster.submit("-c", "true")
    wait_until("the node to show drained", lambda: cluster.status()["nodes"][0]["state"] == "drain")
    assert cluster.job(jid)["state"] == "queued"
    cluster.run("jobmgr", "resume", "n1")
    cluster.run("qwait", str(jid))
    assert cluster.job(jid)["state"] == "done"


def test_server_restart_keeps_every_job(cluster: Cluster) -> None:
    [done] = cluster.submit("-c", "true")
    cluster.run("qwait", str(done))
    [running] = cluster.submit("-c", "sleep 3; echo survived")
    wait_until("the job to start", lambda: cluster.job(running)["pid"])
    [waiting] = cluster.submit("--cpu", "8", "-c", "true")  # more cpus than the node has: waits
    out = cluster.run("qr", "-H", "-c", "echo $KEPT", env_extra={"KEPT": "its environment"}).stdout
    held = int(out.split()[-1])
    assert cluster.server is not None
    cluster.server.kill()
    cluster.start_server()
    states = {j["id"]: j["state"] for j in cluster.status()["jobs"]}
    assert states[done] == "done" and states[running] == "running" and states[waiting] == "queued"
    cluster.wait_node("n1")
    cluster.run("qwait", str(running))
    assert cluster.job(running)["state"] == "done"
    assert (cluster.work / f"wulf-{running}.out").read_text() == "survived\n"
    cluster.run("qrls", str(held))  # started by the new server, with the environment it reads from the store
    cluster.run("qwait", str(held))
    assert (cluster.work / f"wulf-{held}.out").read_text() == "its environment\n"


def test_agent_restart_keeps_running_jobs(cluster: Cluster) -> None:
    marker = cluster.work / "go"
    [jid] = cluster.submit("-c", f"while [ ! -e '{marker}' ]; do sleep 0.1; done; echo finished; exit 5")
    pid = wait_until("the job to start", lambda: cluster.job(jid)["pid"])
    cluster.agents["n1"].kill()
    cluster.wait_node("n1", "down")
    assert os.path.exists(f"/proc/{pid}")
    cluster.agent("n1", cpus=2)
    marker.touch()
    cluster.run("qwait", str(jid), check=False)
    job = cluster.job(jid)
    assert job["state"] == "failed" and job["exit_code"] == 5 and job["pid"] == pid
    assert (cluster.work / f"wulf-{jid}.out").read_text() == "finished\n"


def test_job_that_ends_while_its_agent_is_down(cluster: Cluster) -> None:
    marker = cluster.work / "go"
    [jid] = cluster.submit("-c", f"while [ ! -e '{marker}' ]; do sleep 0.1; done; exit 4")
    pid = wait_until("the job to start", lambda: cluster.job(jid)["pid"])
    cluster.agents["n1"].kill()
    cluster.wait_node("n1", "down")
    marker.touch()
    wait_until("the job's process to end", lambda: not os.path.exists(f"/proc/{pid}"))
    cluster.agent("n1", cpus=2)
    cluster.run("qwait", str(jid), check=False)
    job = cluster.job(jid)
    assert job["state"] == "failed" and job["exit_code"] == 4 and job["reason"] == ""
