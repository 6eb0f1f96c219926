"""``#PBS`` directives, as qsub of Torque and of PBS Pro reads them.

qsub reads ``#PBS`` lines (which may be indented) until the first line that is neither blank nor a
comment; ``##PBS`` is a comment. A job runs in its owner's home directory unless ``-d``/``-w`` (Torque) or
``-l wd`` say otherwise, and its output goes to ``NAME.oID`` in the directory qsub ran in. wulf's job
ids are numbers, so ``ID`` is the number (PBS's is ``NUMBER.SERVER``).
"""

from __future__ import annotations

import math
import re

from wulf.compat import mail
from wulf.compat.options import Item, Opt, whole_words
from wulf.compat.request import (
    PREFIXES,
    DirectiveError,
    Request,
    Where,
    absolute,
    array_spec,
    colon_seconds,
    count,
    directive_lines,
    env_items,
    pattern_text,
    size_mb,
    words,
)
from wulf.errors import UsageError
from wulf.model.tasks import shape

_V, _N = "value", "none"
OPTIONS: dict[str, Opt] = {
    "-" + letter: Opt(letter, arity)  # type: ignore[arg-type]
    for letter, arity in [
        ("N", _V), ("o", _V), ("e", _V), ("j", _V), ("k", _V), ("l", _V), ("t", _V), ("J", _V), ("W", _V),
        ("q", _V), ("m", _V), ("M", _V), ("V", _N), ("v", _V), ("S", _V), ("d", _V), ("w", _V), ("A", _V),
        ("P", _V), ("r", _V), ("p", _V), ("a", _V), ("h", _N), ("X", _N), ("I", _N), ("z", _N), ("c", _V),
        ("C", _V), ("u", _V), ("W", _V), ("f", _N), ("x", _N),
    ]
}
NOT_YET = {
    "p": "priorities of single jobs are not supported (qset QUEUE --priority orders your queues)",
    "a": "a deferred start is not supported yet; the job may start at once",
    "X": "X11 forwarding is not supported (jr runs interactive jobs)",
    "I": "interactive jobs are started with jr, not from a script",
}
CARRIED = {"m": "mail_type", "M": "mail_user", "t": "array", "J": "array"}
IGNORED = {
    "A": "accounts are not used by wulf; ignored", "P": "projects are not used by wulf; ignored",
    "r": "ignored (wulf does not rerun jobs)", "k": "ignored (the output is written in place)",
    "z": "ignored", "c": "ignored (no checkpoints)", "C": "ignored", "u": "ignored (a job runs as who submits it)",
    "f": "ignored", "x": "ignored", "V": "",
}
APPLIED = {"t": "array", "J": "array", "N": "name", "o": "output", "e": "error", "j": "join", "l": "resources",
           "W": "attributes", "q": "queue", "v": "vars", "S": "shell", "d": "dir", "w": "dir", "m": "mail_points",
           "M": "mail_users", "h": "hold"}
RESOURCES = {"walltime": "walltime", "cput": "cput", "pcput": "cput", "mem": "size", "vmem": "size", "pmem": "size",
             "pvmem": "size", "ncpus": "ncpus", "procs": "ncpus", "nodes": "nodes", "select": "select",
             "place": "place", "wd": "wd"}


def _attributes(text: str) -> list[str]:
    """``-W`` attributes, ``key=value`` separated by commas; a piece with no ``=`` goes on with the one
    before (``depend=afterok:1:2,afterany:3`` is one attribute of two dependency types)."""
    out: list[str] = []
    for piece in text.split(","):
        if out and "=" not in piece:
            out[-1] += "," + piece
        else:
            out.append(piece)
    return out


_PBS_ID = re.compile(r"(\d+)(?:\[\d*\])?\.[^:,]*")


def dependency(text: str) -> str:
    """``depend=`` in wulf's form: a job id as qsub printed it, ``12.server`` (``12[].server`` for an
    array), is the number."""
    return _PBS_ID.sub(lambda m: m.group(1), text)


