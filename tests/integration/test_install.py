"""wulf install / uninstall: the files of each role, units that systemd accepts, and an uninstall that
removes what install wrote and nothing someone changed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from wulf.config import load_config

WULF = str(Path(sys.executable).parent / "wulf")


def _wulf(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([WULF, *args], capture_output=True, text=True, timeout=60)


def test_install_writes_units_systemd_accepts_and_uninstall_removes_them(tmp_path: Path) -> None:
    root = tmp_path / "root"
    p = _wulf("install", "server", "--root", str(root), "--server", "https://master.example.org:7878")
    assert p.returncode == 0, p.stderr
    assert "wulf init" in p.stdout and "cluster.key" in p.stdout  # what to do next, what to copy
    p = _wulf("install", "node", "--root", str(root), "--server", "https://master.example.org:7878")
    assert p.returncode == 0 and "kept /etc/wulf/wulf.toml" in p.stdout, p.stdout + p.stderr
    units = root / "etc/systemd/system"
    assert sorted(os.listdir(units)) == ["wulf-agent.service", "wulf-purge-scratch.service",
                                         "wulf-purge-scratch.timer", "wulf-server.service"]
    config = load_config(root / "etc/wulf/wulf.toml")  # the skeleton is a valid configuration
    assert config.client.server == "https://master.example.org:7878" and config.server.state_dir == "/var/lib/wulf"
    assert "d /run/wulf 0755 root root -" in (root / "etc/tmpfiles.d/wulf.conf").read_text()
    agent = (units / "wulf-agent.service").read_text()
    assert "KillMode=process" in agent and "LimitNOFILE=" in agent and "Restart=on-failure" in agent
    assert "PrivateTmp" not in agent  # jobs share /tmp with their users
    server = (units / "wulf-server.service").read_text()
    assert "ProtectSystem=strict" in server and "PrivateTmp=true" in server
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing (.ci/run installs systemd)")
    p = subprocess.run(["systemd-analyze", "verify", "--man=no", *sorted(str(u) for u in units.iterdir())],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "wulf" not in p.stderr, p.stderr

    (root / "etc/wulf/wulf.toml").write_text((root / "etc/wulf/wulf.toml").read_text() + "\n# site changes\n")
    p = _wulf("uninstall", "--root", str(root))
    assert p.returncode == 0, p.stderr
    assert "kept /etc/wulf/wulf.toml (changed" in p.stdout
    assert not list(units.iterdir()) and not (root / "etc/tmpfiles.d/wulf.conf").exists()
    assert (root / "etc/wulf/wulf.toml").exists() and not (root / "var/lib/wulf/install.json").exists()


def test_install_needs_a_server_url_for_a_node(tmp_path: Path) -> None:
    p = _wulf("install", "node", "--root", str(tmp_path))
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "--server" in p.stderr
    assert not any(tmp_path.iterdir())


def test_a_client_gets_a_configuration_only(tmp_path: Path) -> None:
    p = _wulf("install", "client", "--root", str(tmp_path), "--server", "https://m:7878", "--dry-run")
    assert p.returncode == 0 and "would write /etc/wulf/wulf.toml" in p.stdout and not any(tmp_path.iterdir())
    assert _wulf("install", "client", "--root", str(tmp_path), "--server", "https://m:7878").returncode == 0
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == [
        "etc/wulf/wulf.toml", "var/lib/wulf/install.json"]
