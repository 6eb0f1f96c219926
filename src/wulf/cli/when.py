"""Points in time as users write them on the command line (jacct -S/-E), in the local time zone.

A subset of what Slurm's sacct takes for --starttime/--endtime, chosen to be unambiguous:

- ``2026-12-01`` (that day's midnight), ``2026-12-01T10:00``, ``2026-12-01T10:00:30``, a space for the
  ``T``, and an optional ``Z`` or ``+01:00`` (else the local time zone);
- ``10:00`` or ``10:00:30``: today at that time;
- ``now``, ``today`` or ``midnight`` (00:00 today), ``yesterday`` (00:00 yesterday), ``noon`` (12:00 today);
- relative: ``now-7days``, ``now+2hours``, ``now-90`` (seconds), and the short ``-7d``, ``-12h``, ``-30m``,
  ``-2w`` (a unit is needed: ``-7`` alone is refused). Units: s, sec, second(s); m, min, minute(s);
  h, hour(s); d, day(s); w, week(s).

sacct's ``MMDD[YY]``, ``MM/DD[/YY]`` and ``MM.DD`` forms are left out: their day and month are read the
other way round in much of the world.
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta

from wulf.errors import UsageError

_UNITS = {
    "": 1, "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 7 * 86400, "week": 7 * 86400, "weeks": 7 * 86400,
}
_RELATIVE = re.compile(r"(now)?\s*([+-])\s*(\d{1,9})\s*([a-z]*)")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?(Z|[+-]\d{2}:?\d{2})?", re.IGNORECASE)
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")
FORMS = "2026-12-01, 2026-12-01T10:00, 10:00, today, yesterday, now-7days, -7d"


def parse_when(text: str, now: datetime, flag: str = "-S") -> float:
    """The Unix time ``text`` names, ``now`` being a local (aware) datetime; UsageError if it names none."""
    t = text.strip().lower()
    midnight = datetime.combine(now.date(), time(), now.tzinfo)
    named = {"now": now, "today": midnight, "midnight": midnight, "noon": midnight + timedelta(hours=12),
             "yesterday": midnight - timedelta(days=1)}
    if t in named:
        return named[t].timestamp()
    m = _RELATIVE.fullmatch(t)
    if m:
        return _relative(m, now, text, flag)
    if _DATE.fullmatch(t):
        try:
            when = datetime.fromisoformat(t.upper().replace(" ", "T"))
        except ValueError:
            raise UsageError(f"{flag}: {text!r} is not a date (examples: {FORMS})") from None
        return (when if when.tzinfo else when.replace(tzinfo=now.tzinfo)).timestamp()
    m = _CLOCK.fullmatch(t)
    if m:
        h, mi, s = int(m[1]), int(m[2]), int(m[3] or 0)
        if h > 23 or mi > 59 or s > 59:
            raise UsageError(f"{flag}: {text!r} is not a time of day (examples: 09:30, 17:00:00)")
        return (midnight + timedelta(hours=h, minutes=mi, seconds=s)).timestamp()
    raise UsageError(f"{flag}: {text!r} is not a time (examples: {FORMS})")


def _relative(m: re.Match[str], now: datetime, text: str, flag: str) -> float:
    unit = m[4]
    if unit not in _UNITS:
        raise UsageError(f"{flag}: {text!r}: unknown unit {unit!r} (s, m, h, d or w; or seconds, minutes, hours, "
                         f"days, weeks)")
    if not m[1] and not unit:
        raise UsageError(f"{flag}: {text!r} needs a unit (-7d, -12h, -30m, -2w; or now-{m[3]} for seconds)")
    seconds = int(m[3]) * _UNITS[unit]
    if seconds > 100 * 366 * 86400:
        raise UsageError(f"{flag}: {text!r} is more than a hundred years away")
    return now.timestamp() + (seconds if m[2] == "+" else -seconds)


def local_now() -> datetime:
    return datetime.now().astimezone()
