"""Security across hosts: TLS between the hosts, agents that register with the cluster key, and users
on a node vouched for by that node's agent (namespaced test hosts; the server outside them)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hosts import TestNetwork

from users import Users
from wulfproc import BIN, Cluster, free_port, running_cluster, wait_until


@pytest.fixture
def secured(test_network: TestNetwork, shared_tmp: Path, users: Users) -> Iterator[Cluster]:
    """`wulf init` for a server on the bridge; node1 and node2 join over TLS with the key."""
    etc = shared_tmp / "etc"
    port = free_port(test_network.gateway)
    subprocess.run([str(BIN / "wulf"), "init", "--dir", str(etc), "--host", test_network.gateway, "--port",
                    str(port)], check=True, capture_output=True, timeout=60)
    # (the address and the state directory of the file are overridden on the server's command line)
    config = (etc / "wulf.toml").read_text().replace("[server]\n", f'[server]\nadmin_group = "{users.admins}"\n')
    with running_cluster(shared_tmp, listen=f"{test_network.gateway}:{port}", config=config) as c:
        c.key_file = etc / "cluster.key"
        c.https = f"https://{test_network.gateway}:{port}"  # type: ignore[attr-defined]
        for name in ("node1", "node2"):
            c.agent(name, server=c.https, popen=test_network[name].popen)  # type: ignore[attr-defined]
        yield c


def test_a_user_on_a_node_is_vouched_for_by_its_agent(secured: Cluster, test_network: TestNetwork,
                                                      users: Users) -> None:
    alice = users.alice
    env = {**secured.env, "WULF_SERVER": secured.https,  # type: ignore[attr-defined]
           "WULF_AGENT_SOCKET": str(secured.root / "agent-node1.sock")}
    p = test_network["node1"].run(alice.argv("qr", "--json", "-c", "hostname; id -un"), env=env,
                                  capture_output=True, text=True, timeout=60, cwd=str(secured.work))
    assert p.returncode == 0, p.stderr
    [jid] = json.loads(p.stdout)["jobs"]
    secured.run("qwait", str(jid))
    job = secured.job(jid)
    assert job["user"] == alice.name
    assert (secured.work / f"wulf-{jid}.out").read_text() == f"{job['node']}\n{alice.name}\n"
    # what she may not do from there, she may not do: jobmgr is for administrators
    p = test_network["node1"].run(alice.argv("jobmgr", "drain", "node2"), env=env, capture_output=True, text=True,
                                  timeout=60)
    assert p.returncode == 5 and "not an administrator" in p.stderr
    [entry] = [json.loads(x) for x in (secured.state / "audit.jsonl").read_text().splitlines()]
    assert (entry["who"], entry["via"], entry["host"]) == (alice.name, "credential", "node1")
    # carol, an administrator, may: from node2, vouched for by node2's agent
    env["WULF_AGENT_SOCKET"] = str(secured.root / "agent-node2.sock")
    p = test_network["node2"].run(users.carol.argv("jobmgr", "drain", "node2"), env=env, capture_output=True,
                                  text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    secured.wait_node("node2", "drain")


def test_plain_text_and_keyless_agents_do_not_join(secured: Cluster, test_network: TestNetwork,
                                                   shared_tmp: Path) -> None:
    from wulf.auth.key import write_key

    plain = secured.https.replace("https://", "http://")  # type: ignore[attr-defined]
    bare = shared_tmp / "bare.toml"
    bare.write_text(f'[auth]\nkey_file = "{secured.key_path}"\n')
    wrong = shared_tmp / "wrong.key"
    write_key(wrong)
    secured.agent("node3", server=plain, popen=test_network["node3"].popen, wait=False,
                  env_extra={"WULF_CONFIG": str(bare)})
    log = shared_tmp / "agent-node3.log"
    wait_until("node3's agent to fail to connect", lambda: log.exists() and "no connection to" in log.read_text())
    secured.agents["node3"].kill()
    secured.agent("node3", server=secured.https, popen=test_network["node3"].popen, wait=False,  # type: ignore[attr-defined]
                  extra=["--key", str(wrong)])
    wait_until("the server to refuse node3", lambda: "refused this agent" in log.read_text())
    assert {n["name"] for n in secured.status()["nodes"]} == {"node1", "node2"}
