"""Parsing of /proc text (pure), and the scanner against a fake /proc and the real one."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from wulf.agent.procfs import (
    PF_KTHREAD,
    ProcInfo,
    ProcScanner,
    Stat,
    is_kernel_thread,
    parse_cmdline,
    parse_proc,
    parse_stat,
    read_cmdline,
    scan_processes,
)


def stat_line(
    pid: int,
    comm: str,
    ppid: int = 1,
    pgrp: int | None = None,
    sid: int | None = None,
    flags: int = 0x400100,
    utime: int = 10,
    stime: int = 5,
    threads: int = 1,
    start: int = 1000,
    rss: int = 256,
) -> bytes:
    """A stat line laid out like the kernel's (52 fields), with the fields wulf reads settable."""
    pgrp = pid if pgrp is None else pgrp
    sid = pid if sid is None else sid
    fields = [
        "S", ppid, pgrp, sid, 34816, pgrp, flags, 1496, 26019, 0, 18, utime, stime, 16, 6, 20, 0,
        threads, 0, start, 9_000_000, rss, "18446744073709551615",
    ] + [0] * 29
    return f"{pid} ({comm}) {' '.join(str(f) for f in fields)}\n".encode()


# A real line from a kernel, as read from /proc/2405/stat.
BASH = (
    b"2405 (bash) S 2404 2405 2405 0 -1 4194560 1496 26019 0 18 0 1 16 6 20 0 1 0 20115 9375744 1024 "
    b"18446744073709551615 1 1 0 0 0 0 65536 3686404 1266761467 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
)


def test_parse_a_real_line() -> None:
    s = parse_stat(BASH)
    assert s == Stat(
        pid=2405, comm="bash", state="S", ppid=2404, pgrp=2405, session=2405, flags=4194560,
        utime=0, stime=1, num_threads=1, starttime=20115, rss=1024,
    )


@pytest.mark.parametrize(
    "comm", ["my prog", "a) b (c", "x)", "((", ") S 1 2 3", "", "tmux: server", "kworker/0:1-events"]
)
def test_comm_with_spaces_and_parentheses(comm: str) -> None:
    s = parse_stat(stat_line(77, comm, ppid=5, utime=3, stime=4, start=999, rss=12, threads=3))
    assert (s.pid, s.comm, s.ppid, s.utime, s.stime, s.starttime, s.rss, s.num_threads) == (
        77, comm, 5, 3, 4, 999, 12, 3,
    )


def test_comm_that_is_not_utf8() -> None:
    raw = stat_line(9, "x").replace(b"(x)", b"(\xff\xfe)")
    assert parse_stat(raw).comm == "\ufffd\ufffd"


@pytest.mark.parametrize("raw", [b"", b"12 bash S 1", b"12 (bash) S 1 2 3", b"x (y) " + b"0 " * 30])
def test_not_a_stat_line(raw: bytes) -> None:
    with pytest.raises(ValueError):
        parse_stat(raw)


def test_kernel_threads_are_known_by_their_flag() -> None:
    assert is_kernel_thread(parse_stat(stat_line(2, "kthreadd", ppid=0, flags=0x208040)))
    assert is_kernel_thread(parse_stat(stat_line(15, "rcu_preempt", ppid=2, flags=PF_KTHREAD)))
    # Inside a PID namespace pid 2 is an ordinary process.
    assert not is_kernel_thread(parse_stat(stat_line(2, "sleep", ppid=1, flags=0x400100)))


def test_parse_proc_sums_cpu_and_converts_pages() -> None:
    raw = stat_line(50, "a b", ppid=4, sid=4, pgrp=50, utime=7, stime=2, rss=3)
    info = parse_proc(raw, 1000, 4)
    assert info == ProcInfo(
        pid=50, ppid=4, uid=1000, sid=4, pgrp=50, comm="a b", cpu_ticks=9, starttime_ticks=1000, rss_kb=12,
        nthreads=1,
    )
    assert info.key == "50:1000"
    assert parse_proc(stat_line(15, "rcu_preempt", ppid=2, flags=PF_KTHREAD), 0, 4) is None


@pytest.mark.parametrize("comm", ["x", "a) b (c", "tmux: server"])
def test_parse_proc_agrees_with_parse_stat(comm: str) -> None:
    raw = stat_line(61, comm, ppid=9, sid=3, pgrp=8, utime=11, stime=13, threads=4, start=77, rss=5)
    s, info = parse_stat(raw), parse_proc(raw, 0, 1)
    assert info is not None
    assert (info.pid, info.comm, info.ppid, info.sid, info.pgrp) == (s.pid, s.comm, s.ppid, s.session, s.pgrp)
    assert (info.cpu_ticks, info.starttime_ticks, info.rss_kb, info.nthreads) == (
        s.utime + s.stime, s.starttime, s.rss, s.num_threads,
    )


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (b"/usr/bin/matlab\0-nodisplay\0-r\0run(1)\0", "/usr/bin/matlab -nodisplay -r run(1)"),
        (b"sshd: alice@pts/0", "sshd: alice@pts/0"),  # a process that rewrote its argv
        (b"", "[kworker]"),
        (b"\0\0", "[kworker]"),
        (b"caf\xc3\xa9\0\xff\0", "caf\u00e9 \ufffd"),
    ],
)
def test_parse_cmdline(raw: bytes, shown: str) -> None:
    assert parse_cmdline(raw, "kworker") == shown


