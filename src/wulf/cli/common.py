"""What every command shares: error handling, sizes and durations, tables, JSON output.

Every command imports this, so it imports little (no ``re``, ``shutil`` or ``typing``): a command's
time is mostly its start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from wulf.errors import UsageError, WulfError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any, NoReturn

_SCALE_TO_MB = {"": 1.0, "k": 1 / 1024, "m": 1.0, "g": 1024.0, "t": 1024.0 * 1024}


def _split_size(text: str) -> tuple[str, str] | None:
    """``(number, unit)`` of ``NUMBER [k|m|g|t][[i]b]`` (any case, spaces around), else None."""
    rest = text.strip().lower()
    if rest.endswith("b"):
        rest = rest[:-1]
        if rest.endswith("i"):
            rest = rest[:-1]
    unit = rest[-1:] if rest[-1:] in ("k", "m", "g", "t") else ""
    number = rest[: len(rest) - len(unit)].rstrip()
    whole, dot, frac = number.partition(".")
    if whole.isdecimal() and (not frac or frac.isdecimal()) or not whole and dot and frac.isdecimal():
        return number, unit
    return None


def parse_mem(text: str, flag: str = "--mem") -> float:
    """A memory size in MB: ``512``, ``512M``, ``2G``, ``1.5GB``, ``800k`` (a bare number is MB)."""
    size = _split_size(text)
    if size is None:
        raise UsageError(f"{flag}: {text!r} is not a size (examples: 512, 512M, 2G)")
    value = float(size[0]) * _SCALE_TO_MB[size[1]]
    if value <= 0:
        raise UsageError(f"{flag}: {text!r} must be more than zero")
    return value


def parse_cpu(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"--cpu: {text!r} is not a number of cpus (examples: 1, 0.5, 4)") from None
    if not value > 0 or value != value or value == float("inf"):
        raise UsageError(f"--cpu: {text!r} must be a number more than zero")
    return value


IDS_HELP = "job ids, as jstat shows them; ID[i] is task i of array ID, and an array's id names all its tasks"


def parse_ids(values: Sequence[str]) -> list[int | str]:
    """Jobs as a user names them: ``12`` (a job, or all of array 12) is sent as the number, ``12[5]``
    (task 5 of array 12) as the text, which the server resolves (see wulf.model.array.parse_job_ref)."""
    from wulf.model.array import parse_job_ref

    ids: list[int | str] = []
    for v in values:
        job_id, index = parse_job_ref(v)
        ids.append(job_id if index is None else f"{job_id}[{index}]")
    return ids


def own_ids(values: Sequence[str], prog: str) -> list[int]:
    """Job ids for a command that takes a job's own id only (a task of an array has one: ``jstat
    --expand`` shows it); ``12[5]`` is a usage error that says so."""
    out = []
    for ref in parse_ids(values):
        if not isinstance(ref, int):
            raise UsageError(f"{prog} takes a job's own id, not {ref}: `jstat --expand` shows each task's id")
        out.append(ref)
    return out


def _columns(fallback: int) -> int:
    """$COLUMNS, else the width of the terminal on standard output, else ``fallback``.

    What :func:`shutil.get_terminal_size` answers, without importing :mod:`shutil` (which imports
    the compression modules: a few milliseconds at every start).
    """
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns if columns > 0 else fallback


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's own layout; only the width is found without :mod:`shutil` (as argparse would)."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position, _columns(80) - 2 if width is None else width)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("examples:"):  # laid out by hand (wulf.cli.examples): kept as it is
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


class ArgParser(argparse.ArgumentParser):
    """argparse that reports a usage mistake as one line and exit code 2."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if len(args) <= 5:  # formatter_class is the sixth parameter
            kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def format_help(self) -> str:
        if self.epilog is None:  # the examples of every command, kept in one table (read only for --help)
            from wulf.cli.examples import EXAMPLES

            self.epilog = EXAMPLES.get(self.prog)
        return super().format_help()

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def run(main: Callable[[list[str]], int], argv: list[str] | None = None, *, exit_fast: bool = False) -> NoReturn:
    """Run a command's main; a WulfError becomes one line on stderr and its exit code.

    With ``exit_fast``, the process ends with :func:`os._exit` once standard output and error are
    flushed, skipping the interpreter's teardown (a tenth of a short command's time). Only for a
    process that is just this command: no threads, atexit work or other open files to finish, and
    no caller in the same process (tests call the command's ``_main``).
    """
    prog = os.path.basename(sys.argv[0]) or "wulf"
    try:
        code = main(sys.argv[1:] if argv is None else argv)
    except WulfError as e:
        print(f"{prog}: {e.message}", file=sys.stderr)
        code = e.exit_code
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        # the reader went away (jstat | head): not an error of ours
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        code = 0
    if exit_fast and isinstance(code, int):
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (AttributeError, ValueError, BrokenPipeError):  # no stream, closed, reader gone
                pass
            except OSError:
                code = 120  # as the interpreter's teardown would answer
        os._exit(code)
    sys.exit(code)


def print_json(data: Any) -> None:
    """``data`` as JSON: indented on a terminal; else, for a program, each item of a top-level list on
    a line of its own (greppable, and three times quicker to make than indented JSON: Python's fast
    encoder does not indent; a hundred thousand jobs take 0.9 s, not 2.5)."""
    if sys.stdout.isatty() or not isinstance(data, dict):
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    parts = []
    for key, value in data.items():
        if isinstance(value, list) and value:
            items = ",\n".join("    " + json.dumps(item) for item in value)
            parts.append(f"  {json.dumps(key)}: [\n{items}\n  ]")
        else:
            parts.append(f"  {json.dumps(key)}: {json.dumps(value)}")
    sys.stdout.write("{\n" + ",\n".join(parts) + "\n}\n")


def terminal_width() -> int:
    """$COLUMNS, else the width of the terminal on standard output, else 120."""
    return _columns(120)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]], width: int | None = None,
                 flex: int = -1, right: Sequence[int] = ()) -> str:
    """Columns fitted to the terminal: the ``flex`` column (the last by default) is cut to fit."""
    width = terminal_width() if width is None else width
    cols = len(headers)
    flex = flex % cols
    columns = list(zip(*rows, strict=True)) if rows else [()] * cols
    widths = [max(len(h), max(map(len, col), default=0)) for h, col in zip(headers, columns, strict=True)]
    fixed = sum(w for i, w in enumerate(widths) if i != flex) + 2 * (cols - 1)
    cut = widths[flex] = max(len(headers[flex]), min(widths[flex], width - fixed))
    # one format for every line (tens of thousands of jobs): only the flex column can be too wide
    fmt = "  ".join(f"{{:{'>' if i in right else '<'}{w}}}" for i, w in enumerate(widths))
    lines = [fmt.format(*headers).rstrip()]
    for r in rows:
        if len(r[flex]) > cut:
            r = [*r[:flex], r[flex][: max(1, cut - 1)] + "…", *r[flex + 1:]]
        lines.append(fmt.format(*r).rstrip())
    return "\n".join(lines)


def format_age(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def format_mb(mb: float | None) -> str:
    if mb is None:
        return "-"
    if mb >= 10240:
        return f"{mb / 1024:.0f}G"
    if mb >= 1024:
        return f"{mb / 1024:.1f}G"
    return f"{mb:.0f}M"
