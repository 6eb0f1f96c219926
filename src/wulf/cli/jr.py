"""jr: run a command now on the best node, attached to this terminal.

    jr [--mem MB] [--cpu N] [--name NAME] [--rsh CMD] [CMD ...]

Like ``rsh HOST CMD`` without naming a host: the server picks the node with the most room, the job
runs there in the current directory with this environment, and its input, output, window size and
signals go back and forth. With no command, a login shell. jr exits with the job's exit status
(128+N when a signal N ended it). ``--rsh ssh`` runs the command through ssh instead (no wulf job).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import signal
import sys
import termios
import tty
from collections.abc import Iterator
from typing import Any, NoReturn
from urllib.parse import urlencode

from wulf.cli.common import ArgParser, parse_cpu, parse_mem, run
from wulf.client import Client, current_umask
from wulf.errors import UsageError, WulfError
from wulf.interactive import Relay, connect

#: signals jr passes on to the job rather than dying of them
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


class AgentUnreachable(WulfError):
    exit_code = 3
    retryable = True


def build_parser() -> ArgParser:
    p = ArgParser(prog="jr", description="Run a command now on the best node, attached to this terminal "
                  "(like rsh, without naming a host). With no command, a login shell.")
    p.add_argument("--mem", type=str, metavar="MB", help="memory the job needs (512, 2G, ...)")
    p.add_argument("--cpu", type=str, metavar="N", help="cpus the job needs (1, 0.5, 4, ...)")
    p.add_argument("--name", default="", help="the job's name (default: the command's first word)")
    p.add_argument("--rsh", metavar="CMD",
                   help="run through this remote shell (e.g. ssh) on the node the server picks")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="CMD ...",
                   help="the command and its arguments; everything after the first word goes to it")
    return p


def command_string(words: list[str]) -> str:
    """The command as the shell will see it: one word as-is (so ``jr 'a | b'`` works), more quoted."""
    if words and words[0] == "--":
        words = words[1:]
    if len(words) == 1:
        return words[0]
    return shlex.join(words)


def default_name(command: str, env: dict[str, str]) -> str:
    words = command.split()
    if words:
        return os.path.basename(words[0])[:64]
    return os.path.basename(env.get("SHELL") or "sh")


def working_dir() -> str:
    """The current directory as the user names it ($PWD when it is the same place, to keep links)."""
    try:
        cwd = os.getcwd()
    except FileNotFoundError:
        raise WulfError("the current directory no longer exists; cd somewhere else and try again") from None
    pwd = os.environ.get("PWD", "")
    if pwd.startswith("/"):
        with contextlib.suppress(OSError):
            if os.path.samefile(pwd, cwd):
                return pwd
    return cwd


def rsh_argv(rsh: str, host: str, cwd: str, command: str, tty: bool) -> list[str]:
    """``ssh [-t] HOST 'cd DIR && CMD'`` (a login shell there when there is no command)."""
    try:
        argv = shlex.split(rsh)
    except ValueError as e:
        raise UsageError(f"--rsh: {e}") from None
    if not argv:
        raise UsageError("--rsh: give the remote shell to use, e.g. --rsh ssh")
    if not _HOST.match(host):  # a node's host name as its agent reported it: never an option of ssh's
        raise WulfError(f"the server named a node host that is not a host name: {host!r}")
    remote = f"cd {shlex.quote(cwd)} && " + (command if command.strip() else 'exec "${SHELL:-/bin/sh}" -l')
    ssh = os.path.basename(argv[0]) == "ssh"
    if tty and ssh:
        argv.append("-t")
    return [*argv, *(["--"] if ssh else []), host, remote]


_HOST = re.compile(r"[A-Za-z0-9_.:\[\]][A-Za-z0-9_.:\[\]-]*\Z")


def job_spec(args: argparse.Namespace, command: str, cwd: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"command": command, "cwd": cwd,
                            "name": args.name or default_name(command, dict(os.environ))}
    if args.cpu is not None:
        spec["cpu"] = parse_cpu(args.cpu)
    if args.mem is not None:
        spec["mem_mb"] = parse_mem(args.mem)
    return spec


# ---------------------------------------------------------------- the terminal


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """The terminal passes every key through (^C included) until the block ends, however it ends."""
    old = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)


@contextlib.contextmanager
def forwarding(relay: Relay, tty_fd: int | None) -> Iterator[None]:
    """Signals to jr become SIGNAL frames; window changes of ``tty_fd`` become WINCH frames."""
    saved: dict[int, Any] = {}

    def forward(signum: int, _frame: object) -> None:
        relay.send_signal(signum)

    def resized(_signum: int, _frame: object) -> None:
        assert tty_fd is not None
        with contextlib.suppress(OSError):
            size = os.get_terminal_size(tty_fd)
            relay.resize(size.lines, size.columns)

    try:
        for sig in FORWARDED:
            saved[sig] = signal.signal(sig, forward)
        if tty_fd is not None:
            saved[signal.SIGWINCH] = signal.signal(signal.SIGWINCH, resized)
        yield
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def attach(reply: dict[str, Any], pty: bool) -> int:
    """Connect to the session the server prepared and relay this process's stdio; the job's status."""
    node = str(reply.get("node") or "")
    host, port = str(reply.get("host") or node), int(reply["port"])
    rows: int = 0
    cols: int = 0
    if pty:
        with contextlib.suppress(OSError):
            size = os.get_terminal_size(0)
            rows, cols = size.lines, size.columns
    try:
        sock = connect(host, port, str(reply["token"]), rows, cols, os.environ.get("TERM", ""))
    except OSError as e:
        raise AgentUnreachable(f"cannot connect to the wulf agent on {node or host} at {host}:{port} "
                               f"({e.strerror or e}); job {reply.get('id')} will not start") from None
    relay = Relay(sock, 0 if _is_open(0) else None, 1, 2, pty)
    try:
        with forwarding(relay, 0 if pty else None), raw_terminal(0) if pty else contextlib.nullcontext():
            return relay.run()
    finally:
        relay.close()
        sock.close()


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def wants_pty(stdin_fd: int = 0) -> bool:
    """A terminal for the job when jr's standard input is one (as ``ssh -t`` would give).

    Then the job is interactive: editors, shells and ^C work as at home. With input from a pipe or a
    file the job gets pipes, and stdout and stderr stay apart.
    """
    return os.isatty(stdin_fd)


# ---------------------------------------------------------------- main


def _main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    command = command_string(list(args.command))
    cwd = working_dir()
    spec = job_spec(args, command, cwd)  # checks --cpu and --mem before anything else happens
    pty = wants_pty()
    client = Client()
    if args.rsh is not None:
        return _via_rsh(client, args.rsh, spec, pty)
    reply = client.post("/api/v1/interactive", {"job": spec, "env": dict(os.environ), "umask": current_umask(),
                                                 "pty": pty})
    client.close()
    sys.stdout.flush()
    return attach(reply, pty)


def _via_rsh(client: Client, rsh: str, spec: dict[str, Any], pty: bool) -> int:
    query = {k: spec[key] for k, key in (("cpu", "cpu"), ("mem", "mem_mb")) if key in spec}
    place = client.get("/api/v1/place" + ("?" + urlencode(query) if query else ""))
    host = str(place.get("host") or place.get("node") or "")
    if not host:
        raise WulfError("the server named no node to run on")
    argv = rsh_argv(rsh, host, spec["cwd"], spec["command"], pty)
    sys.stdout.flush()
    try:
        os.execvp(argv[0], argv)
    except OSError as e:
        raise UsageError(f"--rsh: cannot run {argv[0]!r} ({e.strerror or e})") from None
    return 127  # not reached


def main() -> NoReturn:
    run(_main)


if __name__ == "__main__":
    main()
