"""A job's submission as the Python API takes it (keyword arguments), checked and turned into the
fields ``qr`` sends (wulf.protocol.JobSpec), with the same usage errors as ``qr`` gives."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from wulf.errors import UsageError

JobIds = int | str | Iterable[int | str]
"""Jobs as ``after=`` takes them: one id (``12``, ``"12"``), or several."""


@dataclass(frozen=True, slots=True)
class Options:
    """What jobs of one submission share (see :meth:`wulf.api.Client.submit`)."""

    cpu: float | None = None
    mem: float | str | None = None
    queue: str = "default"
    name: str = ""
    cwd: str | None = None
    output: str = ""
    array: str = ""
    after: JobIds = ()
    after_any: JobIds = ()
    after_notok: JobIds = ()
    depend: str = ""
    retries: int | None = None
    time_limit: float | str | None = None
    cputime_limit: float | str | None = None
    mem_limit: float | str | None = None
    nice: int | None = None
    constraint: str = ""
    keep_script: bool = False
    mail_type: str = ""
    mail_user: str = ""
    signal: str = ""  # "USR1@60": SIGUSR1 a minute before the time limit (qr --signal)
    checkpoint: str = ""  # "USR1@30:00": checkpoint every half hour and before the time limit (qr --checkpoint)
    ntasks: int | None = None  # a job of several tasks (qr --ntasks; cpu and mem are then each task's)
    nodes: int | None = None  # on exactly this many nodes (qr --nodes)
    tasks_per_node: int | None = None  # qr --ntasks-per-node
    requeue: bool = False  # it may be stopped and started over elsewhere (qr --requeue)


class SubmitOptions(TypedDict, total=False):
    """The keyword arguments of :meth:`wulf.api.Client.submit` besides the command (see :class:`Options`)."""

    cpu: float
    mem: float | str
    queue: str
    name: str
    cwd: str
    output: str
    array: str
    after: JobIds
    after_any: JobIds
    after_notok: JobIds
    depend: str
    retries: int
    time_limit: float | str
    cputime_limit: float | str
    mem_limit: float | str
    nice: int
    constraint: str
    keep_script: bool
    mail_type: str
    mail_user: str
    signal: str
    checkpoint: str
    ntasks: int
    nodes: int
    tasks_per_node: int
    requeue: bool


def _words(ids: JobIds) -> list[str]:
    if isinstance(ids, (int, str)):
        ids = [ids]
    out = []
    for i in ids:
        if isinstance(i, bool) or not isinstance(i, (int, str)):
            raise UsageError(f"{i!r} is not a job id")
        out.append(str(i))
    return out


def dependency(opts: Options) -> str:
    """``after=``, ``after_any=``, ``after_notok=`` and ``depend=`` as one dependency (each must hold),
    checked as qr checks them."""
    from wulf.cli.qr import dependency_text
    from wulf.model.depend import After, of_ids

    parts = [opts.depend] if opts.depend.strip() else []
    for flag, kind in (("after", After.OK), ("after_any", After.ANY), ("after_notok", After.NOTOK)):
        words = _words(getattr(opts, flag))
        if words:
            parts.append(of_ids(kind, words))
    return dependency_text(",".join(parts), "depend" if opts.depend.strip() else "after") if parts else ""


def _mb(value: float | str, what: str) -> float:
    if isinstance(value, str):
        from wulf.cli.common import parse_mem

        return parse_mem(value, what)
    return _positive(value, what)


def _positive(value: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise UsageError(f"{what}: {value!r} is not a number more than zero")
    return float(value)


def _seconds(value: float | str, what: str) -> float:
    if isinstance(value, str):
        from wulf.policy.limits import parse_duration

        try:
            return parse_duration(value)
        except ValueError as e:
            raise UsageError(f"{what}: {e}") from None
    return _positive(value, what)


def _limits(opts: Options, out: dict[str, Any]) -> None:
    for key, value in (("time_limit", opts.time_limit), ("cputime_limit", opts.cputime_limit)):
        if value is not None:
            out[key] = _seconds(value, key)
    if opts.mem_limit is not None:
        out["mem_limit_mb"] = _mb(opts.mem_limit, "mem_limit")
    if opts.nice is not None:
        if isinstance(opts.nice, bool) or not isinstance(opts.nice, int) or not -20 <= opts.nice <= 19:
            raise UsageError(f"nice: {opts.nice!r} is not a nice value (-20 to 19)")
        out["nice"] = opts.nice


def _lifecycle(opts: Options, out: dict[str, Any]) -> None:
    if opts.array:
        from wulf.model.array import parse_array

        out["array"] = parse_array(opts.array).text()
    if dep := dependency(opts):
        out["depend"] = dep
    if opts.retries is not None:
        from wulf.model.job import MAX_RETRIES

        if isinstance(opts.retries, bool) or not isinstance(opts.retries, int) or not 0 <= opts.retries <= MAX_RETRIES:
            raise UsageError(f"retries: {opts.retries!r} is not a number of retries (0 to {MAX_RETRIES})")
        out["retries"] = opts.retries
    from wulf.model import checkpoint

    if opts.signal:
        out["warn_signal"] = checkpoint.parse_signal(opts.signal, "signal").text()
    if opts.checkpoint:
        notice = checkpoint.parse_checkpoint(opts.checkpoint, "checkpoint")
        if notice is None:
            from wulf.cli.criu import refusal

            raise UsageError(refusal())
        out["checkpoint"] = notice.text()
    if opts.requeue:
        out["requeue"] = True


def common(opts: Options) -> dict[str, Any]:
    """The JobSpec fields of ``opts`` (UsageError as qr's for what is wrong)."""
    try:
        cwd = opts.cwd if opts.cwd is not None else os.getcwd()
    except FileNotFoundError:
        raise UsageError("the current directory no longer exists: give cwd=") from None
    out: dict[str, Any] = {"cwd": os.path.abspath(cwd), "queue": opts.queue or "default", "output": opts.output,
                           "keep_script": opts.keep_script}
    if opts.output:
        from wulf.cli.scriptjob import in_dir

        in_dir(out, "wulf-%j.out")  # a directory: the default name in it, as qr -o DIR
    if opts.cpu is not None:
        out["cpu"] = _positive(opts.cpu, "cpu")
    if opts.mem is not None:
        out["mem_mb"] = _mb(opts.mem, "mem")
    if opts.constraint.strip():
        from wulf.policy.constraint import parse_constraint

        out["constraint"] = str(parse_constraint(opts.constraint))
    _limits(opts, out)
    _lifecycle(opts, out)
    if opts.mail_type:
        from wulf.model.mailtypes import parse_mail_types

        out["mail_type"] = parse_mail_types(opts.mail_type) or "NONE"
    if opts.mail_user:
        out["mail_user"] = opts.mail_user
    _tasks(opts, out)
    return out


def _tasks(opts: Options, out: dict[str, Any]) -> None:
    """ntasks, nodes, tasks_per_node: checked as qr checks them."""
    given = {k: getattr(opts, k) for k in ("ntasks", "nodes", "tasks_per_node") if getattr(opts, k) is not None}
    for key, value in given.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"{key}: {value!r} is not a whole number")
    if given:
        from wulf.model.tasks import shape

        shape(given.get("ntasks"), given.get("nodes"), given.get("tasks_per_node"))
        out.update(given)


def one(command: str | None, script: str | None, opts: Options, shared: dict[str, Any]) -> dict[str, Any]:
    """One job's JobSpec fields: a command (run with ``sh -c``) or a script (run by its ``#!`` line)."""
    if (command is None) == (script is None):
        raise UsageError("give a command or a script (one of them)")
    if command is not None:
        if not isinstance(command, str) or not command.strip():
            raise UsageError("the command is empty")
        return {**shared, "name": opts.name or command.split()[0][:40], "command": command}
    if not isinstance(script, str) or not script.strip():
        raise UsageError("the script is empty")
    name = opts.name or "script"
    return {**shared, "name": name, "script": script, "command": name}


def environment(env: Mapping[str, str] | None) -> dict[str, str]:
    """The job's environment: ``env``, or all of this process's (as qr's default ``--env ALL``); what is
    not UTF-8 text is left out, as qr leaves it out."""
    from wulf.cli.qr import carried_env

    kept, _ = carried_env(dict(os.environ) if env is None else dict(env))
    return kept
