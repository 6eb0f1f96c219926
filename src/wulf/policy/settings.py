"""The policy's settings, made once from the configuration (and checked then: a bad value is a ConfigError)."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from wulf.config import Config
from wulf.errors import ConfigError, Forbidden
from wulf.policy.adapt import AdaptSettings
from wulf.policy.history import History
from wulf.policy.limits import RunLimit, run_limit, user_limit, user_share
from wulf.policy.migrate import Settings as MigrateSettings
from wulf.policy.rank import Rank, compile_rank
from wulf.policy.windows import Windows


def load_plugin(spec: str) -> Any:
    """The object named by ``package.module:object`` (a class is instantiated with no arguments).

    It may define any of ``rank(node, metrics, default) -> float`` (adjust or replace a node's rank),
    ``user_key(user, default) -> float`` (lower is served first) and ``queue_key(queue, default) -> float``
    (lower first, within a user); see wulf.policy.scheduler.
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"scheduler.policy_plugin must be 'package.module:object', not {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # an import error of any kind is the plugin's, not ours
        raise ConfigError(f"scheduler.policy_plugin: cannot import {module_name}: {e}") from None
    obj = getattr(module, attr, None)
    if obj is None:
        raise ConfigError(f"scheduler.policy_plugin: {module_name} has no {attr}")
    if inspect.isclass(obj):
        obj = obj()
    if not any(callable(getattr(obj, m, None)) for m in ("rank", "user_key", "queue_key")):
        raise ConfigError(f"scheduler.policy_plugin: {spec} has none of rank, user_key, queue_key")
    return obj


WORKSTATION = "workstation"
"""The feature of every node that ``[nodes.owners]`` names (``qr --constraint '!workstation'``)."""


def _features(cfg: Config) -> dict[str, frozenset[str]]:
    """The nodes' features: those the configuration gives, and "workstation" for owned nodes."""
    out = {n: frozenset(f) for n, f in cfg.nodes.features.items()}
    for node in cfg.nodes.owners:
        out[node] = out.get(node, frozenset()) | {WORKSTATION}
    return out


@dataclass(frozen=True)
class Policy:
    rank: Rank
    windows: Windows
    adapt: AdaptSettings
    observe: bool
    plugin: Any
    time: RunLimit
    cputime: RunLimit
    mem_limit: RunLimit
    limits: Mapping[str, float] = field(default_factory=dict)
    group_limits: Mapping[str, float] = field(default_factory=dict)
    default_limit: float = 0.0
    shares: Mapping[str, float] = field(default_factory=dict)
    group_shares: Mapping[str, float] = field(default_factory=dict)
    features: Mapping[str, frozenset[str]] = field(default_factory=dict)
    job_nice: int = 0  # the niceness batch jobs start at (outside work and jr sessions run at 0)
    history_jobs: int = 5  # jobs of a kind start with what the last this many used (policy.history)
    history_min_seconds: float = 60.0
    # workstations (issue 13 §3): node -> its owner, and when the owner is taken to be back
    owners: Mapping[str, str] = field(default_factory=dict)
    migrate: MigrateSettings = field(default_factory=MigrateSettings)

    @classmethod
    def from_config(cls, cfg: Config) -> Policy:
        s, lim = cfg.scheduler, cfg.limits
        if s.nice_penalty < 0 or s.nice_penalty > 39:
            raise ConfigError("scheduler.nice_penalty must be between 0 and 39")
        if not 0 <= s.job_nice <= 19:
            raise ConfigError("scheduler.job_nice must be between 0 and 19")
        if s.history_jobs < 0 or s.history_min_seconds < 0:
            raise ConfigError("scheduler.history_jobs and scheduler.history_min_seconds must be 0 or more")
        if s.shrink_samples < 1 or not 0 < s.shrink_below <= 1:
            raise ConfigError("scheduler.shrink_samples must be >= 1 and shrink_below in (0, 1]")
        return cls(
            rank=compile_rank(s.rank),
            windows=Windows.parse(cfg.windows.timezone, cfg.windows.nights, cfg.windows.weekends),
            adapt=AdaptSettings(s.settle_seconds, s.shrink_samples, s.shrink_below, s.nice_penalty),
            observe=s.use_observed,
            plugin=load_plugin(s.policy_plugin) if s.policy_plugin else None,
            time=run_limit("time", lim.time_default, lim.time_max, "time"),
            cputime=run_limit("cpu time", lim.cputime_default, lim.cputime_max, "cputime"),
            mem_limit=run_limit("memory", lim.mem_limit_default_mb, lim.mem_limit_max_mb, "mem_limit"),
            limits=dict(lim.users), group_limits=dict(lim.groups), default_limit=lim.default,
            shares=dict(cfg.shares.users), group_shares=dict(cfg.shares.groups),
            features=_features(cfg),
            job_nice=s.job_nice,
            history_jobs=s.history_jobs,
            history_min_seconds=s.history_min_seconds,
            owners=dict(cfg.nodes.owners),
            migrate=MigrateSettings(cfg.migrate.busy_cpu, cfg.migrate.busy_seconds, cfg.migrate.grace_seconds,
                                    cfg.migrate.away_seconds),
        )

    def start_nice(self, asked: int | None, batch: bool, admin: bool) -> int:
        """The niceness a job starts at: what it ``asked`` for (``qr --nice``), else the site's for batch
        jobs and 0 for ``jr`` sessions (they run as a login would); only administrators go lower."""
        least = self.job_nice if batch else 0
        nice = least if asked is None else asked
        if nice < least and not admin:
            raise Forbidden(f"--nice {nice}: jobs here run at nice {least} or more; only an administrator may "
                            "go lower")
        return nice

    @property
    def adaptive(self) -> bool:
        """Whether a running job's allocation follows its measured use (adaptive allocation and the renice
        penalty). Not under allocation-only (``observe`` false): like a classic batch scheduler, it
        ignores every observed figure, and a job holds what it asked for until it ends."""
        return self.observe

    def history(self) -> History | None:
        """What learns, from the jobs that end, what the next jobs of their kind need
        (:mod:`wulf.policy.history`); None when jobs start with what they ask for, as under
        allocation-only (which ignores every observed figure) or with ``history_jobs`` 0."""
        if not self.adaptive or not self.history_jobs:
            return None
        return History(self.history_jobs, self.history_min_seconds)

    def user_limit(self, user: str, groups: Iterable[str]) -> float | None:
        return user_limit(user, groups, self.limits, self.group_limits, self.default_limit)

    def user_share(self, user: str, groups: Iterable[str]) -> float:
        return user_share(user, groups, self.shares, self.group_shares)

    @property
    def needs_groups(self) -> bool:
        return bool(self.group_limits or self.group_shares)

    def rank_adjust(self) -> Any:
        return getattr(self.plugin, "rank", None)
