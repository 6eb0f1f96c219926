"""Manual pages, examples in --help, and shell completion: all made from the commands' own parsers."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from wulf.cli import completion, manpage

REPO = Path(__file__).resolve().parents[2]
PARSERS = [p for c in manpage.COMMANDS for p in manpage.walk(manpage.parser_of(c))]


@pytest.mark.parametrize("parser", PARSERS, ids=[p.prog for p in PARSERS])
def test_every_help_has_examples(parser: object) -> None:
    text = parser.format_help()  # type: ignore[attr-defined]
    assert re.search(r"^\s*examples:", text, re.IGNORECASE | re.MULTILINE), text


def test_every_installed_command_has_a_page() -> None:
    scripts = re.findall(r'^([\w-]+) = "wulf\.cli', (REPO / "pyproject.toml").read_text(), re.MULTILINE)
    assert sorted(scripts) == sorted(manpage.COMMANDS)


@pytest.mark.parametrize("command", [*manpage.COMMANDS, "wulf.toml"])
def test_pages_render_with_man(command: str, tmp_path: Path) -> None:
    text = manpage.page(command) if command != "wulf.toml" else manpage.config_page(manpage.example_config())
    path = tmp_path / f"{command}.1"
    path.write_text(text)
    p = subprocess.run(["man", "--warnings", "-l", str(path)], capture_output=True, text=True,
                       env={**os.environ, "MANWIDTH": "100", "MAN_KEEP_FORMATTING": "0", "PAGER": "cat"})
    assert p.returncode == 0 and p.stderr == "", p.stderr
    out = re.sub(r".\x08", "", p.stdout)  # no bold or underline by overstriking
    assert "NAME" in out and "EXAMPLES" in out if command != "wulf.toml" else "purge_scratch_hours" in out
    if command == "qr":
        assert "--mem MB" in out and "memory the job needs" in out  # the parser's own words
    if command == "wulf":
        assert "wulf purge-scratch" in out and "--dry-run" in out  # and its subcommands'


def test_the_shipped_pages_are_up_to_date(tmp_path: Path) -> None:
    manpage.write_all(tmp_path)
    made = {p.relative_to(tmp_path): p.read_text() for p in tmp_path.rglob("*.[15]")}
    shipped = {p.relative_to(REPO / "man"): p.read_text() for p in (REPO / "man").rglob("*.[15]")}
    assert made.keys() == shipped.keys()
    stale = [str(k) for k in made if made[k] != shipped[k]]
    assert not stale, f"man/ is out of date: run ./dev man ({stale})"


def test_wulf_man_prints_a_page_and_refuses_an_unknown_one() -> None:
    wulf = str(Path(sys.executable).parent / "wulf")
    p = subprocess.run([wulf, "man", "jstat"], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.startswith(".TH JSTAT 1")
    p = subprocess.run([wulf, "man", "nosuch"], capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "no manual page" in p.stderr


def _complete(script: Path, *words: str) -> list[str]:
    """What bash completes for ``words`` (the last one is being typed), with the script sourced."""
    array = " ".join(f"'{w}'" for w in words)
    probe = (f"source {script}; COMP_WORDS=({array}); COMP_CWORD={len(words) - 1}; "
             f"_wulf_complete; printf '%s\\n' \"${{COMPREPLY[@]}}\"")
    p = subprocess.run(["bash", "--norc", "--noprofile", "-c", probe], capture_output=True, text=True)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    return p.stdout.split()


def test_bash_completion_loads_and_completes(tmp_path: Path) -> None:
    script = tmp_path / "wulf.bash"
    script.write_text(completion.script("bash"))
    p = subprocess.run(["bash", "--norc", "--noprofile", "-c", f"source {script} && complete -p qr wulf jstat"],
                       capture_output=True, text=True)
    assert p.returncode == 0 and p.stderr == "" and "_wulf_complete qr" in p.stdout, p.stdout + p.stderr
    assert _complete(script, "wulf", "pu") == ["purge-scratch"]
    assert "--dry-run" in _complete(script, "wulf", "purge-scratch", "--d")
    assert _complete(script, "wulf", "token", "cr") == ["create"]
    assert _complete(script, "/usr/bin/qr", "--me") == ["--mem", "--mem-limit"]
    assert _complete(script, "jstat", "--que") == ["--queue", "--queues"]


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_other_shells_scripts_load(shell: str, tmp_path: Path) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    script = tmp_path / f"wulf.{shell}"
    script.write_text(completion.script(shell))
    probe = {"zsh": "whence -w _wulf_complete", "fish": "complete -C 'wulf pu'"}[shell]
    p = subprocess.run([shell, "-c", f"source {script}; {probe}"], capture_output=True, text=True)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    assert {"zsh": "_wulf_complete: function", "fish": "purge-scratch"}[shell] in p.stdout
