"""Jobs of several tasks, on one node or several (issue 13 §1): the shape a job asks for, the slots it
is given, and the compact host lists (``node[1-3,7]``) its environment names them with.

A *slot* is room for one task: the job's ``--cpu`` and ``--mem`` are each task's. A job of one task
(the default) has no allocation text; a job of several has one while it runs, its first node first
(the node its script runs on)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from wulf.errors import UsageError

#: the most tasks (and nodes) one job may ask for
MAX_JOB_TASKS = 65_536


@dataclass(frozen=True, slots=True)
class Shape:
    """How a job's tasks are to be laid out: ``ntasks`` in all, on exactly ``nodes`` nodes (0: on as few
    or as many as they fit on), ``per_node`` of them on each (0: any number on a node)."""

    ntasks: int = 1
    nodes: int = 0
    per_node: int = 0

    @property
    def single(self) -> bool:
        """One task on one node: placed as every job always was."""
        return self.ntasks == 1 and self.nodes <= 1


def shape(ntasks: int | None, nodes: int | None, per_node: int | None) -> Shape:
    """The shape ``qr --ntasks T --nodes N --ntasks-per-node M`` asks for, checked (UsageError).

    With ``--nodes`` and ``--ntasks-per-node``, T is N × M (a T given too must agree); with ``--nodes``
    alone, one task a node unless T says more; ``--ntasks`` alone spreads T tasks over as few nodes as
    the policy finds room on."""
    for flag, value in (("--ntasks", ntasks), ("--nodes", nodes), ("--ntasks-per-node", per_node)):
        if value is not None and not 1 <= value <= MAX_JOB_TASKS:
            raise UsageError(f"{flag}: {value} is not a number of {flag[2:].replace('-', ' ')} (1 to {MAX_JOB_TASKS})")
    n, m = nodes or 0, per_node or 0
    if n and m:
        total = n * m
        if ntasks is not None and ntasks != total:
            raise UsageError(f"--ntasks {ntasks} does not agree with --nodes {n} × --ntasks-per-node {m} = {total}")
    elif n:
        total = ntasks if ntasks is not None else n
        if total < n:
            raise UsageError(f"--ntasks {total} is fewer than --nodes {n}: each node runs at least one task")
    elif m:
        total = ntasks if ntasks is not None else m
        if total % m:
            raise UsageError(f"--ntasks {total} is not a multiple of --ntasks-per-node {m}")
        n = total // m
    else:
        total = ntasks if ntasks is not None else 1
    if total > MAX_JOB_TASKS:
        raise UsageError(f"the job asks for {total} tasks; at most {MAX_JOB_TASKS}")
    return Shape(total, n, m)


def alloc_text(slots: Sequence[tuple[str, int]]) -> str:
    """An allocation as stored: ``"first:2,n2:2"`` (node names have neither ',' nor ':' at their end)."""
    return ",".join(f"{node}:{k}" for node, k in slots)


def parse_alloc(text: str) -> list[tuple[str, int]]:
    """:func:`alloc_text` read back; [] for ""."""
    out = []
    for part in text.split(",") if text else ():
        node, _, k = part.rpartition(":")
        out.append((node, int(k)))
    return out


def slots_on(text: str, node: str) -> int:
    """How many of the job's slots ``node`` holds (0: none)."""
    return sum(k for n, k in parse_alloc(text) if n == node)


_NUMBERED = re.compile(r"^(.*?)(\d+)$")


def compact(names: Iterable[str]) -> str:
    """Host names as Slurm's compact host list: ``n1,n3,n2,n7`` is ``n[1-3,7]``. The names of one prefix
    (and one width of zero padding) are bracketed, in the order of their numbers (as Slurm's lists are:
    the order a job's nodes were chosen in is its node file's); other names stay as they are.
    (:func:`wulf.cli.compat.scontrol.hostnames` reads it back.)"""
    groups: list[tuple[str, int, list[int]]] = []  # (prefix, width or 0 unpadded, numbers)
    plain: list[str | int] = []  # the output's items: a name, or the index of a group
    for name in names:
        m = _NUMBERED.match(name)
        if m is None or "[" in name or "]" in name or "," in name:
            plain.append(name)
            continue
        prefix, digits = m.group(1), m.group(2)
        width = len(digits) if digits.startswith("0") and len(digits) > 1 else 0
        for i, (p, w, _) in enumerate(groups):
            if p == prefix and w == width:
                groups[i][2].append(int(digits))
                break
        else:
            groups.append((prefix, width, [int(digits)]))
            plain.append(len(groups) - 1)
    out = []
    for item in plain:
        if isinstance(item, str):
            out.append(item)
            continue
        prefix, width, numbers = groups[item]
        numbers = sorted(set(numbers))
        if len(numbers) == 1:
            out.append(f"{prefix}{str(numbers[0]).zfill(width)}")
        else:
            out.append(f"{prefix}[{_ranges(numbers, width)}]")
    return ",".join(out)


def _ranges(numbers: list[int], width: int) -> str:
    parts = []
    start = prev = numbers[0]
    for n in [*numbers[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        lo, hi = str(start).zfill(width), str(prev).zfill(width)
        parts.append(lo if start == prev else f"{lo}-{hi}")
        if n is not None:
            start = prev = n
    return ",".join(parts)


def node_file(slots: Sequence[tuple[str, int]]) -> str:
    """``WULF_NODEFILE``'s text: each node once per slot, the first node first (``mpirun -machinefile``)."""
    return "".join(f"{node}\n" * k for node, k in slots)


def tasks_per_node(slots: Sequence[tuple[str, int]]) -> str:
    """``WULF_TASKS_PER_NODE`` as Slurm writes it: ``2(x3),1`` for 2, 2, 2, 1."""
    out: list[str] = []
    run: list[int] = []
    for _, k in slots:
        if run and run[0] != k:
            out.append(_run(run))
            run = []
        run.append(k)
    if run:
        out.append(_run(run))
    return ",".join(out)


def _run(run: list[int]) -> str:
    return str(run[0]) if len(run) == 1 else f"{run[0]}(x{len(run)})"
