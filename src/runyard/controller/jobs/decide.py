"""What the scheduler decides, as pure functions of a job, its fire state and the time: which instant a
schedule fires for (once for a missed window, or recorded Missed past the deadline), and whether a job's
dependencies are ready. No thread, no store: tests drive them with any clock."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from runyard.core import cron
from runyard.core.phases import Reason
from runyard.core.resources import Job
from runyard.store.base import EventSpec
from runyard.store.jobs import Fire

NextFire = Callable[[str, str, datetime], datetime]
COUNT_CAP = 10  # missed instants counted one by one; past this the event says "more than" (a long outage
# of a minutely job must not cost thousands of cron steps per job)
LATE_AFTER = timedelta(seconds=30)  # a lone fire this late says so in an event (the controller was down)


@dataclass(frozen=True)
class Window:
    """The instants due in (baseline, now]: the latest, how many came before it, and the next one after."""

    latest: datetime | None  # None: nothing is due yet
    earlier: int  # instants before `latest` in the window (at most COUNT_CAP when not `exact`)
    exact: bool
    following: datetime  # the first instant after now: when to look again
    first: datetime | None = None  # the earliest instant due


def due(
    schedule: str,
    tz: str,
    baseline: datetime,
    now: datetime,
    next_fire: NextFire = cron.next_fire,
    first: datetime | None = None,
) -> Window:
    """The due window of a schedule fired up to `baseline` (exclusive); `first`: its first instant after
    the baseline, when known. Costs one cron step when one instant is due (two without `first`), a few
    more after an outage of any length."""
    if first is None:
        first = next_fire(schedule, tz, baseline)
    if first > now:
        return Window(None, 0, True, first)
    latest, earlier = first, 0
    while True:
        t = next_fire(schedule, tz, latest)
        if t > now:
            return Window(latest, earlier, True, t, first)
        if earlier == COUNT_CAP:
            break
        latest, earlier = t, earlier + 1
    # Many were missed: find the latest from `now` backwards, widening the look-back, instead of walking
    # every missed instant.
    span = timedelta(minutes=1)
    while True:
        t = next_fire(schedule, tz, max(baseline, now - span))
        if t <= now:
            break
        span *= 4
    while True:
        following = next_fire(schedule, tz, t)
        if following > now:
            return Window(t, earlier, False, following, first)
        t = following


def schedule_fire(job: Job, window: Window, now: datetime) -> Fire | None:
    """The fire for a due window: the latest instant, once; recorded Missed (with a Warning) when it is
    already later than startingDeadlineSeconds allows."""
    at = window.latest
    if at is None:
        return None
    late = (now - at).total_seconds()
    key = at.isoformat()
    deadline = job.spec.startingDeadlineSeconds
    count = f"{window.earlier}" if window.exact else f"more than {window.earlier}"
    earlier = f" (and {count} earlier)" if window.earlier else ""
    if deadline is not None and late > deadline:
        msg = (
            f"missed the fire at {key}{earlier}: it is {late:.0f}s late, past startingDeadlineSeconds "
            f"{deadline}; skipped (the next is at {window.following.isoformat()})"
        )
        return Fire(job, "schedule", key, at, missed=msg)
    events: list[EventSpec] = []
    if window.earlier and window.first is not None:
        events.append(
            (
                Reason.MISSED_SCHEDULE,
                f"{count} earlier fires from {window.first.isoformat()} were missed (the controller was "
                f"down); fired once, for {key}",
                "Warning",
            )
        )
    elif late > LATE_AFTER.total_seconds():
        events.append((Reason.MISSED_SCHEDULE, f"the fire at {key} is made {late:.0f}s late", "Warning"))
    return Fire(job, "schedule", key, at, events=events)


def dependency_key(run_uids: Iterable[str]) -> str:
    """Names a dependency fire by the upstream runs it follows: the same runs never fire it twice."""
    return "after:" + hashlib.sha256(",".join(sorted(run_uids)).encode()).hexdigest()[:32]


def dependency_fire(
    job: Job, upstream: Mapping[str, tuple[str, datetime] | None], since: datetime
) -> Fire | None:
    """A fire when every dependency (name -> its latest success: run uid, finishedAt) succeeded after
    `since` (the job's creation, or its last fire after its dependencies); else None."""
    runs = []
    for name in job.spec.dependsOn:
        latest = upstream.get(name)
        if latest is None or latest[1] <= since:
            return None
        runs.append(latest[0])
    return Fire(job, "dependency", dependency_key(runs))


def on_cycle(name: str, depends_on: Callable[[str], Iterable[str]]) -> bool:
    """Whether job `name` depends on itself through its dependencies (`depends_on(name)`: the names it
    depends on, within its project)."""
    seen: set[str] = set()
    stack = list(depends_on(name))
    while stack:
        current = stack.pop()
        if current == name:
            return True
        if current in seen:
            continue
        seen.add(current)
        stack.extend(depends_on(current))
    return False
