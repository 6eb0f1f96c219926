"""README's "Running it for real", followed step by step on namespaced test hosts: the server on `master`,
agents on `n1` and `n2`, commands only on `desk`. Each host has its own /etc/wulf, units, /run/wulf and
/var/lib/wulf (tmpfs mounted in its mount namespace); files go from host to host as an administrator
would copy them. The daemons are started with the ExecStart and Environment of the units `wulf install`
wrote (systemd itself does not run in a test host)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hosts import Host, HostPopen, TestNetwork

from users import Users
from wulfproc import BIN, wait_until

PRIVATE = ("/etc/wulf", "/etc/systemd/system", "/etc/tmpfiles.d", "/run/wulf", "/var/lib/wulf")


def sh(host: Host, script: str, check: bool = True, env: dict[str, str] | None = None) -> str:
    p = host.run(["/bin/sh", "-c", script], capture_output=True, text=True, timeout=60,
                 env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", **(env or {})})
    if check:
        assert p.returncode == 0, (host.name, script, p.returncode, p.stdout, p.stderr)
    return str(p.stdout)


def copy(src: Host, dst: Host, path: str, mode: str = "644") -> None:
    """What `scp -p src:path dst:path` does here."""
    data = src.run(["cat", path], capture_output=True, timeout=30, check=True).stdout
    dst.run(["/bin/sh", "-c", f"umask 077; cat > {path} && chmod {mode} {path}"], input=data, timeout=30, check=True)


def start_unit(host: Host, unit: str, log: Path) -> HostPopen:
    """Start a unit's ExecStart with its Environment, as systemd would (the unit as `wulf install` wrote it)."""
    text = sh(host, f"cat /etc/systemd/system/{unit}")
    env = dict(os.environ)
    argv: list[str] = []
    for line in text.splitlines():
        if line.startswith("Environment="):
            k, v = line.removeprefix("Environment=").split("=", 1)
            env[k] = v
        elif line.startswith("ExecStart="):
            argv = shlex.split(line.removeprefix("ExecStart="))
    assert argv, text
    with log.open("w") as out:
        return host.popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)


@pytest.fixture
def hosts(make_test_network: object) -> Iterator[TestNetwork]:
    net = make_test_network(["master", "n1", "n2", "desk"])  # type: ignore[operator]
    for d in PRIVATE:
        os.makedirs(d, exist_ok=True)  # (mount points; what the machine has there stays hidden from the hosts)
    for host in net:
        sh(host, " && ".join(f"mount -t tmpfs -o mode=0755 wulf-{host.name} {d}" for d in PRIVATE))
    yield net


def test_running_it_for_real(hosts: TestNetwork, users: Users, shared_tmp: Path) -> None:
    master, n1, n2, desk = (hosts[n] for n in ("master", "n1", "n2", "desk"))
    daemons: list[HostPopen] = []
    try:
        # 1. the master
        sh(master, "wulf install server --server https://master:7878")
        out = sh(master, "wulf init --host master")
        assert "TLS added" in out
        assert "[tls]" in sh(master, "cat /etc/wulf/wulf.toml")
        daemons.append(start_unit(master, "wulf-server.service", shared_tmp / "server.log"))
        env = {"WULF_CONFIG": "/etc/wulf/wulf.toml"}
        wait_until("the server to answer", lambda: master.run(
            [str(BIN / "jstat")], env={**os.environ, **env}, capture_output=True, timeout=30).returncode == 0,
            timeout=30)
        # 2. the nodes
        for node in (n1, n2):
            copy(master, node, "/etc/wulf/wulf.toml")
            copy(master, node, "/etc/wulf/ca.pem")
            copy(master, node, "/etc/wulf/cluster.key", "600")
            sh(node, "wulf install node --server https://master:7878")
            daemons.append(start_unit(node, "wulf-agent.service", shared_tmp / f"agent-{node.name}.log"))
        wait_until("both nodes up", lambda: {n["name"]: n["state"] for n in json.loads(
            sh(master, "jstat --nodes --json", env=env))["nodes"]} == {"n1": "up", "n2": "up"}, timeout=30)
        doctor = sh(n1, "wulf doctor", check=False, env=env)
        assert "answers (TLS, certificate trusted" in doctor and "the agent answers" in doctor, doctor
        # 3. a user on a node submits (its agent vouches for them)
        alice = users.alice
        work = shared_tmp / "work"
        work.mkdir()
        work.chmod(0o1777)
        p = n1.run(alice.argv("qr", "--json", "-c", "hostname; id -un"), capture_output=True, text=True,
                   env={**os.environ, **env}, cwd=work, timeout=60)
        assert p.returncode == 0, p.stderr
        [job] = json.loads(p.stdout)["jobs"]
        n1.run(alice.argv("qwait", str(job)), env={**os.environ, **env}, timeout=60)
        ended = json.loads(sh(master, "jstat --json -a", env=env))["jobs"]
        [mine] = [j for j in ended if j["id"] == job]
        assert (mine["state"], mine["reason"]) == ("done", "")
        assert (work / f"wulf-{job}.out").read_text() == f"{mine['node']}\n{alice.name}\n"
        # 4. the desk: commands only, with an API token alice made on a node
        copy(master, desk, "/etc/wulf/wulf.toml")
        copy(master, desk, "/etc/wulf/ca.pem")
        sh(desk, "wulf install client --server https://master:7878")
        token = n1.run(alice.argv("wulf", "token", "create", "--name", "desk", "--json"), capture_output=True,
                       text=True, env={**os.environ, **env}, timeout=60)
        assert token.returncode == 0, token.stderr
        secret = json.loads(token.stdout)["token"]
        got = desk.run(alice.argv("jstat", "--json", "-a"), capture_output=True, text=True, timeout=60,
                       env={**os.environ, **env, "WULF_TOKEN": secret})
        assert got.returncode == 0, got.stderr
        done = {j["id"]: j for j in json.loads(got.stdout)["jobs"]}
        assert done[job]["state"] == "done" and done[job]["user"] == alice.name
        # 5. the administrator: a command on every node
        ran = sh(master, "wulf runall -- hostname", env=env)
        assert sorted(ran.splitlines()) == ["n1: n1", "n2: n2"]
    finally:
        for d in daemons:
            d.terminate()
        for d in daemons:
            try:
                d.wait(timeout=10)
            except Exception:
                d.kill()
