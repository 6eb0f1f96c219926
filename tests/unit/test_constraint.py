"""Node constraints: ``qr --constraint EXPR``."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wulf.errors import UsageError
from wulf.policy.constraint import Constraint, Term, parse_constraint

NODE = {"arch": "x86_64", "os": "linux", "name": "node7", "hostname": "node7.example.org",
        "cpus": "16", "mem_mb": "64000", "kernel": "6.1.0-13-amd64"}
FEATURES = frozenset({"bigmem", "ssd"})


def matches(text: str, attrs: dict[str, str] = NODE, features: frozenset[str] = FEATURES) -> bool:
    return parse_constraint(text).matches(attrs, features)


@pytest.mark.parametrize("text, expected", [
    ("bigmem", True),
    ("gpu", False),
    ("!gpu", True),
    ("!bigmem", False),
    ("arch=x86_64", True),
    ("arch=aarch64", False),
    ("arch!=aarch64", True),
    ("arch!=x86_64", False),
    ("kernel=6.1.0-13-amd64", True),
    ("hostname=node7.example.org", True),
    ("cpus>=16", True),
    ("cpus>=17", False),
    ("cpus>15.5", True),
    ("cpus>16", False),
    ("cpus<=16", True),
    ("cpus<16", False),
    ("mem_mb>=64000", True),
    ("mem_mb>=6.4e4", True),
    ("mem_mb>=64001", False),
    ("bigmem,cpus>=8", True),
    ("bigmem,cpus>=32", False),
    ("gpu|ssd", True),
    ("gpu|cpus>=32", False),
])
def test_terms(text: str, expected: bool) -> None:
    assert matches(text) is expected


def test_comma_binds_tighter_than_bar() -> None:
    # a,b|c = (a and b) or c
    assert matches("gpu,bigmem|ssd")
    assert not matches("gpu,bigmem|tape")
    assert matches("tape|bigmem,ssd")
    assert not matches("bigmem|tape,gpu", {}, frozenset())
    c = parse_constraint("a,b|c")
    assert c.alternatives == ((Term("a", "has"), Term("b", "has")), (Term("c", "has"),))


def test_missing_or_non_numeric_attribute_never_matches() -> None:
    assert not matches("gpus>=0")
    assert not matches("gpus<1")
    assert not matches("arch>=1")  # not a number
    assert not matches("site=lab")
    # != needs the attribute to be there, too: a node that does not say its site is not "not lab"
    assert not matches("site!=lab")


def test_whitespace_is_ignored_around_terms_and_operators() -> None:
    assert parse_constraint("  bigmem , cpus >= 8 |  ! gpu ") == parse_constraint("bigmem,cpus>=8|!gpu")


def test_empty_matches_everything() -> None:
    for text in ("", "   "):
        c = parse_constraint(text)
        assert c == Constraint.ANY
        assert c.is_any
        assert c.matches({}, frozenset())
        assert str(c) == ""
    assert not parse_constraint("bigmem").is_any


def test_canonical_text() -> None:
    c = parse_constraint(" ssd , mem_mb>=64000.0 | !gpu,arch != arm,load<0.5 ")
    assert str(c) == "ssd,mem_mb>=64000|!gpu,arch!=arm,load<0.5"
    assert parse_constraint(str(c)) == c


def test_constraints_hash_as_cache_keys() -> None:
    assert len({parse_constraint("a,b"), parse_constraint(" a , b"), parse_constraint("b,a")}) == 2


@pytest.mark.parametrize("text, column, fragment", [
    ("a,,b", 3, "a term is missing"),
    ("a|", 3, "a term is missing"),
    (",a", 1, "a term is missing"),
    ("cpus>=x", 1, "'cpus>=x'): >= needs a number"),
    ("cpus>=inf", 1, ">= needs a number"),
    ("cpus>=", 1, ">= needs a number"),
    ("ssd, =x", 6, "'=x'): not a term"),
    ("bigmem|a b", 8, "'a b'): not a term"),
    ("x=", 1, "the value after = is missing"),
    ("x=a b", 1, "the value after = must be"),
    ("!a=b", 1, "not a term"),
    ("big$mem", 1, "not a term"),
    ("cpus=>8", 1, "the value after = must be"),
])
def test_errors_say_where_and_what(text: str, column: int, fragment: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_constraint(text)
    message = err.value.message
    assert f"column {column}" in message
    assert fragment in message
    assert "FEATURE, !FEATURE, KEY=VALUE" in message
    assert "\n" not in message


# -- properties --------------------------------------------------------------------------------

names = st.text(alphabet="abcxyz019_.-", min_size=1, max_size=6)
numbers = st.one_of(
    st.integers(-10**6, 10**6).map(float),
    st.floats(allow_nan=False, allow_infinity=False),
)
terms = st.one_of(
    st.builds(Term, names, st.sampled_from(["has", "lacks"])),
    st.builds(Term, names, st.sampled_from(["=", "!="]), names),
    st.builds(Term, names, st.sampled_from([">=", "<=", ">", "<"]), numbers),
)
constraints = st.lists(st.lists(terms, min_size=1, max_size=4).map(tuple), min_size=1, max_size=4).map(
    lambda alts: Constraint(tuple(alts))
)
attr_values = st.one_of(names, numbers.map(repr), st.integers(-100, 100).map(str))


@given(constraints)
def test_canonical_text_parses_back_to_an_equal_constraint(c: Constraint) -> None:
    text = str(c)
    assert parse_constraint(text) == c
    assert str(parse_constraint(text)) == text


@given(constraints, st.dictionaries(names, attr_values), st.frozensets(names))
def test_matches_is_any_alternative_with_all_terms(
    c: Constraint, attrs: dict[str, str], features: frozenset[str]
) -> None:
    def term_holds(t: Term) -> bool:
        if t.op in ("has", "lacks"):
            return (t.key in features) == (t.op == "has")
        if t.key not in attrs:
            return False
        if t.op in ("=", "!="):
            return (attrs[t.key] == t.value) == (t.op == "=")
        try:
            have = float(attrs[t.key])
        except ValueError:
            return False
        want = float(t.value)
        return {">=": have >= want, "<=": have <= want, ">": have > want, "<": have < want}[t.op]

    expected = any(all(term_holds(t) for t in alt) for alt in c.alternatives)
    assert c.matches(attrs, features) is expected
    assert parse_constraint(str(c)).matches(attrs, features) is expected


@given(st.text(alphabet="ab1=!<>|, .x-", max_size=20))
def test_any_text_parses_or_raises_usage_error(text: str) -> None:
    try:
        c = parse_constraint(text)
    except UsageError:
        return
    assert parse_constraint(str(c)) == c
