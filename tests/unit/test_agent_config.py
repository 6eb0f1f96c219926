"""[agent] kill_grace and cgroups: read, checked, documented, and given to the agent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from wulf.agent.main import Agent
from wulf.auth.key import ClusterKey
from wulf.config import AgentConfig, Config, parse_config
from wulf.errors import ConfigError

EXAMPLE = Path(__file__).parents[2] / "examples" / "wulf.toml"


def test_defaults() -> None:
    assert AgentConfig().kill_grace == 10.0 and AgentConfig().cgroups == "auto"


def test_values_are_read() -> None:
    agent = parse_config('[agent]\nkill_grace = 2\ncgroups = "off"\n').agent
    assert agent.kill_grace == 2.0 and agent.cgroups == "off"
    assert parse_config("[agent]\nkill_grace = 0\n").agent.kill_grace == 0.0  # KILL right after TERM


@pytest.mark.parametrize(("text", "message"), [
    ("kill_grace = -1", "wulf.toml: agent.kill_grace must be a number of seconds >= 0, not -1.0"),
    ('kill_grace = "10"', "wulf.toml: agent.kill_grace must be float, not str"),
    ('cgroups = "on"', 'wulf.toml: agent.cgroups must be "auto" or "off", not "on"'),
    ("cgroups = false", "wulf.toml: agent.cgroups must be str, not bool"),
])
def test_bad_values_are_one_line_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config(f"[agent]\n{text}\n", "wulf.toml")
    assert str(e.value) == message and "\n" not in str(e.value)


def test_the_example_documents_them() -> None:
    lines = EXAMPLE.read_text().splitlines()
    for key in ("kill_grace = 10.0", 'cgroups = "auto"'):
        [line] = [x for x in lines if x.startswith(key)]
        assert "#" in line, f"{key} has no comment in examples/wulf.toml"


def test_wulf_agent_with_a_bad_value_says_so_in_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "wulf.toml"
    cfg.write_text('[agent]\ncgroups = "maybe"\n')
    wulf = Path(sys.executable).parent / "wulf"
    bad = subprocess.run([str(wulf), "agent", "--server", f"unix:{tmp_path}/none.sock"], capture_output=True,
                         text=True, env={**os.environ, "WULF_CONFIG": str(cfg)}, timeout=30)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert 'agent.cgroups must be "auto" or "off", not "maybe"' in bad.stderr


def _agent(tmp_path: Path, text: str) -> Agent:
    config = parse_config(text + f'state_dir = "{tmp_path}/state"\nruntime_dir = "{tmp_path}/run"\n')
    return Agent(config, f"unix:{tmp_path}/none.sock", "n1", key=ClusterKey(b"k" * 32), vouch_socket="")


def test_the_agent_takes_them_from_the_config(tmp_path: Path) -> None:
    agent = _agent(tmp_path, '[agent]\nkill_grace = 2.5\ncgroups = "off"\n')
    assert agent.enforcer.grace == 2.5 and agent.use_cgroups is False
    agent = _agent(tmp_path, "[agent]\n")
    assert agent.enforcer.grace == 10.0 and agent.use_cgroups is True
    assert Config().agent == AgentConfig()
    config = parse_config('[agent]\ncgroups = "off"\n' + f'runtime_dir = "{tmp_path}/run"\n')
    assert Agent(config, "unix:x", "n1", cgroups=True, key=ClusterKey(b"k" * 32)).use_cgroups  # said outright
