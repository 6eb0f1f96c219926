"""``wulf sim --scenario owner-returns`` (issue 13 §3): the three strategies on the same owners' days."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wulf.cli.wulf import _main
from wulf.errors import UsageError
from wulf.sim import owners


def test_the_strategies_trade_the_owners_cpu_for_the_jobs_work() -> None:
    setup = owners.Setup(nodes=3, days=2)
    default, suspend, ckpt = owners.run(setup, seed=4)
    assert [r.strategy for r in (default, suspend, ckpt)] == list(owners.STRATEGIES)
    assert default.owner_wanted == suspend.owner_wanted == ckpt.owner_wanted > 0
    # the sooner a job gets out of the way, the less its owner loses (tick by tick, on the same days)
    assert 0 < ckpt.owner_lost <= suspend.owner_lost <= default.owner_lost
    assert default.migrations == 0 and default.suspended == 0 and default.job_wasted == 0
    assert suspend.migrations == 0 and suspend.suspended > 0 and suspend.job_wasted == 0
    assert ckpt.migrations > 0 and ckpt.suspended == 0
    assert ckpt.job_wasted == pytest.approx(ckpt.migrations * setup.cpus * owners.RESTART_SECONDS)
    assert ckpt.job_done < default.job_done  # (what moved is done elsewhere)
    assert owners.run(setup, seed=4)[2].to_dict() == ckpt.to_dict()  # the seed decides it all


def test_the_command_prints_a_table_or_json_and_refuses_what_does_not_go(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert _main(["sim", "--scenario", "owner-returns", "--nodes", "1", "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert [r["strategy"] for r in runs] == ["default", "suspend", "checkpoint-migrate"]
    cfg = tmp_path / "wulf.toml"
    cfg.write_text("[migrate]\ngrace_seconds = 600\n")
    assert _main(["sim", "--scenario", "owner-returns", "--nodes", "1", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "grace_seconds 600" in out and "owners' lost cpu" in out and "jobs' wasted work" in out
    with pytest.raises(UsageError, match="--jobs does not go with --scenario owner-returns"):
        _main(["sim", "--scenario", "owner-returns", "--jobs", "5"])  # (the shell makes it one line, exit 2)
