"""What a job script's directives ask for, in wulf's terms, and the pieces every dialect shares."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from wulf.errors import UsageError

DIALECTS = ("slurm", "pbs", "sge")
PREFIXES = {"slurm": "#SBATCH", "pbs": "#PBS", "sge": "#$"}
WULF_PREFIX = "#WULF"


class DirectiveError(UsageError):
    """A directive whose value cannot be understood (exit 2, nothing is queued)."""


@dataclass(frozen=True)
class Note:
    """A directive that was not applied: wulf cannot do it yet (``strict``: ``qr --strict`` refuses the
    script), or it has no meaning in wulf and is ignored (an account, a QOS)."""

    directive: str  # as the user wrote its option: "#SBATCH --array"
    message: str
    strict: bool = True

    def __str__(self) -> str:
        return f"{self.directive}: {self.message}"


@dataclass(frozen=True)
class Where:
    """The facts of a submission a dialect's defaults depend on (no I/O: the caller gathers them)."""

    submit_dir: str  # where qr runs
    home: str  # the submitting user's home directory
    script_name: str  # the script's file name ("STDIN" when read from standard input)
    user: str = ""


@dataclass
class Request:
    """What a script's directives ask for. ``None`` means "not said": wulf's default (or the command line's
    option) applies. Paths are absolute; output paths are wulf patterns (``%j`` the id, ``%%`` a '%')."""

    dialect: str = ""  # "", "slurm", "pbs", "sge"
    name: str | None = None
    output: str | None = None
    cwd: str | None = None
    cpu: float | None = None
    mem_mb: float | None = None
    mem_limit_mb: float | None = None
    time_limit: float | None = None  # seconds
    cputime_limit: float | None = None
    queue: str | None = None
    nice: int | None = None
    constraint: str | None = None
    env: str | None = None  # in qr --env's terms: "ALL", "NONE", "ALL,NAME=VALUE,..."
    shell: str | None = None  # the interpreter the script runs with (#PBS -S, #$ -S)
    array: str | None = None  # a job array, in qr --array's terms ("1-100%5"; see wulf.model.array)
    mail_type: str | None = None  # in qr --mail-type's terms (see wulf.compat.mail)
    mail_user: str | None = None
    hold: bool | None = None  # queued held (#SBATCH -H, #PBS -h, #$ -h): it waits for qrls
    signal: str | None = None  # a warning signal before the time limit, in qr --signal's terms ("USR1@60")
    requeue: bool | None = None  # it may be stopped and started over elsewhere (#SBATCH --requeue)
    # asked for, not done yet: carried so that a later wulf can, and so that qr can say so
    dependency: str | None = None
    error: str | None = None  # a separate file for stderr
    nodes: int = 1
    # a job of several nodes (issue 13 §1): its tasks, and how many on each node; cpu and mem_mb are then each task's
    ntasks: int | None = None
    tasks_per_node: int | None = None
    default_output: str = "wulf-%j.out"  # the file name a directory given as the output gets inside it
    wulf_args: list[str] = field(default_factory=list)  # the words of #WULF lines: qr's own options
    notes: list[Note] = field(default_factory=list)

    def note(self, directive: str, message: str, strict: bool = True) -> None:
        self.notes.append(Note(directive, message, strict))


def array_spec(text: str, what: str) -> str:
    """An array directive's value (Slurm's, PBS's and Grid Engine's are qr --array's), checked."""
    from wulf.model.array import parse_array

    try:
        parse_array(text)
    except UsageError as e:
        raise DirectiveError(f"{what}: {e.message}") from None
    return text.strip()


# ---------------------------------------------------------------- the directive block


def directive_lines(text: str, prefix: str, *, indent: bool = False, whole: bool = False) -> list[tuple[int, str]]:
    """The (line number, rest of line) of the lines that start with ``prefix`` followed by a blank (or the
    end of the line). Unless ``whole``, only the block at the top counts: it ends at the first line that is
    neither blank nor a comment (``#!`` and ``:`` on the first line are skipped). With ``indent``, a
    directive may be indented (PBS reads from the first non-blank character)."""
    found: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        head = stripped if indent else line
        if head.startswith(prefix) and (len(head) == len(prefix) or head[len(prefix)] in " \t"
                                        or prefix == "#$"):
            found.append((number, head[len(prefix):]))
        elif not whole and stripped and not stripped.startswith("#") and not (number == 1 and stripped == ":"):
            break
    return found


