"""Node ranking: the administrator's expression that says which node is best (larger is better).

In the config, e.g. ``rank = "mem_free_mb + 1000 * cpu_idle"``. An expression may use:

- numbers and the metric names in :data:`METRICS` (see :data:`METRIC_HELP`);
- ``+ - * / // % **``, unary ``+``/``-`` and parentheses;
- comparisons ``< <= > >= == !=`` (chains too) and ``and``, ``or``, ``not``, which give 1 or 0;
- the functions ``min(a, b, ...)``, ``max(a, b, ...)``, ``abs(x)`` and ``log(x)`` (natural log).

Nothing else: no other names, attributes, subscripts, strings, keyword arguments or lambdas.

Evaluation never raises, so that a bad node can't stop the scheduler. Arithmetic follows IEEE 754:
``x / 0`` is ``+inf`` or ``-inf`` by the sign of ``x`` (so ``mem_free_mb / jobs`` puts an idle node
first), ``0 / 0``, ``x % 0`` and ``log`` of a negative number are NaN, ``log(0)`` is ``-inf``, and an
overflow is infinite. A result that is NaN counts as ``-inf``: the node ranks last. A metric missing
from a node's report counts as 0.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from wulf.errors import ConfigError

METRIC_HELP: dict[str, str] = {
    "cpus": "number of cpus of the node",
    "cpu_free": "cpus not taken by wulf allocations or by observed use (the larger of the two counts)",
    "cpu_idle": "fraction 0..1 of the machine's cpu time that is idle",
    "cpu_user": "fraction 0..1 of the machine's cpu time spent in user mode",
    "cpu_system": "fraction 0..1 of the machine's cpu time spent in the kernel",
    "load1": "load average over 1 minute",
    "load5": "load average over 5 minutes",
    "load15": "load average over 15 minutes",
    "mem_total_mb": "physical memory, MB",
    "mem_free_mb": "memory not taken by wulf allocations or by observed use (wulf's accounting), MB",
    "mem_available_mb": "memory the kernel reports as available (MemAvailable), MB",
    "swap_total_mb": "swap space, MB",
    "swap_free_mb": "unused swap space, MB",
    "scratch_free_mb": "free space on the scratch disk, MB",
    "io_read_mbps": "disk reads, MB per second",
    "io_write_mbps": "disk writes, MB per second",
    "nprocs": "number of processes on the node",
    "jobs": "number of wulf jobs running on the node",
}

#: the names a rank expression may use
METRICS: tuple[str, ...] = tuple(METRIC_HELP)

#: The default ranking, as the placement always did: most free cpu first, then most free memory.
#: One hundredth of a cpu weighs as much as 10 TB (1e7 MB) of memory, so for nodes with less free
#: memory than that and free cpu in hundredths, this orders exactly like comparing
#: ``(cpu_free, mem_free_mb)`` pairs; a double still resolves memory to better than a KB with up
#: to 4,000 free cpus.
DEFAULT_RANK = "cpu_free * 1e9 + mem_free_mb"

_INF = math.inf


def _div(a: float, b: float) -> float:
    if b == 0:
        if a == 0 or a != a:
            return math.nan
        return math.copysign(_INF, a) * math.copysign(1.0, b)
    return a / b


def _floordiv(a: float, b: float) -> float:
    if b == 0:
        return _div(a, b)
    return a // b


def _mod(a: float, b: float) -> float:
    if b == 0:
        return math.nan
    return a % b


def _pow(a: float, b: float) -> float:
    try:
        return math.pow(a, b)
    except OverflowError:
        odd = b.is_integer() and b % 2 == 1
        return -_INF if a < 0 and odd else _INF
    except ValueError:  # 0 ** negative, or a negative base with a fractional exponent
        return _INF if a == 0 else math.nan


def _log(x: float) -> float:
    if x > 0:
        return math.log(x)
    return -_INF if x == 0 else math.nan


def _truth(x: object) -> float:
    return 1.0 if x else 0.0


def _all(*values: float) -> float:
    return 1.0 if all(values) else 0.0


def _any(*values: float) -> float:
    return 1.0 if any(values) else 0.0


# name in the expression -> (name in the compiled code, allowed argument counts: min, max or None)
_FUNCTIONS: dict[str, tuple[str, int, int | None]] = {
    "min": ("_min", 2, None),
    "max": ("_max", 2, None),
    "abs": ("_abs", 1, 1),
    "log": ("_log", 1, 1),
}
_BINOPS: dict[type[ast.operator], str | None] = {
    ast.Add: None,
    ast.Sub: None,
    ast.Mult: None,
    ast.Div: "_div",
    ast.FloorDiv: "_floordiv",
    ast.Mod: "_mod",
    ast.Pow: "_pow",
}
_COMPARE_OPS = (ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Eq, ast.NotEq)
_GLOBALS: dict[str, Any] = {
    "__builtins__": {},
    "_div": _div,
    "_floordiv": _floordiv,
    "_mod": _mod,
    "_pow": _pow,
    "_log": _log,
    "_min": min,
    "_max": max,
    "_abs": abs,
    "_truth": _truth,
    "_all": _all,
    "_any": _any,
}


@dataclass(frozen=True)
class Rank:
    """A compiled rank expression: call it with a node's metrics to get its rank (larger is better)."""

    expr: str
    #: the metric names the expression uses, in the order of :data:`METRICS`
    names: tuple[str, ...]
    _fn: Callable[..., float] = field(repr=False, compare=False)

    def __call__(self, metrics: Mapping[str, float]) -> float:
        get = metrics.get
        try:
            value = float(self._fn(*[float(get(name, 0.0)) for name in self.names]))
        except (ArithmeticError, ValueError, TypeError):  # not expected: the operations are guarded
            return -_INF
        return -_INF if value != value else value


