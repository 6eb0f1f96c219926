"""cgroup files parsed from sample text; job cgroups handled on a directory that stands in for one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wulf.agent.cgroups import (
    Cgroups,
    JobCgroup,
    Layout,
    Mount,
    choose_layout,
    controllers_to_enable,
    cpu_seconds,
    group_name,
    parse_controllers,
    parse_job_dir,
    parse_keyed,
    parse_mountinfo,
    parse_proc_cgroup,
    parse_procs,
    parse_value,
    working_set,
)

MOUNTINFO_V1 = """\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""

MOUNTINFO_V2 = """\
26 1 259:2 / / rw,relatime shared:1 - xfs /dev/nvme0n1p2 rw
35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
"""

MOUNTINFO_COMOUNTED = """\
30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:11 - cgroup cgroup rw,cpu,cpuacct
31 25 0:27 /docker/abc /sys/fs/cgroup/my\\040memory rw,nosuid shared:12 - cgroup cgroup rw,memory
"""

MEMORY_STAT_V1 = """\
cache 9555968
rss 5844992
inactive_file 36864
active_file 434176
hierarchical_memory_limit 9223372036854771712
total_cache 566026240
total_rss 150237184
total_inactive_file 319365120
total_active_file 12345
"""

MEMORY_STAT_V2 = """\
anon 104857600
file 52428800
kernel 1048576
inactive_anon 0
active_anon 104857600
inactive_file 41943040
active_file 10485760
"""

CPU_STAT_V2 = "usage_usec 2514777547\nuser_usec 2158975222\nsystem_usec 355802325\nnice_usec 179044332\n"
OOM_CONTROL_V1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"
MEMORY_EVENTS_V2 = "low 0\nhigh 0\nmax 17\noom 1\noom_kill 1\noom_group_kill 0\n"


def test_mountinfo_lists_cgroup_hierarchies_only() -> None:
    mounts = parse_mountinfo(MOUNTINFO_V1)
    assert [m.point for m in mounts] == [
        "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpuacct", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/systemd",
        "/sys/fs/cgroup/unified",
    ]
    assert mounts[2] == Mount("/sys/fs/cgroup/memory", "/", "cgroup", frozenset({"rw", "memory"}))
    assert mounts[-1].fstype == "cgroup2"


def test_mountinfo_unescapes_paths_and_keeps_the_mounted_root() -> None:
    cpu, memory = parse_mountinfo(MOUNTINFO_COMOUNTED)
    assert memory.point == "/sys/fs/cgroup/my memory" and memory.root == "/docker/abc"
    assert {"cpu", "cpuacct"} <= cpu.options


def test_mountinfo_skips_garbage() -> None:
    assert parse_mountinfo("nonsense\n\n1 2 3\n") == []


def test_layout_prefers_v2_with_the_memory_controller() -> None:
    [unified] = parse_mountinfo(MOUNTINFO_V2)
    layout = choose_layout([unified], parse_controllers("cpuset cpu io memory hugetlb pids rdma misc\n"))
    assert layout == Layout(2, unified, unified)


def test_layout_falls_back_to_v1_when_v2_has_no_controllers() -> None:
    mounts = parse_mountinfo(MOUNTINFO_V1)
    layout = choose_layout(mounts, parse_controllers("hugetlb\n"))
    assert layout is not None and layout.version == 1
    assert layout.memory.point == "/sys/fs/cgroup/memory"
    assert layout.cpu is not None and layout.cpu.point == "/sys/fs/cgroup/cpuacct"


def test_layout_v1_with_comounted_cpu_and_without_cpuacct() -> None:
    layout = choose_layout(parse_mountinfo(MOUNTINFO_COMOUNTED), None)
    assert layout is not None and layout.cpu is not None and layout.cpu.point == "/sys/fs/cgroup/cpu,cpuacct"
    memory_only = [m for m in parse_mountinfo(MOUNTINFO_V1) if "memory" in m.options]
    layout = choose_layout(memory_only, None)
    assert layout is not None and layout.cpu is None


