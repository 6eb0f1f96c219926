"""Read the process table from Linux ``/proc``.

Parsing is kept apart from reading: ``parse_stat``, ``is_kernel_thread``, ``parse_proc`` and
``parse_cmdline`` are pure and tested with sample text; ``ProcScanner`` (with ``scan_processes``, its
one-shot form) and ``read_cmdline`` are the only code that touches files.

A scan must stay cheap: the agent scans every few seconds, on nodes with thousands of processes, and
the kernel spends several microseconds producing each ``/proc/[pid]/stat``. So a ``ProcScanner`` keeps
each process's ``stat`` file open between scans and re-reads it with one ``pread`` (no path lookup, no
open/close), and when the text has not changed since the last scan (an idle process) it reuses the
parsed record and skips the owner lookup too. Kernel threads are remembered and re-read only now and
then. ``cmdline`` is read only for the few processes that are reported by name.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from types import TracebackType
from typing import Final, NamedTuple

PF_KTHREAD: Final = 0x00200000
"""The ``flags`` bit the kernel sets on its own threads; they are nobody's load."""

KTHREAD_RECHECK: Final = 32
"""A known kernel thread is re-read every this many scans, in case its pid now names a new process."""

_READ_SIZE: Final = 4096  # a stat line is a few hundred bytes (comm is at most 64)
_CMDLINE_SIZE: Final = 4096  # enough for a display string; long argument lists are cut anyway
_O_READ: Final = os.O_RDONLY | os.O_CLOEXEC  # never leak these descriptors into jobs


class Stat(NamedTuple):
    """The fields of ``/proc/[pid]/stat`` that wulf uses."""

    pid: int
    comm: str
    state: str
    ppid: int
    pgrp: int
    session: int
    flags: int
    utime: int  # clock ticks
    stime: int  # clock ticks
    num_threads: int
    starttime: int  # clock ticks since boot
    rss: int  # pages


class ProcInfo(NamedTuple):
    """One process as the agent sees it: who owns it, where it hangs in the tree, what it uses.

    Immutable like a frozen dataclass, but a NamedTuple: a scan builds one per changed process, and a
    frozen dataclass costs three times as much to build (2 us against 0.7 us here).
    """

    pid: int
    ppid: int
    uid: int
    sid: int
    pgrp: int
    comm: str
    cpu_ticks: int  # user + system time, clock ticks
    starttime_ticks: int  # clock ticks since boot; with pid, names one process for its whole life
    rss_kb: int
    nthreads: int

    @property
    def key(self) -> str:
        """Identity across scans: a pid alone is reused, pid and start time together are not."""
        return f"{self.pid}:{self.starttime_ticks}"


def _split_stat(raw: bytes) -> tuple[int, bytes, list[bytes]]:
    """The pid, the comm and the fields after comm of a stat line; ``rest[0]`` is field 3 of proc(5)
    (state), field n is ``rest[n - 3]``.

    ``comm`` sits in parentheses and may itself hold spaces and ``)`` (a program may name itself
    anything), so the fields after it are found from the LAST ``)``.
    """
    open_at = raw.find(b"(")
    close_at = raw.rfind(b")")
    if open_at < 0 or close_at < open_at:
        raise ValueError(f"not a /proc stat line: {raw[:80]!r}")
    rest = raw[close_at + 1 :].split(None, 22)  # only the first 22 fields after comm are used
    if len(rest) < 22:
        raise ValueError(f"short /proc stat line: {raw[:80]!r}")
    return int(raw[:open_at]), raw[open_at + 1 : close_at], rest


def parse_stat(raw: bytes) -> Stat:
    """Parse one ``/proc/[pid]/stat`` line; ValueError if it is not one."""
    pid, comm, rest = _split_stat(raw)
    return Stat(
        pid,
        comm.decode("utf-8", "replace"),
        rest[0].decode("ascii", "replace"),
        int(rest[1]),  # ppid
        int(rest[2]),  # pgrp
        int(rest[3]),  # session
        int(rest[6]),  # flags
        int(rest[11]),  # utime
        int(rest[12]),  # stime
        int(rest[17]),  # num_threads
        int(rest[19]),  # starttime
        int(rest[21]),  # rss
    )


def is_kernel_thread(stat: Stat) -> bool:
    """Whether the kernel marked this process as one of its own threads (PF_KTHREAD).

    The flag is used rather than "pid 2 or parent 2": inside a PID namespace kthreadd is invisible and
    pid 2 is an ordinary process, while the flag tells the truth in both worlds.
    """
    return bool(stat.flags & PF_KTHREAD)


def parse_proc(raw: bytes, uid: int, page_kb: int) -> ProcInfo | None:
    """A stat line and its owner (which stat does not carry) as a ProcInfo; None for a kernel thread.

    The scanner's hot path: the fields of ``parse_stat`` without building the intermediate Stat.
    """
    pid, comm, rest = _split_stat(raw)
    if int(rest[6]) & PF_KTHREAD:
        return None
    return ProcInfo(
        pid,
        int(rest[1]),  # ppid
        uid,
        int(rest[3]),  # session
        int(rest[2]),  # pgrp
        comm.decode("utf-8", "replace"),
        int(rest[11]) + int(rest[12]),  # utime + stime
        int(rest[19]),  # starttime
        int(rest[21]) * page_kb,  # rss
        int(rest[17]),  # num_threads
    )