# ---------------------------------------------------------------- the scanner on a fake /proc


def fake_proc(root: Path, entries: dict[int, bytes]) -> Path:
    for pid, line in entries.items():
        (root / str(pid)).mkdir(exist_ok=True)
        (root / str(pid) / "stat").write_bytes(line)
    (root / "self").mkdir(exist_ok=True)  # not a pid: skipped
    (root / "loadavg").write_text("0.00 0.00 0.00 1/1 1\n")
    return root


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_scanner_reads_a_fake_proc(tmp_path: Path) -> None:
    proc = fake_proc(
        tmp_path,
        {1: stat_line(1, "init", ppid=0), 2: stat_line(2, "kthreadd", ppid=0, flags=0x208040),
         300: stat_line(300, "bash", ppid=1), 301: stat_line(301, "my prog (x)", ppid=300, sid=300)},
    )
    with ProcScanner(str(proc)) as scanner:
        found = {p.pid: p for p in scanner.scan()}
        assert set(found) == {1, 300, 301}  # no kernel thread, no "self"
        assert found[301].comm == "my prog (x)" and found[301].sid == 300
        assert found[300].uid == os.stat(proc / "300").st_uid


def test_scanner_follows_changes_and_departures(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, {1: stat_line(1, "init", ppid=0), 40: stat_line(40, "job", utime=1)})
    before = open_fds()
    scanner = ProcScanner(str(proc))
    assert {p.pid: p.cpu_ticks for p in scanner.scan()} == {1: 15, 40: 6}
    first = {p.pid: p for p in scanner.scan()}
    (proc / "40" / "stat").write_bytes(stat_line(40, "job", utime=90))
    fake_proc(proc, {41: stat_line(41, "new", ppid=40)})
    second = {p.pid: p for p in scanner.scan()}
    assert second[40].cpu_ticks == 95 and 41 in second
    assert second[1] is first[1]  # unchanged text: the record is reused, not parsed again
    (proc / "40" / "stat").unlink()
    (proc / "40").rmdir()
    assert {p.pid for p in scanner.scan()} == {1, 41}
    scanner.close()
    assert open_fds() == before


@pytest.mark.parametrize("max_open", [0, 1, 2, 100])
def test_scanner_within_a_descriptor_budget(tmp_path: Path, max_open: int) -> None:
    proc = fake_proc(tmp_path, {pid: stat_line(pid, f"p{pid}") for pid in range(10, 15)})
    before = open_fds()
    with ProcScanner(str(proc), max_open=max_open) as scanner:
        for _ in range(3):
            assert sorted(p.pid for p in scanner.scan()) == [10, 11, 12, 13, 14]
            assert open_fds() <= before + max_open
    assert open_fds() == before


def test_scanner_skips_a_broken_entry(tmp_path: Path) -> None:
    proc = fake_proc(tmp_path, {7: stat_line(7, "ok"), 8: b"garbage\n"})
    (proc / "9").mkdir()  # a process that died between the listing and the read
    assert [p.pid for p in scan_processes(str(proc))] == [7]


# ---------------------------------------------------------------- the real /proc


def test_real_scan_sees_this_process() -> None:
    found = {p.pid: p for p in scan_processes()}
    me = found[os.getpid()]
    assert me.ppid == os.getppid()
    assert me.uid == os.geteuid()
    assert me.sid == os.getsid(0) and me.pgrp == os.getpgrp()
    assert me.rss_kb > 0 and me.nthreads >= 1
    assert all(p.pid > 0 for p in found.values())


def test_read_cmdline() -> None:
    shown = read_cmdline(os.getpid(), "python")
    assert "python" in shown.lower() or "pytest" in shown
    assert read_cmdline(2**22 + 12345, "gone") == "[gone]"  # above pid_max: never a process


def test_real_scanner_follows_a_child_from_birth_to_death() -> None:
    before = open_fds()
    with ProcScanner() as scanner:
        scanner.scan()
        child = subprocess.Popen(["sleep", "300"], start_new_session=True)
        try:
            seen = {p.pid: p for p in scanner.scan()}
            assert seen[child.pid].ppid == os.getpid() and seen[child.pid].sid == child.pid
            assert seen[child.pid].comm == "sleep"
        finally:
            child.kill()
            child.wait()
        assert child.pid not in {p.pid for p in scanner.scan()}
    assert open_fds() == before
