"""Shell completion for every wulf command, made from the same parsers as ``--help`` (wulf.cli.manpage):
``wulf completion bash|zsh|fish`` prints a script to source."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from wulf.cli.common import ArgParser
from wulf.cli.manpage import COMMANDS, parser_of, subcommands, walk

SHELLS = ("bash", "zsh", "fish")


def _words(parser: argparse.ArgumentParser) -> list[str]:
    """What may come next under ``parser``: its options and its subcommands."""
    words = [s for a in parser._actions for s in a.option_strings]
    return words + [name for name, _, _ in subcommands(parser)]


def _quote(word: str) -> str:
    return "'" + word.replace("'", "'\\''") + "'"


def bash() -> str:
    """A bash script: the words of each (sub)command in one table, and one function that finds which
    (sub)command the cursor is in; file names where no word fits."""
    cases = []
    for command in COMMANDS:
        for parser in walk(parser_of(command)):
            cases.append(f"    {_quote(parser.prog)}) _wulf_words={_quote(' '.join(_words(parser)))} ;;")
    table = "\n".join(cases)
    return f"""# wulf shell completion for bash (`source <(wulf completion bash)`)
_wulf_words_of() {{
  _wulf_words=
  case "$1" in
{table}
    *) return 1 ;;
  esac
}}

_wulf_complete() {{
  local cur="${{COMP_WORDS[COMP_CWORD]}}" key="${{COMP_WORDS[0]##*/}}" w i
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="${{COMP_WORDS[i]}}"
    case "$w" in -*) continue ;; esac
    _wulf_words_of "$key $w" && key="$key $w"
  done
  _wulf_words_of "$key" || return 0
  COMPREPLY=($(compgen -W "$_wulf_words" -- "$cur"))
}}

complete -o default -o bashdefault -F _wulf_complete {' '.join(COMMANDS)}
"""


def zsh() -> str:
    """zsh runs the bash script through its bash-completion emulation."""
    return ("#compdef " + " ".join(COMMANDS) + "\n# wulf shell completion for zsh (`source <(wulf completion zsh)`)\n"
            "(( $+functions[compdef] )) || { autoload -U +X compinit && compinit -u }\n"
            "autoload -U +X bashcompinit && bashcompinit\n" + bash())


def _fish_line(command: str, condition: str, invocation: Sequence[str], text: str) -> str:
    parts = [f"complete -c {command}"]
    if condition:
        parts.append(f"-n {_quote(condition)}")
    for opt in invocation:
        parts.append(f"-l {opt[2:]}" if opt.startswith("--") else f"-s {opt[1:]}")
    if text:
        parts.append(f"-d {_quote(' '.join(text.split())[:80])}")
    return " ".join(parts)


def fish() -> str:
    lines = ["# wulf shell completion for fish (`wulf completion fish | source`)"]
    for command in COMMANDS:
        root = parser_of(command)
        lines += _fish_options(command, root, "")
        for name, text, sub in subcommands(root):
            lines.append(f"complete -c {command} -f -n '__fish_use_subcommand' -a {_quote(name)}"
                         + (f" -d {_quote(' '.join(text.split())[:80])}" if text else ""))
            lines += _fish_options(command, sub, f"__fish_seen_subcommand_from {name}")
            for subname, subtext, subsub in subcommands(sub):
                lines.append(f"complete -c {command} -f -n {_quote(f'__fish_seen_subcommand_from {name}')} "
                             f"-a {_quote(subname)}" + (f" -d {_quote(subtext[:80])}" if subtext else ""))
                lines += _fish_options(command, subsub, f"__fish_seen_subcommand_from {subname}")
    return "\n".join(lines) + "\n"


def _fish_options(command: str, parser: argparse.ArgumentParser, condition: str) -> list[str]:
    lines = []
    for action in parser._actions:
        if action.option_strings and action.help != argparse.SUPPRESS:
            lines.append(_fish_line(command, condition, action.option_strings, action.help or ""))
    return lines


def script(shell: str) -> str:
    return {"bash": bash, "zsh": zsh, "fish": fish}[shell]()


def completion_parser(sub: argparse._SubParsersAction[ArgParser]) -> None:
    p = sub.add_parser("completion", help="print a shell completion script for every wulf command",
                       description="Prints a script that completes the options and subcommands of every wulf "
                                   "command (wulf, qr, jr, jstat, ...) in bash, zsh or fish.")
    p.add_argument("shell", choices=SHELLS)


def cmd_completion(args: argparse.Namespace, config: object) -> int:
    print(script(args.shell), end="")
    return 0
