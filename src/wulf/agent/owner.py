"""Whom a job runs as on this node: its owner, when the agent is root; else the agent's own user.

An agent that runs as root starts every job as its owner: the owner's uid, the group they submitted
with (if it is still one of theirs, else their primary group), their supplementary groups, and their
``HOME``, ``USER``, ``LOGNAME`` and ``SHELL`` from this node's user database. An agent that is not
root (someone's personal cluster) cannot change user, so it runs only its own user's jobs and
refuses the others' with a reason that says so.
"""

from __future__ import annotations

import os
import pwd
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from wulf.protocol import StartJob

DEFAULT_UMASK = 0o022
IDENTITY_TTL: Final = 30.0
"""Seconds a user's entry and groups are taken from the agent's cache rather than the user database
(which may be LDAP or sssd behind NSS, and is read once per user in that time, not once per job). A
change to a user's groups reaches their jobs within this time; a user not found is not cached."""

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """Values kept for ``ttl`` seconds by ``clock``; a load that raises caches nothing."""

    LIMIT = 4096  # entries before the expired ones are dropped

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._items: dict[K, tuple[float, V]] = {}

    def get(self, key: K, load: Callable[[], V]) -> V:
        now = self.clock()
        hit = self._items.get(key)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        value = load()
        if len(self._items) >= self.LIMIT:
            self._items = {k: v for k, v in self._items.items() if now - v[0] < self.ttl}
        self._items[key] = (now, value)
        return value


_passwd: TtlCache[int, pwd.struct_passwd] = TtlCache(IDENTITY_TTL)
_groups: TtlCache[tuple[str, int], tuple[int, ...]] = TtlCache(IDENTITY_TTL)


def cached_getpwuid(uid: int) -> pwd.struct_passwd:
    """``pwd.getpwuid``, kept for ``IDENTITY_TTL`` seconds; KeyError for a user not found."""
    return _passwd.get(uid, lambda: pwd.getpwuid(uid))


def cached_getgrouplist(name: str, gid: int) -> list[int]:
    """``os.getgrouplist``, kept for ``IDENTITY_TTL`` seconds."""
    return list(_groups.get((name, gid), lambda: tuple(os.getgrouplist(name, gid))))


class CannotRun(Exception):
    """This node cannot run the job as its owner; the message says why, for the job's reason."""


@dataclass(frozen=True)
class Owner:
    """A user to become: the job runs with these ids and this environment."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    name: str
    home: str
    shell: str

    def env(self, env: dict[str, str]) -> dict[str, str]:
        """``env`` with the owner's own USER, LOGNAME, HOME and SHELL."""
        return {**env, "USER": self.name, "LOGNAME": self.name, "HOME": self.home, "SHELL": self.shell or "/bin/sh"}


def _name(uid: int) -> str:
    try:
        return cached_getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def owner_of(job: StartJob, node: str, agent_uid: int | None = None,
             getpwuid: Callable[[int], pwd.struct_passwd] = cached_getpwuid,
             getgrouplist: Callable[[str, int], list[int]] = cached_getgrouplist) -> Owner | None:
    """Whom ``job`` runs as: an Owner to become, or None to run as the agent's own user (the agent
    is not root and the job is its user's, or the agent is root and so is the job). Raises CannotRun
    when the job cannot run here."""
    return owner_by_ids(job.uid, job.gid, job.user, node, agent_uid, getpwuid, getgrouplist)


def owner_by_ids(uid: int, gid: int | None, user: str, node: str, agent_uid: int | None = None,
                 getpwuid: Callable[[int], pwd.struct_passwd] = cached_getpwuid,
                 getgrouplist: Callable[[str, int], list[int]] = cached_getgrouplist,
                 what: str = "not started") -> Owner | None:
    """:func:`owner_of` for a user named by ids (a job this agent no longer runs, whose output is read:
    ``what`` begins the reason of CannotRun)."""
    me = os.geteuid() if agent_uid is None else agent_uid
    if me != 0:
        if uid != me:
            mine = _name(me)
            raise CannotRun(f"{what}: the agent of {node} runs as {mine}, not as root, so it runs only "
                            f"{mine}'s jobs (this one is {user}'s)")
        return None
    if uid == 0:
        return None
    try:
        pw = getpwuid(uid)
    except KeyError:
        raise CannotRun(f"{what}: {user} (uid {uid}) is not a user on {node}") from None
    groups = tuple(getgrouplist(pw.pw_name, pw.pw_gid))
    chosen = gid if gid is not None and gid in groups else pw.pw_gid
    return Owner(uid, chosen, groups, pw.pw_name, pw.pw_dir, pw.pw_shell)


def umask_of(job: StartJob) -> int:
    return DEFAULT_UMASK if job.umask is None else job.umask & 0o777
