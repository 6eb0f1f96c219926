"""PBS Pro's job arrays as ``qstat -f`` lists them: the array's own record, ``12[].server``, and with ``-t``
(or ``-J``) one a subjob, ``12[3].server``.

Open OnDemand's PBS Pro adapter asks ``qstat -f -t 12[].server`` for an array qsub gave it, takes the record
whose id has ``[]`` as the array and the others as its tasks. An array is ``Q`` while no task has started,
``B`` (begun) once one has, ``H`` when all that wait are held, ``F`` when all have ended; an ended subjob is
``X`` (expired), as PBS Pro says.
"""

from __future__ import annotations

from typing import Any

from wulf.cli.compat.common import ACTIVE, host


def records(jobs: list[dict[str, Any]], subjobs: bool, arrays: dict[str, Any]) -> list[dict[str, Any]]:
    """``jobs`` as qstat -f lists them: an array's tasks in its place (where its first one is), as the
    array's record, followed by the tasks' when ``subjobs``; other jobs as they are."""
    tasks: dict[int, list[dict[str, Any]]] = {}
    order: list[dict[str, Any] | int] = []
    for j in jobs:
        array_id = j.get("array_id")
        if array_id is None or j.get("array_index") is None:
            order.append(j)
            continue
        if array_id not in tasks:
            tasks[array_id] = []
            order.append(array_id)
        tasks[array_id].append(j)
    out: list[dict[str, Any]] = []
    for item in order:
        if isinstance(item, dict):
            out.append(item)
            continue
        its = sorted(tasks[item], key=lambda t: int(t["array_index"]))
        out.append(_array(item, its, (arrays.get(str(item)) or {}).get("spec")))
        if subjobs:
            out += [{**t, "_pbs_id": f"{item}[{t['array_index']}].{host()}",
                     "_pbs_state": None if t["state"] in ACTIVE else "X"} for t in its]
    return out


def _array(array_id: int, tasks: list[dict[str, Any]], spec: str | None) -> dict[str, Any]:
    states = [t["state"] for t in tasks]
    waiting = [s for s in states if s in ("queued", "held")]
    started = [t["started"] for t in tasks if t.get("started")]
    if any(s in ACTIVE for s in states):
        code, state = ("B", "running") if started else ("H", "held") if set(waiting) == {"held"} else ("Q", "queued")
    else:
        code, state = "F", ("done" if all(s == "done" for s in states) else "failed")
    counts = {"Queued": len(waiting), "Running": states.count("running"), "Exiting": 0,
              "Expired": len(states) - len(waiting) - states.count("running")}
    ended = max((t.get("ended") or 0.0) for t in tasks) if code == "F" else 0.0
    # (the array's own record has no host, times used nor exit status of its own: its tasks have them)
    return {**tasks[0], "id": array_id, "state": state, "_pbs_id": f"{array_id}[].{host()}", "_pbs_state": code,
            "started": None, "node": None, "exit_code": None, "signal": None, "ended": ended or None,
            "_array": {"array": "True", "array_indices_submitted": spec or _indices(tasks),
                       "array_state_count": " ".join(f"{k}:{v}" for k, v in counts.items())}}


def _indices(tasks: list[dict[str, Any]]) -> str:
    from wulf.model.array import ArraySpec

    return ArraySpec(tuple(sorted(int(t["array_index"]) for t in tasks)), 0).text()
