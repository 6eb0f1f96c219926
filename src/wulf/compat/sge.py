"""``#$`` directives, as Grid Engine's qsub reads them.

Grid Engine reads every line of the script whose first two characters are ``#$`` (not only a block at the
top). Options are whole words (``-cwd``, ``-pe smp 4``, ``-l h_rt=1:00:00,h_vmem=2G``). A job runs in its
owner's home directory unless ``-cwd`` or ``-wd DIR``, and its output goes to ``NAME.oID`` there; paths
may hold ``$JOB_ID``, ``$JOB_NAME``, ``$TASK_ID``, ``$USER``, ``$HOME`` and ``$HOSTNAME``.
"""

from __future__ import annotations

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

_V, _N = "value", "none"
OPTIONS: dict[str, Opt] = {
    name: Opt(name[1:], arity)  # type: ignore[arg-type]
    for name, arity in [
        ("-N", _V), ("-o", _V), ("-e", _V), ("-j", _V), ("-cwd", _N), ("-wd", _V), ("-V", _N), ("-v", _V),
        ("-S", _V), ("-t", _V), ("-tc", _V), ("-pe", "pair"), ("-l", _V), ("-hold_jid", _V), ("-hold_jid_ad", _V),
        ("-q", _V), ("-m", _V), ("-M", _V), ("-r", _V), ("-R", _V), ("-p", _V), ("-P", _V), ("-A", _V),
        ("-b", _V), ("-notify", _N), ("-now", _V), ("-binding", _V), ("-sync", _V), ("-a", _V), ("-h", _N),
        ("-js", _V), ("-w", _V), ("-ac", _V), ("-dc", _V), ("-sc", _V), ("-shell", _V), ("-terse", _N),
        ("-C", _V), ("-i", _V), ("-ckpt", _V), ("-c", _V), ("-soft", _N), ("-hard", _N), ("-masterq", _V),
        ("-u", _V), ("-cwd", _N),
    ]
}
NOT_YET = {
    "hold_jid_ad": "dependencies are not supported yet; the job does not wait for others",
    "p": "priorities of single jobs are not supported (qset QUEUE --priority orders your queues)",
    "notify": "a warning signal before the job is stopped is not supported yet",
    "sync": "waiting for the job is not supported in a script (qwait ID waits)",
    "a": "a deferred start is not supported yet; the job may start at once",
    "i": "standard input from a file is not supported; the job reads /dev/null",
    "masterq": "not supported; ignored",
}
CARRIED = {"hold_jid": "dependency", "hold_jid_ad": "dependency", "m": "mail_type", "M": "mail_user", "t": "array"}
IGNORED = {
    "r": "ignored (a job is queued again only with #WULF --retries N)", "R": "ignored (no reservations)", "P": "projects are not used by "
    "wulf; ignored", "A": "accounts are not used by wulf; ignored", "b": "ignored (a script is a script)",
    "now": "ignored", "binding": "ignored", "js": "ignored", "w": "ignored", "ac": "ignored", "dc": "ignored",
    "sc": "ignored", "shell": "ignored", "terse": "ignored", "C": "ignored", "ckpt": "ignored (no checkpoints)",
    "c": "ignored (no checkpoints)", "soft": "ignored", "hard": "", "u": "ignored", "V": "",
}
PER_SLOT_MEM = {"mem_free", "m_mem_free", "virtual_free", "mem", "mem_req", "mem_per_core"}


