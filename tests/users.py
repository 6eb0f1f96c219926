"""Real Unix users and groups for the tests that show who may do what (they need root).

Names carry the test run's pid (``wulft-alice-<pid>``), so that runs at the same time on one machine
do not share users, and the users of a run that died are removed by the next one.
"""

from __future__ import annotations

import os
import pwd
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

PREFIX = "wulft-"
_OURS = re.compile(rf"^{PREFIX}[a-z]+-(\d+)$")
ASUSER = Path(__file__).with_name("asuser.py")


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    home: str
    groups: tuple[int, ...]

    def argv(self, command: str, *args: str) -> list[str]:
        """The command line that runs a wulf command as this user."""
        return [sys.executable, str(ASUSER), self.name, command, *args]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale() -> None:
    """Remove the users and groups of test runs that are gone."""
    for pw in pwd.getpwall():
        m = _OURS.match(pw.pw_name)
        if m and not _alive(int(m.group(1))):
            subprocess.run(["userdel", pw.pw_name], capture_output=True)
    with open("/etc/group") as f:
        for line in f:
            name = line.split(":", 1)[0]
            m = _OURS.match(name)
            if m and not _alive(int(m.group(1))):
                subprocess.run(["groupdel", name], capture_output=True)


def group_name(short: str) -> str:
    return f"{PREFIX}{short}-{os.getpid()}"


def make_group(short: str) -> str:
    name = group_name(short)
    subprocess.run(["groupadd", name], check=True, capture_output=True)
    return name


def make_user(short: str, groups: tuple[str, ...] = ()) -> User:
    name = f"{PREFIX}{short}-{os.getpid()}"
    argv = ["useradd", "--no-create-home", "--home-dir", f"/home/{name}", "--shell", "/bin/sh", "--user-group"]
    if groups:
        argv += ["--groups", ",".join(groups)]
    subprocess.run([*argv, name], check=True, capture_output=True)
    pw = pwd.getpwnam(name)
    return User(name, pw.pw_uid, pw.pw_gid, pw.pw_dir, tuple(os.getgrouplist(name, pw.pw_gid)))


def remove(users: list[User], groups: list[str]) -> None:
    for u in users:
        subprocess.run(["userdel", u.name], capture_output=True)
    for g in groups:
        subprocess.run(["groupdel", g], capture_output=True)


@dataclass(frozen=True)
class Users:
    """alice (also in group `extra`), bob, and carol (an administrator by group `admins`)."""

    alice: User
    bob: User
    carol: User
    admins: str  # the administrators' group ([server] admin_group)
    extra: str  # a supplementary group of alice's

    def all(self) -> list[User]:
        return [self.alice, self.bob, self.carol]


def make_users() -> Users:
    remove_stale()
    admins, extra = make_group("admins"), make_group("extra")
    return Users(make_user("alice", (extra,)), make_user("bob"), make_user("carol", (admins,)), admins, extra)


def shared_dir(prefix: str = "wulf-test-") -> Path:
    """A new directory every user may enter (pytest's own are root's alone)."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path
