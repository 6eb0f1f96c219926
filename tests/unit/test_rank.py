"""The administrator's node rank expression."""

from __future__ import annotations

import ast
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wulf.errors import ConfigError
from wulf.policy.rank import DEFAULT_RANK, METRIC_HELP, METRICS, compile_rank

BRIEF = """cpus cpu_free cpu_idle cpu_user cpu_system load1 load5 load15 mem_total_mb mem_free_mb
mem_available_mb swap_total_mb swap_free_mb scratch_free_mb io_read_mbps io_write_mbps nprocs jobs"""


def test_every_metric_is_documented() -> None:
    assert METRICS == tuple(BRIEF.split())
    assert set(METRIC_HELP) == set(METRICS)
    assert all(help_text.strip() for help_text in METRIC_HELP.values())


def test_example_from_the_config() -> None:
    rank = compile_rank("mem_free_mb + 1000 * cpu_idle")
    assert rank.expr == "mem_free_mb + 1000 * cpu_idle"
    assert rank.names == ("cpu_idle", "mem_free_mb")  # in the order of METRICS
    assert rank({"mem_free_mb": 2000.0, "cpu_idle": 0.5, "jobs": 3}) == 2500.0


@pytest.mark.parametrize("expr, value", [
    ("1 + 2 * 3 - 4 / 8", 6.5),
    ("7 // 2 + 7 % 4", 6.0),
    ("2 ** 10", 1024.0),
    ("-cpus + +2", -2.0),
    ("(cpus + 1) * 2", 10.0),
    ("cpus > 2", 1.0),
    ("cpus < 2", 0.0),
    ("1 < cpus <= 4", 1.0),
    ("1 < cpus < 4", 0.0),
    ("cpus == 4 and jobs != 0", 1.0),
    ("cpus == 4 and jobs", 1.0),
    ("jobs > 5 or load1", 1.0),
    ("jobs > 5 or 0", 0.0),
    ("not jobs", 0.0),
    ("not (jobs > 5)", 1.0),
    ("min(cpus, jobs, 3)", 2.0),
    ("max(cpus, jobs)", 4.0),
    ("abs(load1 - cpus)", 3.5),
    ("log(cpus)", math.log(4)),
    ("1e3 * cpu_idle", 250.0),
])
def test_operations(expr: str, value: float) -> None:
    metrics = {"cpus": 4.0, "jobs": 2.0, "load1": 0.5, "cpu_idle": 0.25}
    assert compile_rank(expr)(metrics) == pytest.approx(value)


@pytest.mark.parametrize("expr, value", [
    ("mem_free_mb / jobs", math.inf),  # an idle node is best
    ("-mem_free_mb / jobs", -math.inf),
    ("mem_free_mb // jobs", math.inf),
    ("jobs / jobs", -math.inf),  # 0/0 is NaN: the node ranks last
    ("mem_free_mb % jobs", -math.inf),
    ("log(jobs)", -math.inf),
    ("log(-mem_free_mb)", -math.inf),
    ("jobs ** -1", math.inf),
    ("(-mem_free_mb) ** 0.5", -math.inf),
    ("10 ** 400", math.inf),
    ("(-10) ** 401", -math.inf),
    ("9 ** 9 ** 9", math.inf),
    ("1e308 * 10 - 1e308 * 10", -math.inf),  # inf - inf is NaN
])
def test_arithmetic_errors_never_raise(expr: str, value: float) -> None:
    assert compile_rank(expr)({"mem_free_mb": 100.0, "jobs": 0.0}) == value


def test_missing_metric_counts_as_zero() -> None:
    rank = compile_rank("cpu_free * 10 + jobs + 1")
    assert rank({}) == 1.0
    assert rank({"cpu_free": 2}) == 21.0  # ints are fine too


def test_compiled_once(monkeypatch: pytest.MonkeyPatch) -> None:
    rank = compile_rank("cpus * 2")

    def no_parsing(*args: object, **kwargs: object) -> None:
        raise AssertionError("parsed again")

    monkeypatch.setattr(ast, "parse", no_parsing)
    assert [rank({"cpus": float(n)}) for n in range(3)] == [0.0, 2.0, 4.0]


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as err:
        compile_rank("mem_free + 1")
    assert "unknown name 'mem_free'" in err.value.message
    assert "mem_free_mb" in err.value.message and "scratch_free_mb" in err.value.message


