"""Control groups: one per job, to measure and limit a job as a whole, children and all.

What the kernel offers is found once, at agent start (:func:`detect`):

* **cgroup v2** (one unified hierarchy) when its ``cgroup.controllers`` offers ``memory`` (and
  ``cpu``, whose ``cpu.stat`` is there anyway);
* else **cgroup v1**, with the ``memory`` hierarchy (and ``cpuacct`` for cpu time when mounted);
* else none, and none either when the agent may not create cgroups (not root): jobs are then measured
  from their processes and limited with rlimits (see :mod:`wulf.agent.limits`).

A job's cgroup is ``<mount>/wulf/<group>/job-<id>`` in each hierarchy used, where ``<group>`` names
this agent on this machine (its node name and a tag of its runtime directory): several agents on one
machine (the namespaced test hosts share ``/sys/fs/cgroup``) never meet, and a restarted agent finds
its jobs' cgroups again. The job's shell puts itself in its cgroup before it runs anything (see
:mod:`wulf.agent.launcher`), so no child escapes. On v1, an ended job's empty cgroup may wait as
``spare-<n>`` for the next job, which takes it under its own name (see :mod:`wulf.agent.cgpool`).

The parsing of cgroup files is pure and tested with sample text; :class:`Cgroups` and
:class:`JobCgroup` are the only code here that touches files.
"""

from __future__ import annotations

import contextlib
import logging
import os
import posixpath
import re
import signal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

log = logging.getLogger(__name__)

MB: Final = 1024 * 1024
BASE: Final = "wulf"
"""The directory under each hierarchy's mount that holds wulf's cgroups."""

Version = Literal[1, 2]


# ---------------------------------------------------------------- pure: parsing


@dataclass(frozen=True)
class Mount:
    """One mounted cgroup hierarchy (a line of ``/proc/self/mountinfo``)."""

    point: str  # where it is mounted
    root: str  # the cgroup of the hierarchy that is mounted there ("/" unless in a container)
    fstype: str  # "cgroup" (v1) or "cgroup2"
    options: frozenset[str]  # super options: a v1 hierarchy names its controllers here


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash in paths as octal escapes (``\\040``)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    """The cgroup hierarchies among the mounts of ``/proc/self/mountinfo``, in its order."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        try:
            sep = fields.index("-", 6)
            fstype, options = fields[sep + 1], fields[sep + 3]
        except (ValueError, IndexError):
            continue
        if fstype in ("cgroup", "cgroup2"):
            mounts.append(Mount(_unescape(fields[4]), _unescape(fields[3]), fstype,
                                frozenset(options.split(","))))
    return mounts


def parse_controllers(text: str) -> frozenset[str]:
    """``cgroup.controllers`` / ``cgroup.subtree_control``: controller names separated by spaces."""
    return frozenset(text.split())


def parse_keyed(text: str) -> dict[str, int]:
    """A flat keyed file: ``memory.stat``, ``cpu.stat``, ``memory.events``, ``memory.oom_control``."""
    values = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            values[key] = int(value)
    return values


def parse_value(text: str) -> int | None:
    """A file of one number (``memory.current``, ``cpuacct.usage``); None for ``max`` or nothing."""
    text = text.strip()
    return int(text) if text.isdigit() else None


def parse_procs(text: str) -> list[int]:
    """``cgroup.procs``: one pid per line."""
    return [int(line) for line in text.split() if line.isdigit()]


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """``/proc/<pid>/cgroup`` as controller -> cgroup path; the v2 hierarchy is under ``""``.

    Lines are ``hierarchy-id:controllers:path``; a v1 hierarchy may carry several controllers
    (``4:cpu,cpuacct:/x``) and named ones (``name=systemd``).
    """
    paths = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        for controller in parts[1].split(",") if parts[1] else [""]:
            paths[controller] = parts[2]
    return paths


@dataclass(frozen=True)
class Layout:
    """Where job cgroups live: the memory hierarchy and the cpu-accounting one (v2: the same)."""

    version: Version
    memory: Mount
    cpu: Mount | None  # None: no cpu accounting by cgroup (v1 without cpuacct)


def choose_layout(mounts: Sequence[Mount], unified_controllers: frozenset[str] | None) -> Layout | None:
    """The hierarchies to use, from the cgroup mounts and what the first cgroup2 mount offers.

    v2 when its ``cgroup.controllers`` (``unified_controllers``) has ``memory``; else v1 when a
    ``memory`` hierarchy is mounted (with ``cpuacct`` if there is one); else None.
    """
    unified = next((m for m in mounts if m.fstype == "cgroup2"), None)
    if unified is not None and unified_controllers is not None and "memory" in unified_controllers:
        return Layout(2, unified, unified)
    v1 = [m for m in mounts if m.fstype == "cgroup"]
    memory = next((m for m in v1 if "memory" in m.options), None)
    if memory is None:
        return None
    return Layout(1, memory, next((m for m in v1 if "cpuacct" in m.options), None))


@dataclass(frozen=True)
class Files:
    """The names of the files wulf reads and writes, by cgroup version."""

    usage: str  # memory in use now, page cache included (bytes)
    peak: str  # highest memory use (bytes)
    limit: str  # hard memory limit (bytes)
    swap_limit: str  # v1: memory + swap; v2: swap alone
    events: str  # where the OOM killer's count is (key oom_kill)
    inactive_file: str  # memory.stat key: page cache that may be reclaimed at no cost
    cpu: str  # cpu time used


V1: Final = Files("memory.usage_in_bytes", "memory.max_usage_in_bytes", "memory.limit_in_bytes",
                  "memory.memsw.limit_in_bytes", "memory.oom_control", "total_inactive_file", "cpuacct.usage")
V2: Final = Files("memory.current", "memory.peak", "memory.max", "memory.swap.max", "memory.events",
                  "inactive_file", "cpu.stat")
FILES: Final = {1: V1, 2: V2}


def working_set(usage: int, stat: dict[str, int], version: Version) -> int:
    """A cgroup's working set in bytes, as kubelet counts it: what it uses minus the inactive page
    cache, which the kernel would reclaim before it ran out of memory."""
    return max(usage - stat.get(FILES[version].inactive_file, 0), 0)


def cpu_seconds(text: str, version: Version) -> float | None:
    """cpu time in seconds from ``cpuacct.usage`` (v1, nanoseconds) or ``cpu.stat`` (v2, usage_usec)."""
    if version == 1:
        ns = parse_value(text)
        return None if ns is None else ns / 1e9
    usec = parse_keyed(text).get("usage_usec")
    return None if usec is None else usec / 1e6


def swap_limit_text(limit: int, version: Version) -> str:
    """No swapping beyond the limit: v1 limits memory + swap to the limit, v2 swap to nothing."""
    return str(limit) if version == 1 else "0"


def group_name(node: str, tag: str) -> str:
    """The directory naming one agent on this machine: its node name made safe, and a tag."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", node).lstrip(".") or "node"
    return f"{safe}-{tag}"


