"""Scratch cleaning: what jobs left in the scratch directory, unused for a while, is removed.

``wulf purge-scratch`` (by hand or from cron) and the agent (``[agent] purge_scratch_hours``) run
:func:`purge`. The scratch directory is shared and its users are hostile, so the walk holds a file
descriptor for every directory it is in and acts only on names inside it (``unlinkat``, ``rmdir`` with
``dir_fd``, ``openat`` with ``O_NOFOLLOW``): a symbolic link is removed as a link and never followed, a
directory swapped for a link between two steps is not entered, and another file system mounted inside is
left alone. What is removed is decided by :func:`keep_reason`, a pure function of one entry's metadata.

Kept, always:
- whatever root owns (the system keeps its own things in /tmp), and what is not a file, a directory or a
  link (sockets, pipes, devices);
- a name that ties it to a running job (``wulf-<id>``, as the agent stages a job's script:
  ``wulf-<id>.script``), and everything of a user who has a job running on this machine;
- a file some process has open (or a directory that is some process's working directory);
- what was read or written (atime, mtime) within the age; a directory, what changed within it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from wulf.agent import procfs

log = logging.getLogger("wulf.agent.purge")
_JOB_NAME = re.compile(r"wulf-(\d{1,18})(?!\d)")
MAX_DEPTH = 64  # deeper directories are left as they are (and so are the directories above them)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class Entry:
    """What the walk knows of one name in the scratch directory, from ``lstat``."""

    path: str  # relative to the scratch directory
    kind: str  # "file", "dir", "link" or "other"
    uid: int
    last_used: float  # files and links: the later of atime and mtime; directories: mtime
    size: int  # what removing it frees: its blocks, unless another hard link keeps them
    dev: int
    ino: int


@dataclass(frozen=True)
class InUse:
    """What running jobs and processes hold: the jobs' ids and owners, and the open files (dev, ino)."""

    job_ids: frozenset[int] = frozenset()
    uids: frozenset[int] = frozenset()
    open_files: frozenset[tuple[int, int]] = frozenset()


@dataclass
class Report:
    removed: list[tuple[str, int]] = field(default_factory=list)  # (path, bytes freed), files and directories
    kept: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def freed(self) -> int:
        return sum(size for _, size in self.removed)


def entry_of(path: str, st: os.stat_result) -> Entry:
    mode = st.st_mode
    kind = ("dir" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else
            "link" if stat.S_ISLNK(mode) else "other")
    used = st.st_mtime if kind == "dir" else max(st.st_atime, st.st_mtime)
    size = st.st_blocks * 512 if kind != "dir" and st.st_nlink <= 1 else 0
    return Entry(path, kind, st.st_uid, used, size, st.st_dev, st.st_ino)


def job_ids_in(path: str) -> set[int]:
    """The job ids a path names (``wulf-12.script``, ``wulf-12/out``, ``run-wulf-12-tmp``)."""
    return {int(m) for m in _JOB_NAME.findall(path)}


def keep_reason(entry: Entry, cutoff: float, in_use: InUse) -> str:
    """Why ``entry`` stays ("" if it goes: for a directory, once what is in it went too).

    ``cutoff`` is the time before which an entry counts as unused."""
    if entry.uid == 0:
        return "root's"
    if entry.kind == "other":
        return "not a file, directory or link"
    if job_ids_in(entry.path) & in_use.job_ids:
        return "a running job's"
    if entry.uid in in_use.uids:
        return "its owner has a job running here"
    if (entry.dev, entry.ino) in in_use.open_files:
        return "in use by a process"
    if entry.last_used >= cutoff:
        return "used recently"
    return ""


def _descend(reason: str) -> bool:
    """Whether a directory kept for ``reason`` is still walked: old things in a recent directory go."""
    return reason in ("", "used recently", "in use by a process")


