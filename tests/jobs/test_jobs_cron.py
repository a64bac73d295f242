"""Cron instants in real time zones across daylight-saving changes (America/New_York and Europe/Berlin):
a time the clock skips fires once, when the gap ends; a time it repeats fires once; an hourly schedule
fires in both passes of the repeated hour. Macros expand; invalid schedules and zones are refused at
parse time, naming the field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from tests.jobs.scheduler_support import (
    Clock,
    make_job,
    open_store,
    reconcile,
    scheduled_at,
    scheduler,
)

from runyard.core.cron import fires, next_fire
from runyard.core.errors import Invalid
from runyard.core.resources import parse_workload

# (zone, the spring-forward day, the fall-back day) in 2026
ZONES = [("America/New_York", (3, 8), (11, 1)), ("Europe/Berlin", (3, 29), (10, 25))]


def local_day(zone: str, month_day: tuple[int, int]) -> tuple[datetime, datetime]:
    """The instants [00:00, next 00:00) of that local day, in UTC."""
    tz = ZoneInfo(zone)
    start = datetime(2026, *month_day, tzinfo=tz)
    return start.astimezone(UTC), (start + timedelta(days=1)).replace(tzinfo=tz).astimezone(UTC)


def on_day(schedule: str, zone: str, month_day: tuple[int, int]) -> list[datetime]:
    start, end = local_day(zone, month_day)
    return [t for t in fires(schedule, zone, start - timedelta(seconds=1), end) if t < end]


def walls(instants: list[datetime], zone: str) -> list[str]:
    return [t.astimezone(ZoneInfo(zone)).strftime("%H:%M %Z") for t in instants]


@pytest.mark.parametrize(("zone", "spring", "fall"), ZONES)
def test_a_skipped_time_fires_once_when_the_gap_ends(zone, spring, fall):
    got = on_day("30 2 * * *", zone, spring)
    assert len(got) == 1
    local = got[0].astimezone(ZoneInfo(zone))
    assert (local.hour, local.minute) == (3, 0)
    # the days around it fire at 02:30 as usual
    assert walls(on_day("30 2 * * *", zone, (spring[0], spring[1] - 1)), zone)[0].startswith("02:30")
    assert walls(on_day("30 2 * * *", zone, (spring[0], spring[1] + 1)), zone)[0].startswith("02:30")
    assert len(on_day("0 * * * *", zone, spring)) == 23  # the day has 23 hours


@pytest.mark.parametrize(("zone", "spring", "fall"), ZONES)
def test_a_repeated_time_fires_once(zone, spring, fall):
    repeated = "30 1 * * *" if zone == "America/New_York" else "30 2 * * *"
    got = on_day(repeated, zone, fall)
    assert len(got) == 1
    # its first pass (still on summer time): the earlier instant of the two it names
    summer = ZoneInfo(zone).utcoffset(datetime(2026, 7, 1))
    assert got[0].astimezone(ZoneInfo(zone)).utcoffset() == summer


@pytest.mark.parametrize(("zone", "spring", "fall"), ZONES)
def test_hourly_fires_in_both_passes_of_the_repeated_hour(zone, spring, fall):
    got = on_day("0 * * * *", zone, fall)
    assert len(got) == 25 and len(set(got)) == 25  # the day has 25 hours, each fired once
    hour = "01" if zone == "America/New_York" else "02"
    repeated = [t for t in got if t.astimezone(ZoneInfo(zone)).strftime("%H") == hour]
    assert len(repeated) == 2 and repeated[1] - repeated[0] == timedelta(hours=1)
    every_15 = on_day("*/15 * * * *", zone, fall)
    assert len(every_15) == 25 * 4 and every_15 == sorted(set(every_15))


def test_macros():
    berlin = "Europe/Berlin"
    after = datetime(2026, 6, 10, 12, 5, tzinfo=UTC)
    local = lambda t: t.astimezone(ZoneInfo(berlin)).strftime("%Y-%m-%d %H:%M %a")  # noqa: E731
    assert local(next_fire("@hourly", berlin, after)) == "2026-06-10 15:00 Wed"
    assert local(next_fire("@daily", berlin, after)) == "2026-06-11 00:00 Thu"
    assert local(next_fire("@midnight", berlin, after)) == "2026-06-11 00:00 Thu"
    assert local(next_fire("@weekly", berlin, after)) == "2026-06-14 00:00 Sun"
    assert local(next_fire("@monthly", berlin, after)) == "2026-07-01 00:00 Wed"
    assert local(next_fire("@yearly", berlin, after)) == "2027-01-01 00:00 Fri"
    assert next_fire("@annually", "UTC", after) == datetime(2027, 1, 1, tzinfo=UTC)
    assert next_fire("@DAILY", "UTC", after) == datetime(2026, 6, 11, tzinfo=UTC)


def _job(**spec) -> dict:
    return {
        "apiVersion": "runyard.dev/v1",
        "kind": "Job",
        "metadata": {"name": "nightly"},
        "spec": {"template": {"command": "true"}, **spec},
    }


@pytest.mark.parametrize(
    ("spec", "field", "says"),
    [
        ({"schedule": "* * *"}, "spec.schedule", "five fields"),
        ({"schedule": "@sometimes"}, "spec.schedule", "@hourly"),
        ({"schedule": "61 * * * *"}, "spec.schedule", "not a valid cron expression"),
        ({"schedule": "0 25 * * *"}, "spec.schedule", "not a valid cron expression"),
        ({"schedule": "0 3 * * *", "timeZone": "Mars/Olympus_Mons"}, "spec.timeZone", "Mars/Olympus_Mons"),
        ({"schedule": "0 3 * * *", "timeZone": "EST5EDT6"}, "spec.timeZone", "IANA time zone"),
    ],
)
def test_invalid_schedules_and_zones_are_refused_naming_the_field(spec, field, says):
    with pytest.raises(Invalid) as caught:
        parse_workload(_job(**spec))
    details = {d.field: d.reason for d in caught.value.details}
    assert field in details, details
    assert says in details[field]


def test_valid_ones_parse():
    job = parse_workload(_job(schedule="@daily", timeZone="America/New_York"))
    assert job.spec.schedule == "@daily" and job.spec.timeZone == "America/New_York"


@pytest.mark.parametrize(("zone", "spring", "fall"), ZONES)
def test_the_scheduler_fires_a_skipped_time_once_across_the_change(tmp_path, zone, spring, fall):
    """Through the scheduler, stepping its clock a minute at a time over the spring-forward night: the
    02:30 job fires once, at 03:00 local."""
    store = open_store(f"sqlite:///{tmp_path / 'runyard.db'}")
    start, end = local_day(zone, spring)
    clock = Clock(start)
    sched = scheduler(store, clock)
    make_job(store, "nightly", schedule="30 2 * * *", timeZone=zone)
    sched.load()
    reconcile(store, sched, "nightly", start)
    while clock() < start + timedelta(hours=6):
        clock.advance(minutes=1)
        sched.tick()
    (fired,) = scheduled_at(store, "nightly")
    assert datetime.fromisoformat(fired).astimezone(ZoneInfo(zone)).strftime("%H:%M") == "03:00"
    store.close()
