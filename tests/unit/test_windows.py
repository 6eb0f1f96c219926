"""Night and weekend windows."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wulf.errors import ConfigError, UsageError
from wulf.policy.windows import WINDOW_KINDS, Windows

UTC = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")
HOUR = 3600.0


def at(zone: ZoneInfo, year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0,
       fold: int = 0) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=zone, fold=fold).timestamp()


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    return at(UTC, year, month, day, hour, minute, second)


def changes(w: Windows, kind: str, start: float, end: float) -> list[float]:
    """The chain of next_change from start, up to end."""
    out: list[float] = []
    t = w.next_change(kind, start)
    while t is not None and t <= end:
        out.append(t)
        t = w.next_change(kind, t)
    return out


def test_parse_defaults() -> None:
    w = Windows.default()
    assert w == Windows.parse("UTC", "19:00-07:00", ["Sat", "Sun"])
    assert (w.timezone, w.night_start, w.night_end) == ("UTC", 19 * 60, 7 * 60)
    assert w.weekend_days == frozenset({5, 6})
    assert w.nights == "19:00-07:00"
    assert w.weekends == ("Sat", "Sun")
    assert WINDOW_KINDS == ("always", "nights", "weekends")


@pytest.mark.parametrize("nights, start, end", [
    ("19:00-07:00", 1140, 420),
    (" 7:05 - 19:30 ", 425, 1170),
    ("22:00-24:00", 1320, 0),
    ("00:00-06:00", 0, 360),
    ("23:59-00:00", 1439, 0),
])
def test_parse_nights(nights: str, start: int, end: int) -> None:
    w = Windows.parse("UTC", nights, [])
    assert (w.night_start, w.night_end) == (start, end)


@pytest.mark.parametrize("weekends, days", [
    (["sat", "SUNDAY"], {5, 6}),
    (["Fri", "Saturday", "sat"], {4, 5}),
    ([], set()),
    ("Sat, Sun", {5, 6}),
    ("Sat Sun", {5, 6}),
    ("", set()),
    (["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"], set(range(7))),
])
def test_parse_weekends(weekends: list[str] | str, days: set[int]) -> None:
    assert Windows.parse("UTC", "19:00-07:00", weekends).weekend_days == days


@pytest.mark.parametrize("timezone, nights, weekends, fragment", [
    ("Mars/Olympus", "19:00-07:00", ["Sat"], "timezone: unknown time zone 'Mars/Olympus'"),
    ("", "19:00-07:00", ["Sat"], "timezone: unknown time zone ''"),
    ("/etc/passwd", "19:00-07:00", ["Sat"], "timezone: unknown"),
    ("../../etc/passwd", "19:00-07:00", ["Sat"], "timezone: unknown"),
    ("zone.tab", "19:00-07:00", ["Sat"], "timezone: unknown"),
    ("UTC", "19-07", ["Sat"], "nights: '19-07' is not a span like 19:00-07:00"),
    ("UTC", "19:00", ["Sat"], "is not a span"),
    ("UTC", "19:00-07:00-08:00", ["Sat"], "is not a span"),
    ("UTC", "25:00-07:00", ["Sat"], "not 00:00..24:00"),
    ("UTC", "19:60-07:00", ["Sat"], "not 00:00..24:00"),
    ("UTC", "24:30-07:00", ["Sat"], "not 00:00..24:00"),
    ("UTC", "07:00-07:00", ["Sat"], "starts and ends at the same time"),
    ("UTC", "00:00-00:00", ["Sat"], "starts and ends at the same time"),
    ("UTC", "00:00-24:00", ["Sat"], "starts and ends at the same time"),
    ("UTC", "19:00-07:00", ["Samstag"], "weekends: unknown day 'Samstag'"),
    ("UTC", "19:00-07:00", ["Sa"], "unknown day 'Sa'"),
    ("UTC", "19:00-07:00", "Sat;Sun", "unknown day 'Sat;Sun'"),
])
def test_bad_config(timezone: str, nights: str, weekends: list[str] | str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        Windows.parse(timezone, nights, weekends)
    assert fragment in err.value.message
    assert "\n" not in err.value.message


def test_unknown_kind() -> None:
    w = Windows.default()
    with pytest.raises(UsageError, match="unknown window 'daytime'; use one of always, nights, weekends"):
        w.open("daytime", 0)
    with pytest.raises(UsageError):
        w.next_change("daytime", 0)


def test_nights_and_weekends_in_utc() -> None:
    w = Windows.default()
    # Wednesday 2024-05-15
    assert not w.open("nights", utc(2024, 5, 15, 12, 0))
    assert not w.open("nights", utc(2024, 5, 15, 18, 59, 59))
    assert w.open("nights", utc(2024, 5, 15, 19, 0))
    assert w.open("nights", utc(2024, 5, 16, 6, 59, 59))
    assert not w.open("nights", utc(2024, 5, 16, 7, 0))
    # the weekend is open all day for nights and weekends queues
    assert w.open("nights", utc(2024, 5, 18, 12, 0))
    assert not w.open("weekends", utc(2024, 5, 17, 23, 59, 59))
    assert w.open("weekends", utc(2024, 5, 18, 0, 0))
    assert w.open("weekends", utc(2024, 5, 19, 23, 59, 59))
    assert not w.open("weekends", utc(2024, 5, 20, 0, 0))
    assert not w.open("weekends", utc(2024, 5, 17, 22, 0))  # a weekday night is no weekend
    assert w.open("always", utc(2024, 5, 15, 12, 0))


def test_nights_run_from_friday_evening_to_monday_morning() -> None:
    w = Windows.default()
    assert changes(w, "nights", utc(2024, 5, 17, 12, 0), utc(2024, 5, 21, 0, 0)) == [
        utc(2024, 5, 17, 19, 0),
        utc(2024, 5, 20, 7, 0),
        utc(2024, 5, 20, 19, 0),
    ]


def test_a_span_within_a_day() -> None:
    w = Windows.parse("UTC", "01:00-05:00", [])
    assert not w.open("nights", utc(2024, 5, 15, 0, 59))
    assert w.open("nights", utc(2024, 5, 15, 1, 0))
    assert not w.open("nights", utc(2024, 5, 15, 5, 0))
    assert not w.open("weekends", utc(2024, 5, 18, 12, 0))  # no weekend days: never open
    assert w.next_change("nights", utc(2024, 5, 15, 3, 0)) == utc(2024, 5, 15, 5, 0)


@pytest.mark.parametrize("weekends, kind", [
    (["Sat", "Sun"], "always"),
    ([], "weekends"),
    (["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"], "weekends"),
    (["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"], "nights"),
])
def test_windows_that_never_change(weekends: list[str], kind: str) -> None:
    w = Windows.parse("Europe/Berlin", "19:00-07:00", weekends)
    assert w.next_change(kind, utc(2024, 3, 30, 12, 0)) is None


def test_fractional_times_count_by_the_second() -> None:
    w = Windows.default()
    start = utc(2024, 5, 15, 19, 0)
    assert not w.open("nights", start - 0.25)
    assert w.open("nights", start + 0.25)
    assert w.next_change("nights", start - 0.25) == start
    assert w.next_change("nights", start - 1.5) == start
    assert w.next_change("nights", start) == utc(2024, 5, 16, 7, 0)


# -- daylight saving time, Europe/Berlin: 2024-03-31 02:00 CET -> 03:00 CEST, 2024-10-27 03:00 CEST -> 02:00 CET


def test_weekend_of_the_spring_change_is_47_hours() -> None:
    w = Windows.parse("Europe/Berlin", "19:00-07:00", ["Sat", "Sun"])
    opened = w.next_change("weekends", at(BERLIN, 2024, 3, 29, 12, 0))
    assert opened == at(BERLIN, 2024, 3, 30, 0, 0) == utc(2024, 3, 29, 23, 0)
    closed = w.next_change("weekends", opened)
    assert closed == at(BERLIN, 2024, 4, 1, 0, 0) == utc(2024, 3, 31, 22, 0)
    assert closed - opened == 47 * HOUR


def test_weekend_of_the_autumn_change_is_49_hours() -> None:
    w = Windows.parse("Europe/Berlin", "19:00-07:00", ["Sat", "Sun"])
    opened = w.next_change("weekends", at(BERLIN, 2024, 10, 25, 12, 0))
    assert opened == utc(2024, 10, 25, 22, 0)
    closed = w.next_change("weekends", opened)
    assert closed == utc(2024, 10, 27, 23, 0)
    assert closed - opened == 49 * HOUR


def test_nights_keep_their_wall_clock_times_across_the_changes() -> None:
    w = Windows.parse("Europe/Berlin", "19:00-07:00", ["Sat", "Sun"])
    assert changes(w, "nights", at(BERLIN, 2024, 3, 28, 12, 0), at(BERLIN, 2024, 4, 2, 0, 0)) == [
        at(BERLIN, 2024, 3, 28, 19, 0),  # Thursday 18:00 UTC
        at(BERLIN, 2024, 3, 29, 7, 0),
        at(BERLIN, 2024, 3, 29, 19, 0),  # Friday evening, on through the weekend
        at(BERLIN, 2024, 4, 1, 7, 0),  # Monday 05:00 UTC
        at(BERLIN, 2024, 4, 1, 19, 0),
    ]
    assert at(BERLIN, 2024, 3, 29, 19, 0) == utc(2024, 3, 29, 18, 0)
    assert at(BERLIN, 2024, 4, 1, 7, 0) == utc(2024, 4, 1, 5, 0)


def test_a_night_across_a_change_is_shorter_or_longer() -> None:
    # the change falls on a Sunday; make Sunday a working day to see the night itself
    w = Windows.parse("Europe/Berlin", "01:00-06:00", ["Wed"])
    spring = changes(w, "nights", utc(2024, 3, 30, 12, 0), utc(2024, 3, 31, 12, 0))
    assert spring == [utc(2024, 3, 31, 0, 0), utc(2024, 3, 31, 4, 0)]  # 4 hours
    autumn = changes(w, "nights", utc(2024, 10, 26, 12, 0), utc(2024, 10, 27, 12, 0))
    assert autumn == [utc(2024, 10, 26, 23, 0), utc(2024, 10, 27, 5, 0)]  # 6 hours


def test_a_start_in_the_skipped_hour_opens_when_the_clock_jumps() -> None:
    w = Windows.parse("Europe/Berlin", "02:30-05:00", [])
    assert changes(w, "nights", utc(2024, 3, 30, 12, 0), utc(2024, 3, 31, 12, 0)) == [
        utc(2024, 3, 31, 1, 0),  # 01:59:59 CET -> 03:00 CEST
        utc(2024, 3, 31, 3, 0),  # 05:00 CEST
    ]
    assert not w.open("nights", utc(2024, 3, 31, 1, 0) - 1)


def test_a_span_inside_the_skipped_hour_does_not_open_that_day() -> None:
    w = Windows.parse("Europe/Berlin", "02:10-02:40", [])
    assert changes(w, "nights", utc(2024, 3, 30, 12, 0), utc(2024, 4, 1, 12, 0)) == [
        at(BERLIN, 2024, 4, 1, 2, 10),
        at(BERLIN, 2024, 4, 1, 2, 40),
    ]


def test_an_end_in_the_repeated_hour_is_passed_twice() -> None:
    w = Windows.parse("Europe/Berlin", "01:00-02:30", [])
    assert changes(w, "nights", utc(2024, 10, 26, 12, 0), utc(2024, 10, 27, 12, 0)) == [
        utc(2024, 10, 26, 23, 0),  # 01:00 CEST
        utc(2024, 10, 27, 0, 30),  # 02:30 CEST
        utc(2024, 10, 27, 1, 0),  # 03:00 CEST -> 02:00 CET: back in the span
        utc(2024, 10, 27, 1, 30),  # 02:30 CET
    ]
    assert at(BERLIN, 2024, 10, 27, 2, 30, fold=1) == utc(2024, 10, 27, 1, 30)


@pytest.mark.parametrize("nights, weekends", [
    ("19:00-07:00", ["Sat", "Sun"]),
    ("02:30-05:00", []),
    ("01:00-02:30", ["Sun"]),
    ("02:00-03:00", ["Mon"]),
    ("00:00-02:00", ["Sat"]),
    ("03:00-02:00", ["Tue", "Thu"]),
])
@pytest.mark.parametrize("kind", ["nights", "weekends"])
@pytest.mark.parametrize("start", [(2024, 3, 24), (2024, 10, 20)])
def test_next_change_agrees_with_a_minute_by_minute_scan(
    nights: str, weekends: list[str], kind: str, start: tuple[int, int, int]
) -> None:
    w = Windows.parse("Europe/Berlin", nights, weekends)
    begin = utc(*start)
    end = begin + 14 * 24 * HOUR
    scanned = []
    state = w.open(kind, begin)
    t = begin
    while t + 60 < end:  # Berlin's offsets are whole hours: every change lies on a UTC minute
        t += 60
        if w.open(kind, t) != state:
            scanned.append(t)
            state = not state
    assert changes(w, kind, begin, end - 1) == scanned


def test_describe() -> None:
    w = Windows.parse("Europe/Berlin", "19:00-07:00", ["Sat", "Sun"])
    assert w.describe("always") == "always"
    assert w.describe("nights") == "nights 19:00-07:00 and all day Sat, Sun (Europe/Berlin)"
    assert w.describe("weekends") == "weekends: all day Sat, Sun (Europe/Berlin)"
    assert Windows.parse("UTC", "1:00-5:00", []).describe("nights") == "nights 01:00-05:00 (UTC)"


# -- properties --------------------------------------------------------------------------------

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "America/Sao_Paulo", "Australia/Lord_Howe",
         "Asia/Kolkata", "Pacific/Chatham", "Pacific/Apia", "America/St_Johns", "Africa/Casablanca"]

minutes = st.integers(0, 24 * 60 - 1)
windows = st.builds(
    lambda zone, span, days: Windows(zone, span[0], span[1], frozenset(days)),
    st.sampled_from(ZONES),
    st.tuples(minutes, minutes).filter(lambda s: s[0] != s[1]),
    st.sets(st.integers(0, 6)),
)
moments = st.floats(min_value=utc(1980, 1, 1, 0, 0), max_value=utc(2037, 1, 1, 0, 0))


@given(windows, st.sampled_from(WINDOW_KINDS), moments,
       st.lists(st.floats(min_value=0, max_value=1, exclude_max=True), max_size=20))
def test_open_is_constant_until_next_change_and_flips_there(
    w: Windows, kind: str, when: float, fractions: list[float]
) -> None:
    state = w.open(kind, when)
    change = w.next_change(kind, when)
    if change is None:
        end = when + 9 * 24 * HOUR
        assert all(w.open(kind, when + f * (end - when)) == state for f in fractions)
        return
    assert when < change <= when + 8 * 24 * HOUR
    assert w.open(kind, change) != state
    assert w.open(kind, max(when, change - 0.5)) == state
    assert w.open(kind, max(when, change - 1)) == state
    for f in fractions:
        point = when + f * (change - when)
        if point < change:  # (rounding may land on it)
            assert w.open(kind, point) == state


@given(windows, moments)
def test_weekends_are_inside_nights(w: Windows, when: float) -> None:
    if w.open("weekends", when):
        assert w.open("nights", when)
    local = datetime.fromtimestamp(int(when), ZoneInfo(w.timezone))
    assert w.open("weekends", when) == (local.weekday() in w.weekend_days)


@given(st.sampled_from(ZONES), moments)
def test_default_nights_open_at_least_twelve_hours_a_day(zone: str, when: float) -> None:
    w = Windows.parse(zone, "19:00-07:00", ["Sat", "Sun"])
    day = timedelta(days=1).total_seconds()
    opened = sum(w.open("nights", when + i * 600) for i in range(int(day // 600)))
    assert opened >= 12 * 6 - 7  # 12 hours of 10-minute steps, less a possible hour lost to DST
