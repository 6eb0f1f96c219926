"""TLS between hosts, end to end: `wulf init` makes the key, CA and server certificate; the server
speaks only TLS on TCP; agents and commands check it with the CA; plain text gets nowhere."""

from __future__ import annotations

import http.client
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from users import Users
from wulfproc import BIN, Cluster, free_port, running_cluster, wait_until


@pytest.fixture
def tls(shared_tmp: Path, users: Users) -> Iterator[Cluster]:
    etc = shared_tmp / "etc"
    port = free_port()
    p = subprocess.run([str(BIN / "wulf"), "init", "--dir", str(etc), "--host", "127.0.0.1", "--port", str(port),
                        "--state", str(shared_tmp / "server")], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "copy it to every node" in p.stdout and f"scp -p 127.0.0.1:{etc}/cluster.key {etc}/" in p.stdout
    with running_cluster(shared_tmp, listen=f"127.0.0.1:{port}", config=(etc / "wulf.toml").read_text()) as c:
        c.key_file = etc / "cluster.key"
        c.https = f"https://127.0.0.1:{port}"  # type: ignore[attr-defined]
        c.port = port  # type: ignore[attr-defined]
        c.etc = etc  # type: ignore[attr-defined]
        c.agent("n1", server=c.https)  # type: ignore[attr-defined]
        yield c


def test_agents_and_commands_speak_tls_and_check_the_server(tls: Cluster, users: Users) -> None:
    env = {"WULF_SERVER": tls.https, "WULF_AGENT_SOCKET": str(tls.root / "agent-n1.sock")}  # type: ignore[attr-defined]
    p = tls.run_as(users.alice, "qr", "--json", "-c", "true", env=env)
    [jid] = json.loads(p.stdout)["jobs"]
    tls.run_as(users.alice, "qwait", str(jid), env=env)
    assert tls.job(jid)["state"] == "done" and tls.job(jid)["user"] == users.alice.name
    # the server's key and the cluster key are root's alone; the CA is everyone's
    assert {f.name: oct(f.stat().st_mode & 0o777) for f in tls.etc.iterdir()} == {  # type: ignore[attr-defined]
        "cluster.key": "0o600", "ca.pem": "0o644", "ca.key": "0o600", "server.pem": "0o644", "server.key": "0o600",
        "wulf.toml": "0o644"}


def test_plain_text_gets_nowhere(tls: Cluster, shared_tmp: Path, users: Users) -> None:
    # a plain HTTP request to the TLS port gets no answer
    conn = http.client.HTTPConnection("127.0.0.1", tls.port, timeout=5)  # type: ignore[attr-defined]
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError, http.client.BadStatusLine)):
        conn.request("GET", "/healthz")
        conn.getresponse()
    conn.close()
    plain = f"http://127.0.0.1:{tls.port}"  # type: ignore[attr-defined]
    # with the cluster's configuration, an agent and the commands refuse to speak plain text at all
    p = tls.run("wulf", "agent", "--server", plain, "--name", "plain", "--socket", "", check=False)
    assert p.returncode == 2 and "speaks TLS" in p.stderr
    p = tls.run("jstat", check=False, env_extra={"WULF_SERVER": plain})
    assert p.returncode == 2 and "use https://" in p.stderr
    # without it, they do not get in
    bare = shared_tmp / "bare.toml"
    bare.write_text(f'[auth]\nkey_file = "{tls.key_path}"\n')
    d = tls.agent("plain", server=plain, wait=False, env_extra={"WULF_CONFIG": str(bare)})
    p = tls.run("jstat", check=False, env_extra={"WULF_SERVER": plain, "WULF_CONFIG": str(bare)})
    assert p.returncode == 3 and "does it speak TLS only? then use https://" in p.stderr
    wait_until("the plain agent to fail to connect", lambda: "no connection to" in
               (shared_tmp / "agent-plain.log").read_text())
    assert "plain" not in {n["name"] for n in tls.status()["nodes"]}
    d.kill()


def test_a_server_the_ca_did_not_sign_is_refused(tls: Cluster, shared_tmp: Path) -> None:
    other = shared_tmp / "other"
    subprocess.run([str(BIN / "wulf"), "init", "--dir", str(other), "--host", "127.0.0.1"], check=True,
                   capture_output=True, timeout=60)
    cfg = shared_tmp / "other.toml"
    cfg.write_text(f'[tls]\nca = "{other / "ca.pem"}"\n')
    p = tls.run("jstat", check=False, env_extra={"WULF_SERVER": tls.https, "WULF_CONFIG": str(cfg)})  # type: ignore[attr-defined]
    assert p.returncode == 1 and "is not who it should be: its certificate does not verify" in p.stderr