_TOKEN = re.compile(r"""\s+|(?:[^\s'"\\]|\\.?|'[^']*'?|"(?:\\.|[^"\\])*"?)+""", re.S)


def words(text: str) -> list[str]:
    """The words of a directive line as a shell would split them: quotes and backslashes are honoured,
    and a ``#`` that starts a word begins a comment (one inside a word, ``a#b``, does not)."""
    import shlex

    end = next((m.start() for m in _TOKEN.finditer(text) if m.group().startswith("#")), len(text))
    try:
        return shlex.split(text[:end])
    except ValueError:
        raise DirectiveError(f"unbalanced quotes in {text.strip()!r}") from None


# ---------------------------------------------------------------- values

_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([kmgtp]?)(i?b|w)?", re.IGNORECASE)
_UNIT = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}
MAX_MB = 1e9


def size_mb(text: str, default_unit: str, what: str) -> float:
    """A size in MB. ``default_unit`` is the unit of a bare number ("b" for PBS and Grid Engine, which
    count bytes; "m" for Slurm); suffixes are K, M, G, T, P with an optional B (powers of 1024)."""
    m = _SIZE.fullmatch(text.strip())
    if m is None:
        raise DirectiveError(f"{what}: {text!r} is not a size (examples: 512M, 2G, 4gb)")
    unit = m.group(2).lower() if m.group(2) or m.group(3) else default_unit
    if unit == "b":
        unit = ""
    mb = float(m.group(1)) * 1024.0 ** (_UNIT[unit] - 2)
    if m.group(3) and m.group(3).lower() == "w":
        mb *= 8  # PBS words are 8 bytes
    if not 0 < mb <= MAX_MB:
        raise DirectiveError(f"{what}: {text!r} must be more than zero and at most a petabyte")
    return mb


MAX_SECONDS = 1e9


def colon_seconds(text: str, what: str, *, max_parts: int = 3) -> float:
    """Seconds from ``[[H:]M:]S`` (``max_parts`` 4 adds days), where no field is bounded: PBS and Grid
    Engine accept ``walltime=90:00``. Fractions only in the seconds."""
    parts = text.strip().split(":")
    if not 1 <= len(parts) <= max_parts or not all(p.isdigit() for p in parts[:-1]):
        raise DirectiveError(f"{what}: {text!r} is not a duration ([[hours:]minutes:]seconds)")
    if not re.fullmatch(r"\d+(\.\d*)?", parts[-1]):
        raise DirectiveError(f"{what}: {text!r} is not a duration ([[hours:]minutes:]seconds)")
    scale = (1, 60, 3600, 86400)
    seconds = sum(float(p) * scale[i] for i, p in enumerate(reversed(parts)))
    return check_seconds(seconds, text, what)


def check_seconds(seconds: float, text: str, what: str) -> float:
    if not 0 < seconds <= MAX_SECONDS:
        raise DirectiveError(f"{what}: {text!r} must be more than zero and at most thirty years")
    return seconds


def count(text: str, what: str, *, low: int = 1, high: int = 100_000) -> int:
    if not text.strip().isdigit() or not low <= int(text) <= high:
        raise DirectiveError(f"{what}: {text!r} is not a whole number from {low} to {high}")
    return int(text)


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def env_items(value: str, what: str) -> list[str]:
    """The items of an environment list (``NAME``, ``NAME=VALUE``), each name checked."""
    items = [s.strip() for s in value.split(",") if s.strip()]
    for item in items:
        name = item.partition("=")[0]
        if not _ENV_NAME.fullmatch(name) and name.upper() not in ("ALL", "NONE", "NIL"):
            raise DirectiveError(f"{what}: {name!r} is not a variable name")
    return items


def pattern_text(text: str) -> str:
    """Literal text inside an output pattern: its '%' doubled."""
    return text.replace("%", "%%")


def absolute(path: str, base: str) -> str:
    import posixpath

    return posixpath.normpath(posixpath.join(base, path)) if path else base
