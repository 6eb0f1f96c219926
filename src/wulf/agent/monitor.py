"""Measure this node: the machine's load and memory, and every process grouped into jobs and clusters.

This is the I/O shell around the pure parts (``procfs`` parsing, ``clusters`` grouping and cpu
rates): it scans, keeps what must be remembered between samples (cpu ticks, cpu times, disk counters)
and turns the result into protocol messages.

Two kinds of facts are gathered and they must not be confused. Load averages, cpu time fractions,
memory and swap come from machine-wide files; inside a PID namespace (the test hosts of
``tests/cluster``) they describe the whole machine, not the namespace. ``used_cpu`` and
``used_mem_mb`` are therefore summed over the processes this agent sees, which is what the server
uses as the node's observed load. On a real node both agree.

A job's memory is not the sum of its processes' resident sizes, which counts every page shared among
them (a parent and its copy-on-write children) once per process: the agent passes ``job_memory``,
which measures a job from its cgroup or by PSS (see :mod:`wulf.agent.jobmeter`). The node's other
processes stay on resident size, which costs nothing more to read.
"""

from __future__ import annotations

import os
import platform
import pwd
import shutil
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Final, TypeAlias

import psutil  # type: ignore[import-untyped,unused-ignore]  # psutil ships no type stubs

from wulf.agent.clusters import CpuTracker, Grouping, ProcCluster, group
from wulf.agent.procfs import ProcScanner, read_cmdline
from wulf.protocol import Cluster, JobUse, NodeInfo, NodeSample

MB: Final = 1024.0 * 1024.0
COMMAND_MAX: Final = 200
JobMemory: TypeAlias = Callable[[int, Sequence[int]], float | None]
"""(job id, its processes' pids) -> its memory in MB, or None to keep the sum of resident sizes."""

USER_CACHE_SECONDS: Final = 600.0
"""User names are looked up once per uid for this long: a directory service (LDAP) may be slow."""


def _uptime() -> float:
    """Seconds since boot on the clock that process start times count from."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def _os_name() -> str:
    """The distribution's name (users ask "which nodes run Rocky 9?"), else just "Linux"."""
    try:
        return platform.freedesktop_os_release().get("PRETTY_NAME", platform.system())
    except OSError:
        return platform.system()


def cpu_shares(times: Mapping[str, float]) -> tuple[float, float, float]:
    """User, system and idle shares of some cpu seconds by kind (as in ``psutil.cpu_times``).

    Nice time counts as user, interrupts as system, iowait as idle, and steal (time the hypervisor
    gave elsewhere) only in the whole; guest time is already inside user and nice.
    """
    user = times.get("user", 0.0) + times.get("nice", 0.0)
    system = times.get("system", 0.0) + times.get("irq", 0.0) + times.get("softirq", 0.0)
    idle = times.get("idle", 0.0) + times.get("iowait", 0.0)
    total = user + system + idle + times.get("steal", 0.0)
    if total <= 0:
        return 0.0, 0.0, 1.0
    return user / total, system / total, idle / total


