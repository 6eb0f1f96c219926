"""What a simulation runs: nodes (with outside load), jobs, queue settings; generated or read from a file.

The workload file is JSON lines: one JSON object per line; blank lines and lines starting with ``#``
are skipped. Three kinds of line, told apart by their keys::

    {"node": "n1", "cpus": 8, "mem_mb": 32768, "features": ["bigmem"], "attrs": {"arch": "x86_64"},
     "outside": {"cpu": 4, "mem_mb": 0, "on": 3600, "off": 1200}}
    {"queue": "night", "user": "alice", "priority": 0, "window": "nights", "stopped": false}
    {"arrival": 0, "user": "alice", "queue": "default", "cpu": 1, "mem_mb": 1024, "duration": 600,
     "used_cpu": 0.8, "used_mem_mb": 700, "constraint": "", "name": "fit.py"}

A **node** line has ``node`` (its name), ``cpus`` and ``mem_mb``; optionally ``features``, ``attrs``
(for ``--constraint``) and ``outside``: processes wulf did not start, wanting ``cpu`` cpus and ``mem_mb``
MB while on. They are off for ``off`` seconds, then on with a computation of ``on`` seconds of work (at
full speed: it lasts longer when jobs share its cpus), in turn (each drawn from an exponential
distribution with that mean); or always on when ``off`` is 0 (the default).
Without node lines the cluster is generated (``wulf sim --nodes``).

A **queue** line (``queue`` and ``user``, no ``arrival``) sets a queue as ``qset`` would: ``priority``,
``window`` (always, nights, weekends), ``stopped``.

A **job** line has ``arrival`` (seconds from the start), ``user`` and ``duration`` (its run time when it
gets all the cpu it uses); optionally ``queue`` (default "default"), ``cpu`` and ``mem_mb`` (what it asks
for: default 1 and 32), ``used_cpu`` and ``used_mem_mb`` (what it really uses: default what it asks
for), ``constraint`` and ``name`` (the program it runs: jobs of one user with the same name and request are
of a kind, and learn from each other what they need, see wulf.policy.history; none by default);
``nodes`` and ``tasks_per_node`` (a job of several nodes, as ``qr --nodes N --ntasks-per-node M``: its
``cpu``, ``mem_mb``, ``used_cpu`` and ``used_mem_mb`` are each task's; default 1 and 1).
Jobs are submitted in order of arrival (ties in file order).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wulf.errors import UsageError
from wulf.model.tasks import MAX_JOB_TASKS
from wulf.policy.constraint import parse_constraint
from wulf.policy.windows import WINDOW_KINDS

SCENARIOS: tuple[str, ...] = ("mixed", "homogeneous", "flood", "outside")
USER_NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy")


@dataclass(frozen=True, slots=True)
class OutsideLoad:
    """Processes on a node that wulf did not start (interactive users): what they want while on."""

    cpu: float
    mem_mb: float = 0.0
    on: float = 0.0  # mean seconds on
    off: float = 0.0  # mean seconds off; 0: always on


@dataclass(frozen=True, slots=True)
class SimNode:
    name: str
    cpus: float
    mem_mb: float
    attrs: Mapping[str, str] = field(default_factory=dict)
    features: frozenset[str] = frozenset()
    outside: OutsideLoad | None = None


@dataclass(frozen=True, slots=True)
class SimJob:
    """A job as submitted (what the policy reads: id, user, cpu, mem_mb, constraint) and as it behaves."""

    id: int
    arrival: float
    user: str
    queue: str
    cpu: float
    mem_mb: float
    duration: float  # run time when it gets all the cpu it uses
    used_cpu: float
    used_mem_mb: float
    constraint: str = ""
    name: str = ""  # its kind, with its user and what it asks for (wulf.policy.history); "" for none
    # a job of several nodes (qr --nodes N --ntasks-per-node M): cpu, mem_mb, used_cpu and used_mem_mb are
    # each task's, and its tasks run in step (an MPI program: at its slowest node's speed), ending together
    nodes: int = 1
    per_node: int = 1

    @property
    def tasks(self) -> int:
        return self.nodes * self.per_node

    @property
    def multinode(self) -> bool:
        """Whether it runs on several nodes (a job of several tasks on one node is not simulated)."""
        return self.nodes > 1

    @property
    def work(self) -> float:
        """cpu-seconds it takes (all its tasks')."""
        return self.used_cpu * self.duration * self.tasks


@dataclass(frozen=True, slots=True)
class QueueSpec:
    user: str
    name: str
    priority: int = 0
    stopped: bool = False
    window: str = "always"


@dataclass(frozen=True)
class Workload:
    nodes: tuple[SimNode, ...]
    jobs: tuple[SimJob, ...]  # by arrival; ids 0..n-1 in that order
    queues: tuple[QueueSpec, ...] = ()
    description: str = ""

    @property
    def cpus(self) -> float:
        return sum(n.cpus for n in self.nodes)

    @property
    def users(self) -> list[str]:
        return sorted({j.user for j in self.jobs})

    def bound(self) -> float:
        """A lower bound of the makespan: max(total work / total cpus, longest job), and no job ends
        before it arrives plus its duration (counted from the first arrival)."""
        if not self.jobs:
            return 0.0
        first = self.jobs[0].arrival
        work = sum(j.work for j in self.jobs)
        return max(work / self.cpus, max(j.arrival - first + j.duration for j in self.jobs))


def numbered(jobs: Iterable[SimJob]) -> tuple[SimJob, ...]:
    """The jobs by arrival (stable), numbered from 0 in that order."""
    ordered = sorted(jobs, key=lambda j: j.arrival)
    return tuple(SimJob(i, j.arrival, j.user, j.queue, j.cpu, j.mem_mb, j.duration, j.used_cpu, j.used_mem_mb,
                        j.constraint, j.name, j.nodes, j.per_node) for i, j in enumerate(ordered))


# ---------------------------------------------------------------------------------------- generator

def user_names(k: int) -> list[str]:
    return [USER_NAMES[i] if i < len(USER_NAMES) else f"user{i}" for i in range(k)]


def _node(i: int, cpus: int, mem: int, features: frozenset[str] = frozenset()) -> SimNode:
    name = f"n{i:04d}"
    attrs = {"name": name, "arch": "x86_64", "os": "linux", "cpus": str(cpus), "mem_mb": str(mem)}
    return SimNode(name, float(cpus), float(mem), attrs, features)


def cluster(n: int, mixed: bool, rng: random.Random) -> list[SimNode]:
    """``n`` nodes: all 8 cpus and 32 GB, or a mix of 4, 8 and 16 cpus (the 16-cpu ones ``bigmem``)."""
    if not mixed:
        return [_node(i, 8, 32768) for i in range(n)]
    nodes = []
    for i in range(n):
        cpus, mem = rng.choices([(4, 16384), (8, 32768), (16, 131072)], [15, 60, 25])[0]
        nodes.append(_node(i, cpus, mem, frozenset({"bigmem"}) if cpus == 16 else frozenset()))
    return nodes


def with_outside_load(nodes: list[SimNode], fraction: float, rng: random.Random) -> list[SimNode]:
    """On ``fraction`` of the nodes (chosen at random), interactive work wants half the cpus and a quarter
    of the memory: computations of an hour's work, with twenty minutes off between them (on average)."""
    k = round(fraction * len(nodes))
    chosen = set(rng.sample(range(len(nodes)), k))
    out = []
    for i, node in enumerate(nodes):
        if i in chosen:
            node = SimNode(node.name, node.cpus, node.mem_mb, node.attrs, node.features,
                           OutsideLoad(cpu=node.cpus / 2, mem_mb=node.mem_mb / 4, on=3600.0, off=1200.0))
        out.append(node)
    return out


def _shape(rng: random.Random) -> tuple[float, float, str]:
    """cpu and memory a batch of jobs asks for, and how its jobs use what they ask for."""
    cpu = float(rng.choices([1, 2, 4, 8], [65, 20, 12, 3])[0])
    mem = cpu * rng.choice([512, 1024, 2048, 4096])
    use = rng.choices(["less", "more", "idle"], [85, 10, 5])[0]
    return cpu, mem, use


def _job(rng: random.Random, arrival: float, user: str, cpu: float, mem: float, use: str,
         median: float = 600.0) -> SimJob:
    duration = min(4 * 3600.0, max(10.0, median * rng.lognormvariate(0.0, 0.8)))
    factor = {"less": rng.uniform(0.6, 1.0), "more": rng.uniform(1.0, 1.5), "idle": 0.1}[use]
    return SimJob(0, round(arrival, 1), user, "default", cpu, mem, round(duration, 1), round(cpu * factor, 2),
                  round(mem * rng.uniform(0.3, 1.0)))


def mixed_jobs(m: int, users: list[str], cpus: float, rng: random.Random, load: float = 1.0,
               programs: int = 0) -> list[SimJob]:
    """``m`` jobs in batches (job arrays of one program and shape), submitted at random times over a span
    in which they would keep ``cpus`` busy at ``load`` (by what they ask for). Each user runs
    ``programs`` programs (each of a shape of its own), a batch one of them; 0: each batch is a program
    of its own."""
    batches: list[tuple[str, float, float, str, int]] = []
    names: list[str] = []
    repertoire = {u: [_shape(rng) for _ in range(programs)] for u in users} if programs else {}
    left = m
    while left > 0:
        size = min(left, 1 + int(rng.expovariate(1 / 40)))
        user = rng.choice(users)
        if programs:
            k = rng.randrange(programs)
            batches.append((user, *repertoire[user][k], size))
            names.append(f"prog{k + 1}")
        else:
            batches.append((user, *_shape(rng), size))
            names.append(f"batch{len(names) + 1}")
        left -= size
    jobs = [_job(rng, 0.0, user, cpu, mem, use) for user, cpu, mem, use, size in batches for _ in range(size)]
    span = sum(j.cpu * j.duration for j in jobs) / (cpus * load)
    out = []
    k = 0
    for name, (_, _, _, _, size) in zip(names, batches, strict=True):
        at = rng.uniform(0, span)
        for j in jobs[k:k + size]:  # the jobs of a batch run one program: one name
            out.append(SimJob(0, round(at, 1), j.user, j.queue, j.cpu, j.mem_mb, j.duration, j.used_cpu,
                              j.used_mem_mb, "", name))
        k += size
    return out


#: a multi-node job's nodes, and tasks on each, with their weights (MPI programs: mostly small)
MULTINODE_NODES = ((2, 3, 4, 8), (40, 20, 25, 15))
MULTINODE_PER_NODE = ((1, 2, 4), (35, 40, 25))


def with_multinode(jobs: list[SimJob], share: float, rng: random.Random) -> list[SimJob]:
    """``share`` of the jobs (chosen at random) made jobs of several nodes: N nodes × M tasks (drawn from
    :data:`MULTINODE_NODES` and :data:`MULTINODE_PER_NODE`), each task of one cpu with the memory the job
    asked for (and used) per cpu, using its cpu as the job did, for as long: an MPI program's ranks."""
    chosen = set(rng.sample(range(len(jobs)), round(share * len(jobs))))
    out = []
    for i, j in enumerate(jobs):
        if i in chosen:
            n = rng.choices(*MULTINODE_NODES)[0]
            m = rng.choices(*MULTINODE_PER_NODE)[0]
            j = SimJob(j.id, j.arrival, j.user, j.queue, 1.0, round(j.mem_mb / j.cpu), j.duration,
                       round(j.used_cpu / j.cpu, 2), round(j.used_mem_mb / j.cpu), j.constraint, j.name, n, m)
        out.append(j)
    return out


def _multinode(jobs: list[SimJob], share: float, seed: int, spread: bool) -> list[SimJob]:
    """:func:`with_multinode`, with a random stream of its own (the rest of the workload is as without);
    ``spread``: the jobs arrive over a span, which grows with the cpu-seconds they now ask for, so that
    the offered load stays what it was."""
    asked = sum(j.cpu * j.duration * j.tasks for j in jobs)
    out = with_multinode(jobs, share, random.Random(f"{seed}:multinode"))
    if spread and asked:
        f = sum(j.cpu * j.duration * j.tasks for j in out) / asked
        out = [SimJob(j.id, round(j.arrival * f, 1), j.user, j.queue, j.cpu, j.mem_mb, j.duration, j.used_cpu,
                      j.used_mem_mb, j.constraint, j.name, j.nodes, j.per_node) for j in out]
    return out


def generate(scenario: str, nodes: int, jobs: int | None, users: int | None, outside: float | None,
             seed: int, load: float = 1.0, programs: int = 0, multinode: float = 0.0) -> Workload:
    """A synthetic workload (see :data:`SCENARIOS` and ``wulf sim --help``)."""
    if scenario not in SCENARIOS:
        raise UsageError(f"unknown scenario {scenario!r}; use one of {', '.join(SCENARIOS)}")
    rng = random.Random(seed)
    homogeneous = scenario == "homogeneous"
    node_list = cluster(nodes, not homogeneous, rng)
    if outside is None:
        outside = 1 / 3 if scenario == "outside" else 0.0
    if outside:
        node_list = with_outside_load(node_list, outside, rng)
    cpus = sum(n.cpus for n in node_list)
    k = users if users is not None else (2 if scenario == "flood" else 4)
    names = user_names(k)
    if homogeneous:
        m = jobs if jobs is not None else int(10 * cpus)
        job_list = [SimJob(0, 0.0, names[i % k], "default", 1.0, 1024.0, 600.0, 1.0, 900.0) for i in range(m)]
        what = f"{m} identical jobs (1 cpu, 600 s) submitted at once"
    elif scenario == "flood":
        m = jobs if jobs is not None else 10_000
        job_list = flood_jobs(m, names, rng)
        what = f"{m} jobs: {names[0]} submits {m - m // 10} at once, then the others {m // 10} between them"
    else:
        m = jobs if jobs is not None else 10_000
        job_list = mixed_jobs(m, names, cpus, rng, load, programs)
        what = f"{m} jobs in batches of mixed shapes, arriving over time (offered load {load:g})"
        if programs:
            what += f", each user's batches one of their {programs} programs"
    if multinode:
        job_list = _multinode(job_list, multinode, seed, scenario in ("mixed", "outside"))
        what += f"; {sum(1 for j in job_list if j.multinode)} of them on 2-8 nodes × 1-4 tasks"
    loaded = sum(1 for n in node_list if n.outside)
    description = (f"{scenario}: {len(node_list)} nodes ({cpus:g} cpus, {'identical' if homogeneous else 'mixed'}), "
                   f"{k} users, {what}; outside load on {loaded} nodes; seed {seed}")
    return Workload(tuple(node_list), numbered(job_list), (), description)


def flood_jobs(m: int, users: list[str], rng: random.Random) -> list[SimJob]:
    """The first user submits nine tenths of the jobs at once; a minute later, when the cluster is full,
    the other users submit the rest (in one go each). Jobs of every user have the same mix of shapes."""
    flood = m - m // 10
    out = []
    for i in range(m):
        cpu, mem, use = _shape(rng)
        if i < flood or len(users) == 1:
            out.append(_job(rng, 0.0, users[0], cpu, mem, use))
        else:
            out.append(_job(rng, 60.0, users[1 + i % (len(users) - 1)], cpu, mem, use))
    return out


# ---------------------------------------------------------------------------------------- the file

_NODE_KEYS = {"node", "cpus", "mem_mb", "features", "attrs", "outside"}
_OUTSIDE_KEYS = {"cpu", "mem_mb", "on", "off"}
_QUEUE_KEYS = {"queue", "user", "priority", "window", "stopped"}
_JOB_KEYS = {"arrival", "user", "queue", "cpu", "mem_mb", "duration", "used_cpu", "used_mem_mb", "constraint",
             "name", "nodes", "tasks_per_node"}


class _Line:
    """One line's object, with checked access; a problem is a UsageError naming the file and line."""

    def __init__(self, where: str, data: dict[str, Any]) -> None:
        self.where = where
        self.data = data

    def fail(self, problem: str) -> UsageError:
        return UsageError(f"{self.where}: {problem}")

    def keys(self, allowed: set[str], what: str) -> None:
        unknown = sorted(set(self.data) - allowed)
        if unknown:
            raise self.fail(f"unknown key {unknown[0]!r} for a {what} line (known: {', '.join(sorted(allowed))})")

    def number(self, key: str, default: float | None = None, positive: bool = False,
               data: Mapping[str, Any] | None = None) -> float:
        data = self.data if data is None else data
        value = data.get(key, default)
        if value is None:
            raise self.fail(f"{key!r} is missing")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.fail(f"{key!r} must be a number, not {json.dumps(value)}")
        if value < 0 or positive and value == 0:
            raise self.fail(f"{key!r} must be {'more than zero' if positive else 'zero or more'}")
        return float(value)

    def count(self, key: str) -> int:
        """A whole number from 1 (default 1) to MAX_JOB_TASKS."""
        value = self.data.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_JOB_TASKS:
            raise self.fail(f"{key!r} must be a whole number from 1 to {MAX_JOB_TASKS}, not {json.dumps(value)}")
        return value

    def text(self, key: str, default: str | None = None) -> str:
        value = self.data.get(key, default)
        if value is None:
            raise self.fail(f"{key!r} is missing")
        if not isinstance(value, str):
            raise self.fail(f"{key!r} must be a string, not {json.dumps(value)}")
        return value


def _lines(path: Path) -> Iterator[_Line]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read the workload {path}: {getattr(e, 'strerror', None) or e}") from None
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path} line {n}"
        try:
            data = json.loads(line)
        except ValueError as e:
            raise UsageError(f"{where}: not JSON ({e.args[0].split(':')[0]})") from None
        if not isinstance(data, dict):
            raise UsageError(f"{where}: a line must be a JSON object {{...}}")
        yield _Line(where, data)


