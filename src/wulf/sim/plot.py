"""The plot of a simulation: utilisation, queue length and running jobs per user over time (matplotlib).

matplotlib is an optional dependency (``pip install 'wulf[sim]'``); :func:`check` says, before a long
simulation, whether a plot can be made.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from wulf.errors import UsageError
from wulf.sim.metrics import Summary

FORMATS = (".png", ".svg")
#: users drawn one by one; the others are summed
MAX_USERS = 8


def check(path: str) -> None:
    """UsageError unless a plot can be written to ``path``."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"--plot {path}: the file name must end in .png or .svg")
    if importlib.util.find_spec("matplotlib") is None:
        raise UsageError("--plot needs matplotlib, which is not installed: pip install 'wulf[sim]'")
    parent = Path(path).resolve().parent
    if not parent.is_dir():
        raise UsageError(f"--plot {path}: there is no directory {parent}")


def plot(path: str, runs: Sequence[Summary], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_use, ax_queue, ax_users) = plt.subplots(3, 1, sharex=True, figsize=(10, 9), constrained_layout=True)
    styles = ["-", "--", ":", "-."]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, r in enumerate(runs):
        s = r.series
        hours = [t / 3600 for t in s.t]
        style = styles[k % len(styles)]
        ax_use.plot(hours, [100 * u for u in s.utilisation], style, color=colours[k % len(colours)],
                    label=f"{r.policy}: jobs")
        if any(s.outside):
            ax_use.plot(hours, [100 * o for o in s.outside], style, color="grey", label=f"{r.policy}: outside load")
        ax_queue.plot(hours, s.queued, style, color=colours[k % len(colours)], label=f"{r.policy}: queued")
        ax_queue.plot(hours, s.running, style, color=colours[(k + 2) % len(colours)], alpha=0.6,
                      label=f"{r.policy}: running")
        totals = [sum(p[i] for p in s.running_by_user) for i in range(len(s.users))]
        shown = sorted(range(len(s.users)), key=lambda i: -totals[i])[:MAX_USERS]
        for n, i in enumerate(sorted(shown)):
            label = f"{s.users[i]}" + (f" ({r.policy})" if len(runs) > 1 else "")
            ax_users.plot(hours, [p[i] for p in s.running_by_user], style, color=colours[n % len(colours)],
                          label=label)
        rest = [i for i in range(len(s.users)) if i not in shown]
        if rest:
            ax_users.plot(hours, [sum(p[i] for i in rest) for p in s.running_by_user], style, color="black",
                          label=f"{len(rest)} others" + (f" ({r.policy})" if len(runs) > 1 else ""))
    ax_use.set_ylabel("cpus in use, %")
    ax_use.set_ylim(0, 105)
    ax_queue.set_ylabel("jobs")
    ax_users.set_ylabel("running jobs")
    ax_users.set_xlabel("virtual time, hours")
    for ax in (ax_use, ax_queue, ax_users):
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper right", fontsize="small")
    ax_use.set_title(title, fontsize="small", wrap=True)
    fig.savefig(path)
    plt.close(fig)
