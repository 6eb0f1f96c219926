"""wulf doctor on a cluster set up right (TLS, key, scratch, agent: every check ok) and on broken ones."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wulf.cli.doctor import FAIL, OK, WARN, check_clock
from wulf.config import Config, parse_config
from wulfproc import BIN, Cluster, free_port, running_cluster


def _init(etc: Path, port: int, state: Path) -> None:
    p = subprocess.run([str(BIN / "wulf"), "init", "--dir", str(etc), "--host", "127.0.0.1", "--port", str(port),
                        "--state", str(state)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr


@pytest.fixture
def good(shared_tmp: Path) -> Iterator[tuple[Cluster, dict[str, str]]]:
    """A TLS cluster made by `wulf init`, an agent with its socket, a sticky scratch directory."""
    etc = shared_tmp / "etc"
    port = free_port()
    _init(etc, port, shared_tmp / "server")
    scratch = shared_tmp / "scratch"
    scratch.mkdir(mode=0o1777)
    scratch.chmod(0o1777)
    sock = shared_tmp / "agent-n1.sock"
    config = (etc / "wulf.toml").read_text() + f'\n[agent]\nscratch = "{scratch}"\n'
    with running_cluster(shared_tmp, listen=f"127.0.0.1:{port}", config=config) as c:
        c.key_file = etc / "cluster.key"
        c.agent("n1", server=f"https://127.0.0.1:{port}")
        yield c, {**c.env, "WULF_SERVER": f"https://127.0.0.1:{port}", "WULF_AGENT_SOCKET": str(sock)}


def _doctor(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any], str]:
    p = subprocess.run([str(BIN / "wulf"), *args, "doctor", "--json"], env=env, capture_output=True, text=True,
                       timeout=60)
    assert "Traceback" not in p.stderr, p.stderr
    return p.returncode, {c["name"]: c for c in json.loads(p.stdout)["checks"]}, p.stderr


def test_doctor_on_a_good_setup(good: tuple[Cluster, dict[str, str]]) -> None:
    c, env = good
    code, checks, _ = _doctor(env)
    assert list(checks) == ["config", "server", "key", "clock", "cgroups", "scratch", "agent"]
    assert {n: ch["status"] for n, ch in checks.items() if n != "cgroups"} == dict.fromkeys(
        ["config", "server", "key", "clock", "scratch", "agent"], OK), checks
    assert checks["cgroups"]["status"] in (OK, WARN)
    assert "certificate trusted" in checks["server"]["message"] and "knows you as root" in checks["server"]["message"]
    assert code == 0
    p = subprocess.run([str(BIN / "wulf"), "doctor"], env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and len(p.stdout.splitlines()) == 7 and p.stdout.startswith("ok ")


def test_doctor_on_a_broken_setup(good: tuple[Cluster, dict[str, str]], shared_tmp: Path) -> None:
    c, env = good
    other = shared_tmp / "other"  # a CA that did not sign the server's certificate
    _init(other, 1, shared_tmp / "x")
    key = shared_tmp / "leaked.key"
    key.write_bytes((c.key_file).read_bytes())
    key.chmod(0o644)
    plain = shared_tmp / "plain"
    plain.mkdir(mode=0o777)
    plain.chmod(0o777)
    config = shared_tmp / "broken.toml"
    config.write_text(f'[tls]\nca = "{other}/ca.pem"\n[auth]\nkey_file = "{key}"\nagent_socket = "{shared_tmp}/none.sock"\n'
                      f'[agent]\nscratch = "{plain}"\n')
    env = {**env, "WULF_CONFIG": str(config)}
    env.pop("WULF_AGENT_SOCKET")
    code, checks, _ = _doctor(env)
    assert code == 1
    status = {n: ch["status"] for n, ch in checks.items()}
    assert status == {"config": OK, "server": FAIL, "key": FAIL, "clock": "skip", "cgroups": status["cgroups"],
                      "scratch": FAIL, "agent": FAIL}, checks
    assert "certificate does not verify" in checks["server"]["message"]
    assert "chmod 600" in checks["key"]["message"] and "chmod +t" in checks["scratch"]["message"]
    # nobody there at all
    code, checks, _ = _doctor({**env, "WULF_SERVER": f"https://127.0.0.1:{free_port()}",
                               "WULF_CONFIG": str(shared_tmp / "etc" / "wulf.toml")})
    assert code == 1 and checks["server"]["status"] == FAIL and "cannot reach" in checks["server"]["message"]


def test_doctor_on_a_config_that_does_not_parse(tmp_path: Path) -> None:
    bad = tmp_path / "wulf.toml"
    bad.write_text("[agent]\nscratch = 5\n")
    env = {k: v for k, v in os.environ.items() if k != "WULF_CONFIG"}
    code, checks, _ = _doctor(env, "--config", str(bad))
    assert code == 1 and list(checks) == ["config"] and checks["config"]["status"] == FAIL
    assert "agent.scratch must be str" in checks["config"]["message"]


@pytest.mark.parametrize("skew, status", [(0, OK), (20, OK), (-40, WARN), (61, FAIL), (-3600, FAIL)])
def test_clock_check(skew: float, status: str) -> None:
    from email.utils import formatdate

    config: Config = parse_config("[auth]\nttl = 60\n")
    now = 1_700_000_000.0
    check = check_clock(config, {"date": formatdate(now + skew, usegmt=True)}, now)
    assert check.status == status, check