def _read_node(line: _Line) -> SimNode:
    line.keys(_NODE_KEYS, "node")
    name = line.text("node")
    if not name:
        raise line.fail("a node needs a name")
    features = line.data.get("features", [])
    if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
        raise line.fail("'features' must be a list of strings")
    attrs = line.data.get("attrs", {})
    if not isinstance(attrs, dict) or not all(isinstance(v, str) for v in attrs.values()):
        raise line.fail("'attrs' must be an object of strings")
    cpus, mem = line.number("cpus", positive=True), line.number("mem_mb", positive=True)
    outside = None
    if "outside" in line.data:
        o = line.data["outside"]
        if not isinstance(o, dict) or set(o) - _OUTSIDE_KEYS:
            raise line.fail(f"'outside' must be an object with keys {', '.join(sorted(_OUTSIDE_KEYS))}")
        outside = OutsideLoad(line.number("cpu", data=o), line.number("mem_mb", 0.0, data=o),
                              line.number("on", 0.0, data=o), line.number("off", 0.0, data=o))
        if outside.off and not outside.on:
            raise line.fail("an outside load that goes off needs 'on' (mean seconds on) too")
    base = {"name": name, "cpus": f"{cpus:g}", "mem_mb": f"{mem:g}"}
    return SimNode(name, cpus, mem, {**base, **attrs}, frozenset(features), outside)


