"""A script's job as qr queues it: its directives (``#SBATCH``, ``#PBS``, ``#$``, ``#WULF``) applied under
the options of the command line, which win, as in each of those systems.

What wulf cannot do yet (a separate stderr, several nodes) and
what it does not know are warnings on stderr naming the directive; with ``qr --strict``, an error (exit 2,
nothing queued). Options that mean nothing in wulf (accounts, QOS) are warnings even then.
"""

from __future__ import annotations

import os
import sys

from wulf.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:  # (typing only when checked: qr imports this module for -o)
    from typing import Any

# the request's fields that are job fields of the same name
_FIELDS = ("name", "output", "cwd", "cpu", "mem_mb", "mem_limit_mb", "time_limit", "cputime_limit", "queue",
           "nice", "constraint", "mail_type", "mail_user", "hold",
           "requeue")
_NOT_IN_WULF = ("command", "script", "words", "json")


def _wulf_options(words: list[str]) -> dict[str, Any]:
    """The fields ``#WULF`` lines give: any of qr's long options, but no commands or scripts."""
    if not words:
        return {}
    from wulf.cli.qr import _given, _parser

    args = _parser().parse_args(words)
    for key in _NOT_IN_WULF:
        if getattr(args, key):
            raise UsageError(f"#WULF: {key} options and words do not belong in a script's directives")
    return _given(args)


def _dependency(text: str, dialect: str, label: str) -> str:
    """A script's dependency directive as wulf's (UsageError: one it cannot honour; the job must not run
    before what it waits for, so this is never only a warning)."""
    from wulf.cli.qr import dependency_text
    from wulf.compat.request import DirectiveError

    if dialect == "sge":
        from wulf.compat.sge import hold_dependency

        try:
            text = hold_dependency(text)
        except DirectiveError as e:
            raise UsageError(f"{label} {e.message}") from None
    return dependency_text(text, f"{label}: dependency")


def _warn_signal(text: str, label: str) -> str:
    """A script's warning signal (#SBATCH --signal) as wulf stores it (UsageError: one it cannot send)."""
    from wulf.model.checkpoint import parse_signal

    try:
        return parse_signal(text, "signal").text()
    except UsageError as e:
        raise UsageError(f"{label}: {e.message}") from None


def _report(label: str, notes: list[Any], strict: bool, who: str = "qr") -> None:
    seen: set[str] = set()
    for note in notes:
        if strict and note.strict:
            raise UsageError(f"{label}: {note} ({who} --strict refuses the script; nothing was queued)")
        if str(note) not in seen:
            seen.add(str(note))
            print(f"{who}: {label}: warning: {note}", file=sys.stderr)


def in_dir(spec: dict[str, Any], default: str) -> None:
    """An output that names a directory gets the dialect's default name inside it."""
    out = spec.get("output") or ""
    if out and "%" not in out.replace("%%", ""):
        path = os.path.join(spec["cwd"], out.replace("%%", "%"))
        if os.path.isdir(path):
            spec["output"] = os.path.join(out, default)


def from_directives(script: str, label: str, file_name: str, cwd: str, given: dict[str, Any],
                    strict: bool, name: str, parse_as: str | None = None, who: str = "qr",
                    args: list[str] | None = None) -> dict[str, Any]:
    """The spec of one script (``label`` names it in messages and is its command; ``name`` is its name
    unless its directives or the command line give one). ``parse_as``: the text whose directives are
    read, when it is not the script itself (sbatch and qsub add their command line's options to the
    script's directives; the job runs the script as it was written). ``who`` says it in messages;
    ``args`` are the script's arguments (``sbatch job.sh A B``)."""
    from wulf.compat.directives import read, submit_env, with_arguments, with_shell
    from wulf.compat.request import DirectiveError, Where

    where = Where(submit_dir=cwd, home=os.path.expanduser("~"), script_name=file_name,
                  user=os.environ.get("USER", ""))
    try:
        req = read(script if parse_as is None else parse_as, where)
        wulf = _wulf_options(req.wulf_args)
    except DirectiveError as e:
        raise UsageError(f"{label} {e.message}") from None
    _report(label, req.notes, strict, who)
    fields = {k: getattr(req, k) for k in _FIELDS if getattr(req, k) is not None}
    if req.env is not None:
        fields["_env"] = req.env
    if req.ntasks:  # a job of several nodes
        fields.update(ntasks=req.ntasks, nodes=req.nodes)
        if req.tasks_per_node:
            fields["tasks_per_node"] = req.tasks_per_node
    if req.array:
        fields["array"] = req.array
    if req.dependency:
        fields["depend"] = _dependency(req.dependency, req.dialect, label)
    if req.signal:
        fields["warn_signal"] = _warn_signal(req.signal, label)
    spec: dict[str, Any] = {"cwd": cwd, "queue": "default", "output": "", "keep_script": False, "name": name,
                            **fields, **wulf, **given}
    try:
        staged = with_arguments(with_shell(script, req.shell), args or [])
    except DirectiveError as e:
        raise UsageError(f"{who}: {label}: {e.message}") from None
    spec.update(script=staged, command=label)
    if req.dialect:
        spec["dialect"] = req.dialect
        import socket

        spec["_env_add"] = submit_env(req.dialect, where, socket.gethostname(), dict(os.environ))
    in_dir(spec, req.default_output)
    return spec
