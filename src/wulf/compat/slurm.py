"""``#SBATCH`` directives, as sbatch reads them.

sbatch reads ``#SBATCH`` lines (at the start of the line) until the first line that is neither blank nor
a comment; ``##SBATCH`` and ``# SBATCH`` are comments. Each line holds sbatch options: ``--opt=value``,
``--opt value``, ``-o value``, ``-ovalue``; a ``#`` that starts a word begins a comment.
"""

from __future__ import annotations

import math
import re

from wulf.compat import mail
from wulf.compat.options import Item, Opt, getopt_long
from wulf.compat.request import (
    PREFIXES,
    DirectiveError,
    Request,
    Where,
    absolute,
    array_spec,
    check_seconds,
    count,
    directive_lines,
    env_items,
    size_mb,
    words,
)
from wulf.errors import UsageError
from wulf.model.tasks import shape

_V, _N, _O = "value", "none", "optional"
LONG: dict[str, Opt] = {
    name: Opt(canon, arity)  # type: ignore[arg-type]
    for name, canon, arity in [
        ("job-name", "job-name", _V), ("output", "output", _V), ("error", "error", _V),
        ("chdir", "chdir", _V), ("workdir", "chdir", _V), ("cpus-per-task", "cpus-per-task", _V),
        ("ntasks", "ntasks", _V), ("nodes", "nodes", _V), ("ntasks-per-node", "ntasks-per-node", _V),
        ("tasks-per-node", "ntasks-per-node", _V), ("mem", "mem", _V), ("mem-per-cpu", "mem-per-cpu", _V),
        ("time", "time", _V), ("array", "array", _V), ("dependency", "dependency", _V),
        ("partition", "partition", _V), ("mail-type", "mail-type", _V), ("mail-user", "mail-user", _V),
        ("export", "export", _V), ("requeue", "requeue", _N), ("no-requeue", "no-requeue", _N),
        ("signal", "signal", _V), ("nice", "nice", _O), ("constraint", "constraint", _V),
        ("exclusive", "exclusive", _O), ("gres", "gres", _V), ("account", "account", _V), ("qos", "qos", _V),
        ("comment", "comment", _V), ("hint", "hint", _V), ("time-min", "time-min", _V),
        ("open-mode", "open-mode", _V), ("tmp", "tmp", _V), ("exclude", "exclude", _V),
        ("nodelist", "nodelist", _V), ("ntasks-per-core", "ntasks-per-core", _V), ("gpus", "gpus", _V),
        ("gpus-per-node", "gpus", _V), ("gpus-per-task", "gpus", _V), ("cpus-per-gpu", "gpus", _V),
        ("mem-per-gpu", "gpus", _V), ("ntasks-per-gpu", "gpus", _V), ("licenses", "licenses", _V),
        ("reservation", "reservation", _V), ("begin", "begin", _V), ("hold", "hold", _N),
        ("deadline", "deadline", _V), ("input", "input", _V), ("get-user-env", "get-user-env", _O),
        ("wckey", "wckey", _V), ("distribution", "distribution", _V), ("cluster", "clusters", _V),
        ("clusters", "clusters", _V), ("mincpus", "mincpus", _V), ("propagate", "propagate", _O),
        ("cpu-freq", "cpu-freq", _V), ("kill-on-invalid-dep", "kill-on-invalid-dep", _V),
        ("parsable", "parsable", _N), ("quiet", "quiet", _N), ("verbose", "verbose", _N),
        ("wait", "wait", _N), ("threads-per-core", "threads-per-core", _V), ("overcommit", "overcommit", _N),
        ("oversubscribe", "oversubscribe", _N), ("priority", "priority", _V), ("requeue", "requeue", _N),
        ("mcs-label", "mcs-label", _V), ("spread-job", "spread-job", _N), ("use-min-nodes", "use-min-nodes", _N),
    ]
}
SHORT: dict[str, Opt] = {
    letter: LONG[name] for letter, name in [
        ("J", "job-name"), ("o", "output"), ("e", "error"), ("D", "chdir"), ("c", "cpus-per-task"),
        ("n", "ntasks"), ("N", "nodes"), ("t", "time"), ("a", "array"), ("d", "dependency"),
        ("p", "partition"), ("C", "constraint"), ("A", "account"), ("q", "qos"), ("x", "exclude"),
        ("w", "nodelist"), ("G", "gpus"), ("L", "licenses"), ("b", "begin"), ("H", "hold"), ("i", "input"),
        ("m", "distribution"), ("M", "clusters"), ("Q", "quiet"), ("v", "verbose"), ("W", "wait"),
        ("O", "overcommit"), ("s", "oversubscribe"),
    ]
}