def _walltime(text: str, what: str) -> float:
    return colon_seconds(text, what, max_parts=4)


class _Reader:
    def __init__(self, where: Where) -> None:
        self.where = where
        self.req = Request(dialect="pbs")
        self.output: str | None = None
        self.error: str | None = None
        self.join = ""
        self.cwd: str | None = None
        self.cpu: float | None = None
        self.sizes: dict[str, float] = {}
        self.vars: list[str] = []

    def apply(self, item: Item) -> None:
        req, what = self.req, f"#PBS {item.written}"
        name, v = item.name, item.value or ""
        if not name:
            req.note(what, "not a qsub option wulf knows; ignored")
        elif name in NOT_YET:
            req.note(what, NOT_YET[name])
            if name in CARRIED:
                setattr(req, CARRIED[name], v)
        elif name in IGNORED:
            if IGNORED[name]:
                req.note(what, IGNORED[name], strict=False)
        else:
            getattr(self, "_opt_" + APPLIED[name])(v, what)

    def _opt_mail_points(self, v: str, what: str) -> None:
        mail.points(self.req, v, what, sge=False)

    def _opt_mail_users(self, v: str, what: str) -> None:
        mail.users(self.req, v, what)

    def _opt_hold(self, v: str, what: str) -> None:
        self.req.hold = True

    def _opt_name(self, v: str, what: str) -> None:
        self.req.name = v

    def _opt_output(self, v: str, what: str) -> None:
        self.output = _path(v)

    def _opt_error(self, v: str, what: str) -> None:
        self.error = _path(v)

    def _opt_join(self, v: str, what: str) -> None:
        if v not in ("oe", "eo", "n", "o", "e"):
            raise DirectiveError(f"{what}: {v!r} is not oe, eo or n")
        self.join = v

    def _opt_resources(self, v: str, what: str) -> None:
        for resource in _resources(v):
            self._resource(resource, what)

    def _opt_queue(self, v: str, what: str) -> None:
        self.req.queue = v.split("@")[0] or None  # QUEUE@SERVER

    def _opt_vars(self, v: str, what: str) -> None:
        self.vars += env_items(v, what)

    def _opt_array(self, v: str, what: str) -> None:
        self.req.array = array_spec(v, what)

    def _opt_shell(self, v: str, what: str) -> None:
        self.req.shell = _shell(v, what)

    def _opt_dir(self, v: str, what: str) -> None:
        self.cwd = absolute(v, self.where.submit_dir)

    def _opt_attributes(self, v: str, what: str) -> None:
        for attr in _attributes(v):
            key, _, value = attr.partition("=")
            if key == "depend":
                self.req.dependency = dependency(value)  # afterok:1:2,afterany:3: wulf's own form (checked by qr)
            elif key in ("umask", "group_list", "sandbox", "stagein", "stageout"):
                self.req.note(f"{what} {key}", "not supported; ignored")
            else:
                self.req.note(f"{what} {key}", "not a job attribute wulf knows; ignored")

    def _resource(self, resource: str, what: str) -> None:
        key, _, value = resource.partition("=")
        rwhat = f"{what} {key}"
        if key in RESOURCES:
            getattr(self, "_res_" + RESOURCES[key])(key, value, rwhat)
        elif key in ("ngpus", "gpus", "gres", "naccesspolicy", "epilogue", "prologue", "host", "software"):
            self.req.note(rwhat, "not supported yet; ignored")
        elif key in ("ompthreads", "mpiprocs", "jobfs", "storage", "qos", "file", "feature", "arch"):
            self.req.note(rwhat, "ignored", strict=False)
        else:
            self.req.note(rwhat, "not a resource wulf knows; ignored")

    def _res_walltime(self, key: str, value: str, what: str) -> None:
        self.req.time_limit = _walltime(value, what)

    def _res_cput(self, key: str, value: str, what: str) -> None:
        self.req.cputime_limit = _walltime(value, what)

    def _res_size(self, key: str, value: str, what: str) -> None:
        self.sizes[key] = size_mb(value, "b", what)

    def _res_ncpus(self, key: str, value: str, what: str) -> None:
        self.cpu = float(count(value, what))

    def _res_nodes(self, key: str, value: str, what: str) -> None:
        self._nodes(value, what)

    def _res_select(self, key: str, value: str, what: str) -> None:
        self._select(value, what)

    def _res_place(self, key: str, value: str, what: str) -> None:
        if any(p in value.split(":") for p in ("scatter", "vscatter", "excl", "exclhost")):
            self.req.note(f"{what}={value}", "whole or separate nodes are not supported yet; the job shares one node")

    def _res_wd(self, key: str, value: str, what: str) -> None:
        self.cwd = self.where.submit_dir  # NCI's PBS Pro: start in the directory qsub ran in

    def _nodes(self, value: str, what: str) -> None:
        """Torque's ``nodes=N[:ppn=M][:property...][+...]``: a node count (or a host name) and properties."""
        cpus = 0
        nodes = 0
        per: set[int] = set()  # processes a node (ppn)
        features: list[str] = []
        for chunk in value.split("+"):
            first, *rest = chunk.split(":")
            n = count(first, what) if first.isdigit() else 1
            if not first.isdigit():
                self.req.note(f"{what}={first}", "naming a node is not supported; any node may run it")
            ppn = 1
            for part in rest:
                k, _, v = part.partition("=")
                if k == "ppn":
                    ppn = count(v, f"{what} ppn")
                elif k in ("gpus", "mics"):
                    self.req.note(f"{what} {k}", "GPUs are not supported yet; none are allocated")
                elif re.fullmatch(r"[A-Za-z0-9_.-]+", part):
                    features.append(part)
                else:
                    raise DirectiveError(f"{what}: {part!r} is not ppn=N or a node property")
            nodes += n
            cpus += n * ppn
            per.add(ppn)
        self.cpu = float(cpus)
        self._many(nodes, cpus, per.pop() if len(per) == 1 else None, 1.0, f"{what}={value}")
        if features:
            self.req.constraint = ",".join(features)

    def _select(self, value: str, what: str) -> None:
        """PBS Pro's ``select=N:ncpus=M:mem=X[:...][+...]``: chunks, summed (they run on one node)."""
        cpus = 0.0
        mem = 0.0
        chunks = 0
        shapes: set[tuple[int, int]] = set()  # a chunk's (ncpus, mpiprocs)
        for chunk in value.split("+"):
            first, *rest = chunk.split(":")
            n = count(first, what) if first.isdigit() else 1
            if not first.isdigit():
                rest = [first, *rest]
            ncpus, cmem, procs = 1, 0.0, 1
            for part in rest:
                k, _, v = part.partition("=")
                if k == "ncpus":
                    ncpus = count(v, f"{what} ncpus", low=0)
                elif k == "mpiprocs":
                    procs = count(v, f"{what} mpiprocs")
                elif k == "mem":
                    cmem = size_mb(v, "b", f"{what} mem")
                elif k in ("ngpus", "gpus"):
                    self.req.note(f"{what} {k}", "GPUs are not supported yet; none are allocated")
                elif k not in ("ompthreads", "host", "vnode", "model", "cpu_type", "arch", "nodetype"):
                    self.req.note(f"{what} {k}", "not a resource wulf knows; ignored")
            chunks += n
            cpus += n * ncpus
            mem += n * cmem
            shapes.add((ncpus, procs))
        self.cpu = max(cpus, 1.0)
        if mem:
            self.sizes["mem"] = mem
        if len(shapes) == 1:
            [(ncpus, procs)] = shapes
            self._many(chunks, chunks * procs, procs, max(ncpus, 1) / procs, f"{what}={value}")
        elif chunks > 1:
            self._many(chunks, int(cpus), None, 1.0, f"{what}={value}")
            self.req.note(f"{what}={value}", f"chunks of different sizes: {int(cpus)} tasks of one cpu on exactly "
                                             f"{chunks} nodes, as many on each as have room", strict=False)

    def _many(self, nodes: int, tasks: int, per_node: int | None, cpu: float, what: str) -> None:
        """A job of several nodes (chunks): ``tasks`` tasks of ``cpu`` each, ``per_node`` on each when all
        chunks are alike. (The memory asked for is shared among its tasks in :meth:`finish`.)"""
        if nodes > 1:
            self.req.nodes = nodes
            try:
                sh = shape(tasks, nodes, per_node)
            except UsageError as e:
                raise DirectiveError(f"{what}: {e.message}") from None
            self.req.ntasks, self.req.tasks_per_node = sh.ntasks, sh.per_node or None
            self.cpu = cpu

    def finish(self) -> Request:
        req, where = self.req, self.where
        req.cpu = self.cpu
        cpus = self.cpu or 1.0
        s = self.sizes
        if "mem" in s and req.ntasks:  # the job's memory, shared by its tasks; the limit is a node's share
            req.mem_mb = s["mem"] / req.ntasks
            req.mem_limit_mb = req.mem_mb * (req.tasks_per_node or math.ceil(req.ntasks / req.nodes))
        elif "mem" in s:
            req.mem_mb = req.mem_limit_mb = s["mem"]
        elif "pmem" in s:
            req.mem_mb = req.mem_limit_mb = s["pmem"] * cpus
        if "vmem" in s or "pvmem" in s:
            limit = s["vmem"] if "vmem" in s else s["pvmem"] * cpus
            req.mem_limit_mb = min(limit, req.mem_limit_mb or limit)
        req.cwd = self.cwd or where.home
        if self.vars:
            req.env = ",".join(["ALL", *self.vars])
        name = req.name or where.script_name
        tail = "%A.%a" if req.array else "%j"  # a task's: NAME.oARRAY.INDEX
        req.default_output = f"{pattern_text(name)}.o{tail}"
        default = absolute(f"{pattern_text(name)}.o{tail}", where.submit_dir)
        out = absolute(pattern_text(self.output), where.submit_dir) if self.output else default
        err = absolute(pattern_text(self.error), where.submit_dir) if self.error else None
        if self.join == "eo":  # both go to the error file
            out, err = err or absolute(f"{pattern_text(name)}.e{tail}", where.submit_dir), None
        elif self.join == "oe":
            err = None
        if req.array:  # PBS Pro's ^array_index^ in a task's file names
            out = out.replace("^array_index^", "%a")
            err = err.replace("^array_index^", "%a") if err else err
        req.output = out
        if err is not None and err != out:
            req.error = err
            req.note("#PBS -e", f"a separate file for stderr is not supported yet; stderr goes to {out}")
        return req


def _path(v: str) -> str:
    """A qsub path may name its host (``host:path``): wulf writes on the node's file system."""
    host, colon, path = v.partition(":")
    return path if colon and "/" not in host else v


def _shell(v: str, what: str) -> str:
    shell = v.split(",")[0].split("@")[0]
    if not shell.startswith("/") or re.search(r"\s", shell):
        raise DirectiveError(f"{what}: {v!r} is not the absolute path of a shell")
    return shell


def _resources(v: str) -> list[str]:
    """``-l a=1,b=2`` or ``-l select=1:ncpus=2:mem=4gb,walltime=1:00:00``: split at commas."""
    return [r.strip() for r in v.split(",") if r.strip()]


def parse(text: str, where: Where) -> Request:
    """The request of a script's ``#PBS`` block (see the module's doc)."""
    reader = _Reader(where)
    for number, rest in directive_lines(text, PREFIXES["pbs"], indent=True):
        try:
            for item in whole_words(words(rest), OPTIONS, attached=True):
                reader.apply(item)
        except DirectiveError as e:
            message = e.message if e.message.startswith("#") else f"#PBS {e.message}"
            raise DirectiveError(f"line {number}: {message}") from None
    return reader.finish()
