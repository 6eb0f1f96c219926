"""``wulf sim``: build the workload, run the engine under each policy asked for, print and plot."""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys

from wulf.config import Config
from wulf.errors import UsageError
from wulf.policy.settings import Policy
from wulf.sim import plot as plots
from wulf.sim.engine import Engine
from wulf.sim.metrics import Summary
from wulf.sim.report import table, to_json
from wulf.sim.workload import Workload, cluster, generate, read_workload, with_outside_load, write_workload

POLICIES = ("default", "allocation-only")
DEFAULT_NODES = 100


def policy_named(base: Policy, name: str) -> Policy:
    """The configured policy, counting observed use (``default``) or allocations only."""
    return dataclasses.replace(base, observe=name == "default")


def _check(args: argparse.Namespace) -> None:
    for flag, value, least in (("--nodes", args.nodes, 1), ("--jobs", args.jobs, 1), ("--users", args.users, 1)):
        if value is not None and value < least:
            raise UsageError(f"{flag} must be at least {least}")
    if args.outside_load is not None and not 0 <= args.outside_load <= 1:
        raise UsageError("--outside-load is the fraction of nodes with outside load: 0 to 1")
    if args.multinode is not None and not 0 <= args.multinode <= 1:
        raise UsageError("--multinode is the fraction of jobs that run on several nodes: 0 to 1")
    if args.programs is not None and args.programs < 1:
        raise UsageError("--programs must be at least 1")
    if args.load is not None and not args.load > 0:
        raise UsageError("--load must be more than zero")
    if args.interval is not None and not args.interval > 0:
        raise UsageError("--interval must be more than zero seconds")
    if args.workload:
        for flag, value in (("--jobs", args.jobs), ("--users", args.users), ("--scenario", args.scenario),
                            ("--load", args.load), ("--programs", args.programs), ("--multinode", args.multinode)):
            if value is not None:
                raise UsageError(f"{flag} does not go with --workload (the file has the jobs)")
    if args.plot:
        plots.check(args.plot)


def workload(args: argparse.Namespace) -> Workload:
    if not args.workload:
        return generate(args.scenario or "mixed", args.nodes or DEFAULT_NODES, args.jobs, args.users,
                        args.outside_load, args.seed, args.load or 1.0, args.programs or 0, args.multinode or 0.0)
    w = read_workload(args.workload)
    if w.nodes:
        for flag, value in (("--nodes", args.nodes), ("--outside-load", args.outside_load)):
            if value is not None:
                raise UsageError(f"{flag} does not go with a workload file that defines its nodes")
        loaded = sum(1 for n in w.nodes if n.outside)
        return dataclasses.replace(w, description=(
            f"{w.description}: {len(w.nodes)} nodes ({w.cpus:g} cpus), outside load on {loaded}; "
            f"{len(w.jobs)} jobs of {len(w.users)} users; seed {args.seed}"))
    rng = random.Random(args.seed)
    nodes = cluster(args.nodes or DEFAULT_NODES, True, rng)
    if args.outside_load:
        nodes = with_outside_load(nodes, args.outside_load, rng)
    loaded = sum(1 for n in nodes if n.outside)
    description = (f"{w.description}: {len(w.jobs)} jobs of {len(w.users)} users; {len(nodes)} generated nodes "
                   f"({sum(n.cpus for n in nodes):g} cpus, mixed), outside load on {loaded}; seed {args.seed}")
    return dataclasses.replace(w, nodes=tuple(nodes), description=description)


def _owners(args: argparse.Namespace, config: Config) -> int:
    """The owner-returns scenario (see wulf.sim.owners): its own model, three strategies side by side."""
    from wulf.policy.settings import Policy as _Policy
    from wulf.sim import owners

    for flag, value in (("--jobs", args.jobs), ("--users", args.users), ("--outside-load", args.outside_load),
                        ("--load", args.load), ("--programs", args.programs), ("--multinode", args.multinode),
                        ("--policy", args.policy),
                        ("--plot", args.plot), ("--save-workload", args.save_workload)):
        if value is not None:
            raise UsageError(f"{flag} does not go with --scenario owner-returns")
    policy = _Policy.from_config(config)
    setup = owners.Setup(nodes=args.nodes or owners.Setup.nodes, interval=args.interval or config.agent.interval,
                         nice_penalty=config.scheduler.nice_penalty, settings=policy.migrate)
    results = owners.run(setup, args.seed)
    if args.json:
        print(json.dumps({"scenario": "owner-returns", "runs": [r.to_dict() for r in results]}, indent=2))
    else:
        print(owners.table(setup, results))
    return 0


def main(args: argparse.Namespace, config: Config) -> int:
    _check(args)
    if args.scenario == "owner-returns":
        return _owners(args, config)
    base = Policy.from_config(config)
    if args.compare:
        names = list(POLICIES)
    elif args.policy:
        names = [args.policy]
    else:
        names = ["default" if base.observe else "allocation-only"]
    w = workload(args)
    if args.save_workload:
        try:
            write_workload(args.save_workload, w)
        except OSError as e:
            raise UsageError(f"--save-workload {args.save_workload}: {e.strerror or e}") from None
    interval = args.interval or config.agent.interval
    runs: list[Summary] = []
    for name in names:
        if not args.json and sys.stderr.isatty():
            print(f"simulating under the {name} policy ...", file=sys.stderr)
        runs.append(Engine(w, policy_named(base, name), args.seed, interval).run())
    if args.json:
        print(json.dumps(to_json(w, runs), indent=2))
    else:
        print(table(w, runs))
    if args.plot:
        plots.plot(args.plot, runs, w.description)
        if not args.json:
            print(f"\nplot: {args.plot}")
    return 0