NOT_YET = {
    "exclusive": "whole nodes are not supported yet; the job shares its node",
    "gres": "generic resources (GPUs) are not supported yet; none are allocated",
    "gpus": "GPUs are not supported yet; none are allocated",
    "licenses": "licenses are not supported yet",
    "reservation": "reservations are not supported yet",
    "begin": "a deferred start is not supported yet; the job may start at once",
    "deadline": "deadlines are not supported yet",
    "nodelist": "naming nodes is not supported (use --constraint)",
    "exclude": "excluding nodes is not supported (use --constraint)",
    "input": "standard input from a file is not supported; the job reads /dev/null",
    "clusters": "other clusters are not supported",
    "wait": "waiting for the job is not supported in a script (qwait ID waits)",
}
CARRIED = {"dependency": "dependency", "mail-type": "mail_type", "mail-user": "mail_user", "array": "array"}
IGNORED = {
    "account": "accounts are not used by wulf; ignored", "qos": "a QOS has no meaning in wulf; ignored",
    "comment": "ignored", "hint": "ignored", "time-min": "ignored", "tmp": "ignored",
    "ntasks-per-core": "ignored", "wckey": "ignored", "distribution": "ignored", "mincpus": "ignored",
    "propagate": "ignored (a job gets its owner's limits and wulf's)", "cpu-freq": "ignored",
    "kill-on-invalid-dep": "ignored", "parsable": "ignored", "quiet": "ignored", "verbose": "ignored",
    "threads-per-core": "ignored", "overcommit": "ignored", "oversubscribe": "ignored (jobs share nodes)",
    "priority": "ignored (qset QUEUE --priority orders your queues)", "mcs-label": "ignored",
    "spread-job": "ignored", "use-min-nodes": "ignored", "no-requeue": "ignored (a job is queued again only with --retries)",
    "get-user-env": "ignored (the job gets the environment qr sends)",
}


DEFAULT_OUTPUT = "slurm-%j.out"
ARRAY_OUTPUT = "slurm-%A_%a.out"  # a task of an array


def time_seconds(text: str, what: str = "--time") -> float | None:
    """Seconds from Slurm's time formats: ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``, ``D-H:M:S``;
    ``0``, ``UNLIMITED`` and ``INFINITE`` mean no limit (None)."""
    t = text.strip()
    if t.upper() in ("UNLIMITED", "INFINITE", "-1"):
        return None
    days = 0
    m = re.fullmatch(r"(\d+)-(\d+(?::\d+){0,2})", t)
    if m:
        days, fields = int(m.group(1)), [int(x) for x in m.group(2).split(":")]
        hms = (fields + [0, 0])[:3]  # D-H, D-H:M, D-H:M:S
    elif re.fullmatch(r"\d+(?::\d+){0,2}", t):
        fields = [int(x) for x in t.split(":")]
        hms = [[0, fields[0], 0], [0, *fields], fields][len(fields) - 1]  # M, M:S, H:M:S
    else:
        raise DirectiveError(f"{what}: {text!r} is not a Slurm time (minutes, MM:SS, HH:MM:SS, D-HH[:MM[:SS]])")
    seconds = days * 86400 + hms[0] * 3600 + hms[1] * 60 + hms[2]
    return None if seconds == 0 else check_seconds(seconds, text, what)


