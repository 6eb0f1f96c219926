"""Node constraints: which nodes a job may run on (``qr --constraint EXPR``).

An expression is terms joined by ``,`` (and) or ``|`` (or); ``,`` binds tighter, so ``a,b|c`` means
(a and b) or c. A term is one of::

    bigmem          the node has the feature
    !bigmem         the node lacks the feature
    arch=x86_64     the attribute has this value (a missing attribute never matches)
    os!=linux       the attribute is set and has another value
    cpus>=8         numeric comparison (also <=, >, <); false when the attribute is
                    missing or not a number

Names and values are ``[A-Za-z0-9_.-]+``; numbers are decimal (``8``, ``0.5``, ``1e3``). Whitespace
around terms and operators is ignored. The empty expression matches every node.

A parsed :class:`Constraint` keeps its terms in disjunctive normal form, compiled once into small
predicates, so :meth:`Constraint.matches` is cheap; ``str(c)`` is a canonical text that parses back to
an equal constraint.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass, field
from typing import ClassVar, TypeAlias

from wulf.errors import UsageError

_NAME = r"[A-Za-z0-9_.-]+"
_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_FEATURE_RE = re.compile(rf"(?P<neg>!)?\s*(?P<key>{_NAME})")
_COMPARE_RE = re.compile(rf"(?P<key>{_NAME})\s*(?P<op>!=|>=|<=|=|>|<)\s*(?P<value>\S.*)?")
_NAME_RE = re.compile(_NAME)
_NUMBER_RE = re.compile(_NUMBER)

#: the term kinds besides the numeric comparisons
HAS = "has"
LACKS = "lacks"
NUMERIC_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}
STRING_OPS = ("=", "!=")

_SYNTAX = (
    "a term is FEATURE, !FEATURE, KEY=VALUE, KEY!=VALUE or KEY>=N (also <=, >, <), "
    "joined by ',' (and) or '|' (or)"
)

Attrs: TypeAlias = Mapping[str, str]
Features: TypeAlias = Set[str]
Predicate: TypeAlias = Callable[[Attrs, Features], bool]


@dataclass(frozen=True, slots=True)
class Term:
    """One test on a node: ``op`` is ``has``, ``lacks``, ``=``, ``!=``, ``>=``, ``<=``, ``>`` or ``<``."""

    key: str
    op: str
    value: str | float = ""

    def __str__(self) -> str:
        if self.op == HAS:
            return self.key
        if self.op == LACKS:
            return f"!{self.key}"
        value = _format_number(self.value) if isinstance(self.value, float) else self.value
        return f"{self.key}{self.op}{value}"

    def predicate(self) -> Predicate:
        key, op, value = self.key, self.op, self.value
        if op == HAS:
            return lambda attrs, features: key in features
        if op == LACKS:
            return lambda attrs, features: key not in features
        if op == "=":
            return lambda attrs, features: attrs.get(key) == value
        if op == "!=":
            return lambda attrs, features: key in attrs and attrs[key] != value
        compare, number_value = NUMERIC_OPS[op], float(value)

        def numeric(attrs: Attrs, features: Features) -> bool:
            number = _number(attrs.get(key))
            return number is not None and compare(number, number_value)

        return numeric


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def _format_number(value: float) -> str:
    """A text that reads back as the same float and matches the number syntax."""
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


@dataclass(frozen=True)
class Constraint:
    """A parsed constraint: any of ``alternatives`` matches when all of its terms do.

    ``Constraint.ANY`` (one empty alternative) matches every node.
    """

    alternatives: tuple[tuple[Term, ...], ...]
    _compiled: tuple[tuple[Predicate, ...], ...] = field(
        init=False, repr=False, compare=False, hash=False
    )

    ANY: ClassVar[Constraint]

    def __post_init__(self) -> None:
        compiled = tuple(tuple(term.predicate() for term in alt) for alt in self.alternatives)
        object.__setattr__(self, "_compiled", compiled)

    @property
    def is_any(self) -> bool:
        return any(not alt for alt in self.alternatives)

    def matches(self, attrs: Attrs, features: Features) -> bool:
        """Whether a node with these attributes and features satisfies the constraint."""
        for alt in self._compiled:
            for test in alt:
                if not test(attrs, features):
                    break
            else:
                return True
        return False

    def __str__(self) -> str:
        return "|".join(",".join(str(term) for term in alt) for alt in self.alternatives)


Constraint.ANY = Constraint(((),))


def parse_constraint(text: str) -> Constraint:
    """Parse ``qr --constraint`` text; :class:`UsageError` names the column and term that are wrong."""
    if not text.strip():
        return Constraint.ANY
    alternatives: list[tuple[Term, ...]] = []
    column = 1
    for alt_text in text.split("|"):
        terms: list[Term] = []
        for term_text in alt_text.split(","):
            terms.append(_parse_term(term_text, column))
            column += len(term_text) + 1
        alternatives.append(tuple(terms))
    return Constraint(tuple(alternatives))


def _parse_term(raw: str, column: int) -> Term:
    text = raw.strip()
    column += len(raw) - len(raw.lstrip())
    if not text:
        raise _error(column, "", "a term is missing (two separators in a row, or one at an end)")
    match = _FEATURE_RE.fullmatch(text)
    if match:
        return Term(match["key"], LACKS if match["neg"] else HAS)
    match = _COMPARE_RE.fullmatch(text)
    if match is None:
        raise _error(column, text, "not a term")
    key, op, value = match["key"], match["op"], (match["value"] or "").strip()
    if op in STRING_OPS:
        if not _NAME_RE.fullmatch(value):
            problem = "is missing" if not value else "must be [A-Za-z0-9_.-]+"
            raise _error(column, text, f"the value after {op} {problem}")
        return Term(key, op, value)
    number = float(value) if _NUMBER_RE.fullmatch(value) else math.nan
    if not math.isfinite(number):
        raise _error(column, text, f"{op} needs a number")
    return Term(key, op, number)


def _error(column: int, term: str, reason: str) -> UsageError:
    where = f"column {column} ({term!r})" if term else f"column {column}"
    return UsageError(f"bad constraint at {where}: {reason}; {_SYNTAX}")
