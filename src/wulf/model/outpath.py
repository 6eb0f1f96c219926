"""Where a job's output goes, from its ``-o`` pattern: one rule for the agent that opens the file and the
commands that name it (``scontrol show job``'s StdOut)."""

from __future__ import annotations

import os
import re

_PATTERN = re.compile(r"%(\d*)([%jJAaxuN])")


def output_path(output: str, cwd: str, job_id: int, name: str, user: str, node: str = "",
                array_id: int | None = None, array_index: int | None = None) -> str:
    """``output``, else ``wulf-<id>.out``, in ``cwd``. In ``output``, as in Slurm: ``%j`` (and ``%J``) is
    the job id, ``%A`` its array's id (a job not in an array: its own), ``%a`` its index in the array
    (4294967294, Slurm's, for a job that is not in an array), ``%x`` its name, ``%u`` its user, ``%N``
    the node, ``%%`` a '%'; a number after the '%' pads with zeros (``%5j``)."""
    if not output:
        return os.path.join(cwd, f"wulf-{job_id}.out")
    array = array_id is not None and array_index is not None
    values = {"j": str(job_id), "J": str(job_id), "A": str(array_id if array else job_id),
              "a": str(array_index) if array else "4294967294", "x": name, "u": user, "N": node}

    def fill(m: re.Match[str]) -> str:
        if m.group(2) == "%":
            return "%" + m.group(1) if m.group(1) else "%"
        value = values[m.group(2)]
        return value.zfill(int(m.group(1))) if m.group(1) and value.isdigit() else value

    return os.path.join(cwd, _PATTERN.sub(fill, output))
