"""Run a wulf command as another user, for tests: ``python asuser.py USER COMMAND ARGS...``.

The tests' Python may live where other users cannot go (a home directory only root may enter), so a
command cannot simply be started as another user. This starts as root, opens the directories of the
module search path, puts them on the path as ``/proc/self/fd/N`` (a process may always go through
its own open directories), becomes the user for good (uid, gid, supplementary groups; HOME, USER,
LOGNAME), and runs the command's ``main``: the command's code, with the user's identity as the
kernel reports it to the server's socket and to the agent.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import pwd
import sys

PR_SET_DUMPABLE = 4


def _reachable() -> dict[str, str]:
    """Each directory of the module search path, and the open directory that reaches it."""
    return {entry: f"/proc/self/fd/{os.open(entry, os.O_RDONLY | os.O_DIRECTORY)}"
            for entry in sys.path if entry and os.path.isdir(entry)}


def _moved(path: str, dirs: dict[str, str]) -> str:
    for old in sorted(dirs, key=len, reverse=True):
        if path == old or path.startswith(old + os.sep):
            return dirs[old] + path[len(old):]
    return path


def _use(dirs: dict[str, str]) -> None:
    """Look for modules (and for the parts of packages imported already) through ``dirs``."""
    sys.path[:] = [_moved(p, dirs) for p in sys.path]
    for module in list(sys.modules.values()):
        where = getattr(module, "__path__", None)
        if isinstance(where, list):
            where[:] = [_moved(p, dirs) for p in where]
    sys.path_importer_cache.clear()
    importlib.invalidate_caches()


def main() -> None:
    name, command, *args = sys.argv[1:]
    pw = pwd.getpwnam(name)
    dirs = _reachable()
    os.setgroups(os.getgrouplist(name, pw.pw_gid))
    os.setresgid(pw.pw_gid, pw.pw_gid, pw.pw_gid)
    os.setresuid(pw.pw_uid, pw.pw_uid, pw.pw_uid)
    ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)  # so that /proc/self/fd is this process's to read
    _use(dirs)
    os.environ.update(HOME=pw.pw_dir, USER=name, LOGNAME=name)
    sys.argv = [command, *args]
    importlib.import_module(f"wulf.cli.{command}").main()


if __name__ == "__main__":
    main()