def test_no_layout_without_a_memory_controller() -> None:
    [unified] = parse_mountinfo(MOUNTINFO_V2)
    assert choose_layout([unified], frozenset({"cpu", "pids"})) is None
    assert choose_layout([], None) is None


def test_controllers_to_enable_on_v2() -> None:
    offered = frozenset({"cpu", "memory", "io"})
    assert controllers_to_enable(frozenset(), offered) == ["memory", "cpu"]
    assert controllers_to_enable(frozenset({"memory", "cpu"}), offered) == []
    assert controllers_to_enable(frozenset(), frozenset({"memory"})) == ["memory"]
    assert controllers_to_enable(frozenset(), frozenset()) == ["memory"]  # and writing it fails: no cgroups


def test_keyed_files() -> None:
    assert parse_keyed(OOM_CONTROL_V1)["oom_kill"] == 2
    assert parse_keyed(MEMORY_EVENTS_V2)["oom_kill"] == 1
    assert parse_keyed(CPU_STAT_V2)["usage_usec"] == 2514777547
    assert parse_keyed("broken line\nkey 12\n\n") == {"key": 12}


def test_single_values() -> None:
    assert parse_value("2539414676366\n") == 2539414676366
    assert parse_value("max\n") is None
    assert parse_value("") is None


def test_working_set_takes_away_the_inactive_page_cache() -> None:
    # v1 counts hierarchically: total_inactive_file, not the group's own inactive_file
    assert working_set(400_000_000, parse_keyed(MEMORY_STAT_V1), 1) == 400_000_000 - 319365120
    assert working_set(157286400, parse_keyed(MEMORY_STAT_V2), 2) == 157286400 - 41943040
    assert working_set(1000, parse_keyed(MEMORY_STAT_V2), 2) == 0  # never below nothing
    assert working_set(1000, {}, 1) == 1000


def test_cpu_time_by_version() -> None:
    assert cpu_seconds("2539414676366\n", 1) == pytest.approx(2539.414676366)
    assert cpu_seconds(CPU_STAT_V2, 2) == pytest.approx(2514.777547)
    assert cpu_seconds("", 1) is None and cpu_seconds("user_usec 5\n", 2) is None


def test_procs_and_proc_cgroup() -> None:
    assert parse_procs("12\n345\n\n") == [12, 345]
    v1 = parse_proc_cgroup("9:name=systemd:/\n4:memory:/wulf/n1-abc/job-5\n2:cpu,cpuacct:/wulf/n1-abc/job-5\n0::/\n")
    assert v1["memory"] == "/wulf/n1-abc/job-5" and v1["cpuacct"] == "/wulf/n1-abc/job-5"
    assert v1["name=systemd"] == "/" and v1[""] == "/"
    assert parse_proc_cgroup("0::/wulf/n1-abc/job-5\n") == {"": "/wulf/n1-abc/job-5"}


def test_names() -> None:
    assert group_name("n1", "0a1b2c3d") == "n1-0a1b2c3d"
    assert group_name("../evil/name", "t") == "_evil_name-t"
    assert parse_job_dir("job-17") == 17
    assert parse_job_dir("job-x") is None and parse_job_dir("memory.stat") is None


# ---------------------------------------------------------------- on a stand-in directory


def _layout(tmp_path: Path, version: int) -> Layout:
    if version == 2:
        unified = Mount(str(tmp_path / "unified"), "/", "cgroup2", frozenset())
        return Layout(2, unified, unified)
    memory = Mount(str(tmp_path / "memory"), "/", "cgroup", frozenset({"memory"}))
    cpu = Mount(str(tmp_path / "cpuacct"), "/", "cgroup", frozenset({"cpuacct"}))
    return Layout(1, memory, cpu)


