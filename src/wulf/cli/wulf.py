"""wulf: the umbrella command.

    wulf up [-d]           a whole cluster on this machine: server, and an agent for this machine
    wulf down              stop what `wulf up` started (and its agents)
    wulf server            the job daemon (on the master)
    wulf agent --server    the node agent (on every node)
    wulf config            the effective configuration
    wulf token             API tokens for the HTTP API and the web page
    wulf web               the web interface's address, and a one-time sign-in link for you
    wulf init              the key, CA and server certificate of a new cluster
    wulf purge-scratch     remove old leftovers of jobs from this node's scratch directory
    wulf install ROLE      systemd units, tmpfiles and a config skeleton (server, node, client); uninstall
    wulf doctor            check this machine's set-up, one line per check
    wulf runall CMD        run a command as root on all or some nodes (administrators)
    wulf launch CMD        start tasks across the nodes of the job it runs in (also: jrun)
    wulf compat DIR        sbatch, squeue, qsub, qstat... over wulf, for tools written for Slurm, PBS, SGE
    wulf man / completion  manual pages and shell completion, from the same parsers as --help
    wulf sim               the scheduling policy on a simulated cluster (virtual clock)
    wulf version
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from wulf import __version__
from wulf.auth.key import ensure_key
from wulf.cli.common import ArgParser, parse_cpu, parse_mem, print_json, run
from wulf.cli.compat import cmd_compat, compat_parser
from wulf.cli.completion import cmd_completion, completion_parser
from wulf.cli.doctor import cmd_doctor, doctor_parser
from wulf.cli.install import cmd_install, cmd_uninstall, install_parsers
from wulf.cli.launch import cmd_launch, launch_parser
from wulf.cli.manpage import cmd_man, man_parser
from wulf.cli.purge import cmd_purge, purge_parser
from wulf.cli.runall import cmd_runall, runall_parser
from wulf.cli.security import check_tls, cmd_init, cmd_token, init_parser, token_parser
from wulf.config import Config, load_config
from wulf.errors import ServerUnreachable, UsageError, WulfError

UP_LISTEN = "127.0.0.1:7878"
"""Where `wulf up` serves the web interface (a free port of loopback if this one is taken)."""


def _logging(args: argparse.Namespace, config: Config, daemon: str) -> None:
    from wulf import logs

    logs.setup(config.log, daemon, args.verbose, args.log_file)


def _with_state(config: Config, state: str | None) -> Config:
    if not state:
        return config
    server = dataclasses.replace(config.server, state_dir=os.path.abspath(state))
    return dataclasses.replace(config, server=server)


def cmd_server(args: argparse.Namespace, config: Config) -> int:
    from wulf.server.main import run as run_server

    _logging(args, config, "server")
    run_server(_with_state(config, args.state), args.listen, owner_only=args.owner_only, any_port=args.any_port)
    return 0


def cmd_agent(args: argparse.Namespace, config: Config) -> int:
    from wulf.agent.main import run as run_agent
    from wulf.config import server_url

    _logging(args, config, "agent")
    acfg = config.agent
    changes = {}
    if args.state:
        changes["state_dir"] = os.path.abspath(args.state)
    if args.interval:
        changes["interval"] = float(args.interval)
    if args.scratch:
        changes["scratch"] = os.path.abspath(args.scratch)
    config = dataclasses.replace(config, agent=dataclasses.replace(acfg, **changes))
    if args.key:
        config = dataclasses.replace(config, auth=dataclasses.replace(config.auth, key_file=os.path.abspath(args.key)))
    server = args.server or server_url(config)
    check_tls(config, server)
    cpus = parse_cpu(args.cpus) if args.cpus else None
    mem = parse_mem(args.mem) if args.mem else None
    run_agent(config, server, args.name, cpus, mem, args.socket)
    return 0


def _spawn(argv: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    out = open(log, "ab")
    try:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env)
    finally:
        out.close()


def _wait_ready(url: str, node: str, procs: list[subprocess.Popen[bytes]], timeout: float = 20.0) -> None:
    from wulf.client import Client

    deadline = time.monotonic() + timeout
    client = Client(url, timeout=2)
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise WulfError(f"a wulf daemon exited at start (code {p.returncode}); see its log")
        try:
            nodes = client.status()["nodes"]
            if any(n["name"] == node and n["state"] == "up" for n in nodes):
                return
        except ServerUnreachable:
            pass
        time.sleep(0.05)
    raise WulfError(f"the local cluster did not come up within {timeout:.0f}s")


def cmd_up(args: argparse.Namespace, config: Config) -> int:
    import socket

    config = _with_state(config, args.state)
    state = config.state_dir()
    state.mkdir(parents=True, exist_ok=True)
    sock = config.socket_path()
    url = f"unix:{sock}"
    from wulf.client import Client

    try:
        Client(url, timeout=2).status()
        print(f"a wulf cluster is already running here ({url}); `wulf down` stops it")
        return 0
    except ServerUnreachable:
        pass
    name = args.name or socket.gethostname().split(".")[0]
    ensure_key(config.key_path())  # zero set-up: the cluster key is made at the first start
    exe = [sys.executable, "-m", "wulf.cli.wulf", *(["--config", args.config] if args.config else [])]
    env = dict(os.environ)
    # a personal cluster: its socket is its owner's alone
    # the web interface on loopback: on UP_LISTEN, or a free port if that is taken (unless --listen says where)
    listen = ["--listen", UP_LISTEN, "--any-port"] if args.listen is None else ["--listen", args.listen]
    server_argv = [*exe, "server", "--state", str(state), *listen, "--owner-only",
                   "--log-file", str(state / "server.log")]
    server = _spawn(server_argv, state / "server.log", env)
    env["WULF_IGNORE_PIDS"] = f"{os.getpid()},{server.pid}"
    agent_argv = [*exe, "agent", "--server", url, "--name", name, "--state", str(state / f"agent-{name}"),
                  "--key", str(config.key_path()), "--log-file", str(state / "agent.log")]
    for opt in ("cpus", "mem"):
        if getattr(args, opt, None):
            agent_argv += [f"--{opt}", str(getattr(args, opt))]
    agent = _spawn(agent_argv, state / "agent.log", env)
    (state / "up.pids").write_text(f"{server.pid} {agent.pid}\n")
    try:
        _wait_ready(url, name, [server, agent])
    except (WulfError, KeyboardInterrupt):
        for p in (agent, server):
            p.terminate()
        raise
    print(f"wulf is up: server and agent '{name}' on this machine (state in {state})")
    print(f"  logs: {state / 'server.log'}, {state / 'agent.log'}")
    _print_link(Client(url, timeout=5), "  ")
    if args.detach:
        print("  stop it with `wulf down`")
        return 0
    print("  press Ctrl-C to stop")
    try:
        while server.poll() is None and agent.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    for p in (agent, server):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in (agent, server):
        p.wait(timeout=15)
    return 0


def _print_link(client: Any, indent: str = "") -> bool:
    """Print the web interface's address and a one-time sign-in link for who runs this; False if the
    server has no web interface (it does not listen on TCP)."""
    try:
        made = client.post("/api/v1/web/link")
    except WulfError as e:
        print(f"{indent}web interface: none ({e})")
        return False
    print(f"{indent}web interface: {made['url']}")
    print(f"{indent}sign in as {made['user']} (once, within 10 minutes): {made['link']}")
    return True


def cmd_web(args: argparse.Namespace, config: Config) -> int:
    from wulf.client import Client

    return 0 if _print_link(Client()) else 5


def cmd_down(args: argparse.Namespace, config: Config) -> int:
    from wulf.client import Client

    config = _with_state(config, args.state)
    state = config.state_dir()
    url = f"unix:{config.socket_path()}"
    try:
        Client(url, timeout=5).post("/api/v1/admin/shutdown")
    except ServerUnreachable:
        print(f"no wulf cluster is running here ({url})")
        return 0
    pids_file = state / "up.pids"
    deadline = time.monotonic() + 15
    pids = [int(p) for p in pids_file.read_text().split()] if pids_file.exists() else []
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    for p in pids:
        if _alive(p):
            os.kill(p, signal.SIGTERM)
    pids_file.unlink(missing_ok=True)
    print("wulf is down (jobs that were running go on; they are picked up at the next `wulf up`)")
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours counts as gone
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


def cmd_config(args: argparse.Namespace, config: Config) -> int:
    from wulf.policy.settings import Policy

    Policy.from_config(config)  # the values are checked as the server checks them
    print(f"# effective configuration ({config.path or 'no file: all defaults'})")
    data: dict[str, dict[str, object]] = {}
    for section in dataclasses.fields(config):
        values = getattr(config, section.name)
        if dataclasses.is_dataclass(values):
            data[section.name] = {f.metadata.get("key", f.name): getattr(values, f.name)
                                  for f in dataclasses.fields(values)}
    if args.json:
        print_json(data)
        return 0
    for name, table in data.items():
        print(f"\n[{name}]")
        for k, v in table.items():
            print(f"{k} = {_toml(v)}")
    return 0


def cmd_sim(args: argparse.Namespace, config: Config) -> int:
    from wulf.sim.cli import main as sim_main

    if args.sim_config:
        config = load_config(args.sim_config)
    elif not args.config:
        config = Config()  # a simulation does not follow this machine's configuration unless asked to
    return sim_main(args, config)


_SIM_HELP = """\
Runs wulf's real scheduling policy (fair share, placement, adaptive allocation, windows, limits) on a
virtual clock against a simulated cluster and workload, and reports makespan, utilisation, waits,
per-user shares, Jain's fairness index and the time of each scheduling pass.