def _read_queue(line: _Line) -> QueueSpec:
    line.keys(_QUEUE_KEYS, "queue")
    window = line.text("window", "always")
    if window not in WINDOW_KINDS:
        raise line.fail(f"'window' is one of {', '.join(WINDOW_KINDS)}, not {window!r}")
    priority = line.data.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise line.fail("'priority' must be a whole number")
    stopped = line.data.get("stopped", False)
    if not isinstance(stopped, bool):
        raise line.fail("'stopped' must be true or false")
    return QueueSpec(line.text("user"), line.text("queue"), priority, stopped, window)


def _read_job(line: _Line) -> SimJob:
    line.keys(_JOB_KEYS, "job")
    cpu = line.number("cpu", 1.0, positive=True)
    mem = line.number("mem_mb", 32.0, positive=True)
    constraint = line.text("constraint", "")
    try:
        parse_constraint(constraint)
    except UsageError as e:
        raise line.fail(e.message) from None
    user = line.text("user")
    if not user:
        raise line.fail("'user' must not be empty")
    nodes, per_node = line.count("nodes"), line.count("tasks_per_node")
    if per_node > 1 and nodes == 1:
        raise line.fail("'tasks_per_node' goes with 'nodes' (more than 1): a job of several tasks on one node "
                        "is not simulated")
    return SimJob(0, line.number("arrival"), user, line.text("queue", "default"), cpu, mem,
                  line.number("duration", positive=True), line.number("used_cpu", cpu),
                  line.number("used_mem_mb", mem), constraint, line.text("name", ""), nodes, per_node)