class _Reader:
    def __init__(self, where: Where) -> None:
        self.where = where
        self.req = Request(dialect="slurm")
        self.cpt: int | None = None
        self.ntasks: int | None = None
        self.per_node: int | None = None
        self.mem: float | None = None
        self.mem_per_cpu: float | None = None
        self.output: str | None = None
        self.error: str | None = None
        self.chdir: str | None = None

    def apply(self, item: Item) -> None:
        req, what = self.req, f"#SBATCH {item.written}"
        name, v = item.name, item.value
        if not name:
            req.note(what, "not an sbatch option wulf knows; ignored")
        elif name in NOT_YET:
            req.note(what, NOT_YET[name])
            if name in CARRIED:
                setattr(req, CARRIED[name], v)
        elif name in IGNORED:
            req.note(what, IGNORED[name], strict=False)
        elif name == "open-mode":
            if (v or "").lower() != "truncate":
                req.note(what, "appending to the output file is not supported yet; it is truncated")
        else:
            self._resource(name, v or "", what)

    def _resource(self, name: str, v: str, what: str) -> None:
        """The options wulf applies, each by its method ``_NAME``."""
        getattr(self, "_" + name.replace("-", "_"))(v, what)

    def _dependency(self, v: str, what: str) -> None:
        self.req.dependency = v  # afterok:12:13,afterany:14: wulf's own form (checked by qr)

    def _job_name(self, v: str, what: str) -> None:
        self.req.name = v

    def _output(self, v: str, what: str) -> None:
        self.output = v

    def _error(self, v: str, what: str) -> None:
        self.error = v

    def _chdir(self, v: str, what: str) -> None:
        self.chdir = v

    def _cpus_per_task(self, v: str, what: str) -> None:
        self.cpt = count(v, what)

    def _ntasks(self, v: str, what: str) -> None:
        self.ntasks = count(v, what)

    def _ntasks_per_node(self, v: str, what: str) -> None:
        self.per_node = count(v, what)

    def _nodes(self, v: str, what: str) -> None:
        self.req.nodes = count(v.split("-")[0].split(":")[0], what)  # MIN[-MAX]: the least

    def _mem(self, v: str, what: str) -> None:
        self.mem = 0.0 if v.strip() == "0" else size_mb(v, "m", what)

    def _mem_per_cpu(self, v: str, what: str) -> None:
        self.mem_per_cpu = size_mb(v, "m", what)

    def _array(self, v: str, what: str) -> None:
        self.req.array = array_spec(v, what)

    def _time(self, v: str, what: str) -> None:
        seconds = time_seconds(v, what)
        self.req.time_limit = None if seconds is None else float(seconds)

    def _signal(self, v: str, what: str) -> None:
        """``[{R|B}:]SIG[@SECONDS]`` (60 by default): SIG that long before the time limit, to the whole job
        (B:, the batch shell only, and R:, reservations, have no wulf meaning: the whole job gets it)."""
        m = re.fullmatch(r"(?:([RB]{1,2}):)?([^@]+)(?:@(\d+))?", v.strip())
        if m is None:
            raise DirectiveError(f"{what}: {v!r} is not [{{R|B}}:]SIG[@SECONDS]")
        if m.group(1):
            self.req.note(what, f"{m.group(1)}: is ignored: the whole job gets the signal", strict=False)
        self.req.signal = f"{m.group(2)}@{m.group(3) or 60}"

    def _mail_type(self, v: str, what: str) -> None:
        mail.slurm_types(self.req, v, what)

    def _requeue(self, v: str, what: str) -> None:
        self.req.requeue = True  # (a failed job is queued again only with #WULF --retries N)

    def _hold(self, v: str, what: str) -> None:
        self.req.hold = True

    def _mail_user(self, v: str, what: str) -> None:
        mail.users(self.req, v, what)

    def _partition(self, v: str, what: str) -> None:
        self.req.queue = v.split(",")[0]
        if "," in v:
            self.req.note(what, f"one partition only: the job goes to {self.req.queue!r}", strict=False)

    def _export(self, v: str, what: str) -> None:
        items = env_items(v, what) or ["ALL"]
        if items[0].upper() == "NIL":
            items[0] = "NONE"
        self.req.env = ",".join(items)

    def _nice(self, v: str, what: str) -> None:
        try:
            nice = int(v) if v else 100  # sbatch's --nice without a value
        except ValueError:
            raise DirectiveError(f"{what}: {v!r} is not a whole number") from None
        self.req.nice = max(-20, min(19, nice))

    def _constraint(self, v: str, what: str) -> None:
        """Slurm's features (``a&b``, ``a|b``) in wulf's terms (``,`` and, ``|`` or)."""
        if re.search(r"[\[\]*()]", v):
            raise DirectiveError(f"{what}: {v!r}: counts, brackets and '*' are not supported (features joined by & or |)")
        self.req.constraint = v.replace("&", ",")

    def finish(self) -> Request:
        req, where = self.req, self.where
        cpt = self.cpt or 1
        tasks = self.ntasks or (self.per_node or 1) * req.nodes
        if self.mem is not None and self.mem_per_cpu is not None:
            raise DirectiveError("#SBATCH --mem and --mem-per-cpu: give one of them, not both")
        if self.mem == 0.0:
            req.note("#SBATCH --mem=0", "all of a node's memory is not supported; the default request applies")
        if req.nodes > 1:
            self._spread(cpt, tasks)
        else:
            req.cpu = float(cpt * tasks) if (self.cpt or self.ntasks or self.per_node) else None
            if self.mem:
                req.mem_mb = req.mem_limit_mb = self.mem
            elif self.mem_per_cpu is not None:
                req.mem_mb = req.mem_limit_mb = self.mem_per_cpu * cpt * tasks
        req.cwd = absolute(self.chdir, where.submit_dir) if self.chdir is not None else None
        # relative to the job's working directory; stdout and stderr go to one file unless -e says otherwise
        default = ARRAY_OUTPUT if req.array else DEFAULT_OUTPUT
        req.output = self.output or default
        req.default_output = default
        if self.error is not None and self.error != req.output:
            req.error = self.error
            req.note("#SBATCH --error", "a separate file for stderr is not supported yet; stderr goes to "
                     f"the output file ({req.output})")
        return req


    def _spread(self, cpt: int, tasks: int) -> None:
        """A job of several nodes: its tasks (each of ``cpt`` cpus), as many on each node as asked; --mem is
        each node's (so each task has its share of it), --mem-per-cpu each cpu's."""
        req = self.req
        try:
            sh = shape(tasks, req.nodes, self.per_node)
        except UsageError as e:
            raise DirectiveError(f"#SBATCH --nodes={req.nodes}: {e.message}") from None
        req.ntasks, req.tasks_per_node, req.cpu = sh.ntasks, sh.per_node or None, float(cpt)
        on_a_node = sh.per_node or math.ceil(sh.ntasks / sh.nodes)
        if self.mem:
            req.mem_mb, req.mem_limit_mb = self.mem / on_a_node, self.mem
        elif self.mem_per_cpu is not None:
            req.mem_mb = self.mem_per_cpu * cpt
            req.mem_limit_mb = req.mem_mb * on_a_node


def parse(text: str, where: Where) -> Request:
    """The request of a script's ``#SBATCH`` block (see the module's doc)."""
    reader = _Reader(where)
    for number, rest in directive_lines(text, PREFIXES["slurm"]):
        try:
            for item in getopt_long(words(rest), SHORT, LONG):
                reader.apply(item)
        except DirectiveError as e:
            message = e.message if e.message.startswith("#") else f"#SBATCH {e.message}"
            raise DirectiveError(f"line {number}: {message}") from None
    return reader.finish()