scenarios (generated workloads):
  mixed        mixed nodes (4, 8, 16 cpus); jobs in batches of mixed sizes and run times, arriving over
               time; jobs use more or less than they ask for (the default)
  homogeneous  identical nodes and identical jobs, all submitted at once (makespan vs. its lower bound)
  flood        two users: one submits 90 % of the jobs at once, the other the rest a minute later
  outside      mixed, with outside load (interactive work) on a third of the nodes; use with --compare

A workload file is JSON lines (nodes, queues, jobs): see examples/sim-workload.jsonl.
"""


def _sim_parser(sub: argparse._SubParsersAction[ArgParser]) -> None:
    sim = sub.add_parser("sim", help="simulate a cluster and workload under the real policy",
                         description=_SIM_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    sim.add_argument("--nodes", type=int, metavar="N", help="nodes of a generated cluster (default 100)")
    sim.add_argument("--jobs", type=int, metavar="M", help="jobs to generate (default 10000; homogeneous: "
                     "10 per cpu)")
    sim.add_argument("--users", type=int, metavar="K", help="users (default 4; flood: 2)")
    sim.add_argument("--outside-load", type=float, metavar="FRACTION",
                     help="fraction of nodes where interactive work wants half the cpus and a quarter "
                          "of the memory, on and off (default 0; outside: 1/3)")
    sim.add_argument("--load", type=float, metavar="L", help="mixed and outside: the cpus the jobs ask for, "
                     "over the span they arrive in, as a fraction of the cluster's (default 1.0)")
    sim.add_argument("--programs", type=int, metavar="K",
                     help="mixed and outside: each user runs K programs, a batch one of them (jobs of a "
                          "program are of a kind, and learn from each other what they need); default: "
                          "each batch a program of its own")
    sim.add_argument("--multinode", type=float, metavar="FRACTION",
                     help="fraction of the generated jobs that run on several nodes, as MPI programs do "
                          "(2-8 nodes × 1-4 tasks of one cpu; all slots at once, tasks in step); default 0")
    sim.add_argument("--scenario", choices=["mixed", "homogeneous", "flood", "outside", "owner-returns"],
                     help="the generated workload (default mixed); owner-returns: workstations whose owners "
                          "come and go by time of day, under the strategies default (renice only), suspend "
                          "and checkpoint-migrate (--nodes, --seed, --interval, --json; [migrate] from --config)")
    sim.add_argument("--workload", metavar="FILE", help="read nodes, queues and jobs from a JSON-lines file")
    sim.add_argument("--policy", choices=["default", "allocation-only"],
                     help="default: count observed use and allocations; allocation-only: allocations as asked, never adapted")
    sim.add_argument("--compare", action="store_true", help="run both policies on the same workload")
    sim.add_argument("--config", dest="sim_config", metavar="FILE",
                     help="take the policy (scheduler, limits, shares, windows) from this wulf.toml "
                          "(default: the built-in defaults)")
    sim.add_argument("--seed", type=int, default=1, help="random seed of the workload and outside load (default 1)")
    sim.add_argument("--interval", type=float, metavar="SECONDS",
                     help="seconds between an agent's reports (default: agent.interval, 5)")
    sim.add_argument("--json", action="store_true", help="print the results as JSON")
    sim.add_argument("--plot", metavar="FILE", help="plot utilisation, queue and running jobs per user over "
                     "time to FILE.png or FILE.svg (needs matplotlib: pip install 'wulf[sim]')")
    sim.add_argument("--save-workload", metavar="FILE", help="also write the workload as a file --workload reads")


def _toml(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml(x)}" for k, x in v.items()) + "}"
    return str(v)


def _toml_key(key: object) -> str:
    k = str(key)
    return k if k and all(c.isalnum() or c in "_-" for c in k) else _toml(k)


def _parser() -> ArgParser:
    p = ArgParser(prog="wulf", description="wulf: a batch queue and load balancer for a shared cluster.")
    p.add_argument("--config", help="configuration file (default $WULF_CONFIG or /etc/wulf/wulf.toml)")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    up = sub.add_parser("up", help="run a server and an agent on this machine")
    up.add_argument("-d", "--detach", action="store_true", help="return once it is up; stop with `wulf down`")
    up.add_argument("--state", help="state directory (default ~/.local/state/wulf)")
    up.add_argument("--listen", help=f"also listen on TCP HOST:PORT, for the web interface (default {UP_LISTEN}, or "
                    "a free port of loopback if that is taken; '' for none)")
    up.add_argument("--name", help="node name (default: the host name)")
    up.add_argument("--cpus", help="cpus this node offers (default: all)")
    up.add_argument("--mem", help="memory this node offers (default: all)")
    sub.add_parser("web", help="print the web interface's address and a one-time sign-in link for you")
    down = sub.add_parser("down", help="stop the cluster `wulf up` started")
    down.add_argument("--state", help="state directory (default ~/.local/state/wulf)")
    srv = sub.add_parser("server", help="run the job daemon")
    srv.add_argument("--listen", help="TCP HOST:PORT (default :7878: every address with TLS, else loopback; "
                     "'' for none)")
    srv.add_argument("--any-port", action="store_true",
                     help="if the port of --listen is taken, listen on a free one of the same host (as `wulf up` does)")
    srv.add_argument("--owner-only", action="store_true",
                     help="only the user running the server (and root) may use its Unix socket (as `wulf up` does)")
    srv.add_argument("--state", help="state directory: database, socket, logs")
    srv.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    srv.add_argument("--log-file", metavar="FILE", help="log to FILE, rotated by size ([log] max_mb, keep), "
                     "instead of [log] file; '' for stderr")
    ag = sub.add_parser("agent", help="run the node agent")
    ag.add_argument("--server", help="server URL: http://HOST:PORT or unix:PATH")
    ag.add_argument("--name", help="node name (default: the host name)")
    ag.add_argument("--cpus", help="cpus this node offers (default: all it has)")
    ag.add_argument("--mem", help="memory this node offers, e.g. 8G (default: all it has)")
    ag.add_argument("--state", help="agent state directory (its job journal)")
    ag.add_argument("--scratch", help="scratch directory for staged scripts (default /tmp)")
    ag.add_argument("--interval", type=float, help="seconds between reports (default 5)")
    ag.add_argument("--key", help="the cluster key (default [auth] key_file)")
    ag.add_argument("--socket", help="where to vouch for this machine's users (default [auth] agent_socket; "
                                     "'' for nowhere)")
    ag.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    ag.add_argument("--log-file", metavar="FILE", help="log to FILE, rotated by size ([log] max_mb, keep), "
                    "instead of [log] file; '' for stderr")
    cfg = sub.add_parser("config", help="print the effective configuration")
    cfg.add_argument("--json", action="store_true")
    _sim_parser(sub)
    token_parser(sub)
    init_parser(sub)
    purge_parser(sub)
    man_parser(sub)
    completion_parser(sub)
    doctor_parser(sub)
    install_parsers(sub)
    compat_parser(sub)
    runall_parser(sub)
    launch_parser(sub)
    sub.add_parser("version", help="print the version")
    return p


def _main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.cmd == "version":
        print(f"wulf {__version__}")
        return 0
    if args.cmd == "doctor":  # it reads the configuration itself: a file that does not parse is a finding
        return cmd_doctor(args)
    config = load_config(args.config)
    if args.cmd in ("agent", "up"):  # check sizes before anything starts
        if args.cpus:
            parse_cpu(args.cpus)
        if args.mem:
            parse_mem(args.mem)
    handler = {"server": cmd_server, "agent": cmd_agent, "up": cmd_up, "down": cmd_down, "web": cmd_web,
               "config": cmd_config, "sim": cmd_sim, "token": cmd_token,
               "init": cmd_init, "purge-scratch": cmd_purge,
               "man": cmd_man, "completion": cmd_completion, "install": cmd_install,
               "uninstall": cmd_uninstall, "compat": cmd_compat, "runall": cmd_runall,
               "launch": cmd_launch}.get(args.cmd)
    if handler is None:
        raise UsageError(f"unknown command {args.cmd}")
    return handler(args, config)


def main() -> None:
    run(_main)


if __name__ == "__main__":
    main()
