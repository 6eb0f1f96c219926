"""jtail on a namespaced test host: the output is read by the host's agent and comes to jtail over
the agent's own connection to the server (outside the host)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from hosts import TestNetwork

from wulfproc import BIN, free_port, running_cluster, wait_until


@pytest.mark.parametrize("test_network", [1], indirect=True)
def test_jtail_follows_a_job_on_a_test_host(test_network: TestNetwork, shared_tmp: Path) -> None:
    port = free_port(test_network.gateway)
    with running_cluster(shared_tmp, listen=f"{test_network.gateway}:{port}") as c:
        host = test_network["node1"]
        c.agent(host.name, cpus=2, server=f"http://{test_network.gateway}:{port}", popen=host.popen)
        go = c.work / "go"
        [jid] = c.submit("-c", f"echo on $(hostname); while [ ! -e '{go}' ]; do sleep 0.1; done; echo bye")
        seen = c.root / "followed"
        with open(seen, "wb") as out:
            follower = subprocess.Popen([str(BIN / "jtail"), "-f", str(jid)], stdout=out, stderr=subprocess.PIPE,
                                        env=c.env)
        try:
            wait_until("jtail -f to show the job's first line", lambda: seen.read_bytes() == b"on node1\n")
            assert c.job(jid)["node"] == "node1"
            go.touch()
            assert follower.wait(timeout=60) == 0
            assert seen.read_bytes() == b"on node1\nbye\n"
        finally:
            follower.kill()
            follower.wait()
            assert follower.stderr is not None
            follower.stderr.close()