class Monitor:
    """Samples one node. Call ``sample`` at the report interval; call ``close`` when done."""

    def __init__(
        self,
        scratch: str,
        ignore_roots: AbstractSet[int],
        min_cpu: float,
        min_mem_mb: float,
        proc: str = "/proc",
    ) -> None:
        self.scratch = scratch
        self.ignore_roots = frozenset(ignore_roots)
        self.min_cpu = min_cpu
        self.min_mem_mb = min_mem_mb
        self.proc = proc
        self._clock_ticks = os.sysconf("SC_CLK_TCK")
        self._boot_epoch = time.time() - _uptime()
        self._scanner = ProcScanner(proc)
        self._tracker = CpuTracker(self._clock_ticks)
        self._cpu_times: dict[str, float] | None = None
        self._disk: tuple[float, int, int] | None = None  # uptime, bytes read, bytes written
        self._users: dict[int, str] = {}
        self._users_since = 0.0

    def close(self) -> None:
        self._scanner.close()

    def node_info(self, name: str, cpus: float | None, mem_mb: float | None, session_port: int) -> NodeInfo:
        """What this node is; ``cpus`` and ``mem_mb``, when given, replace what the machine has."""
        uname = os.uname()
        return NodeInfo(
            name=name,
            hostname=socket.gethostname(),
            cpus=float(cpus if cpus is not None else (os.cpu_count() or 1)),
            mem_mb=float(mem_mb if mem_mb is not None else psutil.virtual_memory().total / MB),
            arch=uname.machine,
            os=_os_name(),
            kernel=uname.release,
            session_port=session_port,
        )

    def sample(
        self, job_roots: Mapping[int, int], job_memory: JobMemory | None = None
    ) -> tuple[NodeSample, list[JobUse], list[Cluster]]:
        """Measure now: the node, the use of each running job (by root pid -> job id), and clusters."""
        procs = self._scanner.scan()
        uptime = _uptime()
        rates = self._tracker.update(procs, uptime)
        grouping = group(
            procs, job_roots, self.ignore_roots, rates, self.min_cpu, int(self.min_mem_mb * 1024)
        )
        jobs = []
        correction_mb = 0.0  # measured job memory minus the resident sizes it replaces
        for job, use in grouping.jobs.items():
            rss_mb = use.rss_kb / 1024
            mem_mb = job_memory(job, grouping.job_pids.get(job, [])) if job_memory is not None else None
            if mem_mb is None:
                mem_mb = rss_mb
            correction_mb += mem_mb - rss_mb
            jobs.append(JobUse(id=job, cpu=round(use.cpu, 3), mem_mb=round(mem_mb, 1), nprocs=use.nprocs))
        node = self._node_sample(uptime, len(procs), grouping, correction_mb)
        return node, jobs, [self._cluster(c) for c in grouping.clusters]

    def _node_sample(self, uptime: float, nprocs: int, grouping: Grouping, job_mem_correction: float) -> NodeSample:
        load1, load5, load15 = os.getloadavg()
        user, system, idle = self._cpu_fractions()
        mem = psutil.virtual_memory()
        swap = psutil.swap_memory()
        read_mbps, write_mbps = self._disk_rates(uptime)
        return NodeSample(
            time=time.time(),
            load1=load1,
            load5=load5,
            load15=load15,
            cpu_user=user,
            cpu_system=system,
            cpu_idle=idle,
            mem_total_mb=mem.total / MB,
            mem_available_mb=mem.available / MB,
            swap_total_mb=swap.total / MB,
            swap_free_mb=swap.free / MB,
            scratch_free_mb=self._scratch_free_mb(),
            io_read_mbps=read_mbps,
            io_write_mbps=write_mbps,
            nprocs=nprocs,
            used_cpu=round(grouping.total.cpu, 3),
            used_mem_mb=round(max(grouping.total.rss_kb / 1024 + job_mem_correction, 0.0), 1),
        )

    def _cpu_fractions(self) -> tuple[float, float, float]:
        """User, system and idle shares of the machine's cpu time since the previous sample (since
        boot at the first)."""
        now = psutil.cpu_times()
        times = {name: float(getattr(now, name)) for name in now._fields}
        before, self._cpu_times = self._cpu_times, times
        if before is not None:
            times = {name: seconds - before.get(name, 0.0) for name, seconds in times.items()}
        return cpu_shares(times)

    def _disk_rates(self, uptime: float) -> tuple[float, float]:
        """Disk read and write MB/s since the previous sample; 0 at the first, or without disks."""
        counters = psutil.disk_io_counters()
        if counters is None:
            return 0.0, 0.0
        before, self._disk = self._disk, (uptime, counters.read_bytes, counters.write_bytes)
        if before is None or uptime <= before[0]:
            return 0.0, 0.0
        seconds = uptime - before[0]
        return (
            max(counters.read_bytes - before[1], 0) / MB / seconds,
            max(counters.write_bytes - before[2], 0) / MB / seconds,
        )

    def _scratch_free_mb(self) -> float:
        try:
            return shutil.disk_usage(self.scratch).free / MB
        except OSError:
            return 0.0  # the scratch dir is missing: report no room rather than fail the sample

    def _cluster(self, cluster: ProcCluster) -> Cluster:
        command = read_cmdline(cluster.pid, cluster.comm, self.proc)
        return Cluster(
            key=cluster.key,
            pid=cluster.pid,
            uid=cluster.uid,
            user=self._user(cluster.uid),
            command=command[:COMMAND_MAX],
            cpu=round(cluster.use.cpu, 3),
            mem_mb=round(cluster.use.rss_kb / 1024, 1),
            nprocs=cluster.use.nprocs,
            started=self._boot_epoch + cluster.starttime_ticks / self._clock_ticks,
        )

    def _user(self, uid: int) -> str:
        """The name of ``uid`` (the uid itself when it has none), cached: lookups may be slow."""
        now = time.monotonic()
        if now - self._users_since > USER_CACHE_SECONDS:
            self._users, self._users_since = {}, now
        name = self._users.get(uid)
        if name is None:
            try:
                name = pwd.getpwuid(uid).pw_name
            except KeyError:
                name = str(uid)
            self._users[uid] = name
        return name