def parse_cmdline(raw: bytes, comm: str) -> str:
    """Turn NUL-separated ``cmdline`` bytes into one display string.

    Zombies and some daemons have an empty cmdline; they are shown as ``[comm]``, as ps does.
    """
    text = raw.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace").strip()
    return text or f"[{comm}]"


def default_max_open() -> int:
    """How many stat files a scanner may keep open: half the soft descriptor limit, so that the agent
    keeps the other half for its sockets and jobs (the agent raises its soft limit to the hard one when it
    starts: see wulf.rlimits)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(0, soft // 2)


@dataclass(slots=True)
class _Seen:
    """What a scanner remembers of one pid: its open stat file (-1: none), last text, owner, record."""

    fd: int
    raw: bytes
    uid: int
    info: ProcInfo | None  # None: a kernel thread


class ProcScanner:
    """Scans a ``/proc`` again and again, cheaply (see the module notes). Close it when done.

    Processes come and go during a scan; one that vanishes between the listing and the reads is
    skipped. A kept stat file stays bound to its process, so when a pid is reused the old file fails to
    read and the new process is opened afresh: records never mix two processes.
    """

    def __init__(self, proc: str = "/proc", max_open: int | None = None) -> None:
        self.proc = proc
        self._max_open = default_max_open() if max_open is None else max_open
        self._page_kb = os.sysconf("SC_PAGE_SIZE") // 1024
        self._seen: dict[int, _Seen] = {}
        self._open = 0
        self._scans = 0

    def scan(self) -> list[ProcInfo]:
        """Every user-space process now in ``proc`` (kernel threads left out)."""
        self._scans += 1
        recheck = self._scans % KTHREAD_RECHECK == 0
        previous, current = self._seen, {}
        found: list[ProcInfo] = []
        for name in os.listdir(self.proc):
            if not name.isdigit():
                continue
            pid = int(name)
            old = previous.pop(pid, None)
            if old is not None and old.info is None and not recheck:
                seen: _Seen | None = old  # a known kernel thread
            else:
                seen = self._look(pid, old)
            if seen is None:
                continue
            current[pid] = seen
            if seen.info is not None:
                found.append(seen.info)
        for gone in previous.values():
            self._close(gone)
        self._seen = current
        return found

    def close(self) -> None:
        """Release every kept file."""
        for seen in self._seen.values():
            self._close(seen)
        self._seen = {}

    def __enter__(self) -> ProcScanner:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _look(self, pid: int, old: _Seen | None) -> _Seen | None:
        """Read one pid, reusing what is remembered of it; None when it is gone."""
        raw = self._reread(old) if old is not None else None
        uid: int | None = None
        fd = old.fd if old is not None else -1
        if raw is None:
            fresh = self._read_fresh(pid)
            if fresh is None:
                return None
            fd, raw, uid = fresh
        if old is not None and raw == old.raw and uid in (None, old.uid):
            old.fd = fd
            return old  # nothing changed: an idle process
        try:
            if uid is None:
                uid = os.stat(f"{self.proc}/{pid}").st_uid  # a kept file's owner is not kept current
            info = parse_proc(raw, uid, self._page_kb)
        except (OSError, ValueError):
            self._close(_Seen(fd, raw, 0, None))
            return None
        return _Seen(fd, raw, uid, info)

    def _reread(self, old: _Seen) -> bytes | None:
        """The current text of a kept stat file; None (and the file closed) if it has none or died."""
        if old.fd < 0:
            return None
        try:
            return os.pread(old.fd, _READ_SIZE, 0)
        except OSError:
            self._close(old)
            return None

    def _read_fresh(self, pid: int) -> tuple[int, bytes, int] | None:
        """Open, read and own one stat file: (kept fd or -1, text, uid); None when the process is gone."""
        try:
            fd = os.open(f"{self.proc}/{pid}/stat", _O_READ)
        except OSError:
            return None
        try:
            uid = os.fstat(fd).st_uid  # fresh from the path lookup, so current
            raw = os.read(fd, _READ_SIZE)
        except OSError:
            os.close(fd)
            return None
        if self._open >= self._max_open:
            os.close(fd)
            return -1, raw, uid
        self._open += 1
        return fd, raw, uid

    def _close(self, seen: _Seen) -> None:
        if seen.fd >= 0:
            os.close(seen.fd)
            seen.fd = -1
            self._open -= 1


def scan_processes(proc: str = "/proc") -> list[ProcInfo]:
    """Every user-space process in ``proc``, read once (a ``ProcScanner`` is cheaper when repeated)."""
    with ProcScanner(proc, max_open=0) as scanner:
        return scanner.scan()


def job_id_of(pid: int | str, proc: str = "/proc") -> int | None:
    """The WULF_JOB_ID a process was started with (a job's supervisor, and the job), if any."""
    try:
        with open(f"{proc}/{pid}/environ", "rb") as f:
            for item in f.read().split(b"\0"):
                if item.startswith(b"WULF_JOB_ID="):
                    return int(item[12:])
    except (OSError, ValueError):
        pass
    return None


def read_cmdline(pid: int, comm: str, proc: str = "/proc") -> str:
    """The command line of one process for display, ``[comm]`` if it has none or is gone."""
    try:
        fd = os.open(f"{proc}/{pid}/cmdline", _O_READ)
    except OSError:
        return f"[{comm}]"
    try:
        raw = os.read(fd, _CMDLINE_SIZE)
    except OSError:
        raw = b""
    finally:
        os.close(fd)
    return parse_cmdline(raw, comm)
