"""wulf launch (jrun) and wulf-rsh: tasks of a job across its allocation, through the agents (no ssh).

    wulf launch [-n T] [-l] CMD...     T tasks of CMD on the job's slots (default: one a slot)
    wulf-rsh HOST CMD...               CMD on HOST, a node of the job (an rsh for mpiexec)

Each runs only inside a job of several tasks (``qr --ntasks``, ``--nodes``): the server checks the job's
launch key (``WULF_LAUNCH_KEY``, in its environment) and that HOST is one of its nodes. The tasks run as
the job's owner in the job's cgroup on their nodes; their output comes here (so into the job's output),
signals sent here go to all of them, and the exit code is the worst of theirs.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from wulf.cli.common import ArgParser, run
from wulf.errors import UsageError
from wulf.interactive import Frame, Kind, Relay, SessionError, connect

HELP = """Starts CMD as T tasks (default: one for each slot of the job) across the nodes of the job it runs
in, through wulf's agents: no ssh. Each task runs as you, in the job's cgroup on its node, in this
directory, with this environment and WULF_TASK_ID (0 to T-1), WULF_LOCAL_TASK_ID (its number on its
node) and WULF_NODE. The tasks' stdout and stderr come here (into the job's output); -l puts each
task's id before each of its lines. SIGINT, SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 sent here go to every
task. The exit code is the worst of the tasks' (a task killed by signal N counts as 128+N). Only from
inside a job queued with --ntasks, --nodes or --ntasks-per-node."""

#: signals passed on to every task
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)

#: the status of a task that could not be reached or ended without telling how
LOST = 255


def launch_parser(sub: argparse._SubParsersAction[ArgParser]) -> None:
    p = sub.add_parser("launch", help="start tasks across the nodes of the job it runs in (also: jrun)",
                       description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    _options(p)


def _options(p: ArgParser) -> None:
    p.add_argument("-n", "--ntasks", metavar="T", help="how many tasks (default: one a slot of the job)")
    p.add_argument("-l", "--label", action="store_true", help="put the task's id before each line of its output")
    p.add_argument("words", nargs=argparse.REMAINDER, metavar="CMD", help="the program and its arguments")


def _parser() -> ArgParser:
    p = ArgParser(prog="jrun", description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    _options(p)
    return p


def cmd_launch(args: argparse.Namespace, config: object = None) -> int:
    words = args.words[1:] if args.words[:1] == ["--"] else args.words
    if not words:
        raise UsageError("launch: give the command to start, e.g. wulf launch -n 4 ./worker")
    ntasks = None
    if args.ntasks is not None:
        if not (args.ntasks.isascii() and args.ntasks.isdigit()) or int(args.ntasks) < 1:
            raise UsageError(f"launch: -n {args.ntasks!r} is not a number of tasks (1 or more)")
        ntasks = int(args.ntasks)
    import shlex

    return launch("exec " + shlex.join(words), ntasks=ntasks, label=args.label)  # (the task is CMD itself)


def _job() -> tuple[int, str]:
    job, key = os.environ.get("WULF_JOB_ID", ""), os.environ.get("WULF_LAUNCH_KEY", "")
    if not (job.isascii() and job.isdigit()) or not key:
        raise UsageError("runs only inside a job queued with qr --ntasks, --nodes or --ntasks-per-node "
                         "(WULF_JOB_ID and WULF_LAUNCH_KEY are not set)")
    return int(job), key


def _env() -> dict[str, str]:
    """This environment, as far as it is text (a task gets what the server may carry)."""
    out = {}
    for k, v in os.environ.items():
        try:
            k.encode(), v.encode()
        except UnicodeEncodeError:
            continue
        if "\0" not in v:
            out[k] = v
    return out


def launch(command: str, ntasks: int | None = None, label: bool = False, hosts: Sequence[str] | None = None,
           stdin: int | None = None) -> int:
    """Ask the server for the tasks, relay them all until they end; the worst exit status."""
    from wulf.client import Client

    job, key = _job()
    body: dict[str, Any] = {"job": job, "secret": key, "ntasks": ntasks, "command": command, "cwd": os.getcwd(),
                            "env": _env()}
    if hosts is not None:
        body["nodes"] = list(hosts)
    relays: list[_Task] = []
    early: list[int] = []  # signals that came before the tasks (they get them once they start)

    def forward(signum: int, _frame: object) -> None:
        early.append(signum)
        for r in relays:
            r.send_signal(signum)

    old = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    try:
        reply = Client().post("/api/v1/launch", body, timeout=60)
        statuses: dict[int, int] = {}
        for t in reply["tasks"]:
            try:
                sock = connect(t["host"], int(t["port"]), t["token"])
            except OSError as e:
                print(f"{_prog()}: task {t['task']} on {t['node']}: cannot connect to its agent: "
                      f"{e.strerror or e}", file=sys.stderr)
                statuses[t["task"]] = LOST
                continue
            task = _Task(sock, int(t["task"]), str(t["node"]), label, stdin)
            for signum in early:
                task.send_signal(signum)
            relays.append(task)
        return max([*statuses.values(), *_run_all(relays)], default=0)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _run_all(relays: list[_Task]) -> list[int]:
    """Run every relay in a thread of its own (the main thread takes the signals meanwhile)."""
    threads = [threading.Thread(target=r.go, daemon=True) for r in relays]
    for th in threads:
        th.start()
    for th in threads:
        while th.is_alive():
            th.join(0.5)
    return [r.status for r in relays]


def _prog() -> str:
    return os.path.basename(sys.argv[0]) or "wulf"


class _Task(Relay):
    """One task's session: its output to ours (each line after its id, with ``label``)."""

    def __init__(self, sock: Any, task: int, node: str, label: bool, stdin: int | None) -> None:
        super().__init__(sock, stdin, 1, 2, False)
        self.task, self.node, self.label = task, node, label
        self.status = LOST
        self._partial: dict[Kind, bytearray] = {Kind.STDOUT: bytearray(), Kind.STDERR: bytearray()}

    def go(self) -> None:
        try:
            self.status = self.run()
        except (SessionError, OSError) as e:
            print(f"{_prog()}: task {self.task} on {self.node}: {e}", file=sys.stderr)
        finally:
            self._flush()
            self.close()
            self.sock.close()

    def _handle(self, frame: Frame) -> int | None:
        if self.label and frame.kind in self._partial:
            buf = self._partial[frame.kind]
            buf += frame.payload
            end = buf.rfind(b"\n") + 1
            if end:
                prefix = f"{self.task}: ".encode()
                lines = bytes(buf[:end]).splitlines(keepends=True)
                del buf[:end]
                _write(1 if frame.kind is Kind.STDOUT else 2, b"".join(prefix + line for line in lines))
            return None
        return super()._handle(frame)

    def _flush(self) -> None:
        for kind, buf in self._partial.items():
            if buf:
                _write(1 if kind is Kind.STDOUT else 2, f"{self.task}: ".encode() + bytes(buf) + b"\n")
                buf.clear()


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _main(argv: list[str]) -> int:
    return cmd_launch(_parser().parse_args(argv))


