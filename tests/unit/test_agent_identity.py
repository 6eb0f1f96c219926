"""The agent's short-lived cache of the user database (job owners are looked up once per user, not
once per job)."""

from __future__ import annotations

import os
import pwd

import pytest

from wulf.agent.owner import IDENTITY_TTL, TtlCache, cached_getgrouplist, cached_getpwuid


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_values_are_kept_for_the_ttl() -> None:
    clock, loads = Clock(), []
    cache: TtlCache[int, str] = TtlCache(30.0, clock)

    def load(v: str) -> str:
        loads.append(v)
        return v

    assert cache.get(1, lambda: load("a")) == "a"
    clock.now = 29.9
    assert cache.get(1, lambda: load("b")) == "a"
    clock.now = 30.0
    assert cache.get(1, lambda: load("c")) == "c"
    assert loads == ["a", "c"]


def test_a_failed_lookup_is_not_kept() -> None:
    cache: TtlCache[int, str] = TtlCache(30.0, Clock())

    def missing() -> str:
        raise KeyError(7)

    with pytest.raises(KeyError):
        cache.get(7, missing)
    assert cache.get(7, lambda: "now there") == "now there"


def test_expired_entries_are_dropped_when_it_grows(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    cache: TtlCache[int, int] = TtlCache(1.0, clock)
    monkeypatch.setattr(TtlCache, "LIMIT", 3)
    for i in range(3):
        cache.get(i, lambda i=i: i)  # type: ignore[misc]
    clock.now = 5.0
    cache.get(9, lambda: 9)
    assert len(cache._items) == 1


def test_the_cached_lookups_answer_as_the_database() -> None:
    me = pwd.getpwuid(os.getuid())
    assert cached_getpwuid(os.getuid()) == me and cached_getpwuid(os.getuid()) == me
    assert cached_getgrouplist(me.pw_name, me.pw_gid) == os.getgrouplist(me.pw_name, me.pw_gid)
    with pytest.raises(KeyError):
        cached_getpwuid(2**31 - 7)
    assert 0 < IDENTITY_TTL <= 60
