"""Bad input: one clear line on stderr, a meaningful exit code, and nothing lost or half-done."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from wulfproc import BIN, Cluster


def _one_line_error(p: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert "Traceback" not in p.stderr
    for w in words:
        assert w in lines[0], lines[0]


def _job_count(cluster: Cluster) -> int:
    return len(cluster.status()["jobs"])


def test_unknown_job_id(cluster: Cluster) -> None:
    _one_line_error(cluster.run("qcancel", "99999", check=False), 4, "no job 99999")
    _one_line_error(cluster.run("jkill", "99999", check=False), 4, "99999")
    _one_line_error(cluster.run("qwait", "99999", check=False), 4, "99999")
    _one_line_error(cluster.run("qcancel", "abc", check=False), 2, "abc")


def test_cancel_with_one_unknown_id_changes_nothing(cluster: Cluster) -> None:
    [jid] = cluster.submit("--cpu", "64", "-c", "true")  # waits: no node has 64 cpus
    _one_line_error(cluster.run("qcancel", str(jid), "99999", check=False), 4)
    assert cluster.job(jid)["state"] == "queued"
    cluster.run("qcancel", str(jid))


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["-s", "/nonexistent/jobs.sh"], ["no such script file", "/nonexistent/jobs.sh"]),
        (["--mem", "lots", "-c", "true"], ["--mem", "lots", "not a size"]),
        (["--mem", "0", "-c", "true"], ["--mem"]),
        (["--cpu", "-1", "-c", "true"], ["--cpu"]),
        (["--bogus", "-c", "true"], ["--bogus"]),
        (["-c", "  "], ["empty"]),
    ],
)
def test_qr_rejects_bad_input(cluster: Cluster, args: list[str], words: list[str]) -> None:
    before = _job_count(cluster)
    _one_line_error(cluster.run("qr", *args, check=False), 2, *words)
    assert _job_count(cluster) == before


def test_empty_script_file(cluster: Cluster, tmp_path: Path) -> None:
    empty = tmp_path / "empty.sh"
    empty.write_text("\n#NEXTSCRIPT\n   \n")
    before = _job_count(cluster)
    _one_line_error(cluster.run("qr", "-s", str(empty), check=False), 2, "empty")
    assert _job_count(cluster) == before


def test_one_bad_file_queues_nothing(cluster: Cluster, tmp_path: Path) -> None:
    good = tmp_path / "good.sh"
    good.write_text("true\n")
    before = _job_count(cluster)
    p = cluster.run("qr", "-s", str(good), "-s", str(tmp_path / "missing.sh"), check=False)
    _one_line_error(p, 2, "missing.sh")
    assert _job_count(cluster) == before


def test_server_not_reachable(tmp_path: Path) -> None:
    env = dict(os.environ, WULF_SERVER=f"unix:{tmp_path}/nothing.sock")
    p = subprocess.run([str(BIN / "jstat")], capture_output=True, text=True, env=env)
    _one_line_error(p, 3, f"unix:{tmp_path}/nothing.sock", "wulf up")
    env["WULF_SERVER"] = "http://127.0.0.1:9"
    p = subprocess.run([str(BIN / "qr"), "-c", "true"], capture_output=True, text=True, env=env)
    _one_line_error(p, 3, "127.0.0.1:9", "wulf server")


def test_every_command_has_help() -> None:
    for cmd in ("wulf", "qr", "jr", "jstat", "qwait", "qcancel", "jkill", "jnice", "jmod", "jobmgr"):
        p = subprocess.run([str(BIN / cmd), "--help"], capture_output=True, text=True)
        assert p.returncode == 0, (cmd, p.stderr)
        assert "usage:" in p.stdout


def test_bad_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "wulf.toml"
    cfg.write_text("[scheduler]\ndefault_cpu = 'many'\n")
    env = dict(os.environ, WULF_CONFIG=str(cfg))
    p = subprocess.run([str(BIN / "wulf"), "config"], capture_output=True, text=True, env=env)
    _one_line_error(p, 2, "scheduler.default_cpu")