def main() -> None:
    run(_main)


# ---------------------------------------------------------------- wulf-rsh

RSH_HELP = """rsh for MPI inside a wulf job: runs CMD on HOST through wulf's agents (no ssh), as you, in the
job's cgroup there, with this environment and directory. HOST must be a node of the job's own
allocation (WULF_NODELIST); anything else is refused. MPICH's mpiexec finds it through HYDRA_LAUNCHER=rsh
and HYDRA_LAUNCHER_EXEC=wulf-rsh, Open MPI's mpirun through OMPI_MCA_plm_rsh_agent=wulf-rsh: a job of
several nodes has these set."""


def _rsh_parser() -> ArgParser:
    p = ArgParser(prog="wulf-rsh", description=RSH_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", dest="no_stdin", action="store_true", help="no input (as rsh -n)")
    p.add_argument("-l", dest="user", metavar="USER", help="as rsh -l: only you (the job's owner)")
    p.add_argument("-x", dest="no_x11", action="store_true", help="ignored (no X11 is forwarded)")
    p.add_argument("host", metavar="HOST", help="a node of the job")
    p.add_argument("words", nargs=argparse.REMAINDER, metavar="CMD", help="the command (joined by spaces, as rsh does)")
    return p


def _rsh_main(argv: list[str]) -> int:
    args = _rsh_parser().parse_args(argv)
    if args.user is not None:
        import pwd

        if args.user != pwd.getpwuid(os.getuid()).pw_name:
            raise UsageError(f"-l {args.user}: a task runs as the job's owner only")
    words = args.words[1:] if args.words[:1] == ["--"] else args.words
    if not words:
        raise UsageError("give a command: wulf-rsh runs no login shell")
    return launch(" ".join(words), hosts=[args.host], stdin=None if args.no_stdin else 0)


def rsh_main() -> None:
    run(_rsh_main)