def read_workload(path: str | Path) -> Workload:
    """The nodes, queues and jobs of a workload file (no nodes when it defines none: the caller makes them)."""
    path = Path(path)
    nodes: list[SimNode] = []
    jobs: list[SimJob] = []
    queues: list[QueueSpec] = []
    names: set[str] = set()
    for line in _lines(path):
        if "node" in line.data:
            node = _read_node(line)
            if node.name in names:
                raise line.fail(f"node {node.name!r} is defined twice")
            names.add(node.name)
            nodes.append(node)
        elif "arrival" in line.data:
            jobs.append(_read_job(line))
        elif "queue" in line.data:
            queues.append(_read_queue(line))
        else:
            raise line.fail("a line is a node (has \"node\"), a job (has \"arrival\") or a queue (has \"queue\")")
    if not jobs:
        raise UsageError(f"{path}: no jobs (a job line has \"arrival\", \"user\" and \"duration\")")
    return Workload(tuple(nodes), numbered(jobs), tuple(queues), f"workload {path}")


def write_workload(path: str | Path, w: Workload) -> None:
    """Write ``w`` in the format :func:`read_workload` reads."""
    with open(path, "w") as f:
        f.write(f"# {w.description}\n")
        for n in w.nodes:
            d: dict[str, Any] = {"node": n.name, "cpus": n.cpus, "mem_mb": n.mem_mb}
            if n.features:
                d["features"] = sorted(n.features)
            extra = {k: v for k, v in n.attrs.items() if k not in ("name", "cpus", "mem_mb")}
            if extra:
                d["attrs"] = extra
            if n.outside:
                o = n.outside
                d["outside"] = {"cpu": o.cpu, "mem_mb": o.mem_mb, "on": o.on, "off": o.off}
            f.write(json.dumps(d) + "\n")
        for q in w.queues:
            f.write(json.dumps({"queue": q.name, "user": q.user, "priority": q.priority, "window": q.window,
                                "stopped": q.stopped}) + "\n")
        for j in w.jobs:
            d = {"arrival": j.arrival, "user": j.user, "queue": j.queue, "cpu": j.cpu, "mem_mb": j.mem_mb,
                 "duration": j.duration, "used_cpu": j.used_cpu, "used_mem_mb": j.used_mem_mb}
            if j.constraint:
                d["constraint"] = j.constraint
            if j.name:
                d["name"] = j.name
            if j.multinode:
                d["nodes"], d["tasks_per_node"] = j.nodes, j.per_node
            f.write(json.dumps(d) + "\n")
