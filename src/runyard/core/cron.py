"""Cron schedules in a time zone, correct across daylight-saving changes.

croniter walks wall-clock times (naive, in the job's zone); each is mapped here to the instants it names:
- A time the clock skips (02:30 on a day 02:00 jumps to 03:00) fires once, when the gap ends (03:00), as
  Vixie cron and cronie do.
- A time the clock repeats (01:30 on a day 02:00 falls back to 01:00) fires once, at its first occurrence;
  only a schedule whose hour field is `*` (it runs every hour) fires in both passes of the repeated hour,
  since each of them is a real hour.
Instants are UTC; two wall times naming one instant fire once.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_LOOKBACK = timedelta(hours=3)  # longer than any zone's repeated span: a fold's second pass is not missed


def expand(schedule: str) -> str:
    """The five fields a schedule stands for (macros expanded)."""
    return MACROS.get(schedule.strip().lower(), schedule.strip())


@functools.lru_cache(maxsize=4096)
def schedule_error(schedule: str) -> str | None:
    """Why a schedule is not a valid five-field cron expression or macro, or None."""
    expr = expand(schedule)
    if len(expr.split()) != 5:
        macros = ", ".join(sorted(MACROS))
        return f"{schedule!r} must have five fields (minute hour day month weekday) or be one of {macros}"
    if not croniter.is_valid(expr):
        return f"{schedule!r} is not a valid cron expression (five fields: minute hour day month weekday)"
    return None


@functools.lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`; raises ValueError naming it when unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"{name!r} is not a known IANA time zone (e.g. 'UTC', 'Europe/Berlin')") from None


@functools.lru_cache(maxsize=4096)
def _every_hour(expr: str) -> bool:
    return expr.split()[1] == "*"


def _instants(wall: datetime, tz: ZoneInfo, every_hour: bool) -> list[datetime]:
    """The UTC instants a wall-clock time names in `tz`: none skipped, one or (in a repeat) one or two."""
    first = wall.replace(tzinfo=tz, fold=0)
    u0 = first.astimezone(UTC)
    if u0.astimezone(tz).replace(tzinfo=None) != wall:  # skipped by a gap: fire when the gap ends
        return [_gap_end(wall, tz, u0)]
    second = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if second != u0 and every_hour:
        return [u0, second]
    return [u0]


def _gap_end(wall: datetime, tz: ZoneInfo, after_gap: datetime) -> datetime:
    """The first instant whose wall time is past `wall` (a skipped time): where the clock jumps."""
    lo = after_gap - timedelta(hours=3)  # before the gap: its wall time is earlier than `wall`
    hi = after_gap
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        if mid.astimezone(tz).replace(tzinfo=None) > wall:
            hi = mid
        else:
            lo = mid
    return hi.replace(microsecond=0)


def next_fire(schedule: str, tz_name: str, after: datetime) -> datetime:
    """The first instant strictly after `after` at which the schedule fires."""
    expr, tz = expand(schedule), zone(tz_name)
    if tz_name == "UTC":  # no daylight saving: croniter's own walk is the answer
        start = after.astimezone(UTC).replace(tzinfo=None)
        return croniter(expr, start).get_next(datetime).replace(tzinfo=UTC)
    every_hour = _every_hour(expr)
    wall_after = after.astimezone(tz).replace(tzinfo=None)
    walk = croniter(expr, wall_after - _LOOKBACK)
    best: datetime | None = None
    while True:
        wall = walk.get_next(datetime)
        instants = _instants(wall, tz, every_hour)
        if best is not None and instants[0] >= best:
            return best  # the first instants only grow with wall time: nothing later can be sooner
        for u in instants:
            if u > after and (best is None or u < best):
                best = u


def fires(schedule: str, tz_name: str, after: datetime, until: datetime | None = None) -> Iterator[datetime]:
    """The instants after `after` (and at most `until`), in order."""
    t = after
    while True:
        t = next_fire(schedule, tz_name, t)
        if until is not None and t > until:
            return
        yield t


def next_fires(schedule: str, tz_name: str, after: datetime, count: int) -> list[datetime]:
    it = fires(schedule, tz_name, after)
    return [next(it) for _ in range(count)]
