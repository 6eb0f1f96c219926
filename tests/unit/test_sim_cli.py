"""``wulf sim``: the command runs, prints a table or JSON, plots, and turns bad input into one line."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from wulf.cli.wulf import _main
from wulf.errors import UsageError
from wulf.sim import plot

SMALL = ["sim", "--nodes", "4", "--jobs", "120", "--seed", "3"]
EXAMPLE = str(Path(__file__).parents[2] / "examples" / "sim-workload.jsonl")
needs_matplotlib = pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                                      reason="matplotlib is not installed (pip install 'wulf[sim]')")


def test_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert _main([*SMALL, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["workload"]["nodes"] == 4 and out["workload"]["jobs"] == 120
    [run] = out["runs"]
    assert run["policy"] == "default" and run["finished"] == 120
    for key in ("makespan", "bound", "utilisation", "wait", "jain", "users", "passes", "wall_seconds"):
        assert key in run
    assert set(run["wait"]) == {"mean", "median", "p95", "max"}


def test_compare_runs_both_policies_on_the_same_workload(capsys: pytest.CaptureFixture[str]) -> None:
    assert _main([*SMALL, "--scenario", "outside", "--compare", "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert [r["policy"] for r in runs] == ["default", "allocation-only"]
    assert runs[0]["bound"] == runs[1]["bound"]


def test_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert _main([*SMALL, "--policy", "allocation-only", "--users", "2"]) == 0
    out = capsys.readouterr().out
    assert "allocation-only" in out and "makespan / bound" in out and "alice" in out


def test_a_workload_file_and_a_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "wulf.toml"
    config.write_text('[scheduler]\nuse_observed = false\n[shares]\nusers = { alice = 2.0 }\n')
    assert _main(["sim", "--workload", EXAMPLE, "--config", str(config), "--json"]) == 0
    [run] = json.loads(capsys.readouterr().out)["runs"]
    assert run["policy"] == "allocation-only"  # from the config's use_observed
    assert run["rejected"] == 1  # the 32-cpu job


def test_save_workload(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    saved = tmp_path / "w.jsonl"
    assert _main([*SMALL, "--json", "--save-workload", str(saved)]) == 0
    first = json.loads(capsys.readouterr().out)["runs"][0]
    assert _main(["sim", "--workload", str(saved), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)["runs"][0]
    assert (again["makespan"], again["wait"]) == (first["makespan"], first["wait"])


@pytest.mark.parametrize(("args", "problem"), [
    (["--outside-load", "2"], "--outside-load"),
    (["--nodes", "0"], "--nodes must be at least 1"),
    (["--plot", "out.pdf"], ".png or .svg"),
    (["--workload", EXAMPLE, "--jobs", "5"], "--jobs does not go with --workload"),
    (["--workload", EXAMPLE, "--nodes", "5"], "--nodes does not go with a workload file"),
    (["--programs", "0"], "--programs must be at least 1"),
    (["--workload", EXAMPLE, "--programs", "3"], "--programs does not go with --workload"),
    (["--scenario", "chaos"], "invalid choice"),
    (["--config", "/nonexistent/wulf.toml"], "wulf.toml"),
])
def test_bad_input_is_a_usage_error(args: list[str], problem: str) -> None:
    with pytest.raises(UsageError) as e:
        _main(["sim", *args])
    assert problem in e.value.message and "\n" not in e.value.message


def test_a_bad_file_gives_one_line_and_exit_code_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"arrival": 0, "user": "a", "duration": 10}\n{"arrival": 0, "user": "a"}\n')
    p = subprocess.run([sys.executable, "-m", "wulf.cli.wulf", "sim", "--workload", str(bad)],
                       capture_output=True, text=True)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.count("\n") == 1 and "line 2: 'duration' is missing" in p.stderr


def test_plot_without_matplotlib_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plot.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UsageError, match="needs matplotlib, which is not installed"):
        _main([*SMALL, "--plot", "out.png"])


@needs_matplotlib
@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_plot_is_written(tmp_path: Path, suffix: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / f"sim{suffix}"
    assert _main([*SMALL, "--compare", "--outside-load", "0.5", "--json", "--plot", str(out)]) == 0
    json.loads(capsys.readouterr().out)  # the plot does not spoil the JSON
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG") if suffix == ".png" else b"<svg" in data[:1000]