def job_dir_name(job_id: int) -> str:
    return f"job-{job_id}"


def parse_job_dir(name: str) -> int | None:
    """The job id of a job cgroup's directory name, None for other names."""
    m = re.fullmatch(r"job-(\d+)", name)
    return int(m.group(1)) if m else None


def spare_dir_name(n: int) -> str:
    return f"spare-{n}"


def parse_spare_dir(name: str) -> int | None:
    """The number of a spare cgroup's directory name, None for other names."""
    m = re.fullmatch(r"spare-(\d+)", name)
    return int(m.group(1)) if m else None


# ---------------------------------------------------------------- I/O


# os.open/os.read rather than open(): a job's cgroup files are read and written for every job, and
# open() adds an fstat, an ioctl and a seek to each (cgroup files are small: one read takes them whole)


def _read(path: str, dir_fd: int | None = None) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks).decode("ascii", "replace")
    except OSError:
        return None
    finally:
        os.close(fd)


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, text.encode("ascii"))
    finally:
        os.close(fd)


class JobCgroup:
    """The cgroup(s) of one job: one directory per hierarchy used (one on v2, two on v1)."""

    def __init__(self, layout: Layout, relative: str, parent_fds: Sequence[int] = ()) -> None:
        self.layout = layout
        self.version: Version = layout.version
        self.files = FILES[layout.version]
        self._parent_fds = tuple(parent_fds)  # its parent directories, open, in the order of dirs(); or none
        self._place(relative)
        self.limited = False  # a memory limit is set on it: the kernel enforces it
        self.reused = False  # a spare taken for this job (see wulf.agent.cgpool), not one made for it
        self.pooled = False  # made or handed out by this agent's pool (not found again after a restart)
        self.keep_open = False  # keep its counter files open: each read is then one pread (see _counter)
        self._fds: dict[str, int] = {}

    def _place(self, relative: str) -> None:
        layout = self.layout
        self.relative = relative
        self.name = posixpath.basename(relative)
        self.memory_dir = os.path.join(layout.memory.point, relative)
        self.cpu_dir = os.path.join(layout.cpu.point, relative) if layout.cpu is not None else None
        self._paths = {"memory" if layout.version == 1 else "": posixpath.join(layout.memory.root, relative)}
        if layout.version == 1 and layout.cpu is not None:
            self._paths["cpuacct"] = posixpath.join(layout.cpu.root, relative)

    def dirs(self) -> list[str]:
        return [self.memory_dir] + ([self.cpu_dir] if self.cpu_dir and self.cpu_dir != self.memory_dir else [])

    def procs_files(self) -> list[str]:
        """The files a process writes its pid to, to join this cgroup in every hierarchy."""
        return [os.path.join(d, "cgroup.procs") for d in self.dirs()]

    def exists(self) -> bool:
        return os.path.isdir(self.memory_dir)

    def create(self, mem_limit_mb: float | None) -> None:
        """Make the directories and set the memory limit. Raises OSError when it cannot."""
        for d in self.dirs():
            try:
                os.mkdir(d)
            except FileNotFoundError:  # this agent's own directory is gone (removed by hand)
                os.makedirs(d, exist_ok=True)
            except FileExistsError:  # left by an earlier run: made anew (its counts are not this job's)
                if d == self.memory_dir and self.pids():
                    raise OSError(f"{self.memory_dir} already holds processes") from None
                os.rmdir(d)
                os.mkdir(d)
        if mem_limit_mb is not None:
            limit = int(mem_limit_mb * MB)
            _write(os.path.join(self.memory_dir, self.files.limit), str(limit))
            self.limited = True
            with contextlib.suppress(OSError):  # no swap accounting: nothing to limit
                _write(os.path.join(self.memory_dir, self.files.swap_limit), swap_limit_text(limit, self.version))

    def holds(self, pid: int) -> bool:
        """Whether process ``pid`` is in this cgroup in every hierarchy (its shell joined it)."""
        text = _read(f"/proc/{pid}/cgroup")
        if text is None:
            return False
        paths = parse_proc_cgroup(text)
        return all(paths.get(controller) == path for controller, path in self._paths.items())

    def pids(self) -> list[int]:
        text = _read(os.path.join(self.memory_dir, "cgroup.procs"))
        return [] if text is None else parse_procs(text)

    # The counter files (cpu time, memory in use, peak memory) are read at every job's end, and a
    # spare's are reset for the next job: with ``keep_open`` they stay open (they are found by their
    # file, so a rename does not matter), and a read or reset is one pread or pwrite, not an open, a
    # read and a close. (cgroup.procs cannot be read so: v1 keeps the list it read first per open file.)

    def _counter_path(self, which: str) -> str | None:
        if which == "cpu":
            return None if self.cpu_dir is None else os.path.join(self.cpu_dir, self.files.cpu)
        return os.path.join(self.memory_dir, self.files.usage if which == "usage" else self.files.peak)

    def _counter_fd(self, which: str) -> int:
        fd = self._fds.get(which)
        if fd is None:
            path = self._counter_path(which)
            if path is None:
                raise FileNotFoundError(f"no {which} file")
            fd = self._fds[which] = os.open(path, (os.O_RDONLY if which == "usage" else os.O_RDWR) | os.O_CLOEXEC)
        return fd

    def _counter(self, which: str) -> str | None:
        """The text of a counter file: ``cpu``, ``usage`` or ``peak``."""
        if not self.keep_open:
            path = self._counter_path(which)
            return None if path is None else _read(path)
        try:
            return os.pread(self._counter_fd(which), 256, 0).decode("ascii", "replace")
        except OSError:
            return None

    def _reset(self, which: str) -> None:
        if not self.keep_open:
            path = self._counter_path(which)
            if path is None:
                raise FileNotFoundError(f"no {which} file")
            _write(path, "0")
        else:
            os.pwrite(self._counter_fd(which), b"0", 0)

    def close_files(self) -> None:
        """Close the counter files it keeps open."""
        for fd in self._fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()

    def cpu_seconds(self) -> float | None:
        text = self._counter("cpu")
        return None if text is None else cpu_seconds(text, self.version)

    def memory_mb(self) -> float | None:
        """The working set (see :func:`working_set`)."""
        usage = self._counter("usage")
        stat = _read(os.path.join(self.memory_dir, "memory.stat"))
        value = None if usage is None else parse_value(usage)
        if value is None or stat is None:
            return None
        return working_set(value, parse_keyed(stat), self.version) / MB

    def peak_mb(self) -> float | None:
        """Its highest memory use (page cache included); None where the kernel does not keep it."""
        text = self._counter("peak")
        value = None if text is None else parse_value(text)
        return None if value is None else value / MB

    def oom_kills(self) -> int:
        """How many of its processes the kernel's OOM killer has killed."""
        text = _read(os.path.join(self.memory_dir, self.files.events))
        return 0 if text is None else parse_keyed(text).get("oom_kill", 0)

    def signal(self, signum: int, spare: int | None = None) -> int:
        """Send ``signum`` to every process in it but ``spare``; how many there were."""
        pids = [pid for pid in self.pids() if pid != spare]
        if signum == signal.SIGKILL and spare is None and self.version == 2 and pids:
            with contextlib.suppress(OSError):
                _write(os.path.join(self.memory_dir, "cgroup.kill"), "1")  # atomic, since Linux 5.14
                return len(pids)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signum)
        return len(pids)

    def rename(self, name: str) -> None:
        """Give it another name in the same parent, in every hierarchy (cgroup v1 only: v2 cannot
        rename). Raises OSError when it cannot, and then keeps (or is put back under) its old name."""
        # relative to the open parent directories where there are some: no path to look up (half the cost)
        moves = ([(self.name, name, fd) for fd in self._parent_fds] if self._parent_fds else
                 [(d, os.path.join(os.path.dirname(d), name), None) for d in self.dirs()])
        done: list[tuple[str, str, int | None]] = []
        try:
            for src, dst, fd in moves:
                os.rename(src, dst, src_dir_fd=fd, dst_dir_fd=fd)
                done.append((src, dst, fd))
        except OSError:
            for src, dst, fd in reversed(done):
                with contextlib.suppress(OSError):
                    os.rename(dst, src, src_dir_fd=fd, dst_dir_fd=fd)
            raise
        self._place(posixpath.join(posixpath.dirname(self.relative), name))

    def empty(self) -> bool:
        """Whether no process is in it, in any hierarchy (unreadable: not known to be empty)."""
        files = ([(f"{self.name}/cgroup.procs", fd) for fd in self._parent_fds] if self._parent_fds else
                 [(os.path.join(d, "cgroup.procs"), None) for d in self.dirs()])
        for path, fd in files:
            text = _read(path, fd)
            if text is None or parse_procs(text):
                return False
        return True

    def usage_bytes(self) -> int | None:
        """The memory charged to it now (page cache and kernel memory included)."""
        text = self._counter("usage")
        return None if text is None else parse_value(text)

    def reset_counters(self) -> None:
        """v1: start its cpu time at 0 and its peak memory at what is charged now, for a new job.
        Raises OSError when it cannot (v2 cannot: its counters only grow)."""
        if self.version != 1 or self.cpu_dir is None:
            raise OSError(f"the counters of {self.memory_dir} cannot be reset")
        self._reset("cpu")
        self._reset("peak")

    def remove(self) -> bool:
        """Remove its directories (and close its open files); False while processes remain (or are
        still exiting)."""
        done = True
        for d in self.dirs():
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass
            except OSError:
                done = False
        if done:
            self.close_files()
        return done


