"""What every command shares: error handling, sizes and durations, tables, JSON output."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from wulf.errors import UsageError, WulfError

_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_SCALE_TO_MB = {"": 1.0, "k": 1 / 1024, "m": 1.0, "g": 1024.0, "t": 1024.0 * 1024}


def parse_mem(text: str) -> float:
    """A memory size in MB: ``512``, ``512M``, ``2G``, ``1.5GB``, ``800k`` (a bare number is MB)."""
    m = _SIZE.match(text)
    if not m:
        raise UsageError(f"--mem: {text!r} is not a size (examples: 512, 512M, 2G)")
    value = float(m.group(1)) * _SCALE_TO_MB[m.group(2).lower()]
    if value <= 0:
        raise UsageError(f"--mem: {text!r} must be more than zero")
    return value


def parse_cpu(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"--cpu: {text!r} is not a number of cpus (examples: 1, 0.5, 4)") from None
    if not value > 0 or value != value or value == float("inf"):
        raise UsageError(f"--cpu: {text!r} must be a number more than zero")
    return value


def parse_ids(values: Sequence[str], what: str = "job id") -> list[int]:
    ids = []
    for v in values:
        if not v.isdigit():
            raise UsageError(f"{v!r} is not a {what} (job ids are whole numbers, as jstat shows them)")
        ids.append(int(v))
    return ids


class ArgParser(argparse.ArgumentParser):
    """argparse that reports a usage mistake as one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def run(main: Callable[[list[str]], int], argv: list[str] | None = None) -> NoReturn:
    """Run a command's main; a WulfError becomes one line on stderr and its exit code."""
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
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        except OSError:
            pass
        code = 0
    sys.exit(code)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")


def terminal_width() -> int:
    return shutil.get_terminal_size((120, 24)).columns


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]], width: int | None = None,
                 flex: int = -1, right: Sequence[int] = ()) -> str:
    """Columns fitted to the terminal: the ``flex`` column (the last by default) is cut to fit."""
    width = terminal_width() if width is None else width
    cols = len(headers)
    flex = flex % cols
    widths = [len(h) for h in headers]
    for r in rows:
        for i, cell in enumerate(r):
            widths[i] = max(widths[i], len(cell))
    fixed = sum(w for i, w in enumerate(widths) if i != flex) + 2 * (cols - 1)
    widths[flex] = max(len(headers[flex]), min(widths[flex], width - fixed))

    def line(cells: Sequence[str]) -> str:
        out = []
        for i, cell in enumerate(cells):
            w = widths[i]
            if len(cell) > w:
                cell = cell[: max(1, w - 1)] + "…"
            out.append(cell.rjust(w) if i in right else cell.ljust(w))
        return "  ".join(out).rstrip()

    return "\n".join([line(headers)] + [line(r) for r in rows])


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
