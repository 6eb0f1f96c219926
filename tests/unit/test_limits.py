"""User cpu limits, fair-share weights, run-time limits and durations."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wulf.config import parse_config
from wulf.errors import ConfigError, UsageError
from wulf.policy.limits import (
    RunLimit,
    format_duration,
    occupied_cpu,
    parse_duration,
    user_limit,
    user_share,
)
from wulf.policy.placement import NodePool
from wulf.policy.scheduler import schedule
from wulf.policy.settings import Policy
from wulf.policy.snapshot import NodeView, QueuedJob, QueueView, UserView


@pytest.mark.parametrize(("text", "seconds"), [
    ("1:30:00", 5400), ("0:00:02", 2), ("5:00", 300), ("90", 90), ("2-00:00:01", 172801), ("1.5", 1.5),
])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "x", "1:60:00", "0", "-5", "1-2", "1:2:3:4", "1e5", "1:-3", "::"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


@given(st.integers(1, 10 * 86400))
def test_durations_round_trip(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


def test_user_limit_by_user_then_most_generous_group_then_default() -> None:
    users, groups = {"alice": 16.0, "root": 0.0}, {"staff": 8.0, "students": 2.0}
    assert user_limit("alice", ["students"], users, groups) == 16
    assert user_limit("bob", ["students", "staff"], users, groups) == 8
    assert user_limit("carol", ["other"], users, groups, default=4) == 4
    assert user_limit("carol", [], users, groups) is None
    assert user_limit("root", ["staff"], users, groups) is None  # 0: no limit


def test_what_a_job_occupies() -> None:
    assert occupied_cpu(2.0, 0.5, external=False) == 2.0  # it holds its allocation
    assert occupied_cpu(1.0, 3.0, external=False) == 3.0  # or more, when it takes more
    assert occupied_cpu(0.0, 1.5, external=True) == 1.5  # outside work: what it uses


def test_shares() -> None:
    assert user_share("alice", [], {"alice": 2.0}, {}) == 2.0
    assert user_share("bob", ["staff"], {}, {"staff": 3.0}) == 3.0
    assert user_share("bob", [], {}, {}) == 1.0


def test_run_limits_apply_site_defaults_and_maxima() -> None:
    limit = RunLimit("time", default=3600, maximum=7200)
    assert limit.resolve(None) == 3600 and limit.resolve(60) == 60
    with pytest.raises(UsageError, match="more than the 2:00:00 this site allows"):
        limit.resolve(7201)
    assert RunLimit("memory", unit="MB").resolve(None) is None


def test_policy_from_config_checks_values() -> None:
    cfg = parse_config('[limits]\ntime_default = "1:00:00"\ntime_max = "24:00:00"\nusers = { alice = 4 }\n'
                       '[shares]\nusers = { alice = 2 }\n[nodes.features]\nn7 = ["bigmem"]\n')
    p = Policy.from_config(cfg)
    assert p.time.default == 3600 and p.time.maximum == 86400 and p.user_limit("alice", ()) == 4
    assert p.user_share("alice", ()) == 2.0 and p.features["n7"] == {"bigmem"}
    for bad in ['[limits]\ntime_max = "soon"\n', '[scheduler]\nrank = "bogus + 1"\n',
                '[windows]\ntimezone = "Mars/Olympus"\n', '[scheduler]\npolicy_plugin = "nosuch.module:x"\n',
                '[limits]\ntime_default = "2:00:00"\ntime_max = "1:00:00"\n', "[scheduler]\nnice_penalty = 50\n"]:
        with pytest.raises(ConfigError):
            Policy.from_config(parse_config(bad))


def test_a_python_policy_plugin_adjusts_rank_and_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "site_policy.py").write_text(
        "class Prefer:\n"
        "    def rank(self, node, metrics, default):\n"
        "        return default + (1e12 if 'fast' in node.features else 0)\n"
        "    def user_key(self, user, default):\n"
        "        return default - 100 if user.name == 'vip' else default\n"
        "nothing = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    policy = Policy.from_config(parse_config('[scheduler]\npolicy_plugin = "site_policy:Prefer"\n'))
    views = [NodeView("big", 64, 10**6), NodeView("small", 2, 1000, features=frozenset({"fast"}))]
    pool = NodePool(views, policy.rank, policy.observe, policy.rank_adjust())
    out = schedule([QueueView("joe", "q", [QueuedJob(1, "joe", "q", 1, 10)]),
                    QueueView("vip", "q", [QueuedJob(2, "vip", "q", 1, 10)])],
                   {"vip": UserView("vip", running=5)}, pool, ordering=policy.plugin)
    assert [(p.job_id, p.node) for p in out.placements] == [(2, "small"), (1, "small")]
    with pytest.raises(ConfigError, match="none of rank"):
        Policy.from_config(parse_config('[scheduler]\npolicy_plugin = "site_policy:nothing"\n'))
    with pytest.raises(ConfigError, match="package.module:object"):
        Policy.from_config(parse_config('[scheduler]\npolicy_plugin = "site_policy"\n'))