class _Reader:
    def __init__(self, where: Where) -> None:
        self.where = where
        self.req = Request(dialect="sge")
        self.output: str | None = None
        self.error: str | None = None
        self.join = False
        self.cwd: str | None = None
        self.slots = 1
        self.h_vmem: float | None = None
        self.mem: float | None = None
        self.vars: list[str] = []
        self.tc = 0

    def apply(self, item: Item) -> None:
        req, what = self.req, f"#$ {item.written}"
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
            getattr(self, "_opt_" + name)(v, what)

    def _opt_hold_jid(self, v: str, what: str) -> None:
        """-hold_jid 12,13: after those jobs ended, however (Grid Engine does not ask how); carried as
        written (names too: qr refuses those, see hold_dependency)."""
        self.req.dependency = v

    def _opt_m(self, v: str, what: str) -> None:
        mail.points(self.req, v, what, sge=True)

    def _opt_M(self, v: str, what: str) -> None:
        mail.users(self.req, v, what)

    def _opt_h(self, v: str, what: str) -> None:
        self.req.hold = True

    def _opt_N(self, v: str, what: str) -> None:
        self.req.name = v

    def _opt_o(self, v: str, what: str) -> None:
        self.output = _path(v)

    def _opt_e(self, v: str, what: str) -> None:
        self.error = _path(v)

    def _opt_j(self, v: str, what: str) -> None:
        if v.lower() not in ("y", "yes", "n", "no", "true", "false"):
            raise DirectiveError(f"{what}: {v!r} is not y or n")
        self.join = v.lower() in ("y", "yes", "true")

    def _opt_cwd(self, v: str, what: str) -> None:
        self.cwd = self.where.submit_dir

    def _opt_wd(self, v: str, what: str) -> None:
        self.cwd = absolute(v, self.where.submit_dir)

    def _opt_v(self, v: str, what: str) -> None:
        self.vars += env_items(v, what)

    def _opt_t(self, v: str, what: str) -> None:
        self.req.array = array_spec(v, what)

    def _opt_tc(self, v: str, what: str) -> None:
        """At most this many tasks at once: qr --array's %N."""
        if not v.strip().isdigit() or int(v) < 1:
            raise DirectiveError(f"{what}: the number of tasks at once is a whole number of at least 1, not {v!r}")
        self.tc = int(v)

    def _opt_S(self, v: str, what: str) -> None:
        if not v.startswith("/") or re.search(r"\s", v):
            raise DirectiveError(f"{what}: {v!r} is not the absolute path of a shell")
        self.req.shell = v

    def _opt_l(self, v: str, what: str) -> None:
        for resource in v.split(","):
            self._resource(resource.strip(), what)

    def _opt_q(self, v: str, what: str) -> None:
        queue = v.split(",")[0].split("@")[0]  # QUEUE@HOST, or a list
        self.req.queue = queue or None
        if "," in v:
            self.req.note(what, f"one queue only: the job goes to {queue!r}", strict=False)

    def _opt_pe(self, v: str, what: str) -> None:
        """``-pe NAME N``: N slots on one node (N may be a range ``2-8``: the job asks for the least)."""
        slots = v.split()[1]
        low, _, high = slots.partition("-")
        self.slots = count(low or high, f"{what} {v.split()[0]}")

    def _resource(self, resource: str, what: str) -> None:
        key, _, value = resource.partition("=")
        rwhat = f"{what} {key}"
        if key in ("h_rt", "s_rt"):
            seconds = _seconds(value, rwhat)
            if key == "h_rt":
                self.req.time_limit = seconds
            else:
                self.req.note(rwhat, "a soft time limit (a warning signal) is not supported yet")
        elif key == "h_cpu":
            self.req.cputime_limit = _seconds(value, rwhat)
        elif key == "h_vmem":
            self.h_vmem = size_mb(value, "b", rwhat)
        elif key in PER_SLOT_MEM:
            self.mem = size_mb(value, "b", rwhat)
        elif key in ("s_vmem", "s_cpu", "gpu", "gpus", "cuda", "exclusive", "excl"):
            self.req.note(rwhat, "not supported yet; ignored")
        elif key in ("arch", "hostname", "h", "tmpfs", "scratch", "highp", "m_core"):
            self.req.note(rwhat, "ignored", strict=False)
        else:
            self.req.note(rwhat, "not a resource wulf knows; ignored")

    def finish(self) -> Request:
        req, where = self.req, self.where
        if self.slots > 1:
            req.cpu = float(self.slots)
        if self.mem is not None:
            req.mem_mb = self.mem * self.slots
        if self.h_vmem is not None:  # per slot, a hard limit (and what it asks, unless it said mem_free)
            req.mem_limit_mb = self.h_vmem * self.slots
            req.mem_mb = req.mem_mb or req.mem_limit_mb
        req.cwd = self.cwd or where.home
        if self.vars:
            req.env = ",".join(["ALL", *self.vars])
        name = req.name or where.script_name
        if req.array and self.tc and "%" not in req.array:
            req.array = array_spec(f"{req.array}%{self.tc}", "#$ -tc")
        elif self.tc and not req.array:
            req.note("#$ -tc", "without -t there is no array to limit; ignored", strict=False)
        req.default_output = f"{pattern_text(name)}.o{'%A.%a' if req.array else '%j'}"
        out = self._place(self.output, name, "o")
        err = self._place(self.error, name, "e")
        req.output = out
        if not self.join and self.error is not None and err != out:
            req.error = err
            req.note("#$ -e", f"a separate file for stderr is not supported yet; stderr goes to {out}")
        return req

    def _place(self, path: str | None, name: str, stream: str) -> str:
        """The output pattern of a ``-o``/``-e`` path: its pseudo variables in wulf's terms, relative to the
        job's directory; none: ``NAME.oID`` there."""
        array = bool(self.req.array)
        if not path:
            return absolute(f"{pattern_text(name)}.{stream}{'%A.%a' if array else '%j'}", self.cwd or self.where.home)
        out = pattern_text(path)
        for var, value in (("JOB_ID", "%A" if array else "%j"), ("JOB_NAME", pattern_text(name)),
                           ("TASK_ID", "%a" if array else "undefined"),
                           ("USER", "%u"), ("HOME", pattern_text(self.where.home)), ("HOSTNAME", "%N")):
            out = re.sub(rf"\$(?:{var}\b|\{{{var}\}})", lambda _m, v=value: v, out)  # type: ignore[misc]
        return absolute(out, self.cwd or self.where.home)


def hold_dependency(text: str) -> str:
    """``-hold_jid 12,13`` in wulf's terms (``afterany:12:13``); DirectiveError for names and patterns
    (wulf waits for job ids only, and a job must not run before what it waits for)."""
    ids = [w.strip() for w in text.split(",") if w.strip()]
    if not ids or not all(w.isascii() and w.isdigit() for w in ids):
        raise DirectiveError(f"#$ -hold_jid: wulf waits for job ids only (12,13), not names or patterns: {text!r}")
    return "afterany:" + ":".join(ids)


def _path(v: str) -> str:
    """A path, or a list of ``[HOST:]PATH``: the first path."""
    return v.split(",")[0].rpartition(":")[2] or v


def _seconds(value: str, what: str) -> float | None:
    return None if value.upper() in ("INFINITY", "INF") else colon_seconds(value, what)


def parse(text: str, where: Where) -> Request:
    """The request of a script's ``#$`` lines (see the module's doc)."""
    reader = _Reader(where)
    for number, rest in directive_lines(text, PREFIXES["sge"], whole=True):
        try:
            for item in whole_words(words(rest), OPTIONS):
                reader.apply(item)
        except DirectiveError as e:
            message = e.message if e.message.startswith("#") else f"#$ {e.message}"
            raise DirectiveError(f"line {number}: {message}") from None
    return reader.finish()