class Cgroups:
    """This agent's cgroups: ``<mount>/wulf/<group>/job-<id>`` in each hierarchy used."""

    def __init__(self, layout: Layout, group: str) -> None:
        self.layout = layout
        self.group = group
        self.relative = posixpath.join(BASE, group)
        self._dir_fds: tuple[int, ...] = ()  # this agent's directories, open (after setup)

    @classmethod
    def setup(cls, group: str) -> Cgroups | None:
        """Find the hierarchies and make this agent's directory in each; None (logged) when this
        machine or this agent cannot have cgroups."""
        layout = detect()
        if layout is None:
            log.info("no usable cgroups (neither v2 with the memory controller nor v1 memory): jobs are "
                     "measured from their processes and limited with rlimits")
            return None
        cgroups = cls(layout, group)
        try:
            cgroups._prepare()
            cgroups._dir_fds = tuple(os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                                     for d in JobCgroup(layout, cgroups.relative).dirs())
        except OSError as e:
            log.info("cannot use cgroups v%d (%s): jobs are measured from their processes and limited "
                     "with rlimits", layout.version, e)
            return None
        log.info("jobs run in cgroups v%d under %s", layout.version,
                 os.path.join(layout.memory.point, cgroups.relative))
        return cgroups

    def _prepare(self) -> None:
        if os.geteuid() != 0:
            raise PermissionError("the agent does not run as root")
        mounts = [self.layout.memory] + ([self.layout.cpu] if self.layout.cpu is not None else [])
        for mount in {m.point: m for m in mounts}.values():
            os.makedirs(os.path.join(mount.point, self.relative), exist_ok=True)
        if self.layout.version == 2:
            point = self.layout.memory.point
            for d in (point, os.path.join(point, BASE), os.path.join(point, self.relative)):
                _enable_controllers(d)

    @property
    def reusable(self) -> bool:
        """Whether an ended job's cgroup can serve the next job: v1 with cpu accounting, where a
        cgroup can be renamed and its cpu time and peak memory reset (v2 can do neither)."""
        return self.layout.version == 1 and self.layout.cpu is not None

    def job(self, job_id: int) -> JobCgroup:
        """The handle of one job's cgroup (nothing is created)."""
        return self.named(job_dir_name(job_id))

    def named(self, name: str) -> JobCgroup:
        """The handle of the cgroup ``name`` of this agent (a job's, or a spare)."""
        return JobCgroup(self.layout, posixpath.join(self.relative, name), self._dir_fds)

    def _names(self) -> list[str]:
        try:
            return os.listdir(os.path.join(self.layout.memory.point, self.relative))
        except OSError:
            return []

    def job_ids(self) -> list[int]:
        """The jobs that have a cgroup of this agent now."""
        return sorted(i for i in map(parse_job_dir, self._names()) if i is not None)

    def spare_names(self) -> list[str]:
        """The spare cgroups of this agent now."""
        return sorted(n for n in self._names() if parse_spare_dir(n) is not None)

    def remove_stale(self, known: Iterable[int]) -> list[int]:
        """Remove the empty cgroups of jobs not in ``known`` (left by an earlier run), and every spare;
        the ids of the jobs whose cgroups were removed. One that still holds processes is left alone
        and logged."""
        keep = set(known)
        removed = []
        for job_id in self.job_ids():
            if job_id in keep:
                continue
            cg = self.job(job_id)
            if cg.pids():
                log.warning("the cgroup of job %d (%s) holds processes but the job is not known here; "
                            "left alone", job_id, cg.memory_dir)
            elif cg.remove():
                removed.append(job_id)
        for name in self.spare_names():
            spare = self.named(name)
            if spare.pids():
                log.warning("the spare cgroup %s holds processes; left alone", spare.memory_dir)
            else:
                spare.remove()
        return removed

    def close(self) -> None:
        """Remove this agent's directories if no job cgroup is left in them."""
        for fd in self._dir_fds:
            os.close(fd)
        self._dir_fds = ()
        for d in JobCgroup(self.layout, self.relative).dirs():
            with contextlib.suppress(OSError):
                os.rmdir(d)


