"""wulf's benchmark: `./dev bench` (or `python -m bench`)."""

from __future__ import annotations

from collections.abc import Sequence


def print_table(rows: Sequence[tuple[str, str, str]], width: int, header: bool = False) -> None:
    """The rows (measure, result, target) as a table, results right-aligned in ``width`` columns."""
    w = max(len(r[0]) for r in rows)
    if header:
        print(f"{'measure':<{w}}  {'result':>{width}}  target")
    for name, value, target in rows:
        print(f"{name:<{w}}  {value:>{width}}  {target}")
