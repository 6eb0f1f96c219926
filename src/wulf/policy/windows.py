"""Night and weekend queues: when a queue of each kind may start jobs.

The config gives a time zone, a nightly span and the weekend days::

    timezone = "Europe/Berlin"   # an IANA name
    nights = "19:00-07:00"       # every day; may wrap past midnight
    weekends = ["Sat", "Sun"]

A queue's window is one of :data:`WINDOW_KINDS`:

``always``
    open all the time.
``nights``
    open during the nightly span, every day, *and all day long on weekend days*: people who wait for
    the night expect the weekend too. With the defaults that is Friday 19:00 to Monday 07:00 in one
    piece, and 19:00 to 07:00 on the other nights.
``weekends``
    open on weekend days only, from 00:00 to 24:00 local time.

Times are local wall-clock times in the configured zone, so a window follows daylight saving time: a
span that starts at 19:00 starts at 19:00 in summer and in winter, and a night across a change is an
hour shorter or longer. A boundary that falls in the hour skipped in spring is passed when the clock
jumps; one that falls in the hour repeated in autumn is passed twice (the window follows the clock).

Everything here is pure: the time is passed in as a Unix timestamp (seconds), and
:meth:`Windows.next_change` tells a server or a simulator on a virtual clock when to look again.
Windows have a resolution of one second: the state at ``t`` is the state at ``floor(t)``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from wulf.errors import ConfigError, UsageError

ALWAYS = "always"
NIGHTS = "nights"
WEEKENDS = "weekends"
WINDOW_KINDS: tuple[str, ...] = (ALWAYS, NIGHTS, WEEKENDS)

DAY_NAMES: tuple[str, ...] = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_FULL_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAYS: dict[str, int] = {
    **{name.lower(): i for i, name in enumerate(DAY_NAMES)},
    **{name: i for i, name in enumerate(_FULL_DAY_NAMES)},
}

DEFAULT_TIMEZONE = "UTC"
DEFAULT_NIGHTS = "19:00-07:00"
DEFAULT_WEEKENDS: tuple[str, ...] = ("Sat", "Sun")

_SPAN_RE = re.compile(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*")
_MINUTES_PER_DAY = 24 * 60
_HOUR = 3600
# how far ahead next_change looks: a window that changes at all changes within a week
_HORIZON = 10 * 86400


def check_kind(kind: str) -> str:
    """``kind`` if it is a window kind, else :class:`UsageError`."""
    if kind not in WINDOW_KINDS:
        raise UsageError(f"unknown window {kind!r}; use one of {', '.join(WINDOW_KINDS)}")
    return kind


@dataclass(frozen=True)
class Windows:
    """The site's night and weekend windows. Build it with :meth:`parse`."""

    timezone: str
    #: the nightly span, in minutes after local midnight; ``night_start != night_end``
    night_start: int
    night_end: int
    #: weekend days, 0 = Monday .. 6 = Sunday
    weekend_days: frozenset[int]
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for minute in (self.night_start, self.night_end):
            if not 0 <= minute < _MINUTES_PER_DAY:
                raise ConfigError(f"nights: {minute} is not a minute of the day (0..1439)")
        if self.night_start == self.night_end:
            raise ConfigError(
                "nights: start and end are the same time; give a span like 19:00-07:00 "
                "(for all day long use an 'always' queue)"
            )
        if not self.weekend_days <= frozenset(range(7)):
            raise ConfigError(f"weekends: days are 0 (Mon) to 6 (Sun), not {sorted(self.weekend_days)}")
        object.__setattr__(self, "_zone", _zone(self.timezone))

    @classmethod
    def parse(cls, timezone: str, nights: str, weekends: Sequence[str] | str) -> Windows:
        """The windows from config values; :class:`ConfigError` says which value is wrong and why.

        ``weekends`` is a list of day names (``Mon``..``Sun`` or full names, any case), or one string
        of them separated by commas or spaces. An empty list means no weekend days: ``weekends``
        queues then never open.
        """
        start, end = _parse_span(nights)
        return cls(timezone.strip(), start, end, _parse_days(weekends))

    @classmethod
    def default(cls) -> Windows:
        return cls.parse(DEFAULT_TIMEZONE, DEFAULT_NIGHTS, DEFAULT_WEEKENDS)

    @property
    def nights(self) -> str:
        return f"{_hhmm(self.night_start)}-{_hhmm(self.night_end)}"

    @property
    def weekends(self) -> tuple[str, ...]:
        return tuple(DAY_NAMES[d] for d in sorted(self.weekend_days))

    def describe(self, kind: str) -> str:
        """One line for people, e.g. ``nights 19:00-07:00 and all day Sat, Sun (Europe/Berlin)``."""
        days = ", ".join(self.weekends) or "no days"
        if check_kind(kind) == ALWAYS:
            return "always"
        if kind == WEEKENDS:
            return f"weekends: all day {days} ({self.timezone})"
        extra = f" and all day {days}" if self.weekend_days else ""
        return f"nights {self.nights}{extra} ({self.timezone})"

    def open(self, kind: str, when: float) -> bool:
        """Whether a queue with window ``kind`` may start jobs at time ``when``."""
        if check_kind(kind) == ALWAYS:
            return True
        local = datetime.fromtimestamp(math.floor(when), self._zone)
        weekend = local.weekday() in self.weekend_days
        if kind == WEEKENDS or weekend:
            return weekend
        minute = local.hour * 60 + local.minute
        if self.night_start < self.night_end:
            return self.night_start <= minute < self.night_end
        return minute >= self.night_start or minute < self.night_end

    def next_change(self, kind: str, when: float) -> float | None:
        """The first moment after ``when`` at which :meth:`open` changes; None if it never does."""
        if self._constant(check_kind(kind)):
            return None
        state = self.open(kind, when)
        for moment in self._candidates(math.floor(when)):
            if moment > when and self.open(kind, moment) != state:
                return float(moment)
        return None  # pragma: no cover - every window that is not constant changes within a week

    def _constant(self, kind: str) -> bool:
        days = len(self.weekend_days)
        if kind == ALWAYS:
            return True
        if kind == WEEKENDS:
            return days in (0, 7)
        return days == 7

    def _candidates(self, start: int) -> list[int]:
        """Every moment in (start, start + horizon] where open() may change, in order.

        open() depends on the local weekday and time of day, which change at a wall-clock boundary
        (midnight, the span's start or end; an ambiguous one twice) or when the clock jumps.
        """
        end = start + _HORIZON
        moments = set(self._transitions(start, end))
        first = datetime.fromtimestamp(start, self._zone).date() - timedelta(days=1)
        last = datetime.fromtimestamp(end, self._zone).date() + timedelta(days=1)
        minutes = (0, self.night_start, self.night_end)
        for day in _days(first, last):
            for minute in minutes:
                wall = datetime.combine(day, time(minute // 60, minute % 60), self._zone)
                moments.add(int(wall.timestamp()))
                moments.add(int(wall.replace(fold=1).timestamp()))
        return sorted(m for m in moments if start < m <= end)

    def _transitions(self, start: int, end: int) -> Iterator[int]:
        """The moments in [start, end] at which the zone's offset from UTC changes.

        The offset is sampled hourly (no zone changes its offset twice within an hour) and each change
        is narrowed down to the second.
        """
        before = start - _HOUR
        offset = self._offset(before)
        for t in range(start, end + _HOUR, _HOUR):
            new = self._offset(t)
            if new != offset:
                lo, hi = before, t  # offset(lo) == offset, offset(hi) == new
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    if self._offset(mid) == offset:
                        lo = mid
                    else:
                        hi = mid
                yield hi
                offset = new
            before = t

    def _offset(self, t: int) -> timedelta | None:
        return datetime.fromtimestamp(t, self._zone).utcoffset()


def _days(first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError, OSError):
        raise ConfigError(
            f"timezone: unknown time zone {name!r}; use an IANA name like 'UTC' or 'Europe/Berlin'"
        ) from None


def _parse_span(text: str) -> tuple[int, int]:
    match = _SPAN_RE.fullmatch(text)
    if match is None:
        raise ConfigError(f"nights: {text!r} is not a span like 19:00-07:00 (HH:MM-HH:MM)")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    start, end = _minute(text, h1, m1), _minute(text, h2, m2)
    if start == end:
        raise ConfigError(
            f"nights: {text!r} starts and ends at the same time; give a span like 19:00-07:00 "
            "(for all day long use an 'always' queue)"
        )
    return start, end


def _minute(text: str, hour: int, minute: int) -> int:
    if minute > 59 or hour > 24 or (hour == 24 and minute > 0):
        raise ConfigError(f"nights: {text!r} has a time that is not 00:00..24:00")
    return (hour * 60 + minute) % _MINUTES_PER_DAY


def _parse_days(weekends: Sequence[str] | str) -> frozenset[int]:
    names = re.split(r"[\s,]+", weekends.strip()) if isinstance(weekends, str) else list(weekends)
    days: set[int] = set()
    for name in names:
        if isinstance(weekends, str) and not name:
            continue
        day = _DAYS.get(str(name).strip().lower())
        if day is None:
            raise ConfigError(
                f"weekends: unknown day {name!r}; use {', '.join(DAY_NAMES)} (or full names)"
            )
        days.add(day)
    return frozenset(days)


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"
