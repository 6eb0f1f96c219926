"""Splitting a directive line's words into options and values, as each system's qsub/sbatch does."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from wulf.compat.request import DirectiveError

Arity = Literal["none", "value", "optional", "pair"]


@dataclass(frozen=True)
class Opt:
    name: str  # the canonical name, e.g. "time"
    arity: Arity = "value"


@dataclass(frozen=True)
class Item:
    written: str  # the option as written: "--time", "-t", "-l"
    name: str  # canonical
    value: str | None


def getopt_long(ws: list[str], short: Mapping[str, Opt], long: Mapping[str, Opt]) -> Iterator[Item]:
    """GNU getopt_long as sbatch uses it: ``--opt=value``, ``--opt value``, ``-o value``, ``-ovalue``.
    An unknown option yields an Item named "" (its value, if written with '=', kept)."""
    i = 0
    while i < len(ws):
        w = ws[i]
        i += 1
        if w.startswith("--") and len(w) > 2:
            key, eq, value = w[2:].partition("=")
            opt = long.get(key)
            if opt is None:
                yield Item("--" + key, "", value if eq else None)
                continue
            if opt.arity == "none":
                if eq:
                    raise DirectiveError(f"--{key} takes no value (not {value!r})")
                yield Item("--" + key, opt.name, None)
            elif eq or opt.arity == "optional":
                yield Item("--" + key, opt.name, value if eq else None)
            else:
                if i >= len(ws):
                    raise DirectiveError(f"--{key} needs a value")
                yield Item("--" + key, opt.name, ws[i])
                i += 1
        elif w.startswith("-") and len(w) > 1:
            yield from _short(w, ws, i, short)
            opt = short.get(w[1])
            if opt is not None and opt.arity == "value" and len(w) == 2:
                i += 1
        else:
            yield Item(w, "", None)  # a word that is no option: unknown


def _short(w: str, ws: list[str], i: int, short: Mapping[str, Opt]) -> Iterator[Item]:
    letter = w[1]
    opt = short.get(letter)
    if opt is None:
        yield Item(w, "", None)
    elif opt.arity == "none":
        if len(w) > 2:
            raise DirectiveError(f"-{letter} takes no value (not {w[2:]!r})")
        yield Item("-" + letter, opt.name, None)
    elif len(w) > 2:
        yield Item("-" + letter, opt.name, w[2:])
    elif opt.arity == "optional":
        yield Item("-" + letter, opt.name, None)
    elif i >= len(ws):
        raise DirectiveError(f"-{letter} needs a value")
    else:
        yield Item("-" + letter, opt.name, ws[i])


def whole_words(ws: list[str], options: Mapping[str, Opt], attached: bool = False) -> Iterator[Item]:
    """Options that are whole words (Grid Engine's ``-cwd``, ``-pe smp 4``; PBS's ``-l x``), each
    followed by its value as the next word (``attached``: a one-letter option may carry it, ``-lnodes=2``).
    Unknown options yield an Item named ""."""
    i = 0
    while i < len(ws):
        w = ws[i]
        i += 1
        opt = options.get(w)
        if opt is None and attached and len(w) > 2 and w[:2] in options and options[w[:2]].arity == "value":
            yield Item(w[:2], options[w[:2]].name, w[2:])
            continue
        if opt is None:
            yield Item(w, "", None)
        elif opt.arity == "none":
            yield Item(w, opt.name, None)
        else:
            n = 2 if opt.arity == "pair" else 1
            if i + n > len(ws):
                raise DirectiveError(f"{w} needs {'two values' if n == 2 else 'a value'}")
            yield Item(w, opt.name, " ".join(ws[i:i + n]))
            i += n
