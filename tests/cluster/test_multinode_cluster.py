"""Jobs of several tasks across namespaced test hosts (issue 13 §1): the allocation a job's script
finds, the slots it holds on every node, and its end."""

from __future__ import annotations

import json
from pathlib import Path

from hosts import TestNetwork

from wulfproc import Cluster, wait_until


def test_a_3x2_job_finds_its_allocation_and_holds_every_slot(three: Cluster, test_network: TestNetwork) -> None:
    go = three.work / "go"
    script = three.work / "alloc.sh"
    script.write_text("#!/bin/sh\n"
                      "echo \"host=$(hostname) list=$WULF_NODELIST n=$WULF_NTASKS per=$WULF_TASKS_PER_NODE "
                      "nnodes=$WULF_NNODES\"\n"
                      "cat \"$WULF_NODEFILE\"\n"
                      f"while [ ! -e '{go}' ]; do sleep 0.1; done\n")
    [jid] = three.submit("--nodes", "3", "--ntasks-per-node", "2", "-s", str(script))
    job = wait_until("the job to run", lambda: (j := three.job(jid))["state"] == "running" and j)
    assert job["nodes"] == "node[1-3]" and job["ntasks"] == 6 and job["node"] in ("node1", "node2", "node3")
    out = three.work / f"wulf-{jid}.out"
    wait_until("the script to print its allocation", lambda: out.exists() and len(out.read_text().splitlines()) >= 7)
    first, *slots = out.read_text().splitlines()
    assert first == f"host={job['node']} list=node[1-3] n=6 per=2(x3) nnodes=3"
    assert slots[:2] == [job["node"]] * 2 and sorted(slots) == sorted(["node1", "node2", "node3"] * 2)
    # every cpu of the three hosts is held: a one-cpu job waits until it ends
    [small] = three.submit("-c", "true")
    table = three.run("jstat").stdout
    assert "node[1-3]" in table, table
    assert three.job(small)["state"] == "queued"
    nodes = json.loads(three.run("jstat", "--nodes", "--json").stdout)["nodes"]
    assert all(n["jobs"] == 1 and n["cpu_free"] <= 0.01 for n in nodes), nodes
    go.touch()
    three.run("qwait", str(jid), str(small))
    assert three.job(jid)["state"] == "done" and three.job(small)["state"] == "done"
    wait_until("its node file to be removed", lambda: not Path(f"/tmp/wulf-{jid}.nodes").exists())
