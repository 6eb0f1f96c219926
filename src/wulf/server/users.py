"""Who users are on the server's machine: their groups (for limits and shares by group), and the names
of the users non-root agents run as."""

from __future__ import annotations

import grp
import pwd
from functools import lru_cache


@lru_cache(maxsize=4096)
def groups_of(user: str) -> tuple[str, ...]:
    """The names of ``user``'s primary and supplementary groups; () for a user unknown here."""
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        return ()
    names = []
    for gid in sorted(set(_group_ids(user, pw.pw_gid))):
        try:
            names.append(grp.getgrgid(gid).gr_name)
        except KeyError:
            continue
    return tuple(names)


def _group_ids(user: str, gid: int) -> list[int]:
    import os

    try:
        return os.getgrouplist(user, gid)
    except OSError:
        return [gid]


@lru_cache(maxsize=256)
def user_name(uid: int) -> str:
    """The name of the user with ``uid`` here (the cluster shares its users); the number if unknown."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
