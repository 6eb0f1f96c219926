"""Limits: how many cpus a user may occupy, fair-share weights, and run-time limits with site defaults.

Pure: group membership is looked up by the caller and passed in.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from wulf.errors import ConfigError, UsageError


def parse_duration(text: str) -> float:
    """Seconds from ``[D-]HH:MM:SS``, ``MM:SS`` or ``SS`` (``1:30:00`` is an hour and a half).

    Raises ValueError with a one-line message when ``text`` is not such a duration.
    """
    bad = f"{text!r} is not a duration: use HH:MM:SS (or D-HH:MM:SS, MM:SS, seconds)"
    days, dash, rest = text.strip().rpartition("-")
    parts = rest.split(":")
    if len(parts) > 3 or dash and (len(parts) != 3 or not days.isdigit()):
        raise ValueError(bad)
    if not all(p.isdigit() for p in parts[:-1]):
        raise ValueError(bad)
    try:
        seconds = float(parts[-1])
    except ValueError:
        raise ValueError(bad) from None
    if not parts[-1].replace(".", "", 1).isdigit():
        raise ValueError(bad)
    if len(parts) > 1 and seconds >= 60 or len(parts) > 2 and int(parts[1]) >= 60:
        raise ValueError(f"{text!r} is not a duration: minutes and seconds go up to 59")
    total = seconds
    for i, p in enumerate(reversed(parts[:-1])):
        total += int(p) * 60 ** (i + 1)
    total += 86400 * int(days or 0)
    if total <= 0 or total == float("inf"):
        raise ValueError(f"{text!r} is not a duration: it must be more than zero")
    return total


def format_duration(seconds: float) -> str:
    s = round(seconds)
    days, s = divmod(s, 86400)
    if days:
        return f"{days}-{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def user_limit(user: str, groups: Iterable[str], users: Mapping[str, float], by_group: Mapping[str, float],
               default: float = 0.0) -> float | None:
    """Most cpus ``user`` may occupy at once: their own entry, else the most generous of their groups',
    else ``default``; None when there is no limit (0 means none)."""
    if user in users:
        return users[user] or None
    limits = [by_group[g] for g in groups if g in by_group]
    if limits:
        return max(limits) or None
    return default or None


def occupied_cpu(cpu_alloc: float, cpu_used: float, external: bool) -> float:
    """The cpus one job counts for against its user's limit: what it holds or uses, whichever is more;
    work wulf did not start holds nothing, so only what it uses."""
    return cpu_used if external else max(cpu_alloc, cpu_used)


def user_share(user: str, groups: Iterable[str], users: Mapping[str, float], by_group: Mapping[str, float]) -> float:
    """A user's fair-share weight: their own, else the largest of their groups', else 1."""
    if user in users:
        return users[user]
    weights = [by_group[g] for g in groups if g in by_group]
    return max(weights) if weights else 1.0


@dataclass(frozen=True)
class RunLimit:
    """One run-time limit of a site: what a job gets when it names none, and the most it may ask."""

    what: str  # for messages: "time", "cpu time", "memory limit"
    default: float | None = None
    maximum: float | None = None
    unit: str = "s"

    def resolve(self, asked: float | None) -> float | None:
        """The limit a job runs with. Raises UsageError if it asks for more than the site allows."""
        if asked is None:
            return self.default
        if not math.isfinite(asked):  # NaN passes both comparisons below; inf would mean "none"
            raise UsageError(f"a {self.what} limit must be a finite number, not {asked}")
        if asked <= 0:
            raise UsageError(f"a {self.what} limit must be more than zero")
        if self.maximum is not None and asked > self.maximum:
            raise UsageError(f"the {self.what} limit asked for, {self._show(asked)}, is more than the "
                             f"{self._show(self.maximum)} this site allows")
        return asked

    def _show(self, value: float) -> str:
        return format_duration(value) if self.unit == "s" else f"{value:g} MB"


def run_limit(what: str, default: str | float, maximum: str | float, key: str) -> RunLimit:
    """A RunLimit from config values ("" or 0 for none). Raises ConfigError on a bad duration."""
    def value(v: str | float, name: str) -> float | None:
        if isinstance(v, str):
            if not v:
                return None
            try:
                return parse_duration(v)
            except ValueError as e:
                raise ConfigError(f"limits.{key}_{name}: {e}") from None
        if not math.isfinite(float(v)):
            raise ConfigError(f"limits.{key}_{name}: must be a finite number, not {v}")
        return float(v) or None

    d, m = value(default, "default"), value(maximum, "max")
    if d is not None and m is not None and d > m:
        raise ConfigError(f"limits.{key}_default is more than limits.{key}_max")
    return RunLimit(what, d, m, "s" if isinstance(default, str) else "MB")