def test_syntax_error_quotes_the_expression() -> None:
    with pytest.raises(ConfigError, match=r"bad rank expression 'cpus \+': invalid syntax"):
        compile_rank("cpus +")


@pytest.mark.parametrize("expr", [
    "__import__('os').system('true')",
    "().__class__",
    "cpus.real",
    "cpus[0]",
    "'text'",
    "b'x'",
    "True",
    "None",
    "1j",
    "lambda: 1",
    "cpus if jobs else 1",
    "[cpus]",
    "(cpus, jobs)",
    "{cpus}",
    "cpus @ jobs",
    "cpus << 1",
    "cpus | 1",
    "~cpus",
    "cpus in (1, 2)",
    "cpus is 1",
    "(x := 1)",
    "min",
    "min(cpus)",
    "abs(cpus, jobs)",
    "log()",
    "max(*[1, 2])",
    "abs(x=1)",
    "round(cpus)",
    "cpus.__abs__()",
    "f'{cpus}'",
    "[c for c in ()]",
    "",
    "cpus; jobs",
    "1" * 400,
    "-" * 100_000 + "1",
    "+".join(["cpus"] * 50_000),
    "(" * 300 + "1" + ")" * 300,
    "cpus\0",
])
def test_rejected(expr: str) -> None:
    with pytest.raises(ConfigError) as err:
        compile_rank(expr)
    assert err.value.message.startswith("bad rank expression ")
    assert "\n" not in err.value.message
    assert len(err.value.message) < 600


# -- properties --------------------------------------------------------------------------------

values = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, -1.0, math.inf, -math.inf, math.nan, 1e308, 5e-324]),
    st.floats(),
)
leaves = st.one_of(st.sampled_from(METRICS), st.sampled_from(["0", "1", "2.5", "1e300", "3"]))


def _expressions() -> st.SearchStrategy[str]:
    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        binary = st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "//", "%", "**", "<", ">=", "==",
                                                   "and", "or"]), inner)
        return st.one_of(
            binary.map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
            inner.map(lambda e: f"(-{e})"),
            inner.map(lambda e: f"(not {e})"),
            inner.map(lambda e: f"log({e})"),
            inner.map(lambda e: f"abs({e})"),
            st.tuples(inner, inner).map(lambda t: f"min({t[0]}, {t[1]})"),
            st.tuples(inner, inner).map(lambda t: f"max({t[0]}, {t[1]})"),
        )

    return st.recursive(leaves, extend, max_leaves=12)


@given(_expressions(), st.dictionaries(st.sampled_from(METRICS), values))
def test_evaluation_never_raises_and_is_never_nan(expr: str, metrics: dict[str, float]) -> None:
    result = compile_rank(expr)(metrics)
    assert isinstance(result, float)
    assert not math.isnan(result)


safe_values = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@given(st.recursive(leaves, lambda inner: st.tuples(inner, st.sampled_from("+-*"), inner).map(
    lambda t: f"({t[0]} {t[1]} {t[2]})"), max_leaves=10),
    st.fixed_dictionaries({name: safe_values for name in METRICS}))
def test_plain_arithmetic_is_python_arithmetic(expr: str, metrics: dict[str, float]) -> None:
    expected = eval(expr, {"__builtins__": {}}, dict(metrics))
    got = compile_rank(expr)(metrics)
    if math.isnan(expected):
        assert got == -math.inf
    else:
        assert got == float(expected)


@given(st.lists(st.tuples(st.integers(0, 409_600), st.integers(0, 10**10 - 1)), min_size=2, max_size=20))
def test_default_rank_orders_by_free_cpu_then_free_memory(nodes: list[tuple[int, int]]) -> None:
    rank = compile_rank(DEFAULT_RANK)
    # free cpu in hundredths of a cpu, up to 4096 cpus; free memory in KB, up to 10 TB
    frees = [(hundredths / 100, kb / 1024) for hundredths, kb in nodes]
    by_rank = sorted(frees, key=lambda f: rank({"cpu_free": f[0], "mem_free_mb": f[1]}))
    assert by_rank == sorted(frees)


def test_default_rank_reads_only_free_cpu_and_memory() -> None:
    assert compile_rank(DEFAULT_RANK).names == ("cpu_free", "mem_free_mb")
