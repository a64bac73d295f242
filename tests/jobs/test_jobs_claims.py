"""Two schedulers racing over the same due jobs (a restart overlapping the old process): each has its own
Store on the same database (SQLite file or PostgreSQL database) and its own clock, and both tick at once,
on two threads. Every (job, instant) fires exactly once: the claim is one store transaction. A stale
scheduler, loaded before the others fired, cannot fire an instant already claimed."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

from tests.jobs.scheduler_support import (
    T0,
    Clock,
    make_job,
    open_store,
    reconcile,
    runs_of,
    scheduled_at,
    scheduler,
)

from runyard.controller.jobs.scheduler import Scheduler
from runyard.core.resources import Job

JOBS = 12
MINUTES = 4


def tick_together(*scheds: Scheduler) -> None:
    """Each scheduler's tick on its own thread, released at the same moment, until none has more due."""
    barrier = threading.Barrier(len(scheds))
    errors: list[BaseException] = []

    def go(sched: Scheduler) -> None:
        try:
            barrier.wait()
            while sched.tick():
                pass
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(s,)) for s in scheds]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors


def test_two_schedulers_fire_each_instant_once(store_url):
    stores = [open_store(store_url), open_store(store_url)]
    first = stores[0]
    names = [f"race-{i}" for i in range(JOBS)]
    for name in names:
        make_job(first, name, schedule="* * * * *")
        reconcile(first, None, name, T0)
    clocks = [Clock(T0), Clock(T0)]
    scheds = [scheduler(s, c) for s, c in zip(stores, clocks, strict=True)]
    stale = scheduler(stores[1], Clock(T0))  # loaded now, before anything fired
    for sched in (*scheds, stale):
        sched.load()
    for minute in range(1, MINUTES + 1):
        # their clocks differ a little, as two hosts' do
        clocks[0].set(T0 + timedelta(minutes=minute, milliseconds=100))
        clocks[1].set(T0 + timedelta(minutes=minute, milliseconds=350))
        tick_together(*scheds)
    want = [(T0 + timedelta(minutes=m)).isoformat() for m in range(1, MINUTES + 1)]
    for name in names:
        assert scheduled_at(first, name) == want, name
        job = first.get(Job, "default", name)
        outcomes = Counter(f["outcome"] for f in first.job_fires(job.uid))
        assert outcomes == {"Created": MINUTES}, (name, outcomes)
    fires = [s.stats()["fires"] for s in scheds]
    assert fires[0]["Created"] + fires[1]["Created"] == JOBS * MINUTES
    assert fires[0]["Duplicate"] + fires[1]["Duplicate"] == JOBS * MINUTES  # the loser of each race

    # The stale one wakes up late: behind (10:02) it finds claimed instants, then the whole window is
    # claimed; neither makes a run. Its next instant it fires as usual.
    stale.clock.set(T0 + timedelta(minutes=2, seconds=5))  # type: ignore[attr-defined]
    while stale.tick():
        pass
    stale.clock.set(T0 + timedelta(minutes=MINUTES, seconds=30))  # type: ignore[attr-defined]
    while stale.tick():
        pass
    assert stale.stats()["fires"] == {"Created": 0, "Skipped": 0, "Missed": 0, "Duplicate": JOBS}
    assert all(len(runs_of(first, name)) == MINUTES for name in names)
    stale.clock.set(T0 + timedelta(minutes=MINUTES + 1))  # type: ignore[attr-defined]
    while stale.tick():
        pass
    assert stale.stats()["fires"]["Created"] == JOBS
    for name in names:
        assert scheduled_at(first, name) == [*want, (T0 + timedelta(minutes=MINUTES + 1)).isoformat()]
    for s in stores:
        s.close()


def test_a_stale_scheduler_after_a_missed_window_does_not_refire(store_url):
    """One scheduler collapses a missed window into its latest instant; another, loaded before, sees the
    same window and gets Duplicate, not a second run and not a Missed record."""
    a, b = open_store(store_url), open_store(store_url)
    make_job(a, "window", schedule="*/5 * * * *", startingDeadlineSeconds=3600)
    reconcile(a, None, "window", T0)
    old = scheduler(b, Clock(T0))
    old.load()
    new = scheduler(a, Clock(T0 + timedelta(minutes=31)))
    new.load()
    new.tick()
    assert scheduled_at(a, "window") == [(T0 + timedelta(minutes=30)).isoformat()]
    old.clock.set(T0 + timedelta(minutes=32))  # type: ignore[attr-defined]
    old.tick()
    job = a.get(Job, "default", "window")
    assert [f["outcome"] for f in a.job_fires(job.uid)] == ["Created"]
    assert old.stats()["fires"]["Duplicate"] == 1 and len(runs_of(a, "window")) == 1
    a.close()
    b.close()
