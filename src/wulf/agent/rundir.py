"""The agent's runtime directory, made so that nobody else can have prepared it.

Its place is predictable (``/dev/shm/wulf-<uid>/<node>-<tag>``, in a directory every user may write),
and the agent trusts what it finds there on a restart: its journal names processes and files. So each
level below the shared parent is made by the agent itself, or, when it is there already, accepted only
if it is a real directory (not a link), owned by the agent's user, that nobody else may change (it is
then closed to them: 0700).
Anything else is refused with a message that names the path and what is wrong with it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from wulf.errors import WulfError


class UnsafeDirectory(WulfError):
    """A directory the agent is to trust is not its own."""


def check_dir(path: Path) -> None:
    """Refuse ``path`` unless it is a directory (not a link) of this process's user that nobody else
    may enter or change."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeDirectory(f"{path} is a link, not a directory of the agent's own; remove it and start again")
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeDirectory(f"{path} is not a directory; remove it and start again")
    if st.st_uid != os.geteuid():
        raise UnsafeDirectory(f"{path} is owned by uid {st.st_uid}, not by the agent's user (uid {os.geteuid()}); "
                              "someone else made it: remove it and start again")
    if st.st_mode & 0o022:
        raise UnsafeDirectory(f"{path} is open to others (mode {stat.S_IMODE(st.st_mode):04o}): they may have put "
                              "things in it; remove it and start again")
    if st.st_mode & 0o077:  # the agent's own, which others could read but not change (made by an older wulf)
        os.chmod(path, 0o700, follow_symlinks=False)


def secure_dir(path: Path, levels: int = 2) -> Path:
    """Make ``path`` and the ``levels - 1`` directories above it (each 0700, the agent's own), or accept
    those that are there and pass :func:`check_dir`; the parent of the topmost may be shared (/dev/shm)."""
    chain = [path, *list(path.parents)[: levels - 1]]
    for d in reversed(chain):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            pass
        except FileNotFoundError as e:
            raise UnsafeDirectory(f"cannot make {d}: its parent is missing") from e
        check_dir(d)
    return path
