"""The daemons log where [log] says, in its format: real `wulf server` and `wulf agent` processes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from wulfproc import BIN, running_cluster, wait_until


def _lines(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_daemons_log_json_lines_to_their_files(tmp_path: Path) -> None:
    logdir = tmp_path / "logs"
    config = f'[log]\nformat = "json"\nfile = "{logdir}/{{daemon}}.log"\nmax_mb = 1.0\nkeep = 2\n'
    with running_cluster(tmp_path, config=config) as c:
        c.agent("n1")
        c.run("qr", "-c", "true")
        server = wait_until("the server's log", lambda: _lines(logdir / "server.log"))
        agent = wait_until("the agent's log", lambda: _lines(logdir / "agent.log"))
        assert {line["daemon"] for line in server} == {"server"}
        assert {line["daemon"] for line in agent} == {"agent"}
        assert all({"time", "level", "logger", "message"} <= line.keys() for line in server + agent)
        # nothing went around the handler to the daemons' stdout and stderr
        assert (tmp_path / "server.log").read_text().strip() == ""


def test_wulf_up_gives_each_daemon_its_log_file(tmp_path: Path) -> None:
    """`wulf up --config FILE`: its daemons read FILE too, and each logs to its own file in the state dir
    (never both to one [log] file, which each would rotate)."""
    state = tmp_path / "up"
    config = tmp_path / "wulf.toml"
    config.write_text(f'[auth]\nagent_socket = ""\n[log]\nformat = "json"\nfile = "{tmp_path}/shared.log"\n')
    env = {**os.environ, "WULF_IGNORE_PIDS": str(os.getpid())}
    for name in ("WULF_SERVER", "WULF_CONFIG"):
        env.pop(name, None)
    wulf = str(BIN / "wulf")
    p = subprocess.run([wulf, "--config", str(config), "up", "-d", "--state", str(state), "--name", "mine"],
                       env=env, capture_output=True, text=True, timeout=60)
    try:
        assert p.returncode == 0, p.stdout + p.stderr
        assert {line["daemon"] for line in _lines(state / "server.log")} == {"server"}
        wait_until("the agent's log", lambda: _lines(state / "agent.log"))
        assert {line["daemon"] for line in _lines(state / "agent.log")} == {"agent"}
        assert not (tmp_path / "shared.log").exists()
    finally:
        subprocess.run([wulf, "down", "--state", str(state)], env=env, capture_output=True, timeout=60)
