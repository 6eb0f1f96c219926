"""Manual pages and shell completion, made from the commands' own argparse parsers (so they cannot drift
from ``--help``): ``wulf man CMD``, ``wulf man --write DIR``, ``wulf completion bash|zsh|fish``."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Iterator
from pathlib import Path

from wulf import __version__
from wulf.cli.common import ArgParser

COMMANDS: dict[str, str] = {
    "wulf": "wulf.cli.wulf:_parser", "qr": "wulf.cli.qr:_parser", "jr": "wulf.cli.jr:build_parser",
    "jstat": "wulf.cli.jstat:_parser", "qwait": "wulf.cli.qwait:_parser", "qcancel": "wulf.cli.qcancel:build_parser",
    "jkill": "wulf.cli.jkill:build_parser", "jnice": "wulf.cli.jnice:build_parser",
    "jmod": "wulf.cli.jmod:build_parser",
    "jobmgr": "wulf.cli.jobmgr:build_parser", "qset": "wulf.cli.qset:_parser", "qhold": "wulf.cli.qhold:build_parser",
    "qrls": "wulf.cli.qrls:build_parser", "jtail": "wulf.cli.jtail:build_parser",
    "jacct": "wulf.cli.jacct:_parser", "jeff": "wulf.cli.jeff:_parser",
    "jrun": "wulf.cli.launch:_parser", "wulf-rsh": "wulf.cli.launch:_rsh_parser",
}
"""Every command wulf installs (pyproject's [project.scripts]) and where its parser is built."""

WIDTH = 78  # the width usage lines are laid out at in a page: not the terminal's, so pages are reproducible


def parser_of(command: str) -> ArgParser:
    module, _, func = COMMANDS[command].partition(":")
    parser: ArgParser = getattr(importlib.import_module(module), func)()
    return parser


def subcommands(parser: argparse.ArgumentParser) -> Iterator[tuple[str, str, argparse.ArgumentParser]]:
    """(name, one-line help, parser) of each subcommand of ``parser``, in their order."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield name, helps.get(name, ""), sub


def walk(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """``parser`` and every parser below it."""
    yield parser
    for _, _, sub in subcommands(parser):
        yield from walk(sub)


def _formatter(parser: argparse.ArgumentParser) -> argparse.HelpFormatter:
    return argparse.HelpFormatter(parser.prog, width=WIDTH)


def usage(parser: argparse.ArgumentParser) -> str:
    f = _formatter(parser)
    f.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups, prefix="")
    return f.format_help().strip()


def options(parser: argparse.ArgumentParser, with_help: bool = True) -> Iterator[tuple[str, str]]:
    """(how it is written, its help) of each argument of ``parser`` but the subcommands (and -h)."""
    f = _formatter(parser)
    for action in parser._actions:
        if (isinstance(action, argparse._SubParsersAction) or action.help == argparse.SUPPRESS
                or isinstance(action, argparse._HelpAction) and not with_help):
            continue
        text = f._expand_help(action) if action.help else ""
        if not text and "--json" in action.option_strings:
            text = "print the result as JSON (see JSON in the README)"
        yield f._format_action_invocation(action), text


def examples(parser: argparse.ArgumentParser) -> str:
    """The examples --help shows (the epilog; filled from wulf.cli.examples when it had none)."""
    parser.format_help()
    return parser.epilog or ""


# ------------------------------------------------------------------ roff

def esc(text: str) -> str:
    """Text safe in a roff line: backslashes and minus signs escaped, no line that starts a request."""
    out = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line[:1] in (".", "'") else line for line in out.splitlines())


def _paragraphs(text: str) -> list[str]:
    lines: list[str] = []
    for block in text.strip().split("\n\n"):
        indented = any(line.startswith("  ") for line in block.splitlines())
        lines += [".PP", *([".nf", esc(block), ".fi"] if indented else [esc(" ".join(block.split()))])]
    return lines


def _options_roff(parser: argparse.ArgumentParser, with_help: bool = True) -> list[str]:
    lines: list[str] = []
    for invocation, text in options(parser, with_help):
        lines += [".TP", f"\\fB{esc(invocation)}\\fR", esc(" ".join(text.split())) if text else "\\&"]
    return lines


def _section_of_sub(name: str, text: str, sub: argparse.ArgumentParser) -> list[str]:
    lines = [f'.SS "{esc(sub.prog)}"', esc(" ".join((sub.description or text).split())) if (sub.description or text)
             else "\\&", ".PP", ".nf", esc(usage(sub)), ".fi", *_options_roff(sub, with_help=False)]
    ex = examples(sub)
    if ex:
        lines += [".PP", ".nf", esc(ex.strip()), ".fi"]
    for subname, subtext, subsub in subcommands(sub):
        lines += _section_of_sub(subname, subtext, subsub)
    return lines


def page(command: str, date: str = "") -> str:
    """The manual page of ``command``, in roff (man(7))."""
    parser = parser_of(command)
    summary = (parser.description or "").strip().split("\n")[0].rstrip(".")
    lines = [f'.TH {command.upper()} 1 "{date}" "wulf {__version__}" "wulf manual"', ".SH NAME",
             f"{esc(command)} \\- {esc(summary[:1].lower() + summary[1:])}", ".SH SYNOPSIS", ".nf",
             esc(usage(parser)), ".fi", ".SH DESCRIPTION", *_paragraphs(parser.description or summary)]
    opts = _options_roff(parser)
    if opts:
        lines += [".SH OPTIONS", *opts]
    subs = list(subcommands(parser))
    if subs:
        lines.append(".SH COMMANDS")
        for name, text, sub in subs:
            lines += _section_of_sub(name, text, sub)
    ex = examples(parser)
    if ex:
        lines += [".SH EXAMPLES", ".nf", esc(ex.strip()), ".fi"]
    lines += [".SH ENVIRONMENT", ".TP", "\\fBWULF_SERVER\\fR", "the server's URL (http://, https:// or unix:PATH)",
              ".TP", "\\fBWULF_CONFIG\\fR", "the configuration file (default /etc/wulf/wulf.toml)",
              ".SH EXIT STATUS", "0 done; 1 a job failed or a generic failure; 2 bad usage or input; 3 the server "
              "cannot be reached; 4 not found; 5 refused by the server.", ".SH SEE ALSO",
              ", ".join(f"\\fB{c}\\fR(1)" for c in COMMANDS if c != command) + ", \\fBwulf.toml\\fR(5)"]
    return "\n".join(lines) + "\n"


def config_page(example: str, date: str = "") -> str:
    """wulf.toml(5): the configuration file, from the commented example of every key."""
    lines = [f'.TH WULF.TOML 5 "{date}" "wulf {__version__}" "wulf manual"', ".SH NAME",
             "wulf.toml \\- the configuration of a wulf cluster", ".SH DESCRIPTION",
             "One TOML file, the same on every node: \\fB$WULF_CONFIG\\fR, else \\fB/etc/wulf/wulf.toml\\fR. "
             "Every key is optional; the values below are the defaults. \\fBwulf config\\fR prints what is in "
             "effect; \\fBjobmgr reload\\fR (or SIGHUP to the server) reads it again.", ".SH KEYS", ".nf",
             esc(example.strip()), ".fi", ".SH SEE ALSO", "\\fBwulf\\fR(1), \\fBqr\\fR(1)"]
    return "\n".join(lines) + "\n"


def example_config() -> str:
    """The commented example configuration: shipped in the package, or examples/ of a source tree."""
    here = Path(__file__).resolve().parent.parent
    for path in (here / "wulf.toml.example", here.parent.parent / "examples" / "wulf.toml"):
        if path.exists():
            return path.read_text(encoding="utf-8")
    return ""


def write_all(root: Path, date: str = "") -> list[Path]:
    """Every page under ``root`` (man1/CMD.1, man5/wulf.toml.5): the build step; returns what it wrote."""
    written = []
    (root / "man1").mkdir(parents=True, exist_ok=True)
    for command in COMMANDS:
        path = root / "man1" / f"{command}.1"
        path.write_text(page(command, date), encoding="utf-8")
        written.append(path)
    example = example_config()
    if example:
        (root / "man5").mkdir(parents=True, exist_ok=True)
        path = root / "man5" / "wulf.toml.5"
        path.write_text(config_page(example, date), encoding="utf-8")
        written.append(path)
    return written


def man_parser(sub: argparse._SubParsersAction[ArgParser]) -> None:
    p = sub.add_parser("man", help="print a command's manual page, or write them all",
                       description="Prints the manual page (roff) of a wulf command, made from the same "
                                   "definitions as its --help, or of wulf.toml; with --write, writes every "
                                   "page under DIR/man1 and DIR/man5 (the wheel installs them in share/man).")
    p.add_argument("page", nargs="?", metavar="PAGE", help=f"a command ({', '.join(COMMANDS)}) or wulf.toml")
    p.add_argument("--write", metavar="DIR", help="write every page under DIR")


def cmd_man(args: argparse.Namespace, config: object) -> int:
    from wulf.errors import UsageError

    if args.write:
        for path in write_all(Path(args.write)):
            print(path)
        return 0
    if args.page in COMMANDS:
        print(page(args.page), end="")
    elif args.page == "wulf.toml" and example_config():
        print(config_page(example_config()), end="")
    else:
        raise UsageError(f"no manual page {args.page!r} (pages: {', '.join(COMMANDS)}, wulf.toml)"
                         if args.page else "name a page (e.g. `wulf man qr`), or --write DIR")
    return 0