class _Walk:
    def __init__(self, cutoff: float, in_use: InUse, dry_run: bool) -> None:
        self.cutoff, self.in_use, self.dry_run = cutoff, in_use, dry_run
        self.report = Report()

    def directory(self, dfd: int, rel: str, dev: int, depth: int) -> bool:
        """Purge the directory open at ``dfd``; True if all that was in it went."""
        try:
            with os.scandir(dfd) as it:
                names = [e.name for e in it]
        except OSError as e:
            self.report.errors.append(f"{rel or '.'}: {e.strerror}")
            return False
        emptied = True
        for name in names:
            emptied = self.one(dfd, name, os.path.join(rel, name), dev, depth) and emptied
        return emptied

    def one(self, dfd: int, name: str, rel: str, dev: int, depth: int) -> bool:
        """Purge one name in the directory ``dfd``; True if it is gone (or would be, in a dry run)."""
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            return True
        except OSError as e:
            self.report.errors.append(f"{rel}: {e.strerror}")
            return False
        entry = entry_of(rel, st)
        reason = keep_reason(entry, self.cutoff, self.in_use)
        if entry.kind == "dir":
            emptied = (st.st_dev == dev and depth < MAX_DEPTH and _descend(reason)
                       and self._subdir(dfd, name, entry, depth))
            if reason or not emptied:
                self.report.kept += 1
                return False
            return self._remove(dfd, name, entry, os.rmdir)
        if reason:
            self.report.kept += 1
            return False
        return self._remove(dfd, name, entry, os.unlink)

    def _subdir(self, dfd: int, name: str, entry: Entry, depth: int) -> bool:
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=dfd)
        except OSError:  # gone, or swapped for a link: not entered
            return False
        try:
            now = os.fstat(fd)
            if (now.st_dev, now.st_ino) != (entry.dev, entry.ino):
                return False  # swapped for another directory between the two looks
            return self.directory(fd, entry.path, entry.dev, depth + 1)
        finally:
            os.close(fd)

    def _remove(self, dfd: int, name: str, entry: Entry, how: Callable[..., None]) -> bool:
        if not self.dry_run:
            try:
                how(name, dir_fd=dfd)
            except FileNotFoundError:
                return True
            except OSError as e:  # a directory that is not empty any more, a file that is not ours
                if entry.kind != "dir":
                    self.report.errors.append(f"{entry.path}: {e.strerror}")
                return False
        self.report.removed.append((entry.path + ("/" if entry.kind == "dir" else ""), entry.size))
        return True


def purge(scratch: str, max_age: float, in_use: InUse, now: float, dry_run: bool = False) -> Report:
    """Remove what in ``scratch`` was not used for ``max_age`` seconds before ``now``, never the
    directory itself and never anything outside it. Returns what was removed (or would be)."""
    walk = _Walk(now - max_age, in_use, dry_run)
    fd = os.open(scratch, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        walk.directory(fd, "", os.fstat(fd).st_dev, 0)
    finally:
        os.close(fd)
    return walk.report


def _proc_pids(proc: str) -> Iterable[str]:
    try:
        return [name for name in os.listdir(proc) if name.isdigit()]
    except OSError:
        return []



def _open_on(proc: str, pid: str, dev: int) -> set[tuple[int, int]]:
    """The (dev, ino) of the files (and working directory) process ``pid`` holds on file system ``dev``."""
    found: set[tuple[int, int]] = set()
    paths = [f"{proc}/{pid}/cwd"]
    try:
        paths += [f"{proc}/{pid}/fd/{fd}" for fd in os.listdir(f"{proc}/{pid}/fd")]
    except OSError:
        pass
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            continue
        if st.st_dev == dev:
            found.add((st.st_dev, st.st_ino))
    return found


def in_use(scratch: str, job_ids: Iterable[int] = (), proc: str = "/proc") -> InUse:
    """What this machine's processes hold, from ``proc``: the jobs running (a process with WULF_JOB_ID
    in its environment is one of a job's), their owners, and the files open on the scratch file system.
    ``job_ids``: jobs the caller knows to be running besides (the agent's own)."""
    dev = os.stat(scratch).st_dev
    jobs, uids, files = set(job_ids), set(), set()
    for pid in _proc_pids(proc):
        job = procfs.job_id_of(pid, proc)
        if job is not None:
            jobs.add(job)
            try:
                uids.add(os.stat(f"{proc}/{pid}").st_uid)
            except OSError:
                pass
        files |= _open_on(proc, pid, dev)
    uids.discard(0)
    return InUse(frozenset(jobs), frozenset(uids), frozenset(files))


def human(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def period(hours: float) -> float:
    """How often the agent purges: a quarter of the age, at most hourly, at least a second apart."""
    return max(1.0, min(3600.0, hours * 3600 / 4))


def purge_logged(scratch: str, hours: float, job_ids: Iterable[int]) -> Report:
    """One purge as the agent runs it, said in its log: a line for what went (the first names), and one
    for what could not."""
    report = purge(scratch, hours * 3600, in_use(scratch, job_ids), time.time())
    if report.removed:
        names = ", ".join(path for path, _ in report.removed[:20])
        more = f" and {len(report.removed) - 20} more" if len(report.removed) > 20 else ""
        log.info("purged scratch %s: removed %d files and directories unused for %gh, %s freed: %s%s", scratch,
                 len(report.removed), hours, human(report.freed), names, more)
    if report.errors:
        log.warning("purging scratch %s: could not remove %d (%s)", scratch, len(report.errors),
                    "; ".join(report.errors[:5]))
    return report


async def every(scratch: str, hours: float, running: Callable[[], Iterable[int]]) -> None:
    """The agent's timer ([agent] purge_scratch_hours; 0: never): purge now and then, off the event loop.
    ``running`` gives the ids of the jobs the agent runs."""
    if hours <= 0:
        return
    while True:
        try:
            await asyncio.to_thread(purge_logged, scratch, hours, list(running()))
        except OSError as e:
            log.warning("cannot purge scratch %s: %s", scratch, e.strerror)
        await asyncio.sleep(period(hours))