def test_v1_job_cgroup_files(tmp_path: Path) -> None:
    cgroups = Cgroups(_layout(tmp_path, 1), "n1-abc")
    cg = cgroups.job(5)
    assert cg.dirs() == [str(tmp_path / "memory/wulf/n1-abc/job-5"), str(tmp_path / "cpuacct/wulf/n1-abc/job-5")]
    assert cg.procs_files() == [os.path.join(d, "cgroup.procs") for d in cg.dirs()]
    cg.create(100)
    mem = Path(cg.memory_dir)
    assert (mem / "memory.limit_in_bytes").read_text() == str(100 << 20)
    assert (mem / "memory.memsw.limit_in_bytes").read_text() == str(100 << 20)
    assert cg.limited
    (mem / "memory.usage_in_bytes").write_text(f"{400_000_000}\n")
    (mem / "memory.stat").write_text(MEMORY_STAT_V1)
    (mem / "memory.max_usage_in_bytes").write_text(f"{200 << 20}\n")
    (mem / "memory.oom_control").write_text(OOM_CONTROL_V1)
    Path(str(cg.cpu_dir), "cpuacct.usage").write_text("2500000000\n")
    assert cg.memory_mb() == pytest.approx((400_000_000 - 319365120) / (1 << 20))
    assert cg.peak_mb() == 200.0 and cg.oom_kills() == 2 and cg.cpu_seconds() == 2.5
    assert cgroups.job_ids() == [5]


def test_v2_job_cgroup_files(tmp_path: Path) -> None:
    cg = Cgroups(_layout(tmp_path, 2), "n1-abc").job(6)
    assert cg.dirs() == [str(tmp_path / "unified/wulf/n1-abc/job-6")]
    cg.create(64.5)
    d = Path(cg.memory_dir)
    assert (d / "memory.max").read_text() == str(int(64.5 * (1 << 20)))
    assert (d / "memory.swap.max").read_text() == "0"
    (d / "memory.current").write_text("157286400\n")
    (d / "memory.stat").write_text(MEMORY_STAT_V2)
    (d / "memory.events").write_text(MEMORY_EVENTS_V2)
    (d / "cpu.stat").write_text(CPU_STAT_V2)
    assert cg.memory_mb() == pytest.approx(110.0)
    assert cg.oom_kills() == 1 and cg.cpu_seconds() == pytest.approx(2514.777547)
    assert cg.peak_mb() is None  # memory.peak: Linux 5.19 and later


def test_no_limit_and_unreadable_files(tmp_path: Path) -> None:
    cg = Cgroups(_layout(tmp_path, 2), "g").job(1)
    cg.create(None)
    assert not cg.limited and not (Path(cg.memory_dir) / "memory.max").exists()
    assert cg.memory_mb() is None and cg.cpu_seconds() is None and cg.oom_kills() == 0 and cg.pids() == []
    cg.create(None)  # an empty one left by an earlier run is made anew
    assert cg.exists()


def test_create_refuses_a_cgroup_that_holds_processes(tmp_path: Path) -> None:
    cg = Cgroups(_layout(tmp_path, 2), "g").job(1)
    os.makedirs(cg.memory_dir)
    Path(cg.memory_dir, "cgroup.procs").write_text("4242\n")
    with pytest.raises(OSError, match="holds processes"):
        cg.create(None)


def test_holds_compares_every_hierarchy(tmp_path: Path) -> None:
    cg = JobCgroup(_layout(tmp_path, 1), "wulf/g/job-1")
    assert not cg.holds(os.getpid())  # this test is in no such cgroup
    assert not cg.holds(2**22 + 1)  # no such process


def test_remove_stale_keeps_known_and_busy_ones(tmp_path: Path) -> None:
    cgroups = Cgroups(_layout(tmp_path, 2), "g")
    for job in (1, 2, 3):
        cgroups.job(job).create(None)
    os.makedirs(os.path.join(tmp_path, "unified/wulf/g/not-a-job"))
    # a real cgroup directory can be removed while it holds files; a stand-in one cannot
    for job in (1, 2, 3):
        for f in Path(cgroups.job(job).memory_dir).iterdir():
            f.unlink()
    Path(cgroups.job(3).memory_dir, "cgroup.procs").write_text("4242\n")
    assert cgroups.remove_stale(known=[1]) == [2]
    assert cgroups.job_ids() == [1, 3]