def compile_rank(expr: str) -> Rank:
    """Check ``expr`` and compile it once; :class:`ConfigError` when it is not a valid rank."""
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        reason = e.msg if isinstance(e, SyntaxError) else "cannot be parsed"
        raise ConfigError(f"bad rank expression {_quote(expr)}: {reason}") from None
    try:
        return _compile(expr, tree.body)
    except RecursionError:
        raise ConfigError(f"bad rank expression {_quote(expr)}: nested too deeply") from None


def _compile(expr: str, tree: ast.expr) -> Rank:
    used: set[str] = set()
    body = _Converter(expr, used).convert(tree)
    names = tuple(name for name in METRICS if name in used)
    args = ast.arguments(
        posonlyargs=[], args=[ast.arg(arg=n) for n in names], kwonlyargs=[], kw_defaults=[], defaults=[]
    )
    lam = ast.Expression(body=ast.Lambda(args=args, body=body))
    ast.fix_missing_locations(lam)
    # the tree holds only float constants, the metric names (the lambda's arguments) and the guarded
    # helpers of _GLOBALS, so evaluating it can do nothing but arithmetic
    fn = eval(compile(lam, "<rank>", "eval"), dict(_GLOBALS))
    return Rank(expr, names, fn)


class _Converter:
    """Checks an expression's tree and rewrites it into safe operations on floats."""

    def __init__(self, expr: str, used: set[str]) -> None:
        self.expr = expr
        self.used = used

    def fail(self, what: str) -> ConfigError:
        return ConfigError(
            f"bad rank expression {_quote(self.expr)}: {what}; allowed are numbers, metric names, "
            "+ - * / // % **, comparisons, and/or/not, min(), max(), abs() and log()"
        )

    def convert(self, node: ast.expr) -> ast.expr:
        if isinstance(node, ast.Constant):
            return self.constant(node)
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.BinOp):
            return self.binop(node)
        if isinstance(node, ast.UnaryOp):
            return self.unaryop(node)
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.BoolOp):
            fn = "_all" if isinstance(node.op, ast.And) else "_any"
            return _call(fn, [self.convert(v) for v in node.values])
        if isinstance(node, ast.Call):
            return self.call(node)
        raise self.fail(f"{_source(node)} is not allowed")

    def constant(self, node: ast.Constant) -> ast.expr:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(f"{_source(node)} is not a number")
        try:
            return ast.Constant(float(value))
        except OverflowError:
            raise self.fail(f"{_source(node)} is too large") from None

    def name(self, node: ast.Name) -> ast.expr:
        if node.id not in METRIC_HELP:
            if node.id in _FUNCTIONS:
                raise self.fail(f"{node.id} must be called")
            raise ConfigError(
                f"bad rank expression {_quote(self.expr)}: unknown name {node.id!r}; "
                f"known are {', '.join(METRICS)}"
            )
        self.used.add(node.id)
        return ast.Name(node.id, ast.Load())

    def binop(self, node: ast.BinOp) -> ast.expr:
        op_type = type(node.op)
        if op_type not in _BINOPS:
            raise self.fail(f"operator in {_source(node)} is not allowed")
        left, right = self.convert(node.left), self.convert(node.right)
        fn = _BINOPS[op_type]
        if fn is None:
            return ast.BinOp(left, node.op, right)
        return _call(fn, [left, right])

    def unaryop(self, node: ast.UnaryOp) -> ast.expr:
        operand = self.convert(node.operand)
        if isinstance(node.op, ast.Not):
            return ast.BinOp(ast.Constant(1.0), ast.Sub(), _call("_truth", [operand]))
        if isinstance(node.op, ast.UAdd | ast.USub):
            return ast.UnaryOp(node.op, operand)
        raise self.fail(f"operator in {_source(node)} is not allowed")

    def compare(self, node: ast.Compare) -> ast.expr:
        if not all(isinstance(op, _COMPARE_OPS) for op in node.ops):
            raise self.fail(f"comparison in {_source(node)} is not allowed")
        return _call(
            "_truth",
            [ast.Compare(self.convert(node.left), node.ops, [self.convert(c) for c in node.comparators])],
        )

    def call(self, node: ast.Call) -> ast.expr:
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
            raise self.fail(f"call {_source(node.func)} is not allowed")
        name = node.func.id
        fn, least, most = _FUNCTIONS[name]
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise self.fail(f"{name}() takes plain arguments only")
        count = len(node.args)
        if count < least or (most is not None and count > most):
            wanted = f"{least}" if least == most else f"at least {least}"
            raise self.fail(f"{name}() takes {wanted} argument{'s' if least > 1 else ''}, not {count}")
        return _call(fn, [self.convert(a) for a in node.args])


def _call(fn: str, args: list[ast.expr]) -> ast.expr:
    return ast.Call(ast.Name(fn, ast.Load()), args, [])


def _source(node: ast.AST) -> str:
    """The node's text, quoted (and shortened when long)."""
    return _quote(ast.unparse(node))


def _quote(expr: str) -> str:
    return repr(expr if len(expr) <= 80 else expr[:77] + "...")
