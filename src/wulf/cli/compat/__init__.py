"""Slurm's, PBS's and Grid Engine's commands over wulf, for the tools and scripts that call them.

They are not on the PATH by default (a machine may have the real ones): ``wulf compat DIR`` writes
``sbatch``, ``squeue``, ``scancel``, ``sinfo``, ``sacct``, ``scontrol``, ``srun``, ``qsub``, ``qstat``, ``qdel``,
``qhold``, ``qrls``, ``qselect``, ``pbsnodes`` and ``qacct`` into DIR, each a two-line script that runs
``python -m wulf.cli.compat NAME``; a site puts DIR on its users' PATH (or in an environment module). ``qsub``,
``qstat`` and ``qdel`` are PBS's or Grid Engine's by ``[compat] flavour`` (``$WULF_COMPAT_FLAVOUR`` wins).
``qhold`` and ``qrls`` (which shadow wulf's own in DIR) take PBS's job ids, ``12.server``, and Grid Engine's,
``12``, alike; ``qselect`` and ``pbsnodes`` are PBS's only.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from wulf.cli.common import ArgParser, run
from wulf.config import Config
from wulf.errors import UsageError

SLURM = ("sbatch", "squeue", "scancel", "sinfo", "sacct", "scontrol", "srun")
_OWN_MODULES = ("sinfo", "scontrol", "srun")  # the Slurm commands with a module of their own
BOTH = ("qsub", "qstat", "qdel")
HOLDS = ("qhold", "qrls")  # PBS's and Grid Engine's alike: job ids, 12 or 12.server
PBS_ONLY = ("qselect", "pbsnodes")
COMMANDS = (*SLURM, *BOTH, *HOLDS, *PBS_ONLY, "qacct")


def command(name: str) -> Callable[[list[str]], int]:
    """The main of the compatibility command ``name``."""
    if name in ("sacct", "qacct"):
        from wulf.cli.compat import acct

        return acct.sacct if name == "sacct" else acct.qacct
    if name in SLURM:
        from wulf.cli.compat import slurm

        if name in _OWN_MODULES:
            import importlib

            main: Callable[[list[str]], int] = getattr(importlib.import_module(f"wulf.cli.compat.{name}"), name)
            return main
        return {"sbatch": slurm.sbatch, "squeue": slurm.squeue, "scancel": slurm.scancel}[name]
    if name in HOLDS:
        from wulf.cli.compat import pbs

        return pbs.qhold if name == "qhold" else pbs.qrls
    if name in PBS_ONLY:
        if (os.environ.get("WULF_COMPAT_FLAVOUR") or _configured_flavour()) != "pbs":
            raise UsageError(f"{name} is PBS's (wulf gives no Grid Engine {name}): WULF_COMPAT_FLAVOUR=pbs")
        from wulf.cli.compat import pbsinfo

        return pbsinfo.qselect if name == "qselect" else pbsinfo.pbsnodes
    if name not in BOTH:
        raise UsageError(f"no compatibility command {name!r} (there are: {', '.join(COMMANDS)})")
    flavour = os.environ.get("WULF_COMPAT_FLAVOUR") or _configured_flavour()
    if flavour == "sge":
        from wulf.cli.compat import sge as mod
    elif flavour == "pbs":
        from wulf.cli.compat import pbs as mod  # type: ignore[no-redef]
    else:
        raise UsageError(f"WULF_COMPAT_FLAVOUR must be pbs or sge, not {flavour!r}")
    chosen: Callable[[list[str]], int] = getattr(mod, name)
    return chosen


def _configured_flavour() -> str:
    from wulf.config import load_config

    return load_config().compat.flavour


def main() -> None:
    """``python -m wulf.cli.compat NAME ARGS...`` (what the scripts ``wulf compat`` writes run)."""
    argv = sys.argv[1:]
    if not argv:
        print(f"usage: python -m wulf.cli.compat {{{','.join(COMMANDS)}}} [ARGS...]", file=sys.stderr)
        raise SystemExit(2)
    name, rest = argv[0], argv[1:]
    sys.argv[0] = name  # errors are said as the command's own (`qsub: ...`), not as __main__.py's
    run(lambda args: command(name)(args), rest)


# ---------------------------------------------------------------------------------------------- wulf compat

def compat_parser(sub: argparse._SubParsersAction[ArgParser]) -> None:
    p = sub.add_parser("compat", help="write sbatch, squeue, qsub, qstat... (over wulf) into a directory",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", metavar="DIR", help="the directory to write them into (made if missing)")
    p.add_argument("--force", action="store_true", help="replace files of those names that are there")


def cmd_compat(args: argparse.Namespace, config: Config) -> int:
    target = Path(args.dir)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot make {target}: {e.strerror}") from None
    there = [n for n in COMMANDS if (target / n).exists() and not _ours(target / n)]
    if there and not args.force:
        raise UsageError(f"{target} has {', '.join(there)} already (not written by wulf); --force replaces them")
    python = shlex.quote(sys.executable)
    for name in COMMANDS:
        path = target / name
        tmp = path.with_name(f".{name}.wulf-new")
        tmp.write_text(f"#!/bin/sh\n# {MARK}\nexec {python} -m wulf.cli.compat {name} \"$@\"\n")
        tmp.chmod(0o755)
        os.replace(tmp, path)
    print(f"wrote {', '.join(COMMANDS)} to {target}; put it on the PATH to use them "
          f"(qsub, qstat, qdel are {config.compat.flavour.upper()}'s: [compat] flavour)")
    return 0


MARK = "written by `wulf compat`: Slurm's, PBS's and Grid Engine's commands over wulf"


def _ours(path: Path) -> bool:
    try:
        return MARK in path.read_text(errors="replace")[:400]
    except OSError:
        return False
