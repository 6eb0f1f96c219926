"""qr: queue commands or scripts.

    qr -c 'CMD' [-c 'CMD' ...]     one job per command
    qr -s FILE [-s FILE ...]       one job per script; a line '#NEXTSCRIPT' starts the next script
    qr [CMD ...]                   the words as one command; with none, a script read from stdin
"""

from __future__ import annotations

import os
import sys

from wulf.cli.common import ArgParser, parse_cpu, parse_mem, print_json, run
from wulf.client import Client, new_key
from wulf.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

SEPARATOR = "#NEXTSCRIPT"


def split_scripts(text: str) -> list[str]:
    """The scripts in one file: parts between lines that are exactly '#NEXTSCRIPT'.

    Empty parts are dropped. A part without a '#!' line gets the first part's, so a file that starts
    with '#!/bin/bash' runs every script in it with bash.
    """
    parts: list[list[str]] = [[]]
    for line in text.splitlines(keepends=True):
        if line.strip() == SEPARATOR:
            parts.append([])
        else:
            parts[-1].append(line)
    scripts = ["".join(p) for p in parts if "".join(p).strip()]
    if scripts and scripts[0].startswith("#!"):
        shebang = scripts[0].splitlines(keepends=True)[0]
        scripts = [s if s.startswith("#!") else shebang + s for s in scripts]
    return scripts


def _read_script(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise UsageError(f"no such script file: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory, not a script file") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not a text file (UTF-8)") from None
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None


def _parser() -> ArgParser:
    p = ArgParser(prog="qr", description="Queue commands or scripts to run on the cluster.",
                  epilog="Examples: qr -c 'make -j4'   qr -s jobs.sh   qr --mem 2G --cpu 4 ./simulate")
    p.add_argument("-c", "--command", action="append", default=[], metavar="CMD",
                   help="a command to queue (repeat for several jobs)")
    p.add_argument("-s", "--script", action="append", default=[], metavar="FILE",
                   help="a script file to queue; '#NEXTSCRIPT' lines separate several scripts")
    p.add_argument("--mem", metavar="MB", help="memory the job needs (512, 512M, 2G; default 32M)")
    p.add_argument("--cpu", metavar="N", help="cpus the job needs (default 1)")
    p.add_argument("--ntasks", metavar="T",
                   help="run T tasks (slots of --cpu and --mem each) on one node or several; the script runs on "
                        "the first and starts them with `wulf launch` or mpiexec")
    p.add_argument("--nodes", metavar="N",
                   help="on exactly N nodes (with --ntasks-per-node M: N × M tasks; alone: one task a node)")
    p.add_argument("--ntasks-per-node", metavar="M", help="M tasks on each node")
    p.add_argument("-q", "--queue", help="the queue to put it in (default: default)")
    p.add_argument("--constraint", metavar="EXPR",
                   help="nodes it may run on: features and key=value terms joined by ',' (and) or '|' (or), "
                        "e.g. 'arch=x86_64,bigmem'")
    p.add_argument("--time", metavar="HH:MM:SS", help="stop the job after this much wall time")
    p.add_argument("--cputime", metavar="HH:MM:SS", help="stop the job after this much cpu time")
    p.add_argument("--mem-limit", metavar="MB", help="stop the job if it uses more memory than this (512, 2G)")
    p.add_argument("--nice", metavar="N", help="run it at this niceness (0-19; at least the site's "
                   "[scheduler] job_nice; only administrators go lower)")
    p.add_argument("-N", "--name",
                   help="a name for the job (default: the program or script). Your jobs of one name and "
                        "request are of a kind: each starts with what the last ones used, if less than asked")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="file for stdout and stderr (default wulf-<id>.out; %%j is the job id, %%x its name, "
                        "%%u the user, %%N the node, %%A the array's id, %%a the task's index; a directory gets the default "
                        "name inside it)")
    p.add_argument("--array", metavar="SPEC",
                   help="queue an array: one task per index, e.g. 1-100, 0-30:3, 1,4,7-9; %%N runs at most N "
                        "at once (1-1000%%50). Task i of array ID is ID[i]; it sees WULF_ARRAY_TASK_ID")
    p.add_argument("--after", action="append", metavar="ID[,ID...]",
                   help="start only after these jobs ended done (and never if one of them fails or is cancelled)")
    p.add_argument("--after-any", action="append", metavar="ID[,ID...]",
                   help="start only after these jobs ended, however they ended")
    p.add_argument("--after-notok", action="append", metavar="ID[,ID...]",
                   help="start only after these jobs failed or were cancelled (and never if one ends done)")
    p.add_argument("-d", "--dependency", metavar="LIST",
                   help="Slurm's form of the above: afterok:ID[:ID...],afterany:ID...,afternotok:ID...")
    p.add_argument("--retries", metavar="N",
                   help="queue the job again up to N times if it fails (not if it goes over its own limits; "
                        "default: the site's [scheduler] default_retries)")
    p.add_argument("--requeue", action="store_true",
                   help="the job may be stopped and started over on another node (as when the owner of the "
                        "workstation it runs on comes back) rather than suspended there")
    p.add_argument("--signal", metavar="SIG@SECONDS",
                   help="send the job SIG that many seconds before its time limit (USR1@60; needs --time)")
    p.add_argument("--checkpoint", metavar="SIG[@INTERVAL]",
                   help="tell the job to checkpoint with SIG every INTERVAL and before its time limit; a run that "
                        "then exits with the checkpoint exit code (85, or $WULF_CHECKPOINT_EXIT) is queued again")
    p.add_argument("-Z", "--keep-script", action="store_true", help="keep the staged script after the run")
    p.add_argument("--mail-type", metavar="TYPE,...",
                   help="mail about the job when it begins (BEGIN), ends (END), fails (FAIL) or is requeued "
                        "(REQUEUE); ALL for those four, NONE for none (the end mail says what it used "
                        "against what it asked)")
    p.add_argument("--mail-user", metavar="ADDR",
                   help="where that mail goes (default: you, at the site's [mail] domain); alone, it mails at the end")
    p.add_argument("--env", metavar="NONE|ALL|NAME,...",
                   help="the environment the job gets: ALL of this one (the default), NONE, or only the "
                        "variables NAME,... (NAME=VALUE sets one; ALL,NAME=VALUE adds to all of them)")
    p.add_argument("-H", "--hold", action="store_true",
                   help="queue it held: it waits until qrls ID releases it")
    p.add_argument("--strict", action="store_true",
                   help="refuse a script with #SBATCH, #PBS or #$ directives wulf cannot carry out, or does not know "
                        "(without it, they are warnings)")
    p.add_argument("--json", action="store_true", help='print {"jobs": [ids]}')
    p.add_argument("words", nargs="*", help="a command to queue (as one job)")
    return p


