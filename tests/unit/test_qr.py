"""Parsing what users type: scripts, sizes, signals, config."""

from __future__ import annotations

from pathlib import Path

import pytest

from wulf.cli.common import format_table, parse_cpu, parse_mem
from wulf.cli.jkill import parse_signal
from wulf.cli.qr import split_scripts
from wulf.config import parse_config
from wulf.errors import ConfigError, UsageError


def test_split_scripts() -> None:
    text = "#!/bin/bash\necho a\n#NEXTSCRIPT\necho b\n  #NEXTSCRIPT  \n\n#NEXTSCRIPT\n#!/bin/zsh\necho c\n"
    assert split_scripts(text) == ["#!/bin/bash\necho a\n", "#!/bin/bash\necho b\n", "#!/bin/zsh\necho c\n"]
    assert split_scripts("echo x") == ["echo x"]
    assert split_scripts("\n#NEXTSCRIPT\n") == []


@pytest.mark.parametrize(("text", "mb"), [("512", 512), ("512M", 512), ("2G", 2048), ("1.5gb", 1536),
                                          ("1024k", 1), ("1T", 1024 * 1024), (" 64 MiB ", 64)])
def test_parse_mem(text: str, mb: float) -> None:
    assert parse_mem(text) == mb


@pytest.mark.parametrize("text", ["", "lots", "-5", "0", "5X", "1e9"])
def test_parse_mem_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_mem(text)


def test_parse_cpu() -> None:
    assert parse_cpu("0.5") == 0.5
    for bad in ("0", "-1", "nan", "inf", "two"):
        with pytest.raises(UsageError):
            parse_cpu(bad)


def test_parse_signal() -> None:
    assert parse_signal("KILL") == 9 and parse_signal("sigterm") == 15 and parse_signal("2") == 2
    with pytest.raises(UsageError):
        parse_signal("NOPE")


def test_table_fits_width() -> None:
    out = format_table(["ID", "COMMAND"], [["1", "x" * 500]], width=40)
    assert all(len(line) <= 40 for line in out.splitlines())


def test_config_defaults_and_errors() -> None:
    cfg = parse_config("[scheduler]\ndefault_cpu = 2\n[agent]\ninterval = 1.5\n")
    assert cfg.scheduler.default_cpu == 2.0 and cfg.agent.interval == 1.5 and cfg.server.history > 0
    with pytest.raises(ConfigError, match="unknown key"):
        parse_config("[scheduler]\nbogus = 1\n")
    with pytest.raises(ConfigError, match="unknown section"):
        parse_config("[nope]\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        parse_config("[scheduler\n")


def test_select_env_like_slurms_export() -> None:
    from wulf.cli.qr import select_env

    env = {"PATH": "/bin", "HOME": "/home/a", "SECRET": "x"}
    assert select_env("ALL", env) == env
    assert select_env("all", env) == env
    assert select_env("NONE", env) == {}
    assert select_env("PATH,HOME", env) == {"PATH": "/bin", "HOME": "/home/a"}
    assert select_env("PATH,MISSING", env) == {"PATH": "/bin"}
    assert select_env("PATH, FOO=a=b ,EMPTY=", env) == {"PATH": "/bin", "FOO": "a=b", "EMPTY": ""}
    assert select_env("ALL,SECRET=,X=1", env) == {**env, "SECRET": "", "X": "1"}
    assert select_env("NONE,X=1", env) == {"X": "1"}
    for bad in ("", "PATH,", ",", "1X", "A-B=1", "ALL,,X", "É=1"):
        with pytest.raises(UsageError, match="--env"):
            select_env(bad, env)


def test_qr_nice() -> None:
    from wulf.cli.qr import _parser, build_specs

    def specs(*argv: str) -> list[dict[str, object]]:
        return build_specs(_parser().parse_args([*argv, "-c", "true"]), "/tmp")

    assert specs("--nice", "7")[0]["nice"] == 7 and "nice" not in specs()[0]
    for bad in ("x", "1.5", "20", "-21"):
        with pytest.raises(UsageError, match="--nice"):
            specs("--nice", bad)


def test_qr_tasks_and_nodes() -> None:
    from wulf.cli.qr import _parser, build_specs

    def spec(*argv: str) -> dict[str, object]:
        return build_specs(_parser().parse_args([*argv, "-c", "true"]), "/tmp")[0]

    got = spec("--nodes", "3", "--ntasks-per-node", "2", "--cpu", "0.5")
    assert (got["nodes"], got["tasks_per_node"], got["cpu"]) == (3, 2, 0.5) and "ntasks" not in got
    assert spec("--ntasks", "6")["ntasks"] == 6
    with pytest.raises(UsageError, match="--ntasks 5 does not agree"):
        spec("--ntasks", "5", "--nodes", "3", "--ntasks-per-node", "2")
    with pytest.raises(UsageError, match="--nodes: 'x' is not a whole number"):
        spec("--nodes", "x")


def test_python_api_tasks_and_nodes() -> None:
    from wulf.api.spec import Options, common

    assert {k: v for k, v in common(Options(nodes=3, tasks_per_node=2, cwd="/")).items()
            if k in ("ntasks", "nodes", "tasks_per_node")} == {"nodes": 3, "tasks_per_node": 2}
    with pytest.raises(UsageError, match="does not agree"):
        common(Options(ntasks=5, nodes=3, tasks_per_node=2, cwd="/"))
    with pytest.raises(UsageError, match="nodes: '3' is not a whole number"):
        common(Options(nodes="3", cwd="/"))  # type: ignore[arg-type]


def test_qr_requeue_and_its_sbatch_and_api_forms(tmp_path: Path) -> None:
    from wulf.api.spec import Options, common
    from wulf.cli.qr import _parser, build_specs
    from wulf.cli.scriptjob import from_directives
    from wulf.protocol import JobSpec

    assert build_specs(_parser().parse_args(["--requeue", "-c", "true"]), "/tmp")[0]["requeue"] is True
    assert "requeue" not in build_specs(_parser().parse_args(["-c", "true"]), "/tmp")[0]
    assert common(Options(requeue=True))["requeue"] is True
    assert JobSpec(command="true", cwd="/").requeue is False
    text = "#!/bin/sh\n#SBATCH --requeue\ntrue\n"
    assert from_directives(text, "job.sh", "job.sh", str(tmp_path), {}, True, "job")["requeue"] is True
