"""Spare job cgroups (wulf.agent.cgpool) on directories that stand in for cgroup hierarchies.

A stand-in directory cannot be removed while it holds files, as a real cgroup can: the tests remove
the files a cgroup would have before they expect a removal to succeed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wulf.agent.cgpool import LEFTOVER_MAX, CgroupPool, may_keep
from wulf.agent.cgroups import Cgroups, JobCgroup, Layout, Mount
from wulf.agent.jobmeter import JobMeter


def _layout(tmp_path: Path, version: int = 1, cpuacct: bool = True) -> Layout:
    if version == 2:
        unified = Mount(str(tmp_path / "unified"), "/", "cgroup2", frozenset())
        return Layout(2, unified, unified)
    memory = Mount(str(tmp_path / "memory"), "/", "cgroup", frozenset({"memory"}))
    cpu = Mount(str(tmp_path / "cpuacct"), "/", "cgroup", frozenset({"cpuacct"})) if cpuacct else None
    return Layout(1, memory, cpu)


def _cgroups(tmp_path: Path, version: int = 1, cpuacct: bool = True) -> Cgroups:
    cgroups = Cgroups(_layout(tmp_path, version, cpuacct), "n1-abc")
    for d in cgroups.named("").dirs():
        os.makedirs(d, exist_ok=True)
    return cgroups


def _ran(cg: JobCgroup, cpu_ns: int = 7, peak: int = 9, usage: int = 4096, procs: str = "") -> None:
    """What the kernel would show once a job has run in ``cg`` and ended. (A counter that is reset
    is written "0" in place, which a stand-in file takes over its first character only: the tests
    give those counters one digit.)"""
    mem = Path(cg.memory_dir)
    (mem / "cgroup.procs").write_text(procs)
    (mem / "memory.usage_in_bytes").write_text(f"{usage}\n")
    (mem / "memory.max_usage_in_bytes").write_text(f"{peak}\n")
    if cg.cpu_dir is not None:
        Path(cg.cpu_dir, "cgroup.procs").write_text(procs)
        Path(cg.cpu_dir, "cpuacct.usage").write_text(f"{cpu_ns}\n")


def _clear(cg: JobCgroup) -> None:
    """Take away the stand-in files, so that the directories can be removed as real cgroups can."""
    for d in cg.dirs():
        for f in Path(d).iterdir():
            f.unlink()


def test_the_leftover_rule() -> None:
    assert may_keep(0) and may_keep(LEFTOVER_MAX)
    assert not may_keep(LEFTOVER_MAX + 1) and not may_keep(None)


def test_an_ended_jobs_cgroup_serves_the_next_job_under_its_name_with_counters_reset(tmp_path: Path) -> None:
    cgroups = _cgroups(tmp_path)
    assert cgroups.reusable
    pool = CgroupPool(cgroups)
    first = pool.take(1, None)
    assert first.name == "job-1" and not first.reused and pool.made == 1
    _ran(first, cpu_ns=7, peak=9)
    assert first.cpu_seconds() == pytest.approx(7e-9) and first.peak_mb() == pytest.approx(9 / 2**20)
    assert pool.give_back(first, now=100.0)
    assert pool.spares == 1 and cgroups.spare_names() == ["spare-0"] and cgroups.job_ids() == []
    assert first.name == "spare-0" and first.dirs() == [str(tmp_path / "memory/wulf/n1-abc/spare-0"),
                                                         str(tmp_path / "cpuacct/wulf/n1-abc/spare-0")]
    second = pool.take(2, None)
    assert second is first and second.reused and pool.reused == 1 and pool.spares == 0
    assert second.dirs() == [str(tmp_path / "memory/wulf/n1-abc/job-2"), str(tmp_path / "cpuacct/wulf/n1-abc/job-2")]
    assert cgroups.job_ids() == [2]
    # the kernel sets the peak to what is charged now when "0" is written; a stand-in file just takes "0"
    assert second.cpu_seconds() == 0.0 and second.peak_mb() == 0.0


def test_a_job_with_a_memory_limit_gets_a_cgroup_of_its_own_and_it_is_not_kept(tmp_path: Path) -> None:
    cgroups = _cgroups(tmp_path)
    pool = CgroupPool(cgroups)
    spare = pool.take(1, None)
    _ran(spare)
    assert pool.give_back(spare, 0.0) and pool.spares == 1
    limited = pool.take(2, 64.0)
    assert limited.limited and not limited.reused and pool.spares == 1  # the spare waits for another job
    assert (Path(limited.memory_dir) / "memory.limit_in_bytes").read_text() == str(64 << 20)
    _ran(limited)
    _clear(limited)
    (Path(limited.memory_dir) / "cgroup.procs").write_text("")
    assert not pool.give_back(limited, 0.0)  # a stand-in with a file in it cannot go; a real one would
    assert pool.spares == 1 and cgroups.job_ids() == [2]


def test_one_with_processes_left_is_neither_kept_nor_removed(tmp_path: Path) -> None:
    pool = CgroupPool(_cgroups(tmp_path))
    cg = pool.take(1, None)
    _ran(cg, procs="4242\n")
    assert not pool.give_back(cg, 0.0)  # the agent kills them and removes it
    assert pool.spares == 0 and cg.name == "job-1"


def test_processes_left_in_the_cpu_hierarchy_alone_count_too(tmp_path: Path) -> None:
    pool = CgroupPool(_cgroups(tmp_path))
    cg = pool.take(1, None)
    _ran(cg)
    Path(str(cg.cpu_dir), "cgroup.procs").write_text("4242\n")
    pool.give_back(cg, 0.0)
    assert pool.spares == 0


def test_one_that_keeps_much_memory_charged_is_removed(tmp_path: Path) -> None:
    cgroups = _cgroups(tmp_path)
    pool = CgroupPool(cgroups)
    cg = pool.take(1, None)
    _ran(cg, usage=LEFTOVER_MAX + 4096)  # page cache of files the job wrote
    _clear(cg)
    (Path(cg.memory_dir) / "cgroup.procs").write_text("")
    Path(str(cg.cpu_dir), "cgroup.procs").write_text("")
    (Path(cg.memory_dir) / "memory.usage_in_bytes").write_text(f"{LEFTOVER_MAX + 4096}\n")
    pool.give_back(cg, 0.0)
    assert pool.spares == 0 and cgroups.spare_names() == []


@pytest.mark.parametrize(("version", "cpuacct"), [(2, True), (1, False)])
def test_no_spares_where_counters_cannot_be_reset(tmp_path: Path, version: int, cpuacct: bool) -> None:
    cgroups = _cgroups(tmp_path, version, cpuacct)
    assert not cgroups.reusable
    pool = CgroupPool(cgroups)
    cg = pool.take(1, None)
    assert not cg.keep_open
    assert pool.give_back(cg, 0.0)  # removed
    assert pool.spares == 0 and cgroups.job_ids() == []


def test_spares_are_bounded_trimmed_when_unused_and_removed_at_the_end(tmp_path: Path) -> None:
    cgroups = _cgroups(tmp_path)
    pool = CgroupPool(cgroups, spares_max=2, idle=60.0)
    cgs = [pool.take(i, None) for i in (1, 2, 3)]
    for cg in cgs:
        _ran(cg)
    assert pool.give_back(cgs[0], now=0.0) and pool.give_back(cgs[1], now=50.0)
    _clear(cgs[2])
    assert pool.give_back(cgs[2], now=50.0)  # over the bound: removed
    assert pool.spares == 2 and cgroups.spare_names() == ["spare-0", "spare-1"]
    for cg in cgs[:2]:
        _clear(cg)
    assert pool.trim(now=59.0) == 0
    assert pool.trim(now=60.0) == 1 and cgroups.spare_names() == ["spare-1"]
    pool.close()
    assert pool.spares == 0 and cgroups.spare_names() == [] and cgroups.job_ids() == []


def test_a_spare_that_cannot_take_the_jobs_name_gives_way_to_a_new_cgroup(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    cgroups = _cgroups(tmp_path)
    pool = CgroupPool(cgroups)
    spare = pool.take(1, None)
    _ran(spare)
    pool.give_back(spare, 0.0)
    _clear(spare)

    def taken(self: JobCgroup, name: str) -> None:  # as when a directory of that name was left behind
        raise FileExistsError(name)

    monkeypatch.setattr(JobCgroup, "rename", taken)
    cg = pool.take(2, None)
    assert not cg.reused and cg.name == "job-2" and pool.spares == 0 and cgroups.spare_names() == []
    assert cgroups.job_ids() == [2]


def test_stale_spares_are_removed_at_start(tmp_path: Path) -> None:
    cgroups = _cgroups(tmp_path, version=2)
    for name in ("spare-3", "spare-4"):
        os.makedirs(cgroups.named(name).memory_dir)
    Path(cgroups.named("spare-4").memory_dir, "cgroup.procs").write_text("4242\n")
    assert cgroups.remove_stale(known=[]) == []
    assert cgroups.spare_names() == ["spare-4"]  # it holds a process: left alone


def test_a_spares_leftover_peak_does_not_say_that_a_job_joined_it(tmp_path: Path) -> None:
    """A shell that never got into its cgroup is measured from its wait status: a spare's peak is
    what the last job left charged, not this job's, so only cpu time used there tells."""
    pool = CgroupPool(_cgroups(tmp_path))
    cg = pool.take(1, None)
    _ran(cg)
    pool.give_back(cg, 0.0)
    cg = pool.take(2, None)
    Path(cg.memory_dir, "memory.max_usage_in_bytes").write_text("4096\n")  # left charged
    assert JobMeter(os.getpid(), cg).ending() is None
    Path(str(cg.cpu_dir), "cpuacct.usage").write_text("5000000\n")  # the job ran there
    ending = JobMeter(os.getpid(), cg).ending()
    assert ending is not None and ending.cpu == pytest.approx(0.005)


def test_a_rename_that_fails_half_way_is_undone(tmp_path: Path) -> None:
    cgroups = _cgroups(tmp_path)
    cg = cgroups.job(1)
    cg.create(None)
    os.makedirs(os.path.join(str(cgroups.named("spare-0").cpu_dir), "busy"))  # the cpuacct one cannot go there
    with pytest.raises(OSError):
        cg.rename("spare-0")
    assert cg.name == "job-1" and cgroups.job_ids() == [1] and os.path.isdir(cg.memory_dir)
    assert not os.path.exists(cgroups.named("spare-0").memory_dir)


def test_a_cgroup_found_again_after_a_restart_is_not_kept(tmp_path: Path) -> None:
    cgroups = _cgroups(tmp_path)
    pool = CgroupPool(cgroups)
    cg = cgroups.job(1)  # as a restarted agent finds a running job's cgroup
    cg.create(None)
    _ran(cg)
    pool.give_back(cg, 0.0)
    assert pool.spares == 0
