"""Which system a script was written for, and what its directives ask for.

A script's dialect is that of the first directive at its top (``#SBATCH``, ``#PBS`` or ``#$``); lines of
the other systems are then ignored, with a note. ``#WULF`` lines (in the same top block) hold ``qr``'s
own long options; they are returned as words for ``qr`` to read, and win over the dialect's directives.
"""

from __future__ import annotations

from collections.abc import Callable

from wulf.compat import pbs, sge, slurm
from wulf.compat.request import PREFIXES, WULF_PREFIX, DirectiveError, Request, Where, directive_lines, words

PARSERS: dict[str, Callable[[str, Where], Request]] = {"slurm": slurm.parse, "pbs": pbs.parse, "sge": sge.parse}


def dialect_of(text: str) -> str:
    """"slurm", "pbs", "sge", or "" for a script with no directives of theirs."""
    first: tuple[int, str] | None = None
    for dialect, prefix in PREFIXES.items():
        lines = directive_lines(text, prefix, indent=dialect == "pbs")
        if lines and (first is None or lines[0][0] < first[0]):
            first = (lines[0][0], dialect)
    if first is not None:
        return first[1]
    return "sge" if directive_lines(text, PREFIXES["sge"], whole=True) else ""


def read(text: str, where: Where) -> Request:
    """The request of a script: its dialect's directives, the words of its ``#WULF`` lines, and notes for
    what was not applied. Raises :class:`DirectiveError` (one line, with the line number) for a bad value."""
    dialect = dialect_of(text)
    req = PARSERS[dialect](text, where) if dialect else Request()
    for other, prefix in PREFIXES.items():
        if other != dialect and directive_lines(text, prefix, indent=other == "pbs"):
            req.note(prefix, f"ignored: this script is read as {PREFIXES[dialect]} directives", strict=False)
    for number, rest in directive_lines(text, WULF_PREFIX):
        try:
            req.wulf_args += words(rest)
        except DirectiveError as e:
            raise DirectiveError(f"line {number}: {WULF_PREFIX}: {e.message}") from None
    return req


_SUBMIT_VARS = {
    "pbs": ("PBS_O_", ("HOME", "LANG", "LOGNAME", "PATH", "MAIL", "SHELL", "TZ")),
    "sge": ("SGE_O_", ("HOME", "LOGNAME", "PATH", "MAIL", "SHELL")),
}


def submit_env(dialect: str, where: Where, host: str, environ: dict[str, str]) -> dict[str, str]:
    """The variables of a dialect that say where the job was submitted from (the agent adds those of where
    it runs): ``SLURM_SUBMIT_DIR``, ``PBS_O_WORKDIR``, ``SGE_O_WORKDIR``, the host, and the submitter's
    ``HOME``, ``PATH``... under PBS's and Grid Engine's ``*_O_`` names."""
    if dialect == "slurm":
        return {"SLURM_SUBMIT_DIR": where.submit_dir, "SLURM_SUBMIT_HOST": host}
    if dialect not in _SUBMIT_VARS:
        return {}
    prefix, names = _SUBMIT_VARS[dialect]
    env = {prefix + "WORKDIR": where.submit_dir, prefix + "HOST": host}
    env.update({prefix + n: environ[n] for n in names if n in environ})
    return env


def with_shell(script: str, shell: str | None) -> str:
    """The script run by ``shell`` (``#PBS -S``, ``#$ -S``): its ``#!`` line replaced, or one added."""
    if shell is None:
        return script
    body = script.split("\n", 1)[1] if script.startswith("#!") and "\n" in script else (
        "" if script.startswith("#!") else script)
    return f"#!{shell}\n{body}"


_SH = frozenset({"sh", "bash", "dash", "ash", "ksh", "mksh", "pdksh", "zsh", "yash", "posh"})
_CSH = frozenset({"csh", "tcsh"})


def interpreter(script: str) -> str:
    """The name of the program that runs the script (``bash`` for ``#!/usr/bin/env bash``); ``sh`` for a
    script without a ``#!`` line (the agent runs those with /bin/sh)."""
    if not script.startswith("#!"):
        return "sh"
    ws = script[2:].split("\n", 1)[0].split()
    if ws and ws[0].rsplit("/", 1)[-1] == "env":
        ws = [w for w in ws[1:] if not w.startswith("-") and "=" not in w]
    return ws[0].rsplit("/", 1)[-1] if ws else "sh"


def with_arguments(script: str, args: list[str]) -> str:
    """The script with ``args`` as its arguments (``sbatch job.sh A B``): a line that sets them is added
    where its directive block ends, so ``$1``, ``$#`` and ``$@`` are what they are under Slurm, PBS and
    Grid Engine (``$0`` is the staged script, as it is theirs). DirectiveError for a script whose
    interpreter is no shell wulf can set them for (Python, Perl...), so nothing is queued with them lost."""
    import shlex

    if not args:
        return script
    shell = interpreter(script)
    if shell in _SH:
        line = "set -- " + " ".join(shlex.quote(a) for a in args)
    elif shell in _CSH and not any("\n" in a or "!" in a for a in args):
        line = "set argv = ( " + " ".join(shlex.quote(a) for a in args) + " )"
    else:
        raise DirectiveError(f"arguments to a script are passed to shell scripts (sh, bash, zsh, ksh, csh...); "
                             f"this one runs with {shell}: put them in the script, or use --wrap")
    lines = script.splitlines(keepends=True)
    at = len(lines)
    for number, text in enumerate(lines):
        stripped = text.strip()
        if stripped and not stripped.startswith("#") and not (number == 0 and stripped == ":"):
            at = number
            break
    if at and not lines[at - 1].endswith("\n"):
        lines[at - 1] += "\n"
    return "".join([*lines[:at], line + "\n", *lines[at:]])