def controllers_to_enable(enabled: frozenset[str], offered: frozenset[str]) -> list[str]:
    """v2: what to write to a ``cgroup.subtree_control`` so that children have ``memory`` (always: it
    fails loudly where not offered) and ``cpu`` (when offered), given what it has and offers."""
    return [c for c in ("memory", "cpu") if c not in enabled and (c == "memory" or c in offered)]


def _enable_controllers(path: str) -> None:
    """v2: let the children of ``path`` have the memory controller (needed) and cpu (if offered)."""
    enabled = parse_controllers(_read(os.path.join(path, "cgroup.subtree_control")) or "")
    offered = parse_controllers(_read(os.path.join(path, "cgroup.controllers")) or "")
    for controller in controllers_to_enable(enabled, offered):
        try:
            _write(os.path.join(path, "cgroup.subtree_control"), f"+{controller}")
        except OSError:
            if controller == "memory":
                raise


def detect(mountinfo: str = "/proc/self/mountinfo") -> Layout | None:
    """The cgroup layout of this machine (see :func:`choose_layout`); None without one."""
    mounts = parse_mountinfo(_read(mountinfo) or "")
    unified = next((m for m in mounts if m.fstype == "cgroup2"), None)
    controllers = None
    if unified is not None:
        text = _read(os.path.join(unified.point, "cgroup.controllers"))
        controllers = None if text is None else parse_controllers(text)
    return choose_layout(mounts, controllers)