def _env_name(name: str) -> bool:
    return bool(name) and (name[0].isalpha() or name[0] == "_") and name.replace("_", "a").isalnum() \
        and name.isascii()


def select_env(spec: str, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment a job gets, by ``qr --env`` (as Slurm's --export): ``ALL``, ``NONE``, or
    ``NAME,...`` (only those of ``environ``), where ``NAME=VALUE`` sets one, and a list may start with
    ``ALL`` (all, and these) or ``NONE`` (these only)."""
    items = [s.strip() for s in spec.split(",")]
    if not spec.strip() or "" in items:
        raise UsageError(f"--env: {spec!r} is not NONE, ALL or NAME,... (an empty item)")
    env: dict[str, str] = {}
    if items[0].upper() in ("ALL", "NONE"):
        env = dict(environ) if items.pop(0).upper() == "ALL" else {}
    for item in items:
        name, eq, value = item.partition("=")
        if not _env_name(name):
            raise UsageError(f"--env: {name!r} is not a variable name")
        if eq:
            env[name] = value
        elif name in environ:
            env[name] = environ[name]
    return env


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # bytes that were not UTF-8 where they were read (a lone surrogate)
        return False
    return True


def carried_env(env: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """The variables wulf can carry (UTF-8 names and values), and the names of those it cannot."""
    kept = {k: v for k, v in env.items() if _utf8(k) and _utf8(v)}
    return kept, [k.encode("utf-8", "replace").decode() for k in env if k not in kept]


def _join_words(words: list[str]) -> str:
    """The words of ``qr CMD ...`` as one command line (one word is taken as a command line)."""
    if len(words) == 1:
        return words[0]
    import shlex  # only here: it costs a regular expression compile at start-up

    return shlex.join(words)


def _duration(flag: str, text: str) -> float:
    from wulf.policy.limits import parse_duration

    try:
        return parse_duration(text)
    except ValueError as e:
        raise UsageError(f"--{flag}: {e}") from None


def _array(args: Any) -> dict[str, Any]:
    """--array: the spec, checked (UsageError) and in its usual form."""
    if args.array is None:
        return {}
    from wulf.model.array import parse_array

    return {"array": parse_array(args.array).text()}


def dependency_text(text: str, what: str = "--dependency") -> str:
    """A dependency as the server takes it, checked (UsageError names ``what``)."""
    from wulf.model import depend

    try:
        return depend.text(depend.parse(text))
    except UsageError as e:
        raise UsageError(f"{what}: {e.message}") from None


def _dependency(args: Any) -> str:
    """What --after, --after-any, --after-notok and --dependency say, together (each must hold)."""
    flags = ("after", "after_any", "after_notok")
    if args.dependency is None and not any(getattr(args, flag) for flag in flags):
        return ""  # (without importing wulf.model: a plain qr starts faster)
    from wulf.model.depend import After, of_ids

    parts = [args.dependency] if args.dependency is not None else []
    for flag, kind in zip(flags, (After.OK, After.ANY, After.NOTOK), strict=True):
        if getattr(args, flag):
            parts.append(of_ids(kind, getattr(args, flag)))
    return dependency_text(",".join(parts), "--after" if args.dependency is None else "--dependency")


def _retries(text: str) -> int:
    from wulf.model.job import MAX_RETRIES

    if not (text.isascii() and text.isdigit()) or int(text) > MAX_RETRIES:
        raise UsageError(f"--retries: {text!r} is not a number of retries (0 to {MAX_RETRIES})")
    return int(text)


def _lifecycle(args: Any, given: dict[str, Any]) -> None:
    """What the job waits for, and how often it is queued again if it fails."""
    if dep := _dependency(args):
        given["depend"] = dep
    if args.retries is not None:
        given["retries"] = _retries(args.retries)
    if args.hold:
        given["hold"] = True
    if args.requeue:
        given["requeue"] = True
    _notices(args, given)


def _notices(args: Any, given: dict[str, Any]) -> None:
    """--signal and --checkpoint, checked (UsageError); --checkpoint criu is refused with the reason."""
    if args.signal is None and args.checkpoint is None:
        return
    from wulf.model import checkpoint

    if args.signal is not None:
        given["warn_signal"] = checkpoint.parse_signal(args.signal).text()
    if args.checkpoint is not None:
        notice = checkpoint.parse_checkpoint(args.checkpoint)
        if notice is None:
            from wulf.cli.criu import refusal

            raise UsageError(refusal())
        given["checkpoint"] = notice.text()


def _given(args: Any) -> dict[str, Any]:
    """The job fields the options on a command line (or on #WULF lines) say; ``_env`` is --env's value."""
    given: dict[str, Any] = {key: getattr(args, key) for key in ("queue", "output", "name")
                             if getattr(args, key) is not None}
    given.update(_array(args))
    if args.keep_script:
        given["keep_script"] = True
    if args.env is not None:
        given["_env"] = args.env
    if args.mem is not None:
        given["mem_mb"] = parse_mem(args.mem)
    if args.cpu is not None:
        given["cpu"] = parse_cpu(args.cpu)
    if args.constraint is not None and args.constraint.strip():
        from wulf.policy.constraint import parse_constraint

        given["constraint"] = str(parse_constraint(args.constraint))
    for flag, key in (("time", "time_limit"), ("cputime", "cputime_limit")):
        if getattr(args, flag) is not None:
            given[key] = _duration(flag, getattr(args, flag))
    if args.mem_limit is not None:
        given["mem_limit_mb"] = parse_mem(args.mem_limit, "--mem-limit")
    _lifecycle(args, given)
    given.update(_tasks(args))
    given.update(_mail(args))
    if args.nice is not None:
        try:
            given["nice"] = int(args.nice)
        except ValueError:
            raise UsageError(f"--nice: {args.nice!r} is not a whole number") from None
        if not -20 <= given["nice"] <= 19:
            raise UsageError(f"--nice: {args.nice} is not a nice value (-20 to 19)")
    return given


def _tasks(args: Any) -> dict[str, int]:
    """--ntasks, --nodes, --ntasks-per-node: checked here (exit 2) as the server checks them."""
    given: dict[str, int] = {}
    for flag, key in (("ntasks", "ntasks"), ("nodes", "nodes"), ("ntasks_per_node", "tasks_per_node")):
        text = getattr(args, flag)
        if text is None:
            continue
        if not (text.isascii() and text.isdigit()):
            raise UsageError(f"--{flag.replace('_', '-')}: {text!r} is not a whole number")
        given[key] = int(text)
    if given:
        from wulf.model.tasks import shape

        shape(given.get("ntasks"), given.get("nodes"), given.get("tasks_per_node"))
    return given


def _mail(args: Any) -> dict[str, str]:
    """The job's own mail (--mail-type, --mail-user): the types checked here (exit 2), the address by the server."""
    given = {}
    if args.mail_type is not None:
        from wulf.model.mailtypes import parse_mail_types

        given["mail_type"] = parse_mail_types(args.mail_type) or "NONE"
    if args.mail_user is not None:
        given["mail_user"] = args.mail_user
    return given


DEFAULTS: dict[str, Any] = {"queue": "default", "output": "", "keep_script": False}


def _common(args: Any, cwd: str) -> dict[str, Any]:
    """What every job of one qr call shares: where, which queue, and what it needs."""
    return {"cwd": cwd, **DEFAULTS, **_given(args)}


def build_specs(args: Any, cwd: str, stdin_text: str | None = None) -> list[dict[str, Any]]:
    common = _common(args, cwd)
    given = _given(args)
    specs: list[dict[str, Any]] = []
    commands = list(args.command)
    if args.words:
        commands.append(_join_words(args.words))
    for cmd in commands:
        if not cmd.strip():
            raise UsageError("-c: the command is empty")
        specs.append({"name": cmd.split()[0][:40]} | common | {"command": cmd})
        if specs[-1]["output"]:
            from wulf.cli.scriptjob import in_dir

            in_dir(specs[-1], "wulf-%j.out")
    for path in args.script:
        scripts = split_scripts(_read_script(path))
        if not scripts:
            raise UsageError(f"{path} is empty: there is no script in it")
        base = os.path.basename(path)
        for i, script in enumerate(scripts):
            label = base if len(scripts) == 1 else f"{base}[{i + 1}]"
            specs.append(script_spec(script, label, base, cwd, given, args.strict))
    if not specs:
        specs = _stdin_specs(args, cwd, given, stdin_text)
    _one_array(specs, args)
    return specs


def _one_array(specs: list[dict[str, Any]], args: Any) -> None:
    """An array is one script or command run once a task: with several (#NEXTSCRIPT, -c twice), it is
    a usage error, before anything is queued."""
    if len(specs) > 1 and any(s.get("array") for s in specs):
        where = "--array" if args.array is not None else "an array directive"
        raise UsageError(f"{where} queues one script or command as many tasks, but there are {len(specs)} jobs "
                         f"here (#NEXTSCRIPT parts, or several -c/-s): queue them as separate arrays")


def _stdin_specs(args: Any, cwd: str, given: dict[str, Any], stdin_text: str | None) -> list[dict[str, Any]]:
    if stdin_text is None:
        raise UsageError("nothing to queue: give -c CMD, -s FILE or a command (see `qr --help`)")
    scripts = split_scripts(stdin_text)
    if not scripts:
        raise UsageError("the script read from standard input is empty")
    specs = []
    for i, script in enumerate(scripts):
        label = "(stdin)" if len(scripts) == 1 else f"(stdin)[{i + 1}]"
        specs.append(script_spec(script, label, "STDIN", cwd, given, args.strict, name="stdin"))
    return specs


def _main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        cwd = os.getcwd()
    except FileNotFoundError:
        raise UsageError("the current directory no longer exists") from None
    if not _utf8(cwd):
        raise UsageError("the current directory's name is not UTF-8 text: wulf carries only UTF-8 (cd elsewhere)")
    stdin_text = None
    if not (args.command or args.script or args.words):
        if sys.stdin.isatty():
            print("qr: type the script, then Ctrl-D (or use -c CMD / -s FILE)", file=sys.stderr)
        try:
            stdin_text = sys.stdin.buffer.read().decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError("the script read from standard input is not UTF-8 text") from None
    specs = build_specs(args, cwd, stdin_text)
    for spec in specs:
        if not _utf8(spec["command"]):
            raise UsageError("the command is not UTF-8 text (it has bytes that are not): wulf carries only UTF-8")
    ids = submit(specs)
    if args.json:
        print_json({"jobs": ids})
    else:
        sys.stdout.write("".join(f"{i}\n" for i in ids))
    return 0


def submit(specs: list[dict[str, Any]]) -> list[int]:
    """Queue the specs; those whose environments differ (a script's --export, #PBS -v) go in separate
    submissions, in order. Each has one key: should its answer be lost, the client sends it again with
    that key and the server queues the jobs once."""
    groups: dict[tuple[str, tuple[tuple[str, str], ...]], list[dict[str, Any]]] = {}
    for spec in specs:
        what = (spec.pop("_env", None) or "ALL", tuple(spec.pop("_env_add", {}).items()))
        groups.setdefault(what, []).append(spec)
    client = Client()
    ids: list[int] = []
    for (spec_text, added), jobs in groups.items():
        env, dropped = carried_env(select_env(spec_text, os.environ) | dict(added))
        if dropped:
            print(f"qr: left out of the job's environment (not UTF-8 text): {', '.join(dropped[:5])}"
                  + (" ..." if len(dropped) > 5 else ""), file=sys.stderr)
        ids += client.submit(jobs, env, key=new_key())
    return ids


def script_spec(script: str, label: str, file_name: str, cwd: str, given: dict[str, Any],
                strict: bool, name: str = "") -> dict[str, Any]:
    """A script's job: its directives (#SBATCH, #PBS, #$, #WULF) under the options of the command line."""
    from wulf.cli.scriptjob import from_directives

    return from_directives(script, label, file_name, cwd, given, strict, name or label)


def main() -> None:
    run(_main, exit_fast=True)
