"""The job scheduler on a real store (SQLite and PostgreSQL) with an injected clock and no thread: the test
moves the clock and calls tick(). Fires land at their instants, a missed window fires once (or is recorded
Missed past its deadline), suspended jobs stay quiet, changes reschedule, pipelines fire in order, and a
tick's work follows what is due, not how many jobs exist."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from tests.jobs.scheduler_support import (
    T0,
    Clock,
    change_spec,
    make_job,
    open_store,
    reconcile,
    runs_of,
    scheduled_at,
    scheduler,
    succeed,
)

from runyard.controller.jobs.decide import dependency_fire, due, on_cycle, schedule_fire
from runyard.core.resources import Job, JobSpec, ObjectMeta
from runyard.store import Store
from runyard.store.jobs import Fire


@pytest.fixture
def store(store_url):
    s = open_store(store_url)
    yield s
    s.close()


def iso(t: datetime) -> str:
    return t.isoformat()


def job_events(store: Store, name: str) -> list[tuple[str, str, str]]:
    job = store.get(Job, "default", name)
    return [(e.reason, e.type, e.message) for e in store.events(job.uid)]


def test_fires_at_its_instants_and_only_then(store):
    clock = Clock(T0 + timedelta(minutes=2))  # 10:02
    sched = scheduler(store, clock)
    make_job(store, "every5", schedule="*/5 * * * *")
    sched.load()
    reconcile(store, sched, "every5", clock())
    clock.set(T0 + timedelta(minutes=4, seconds=59))
    sched.tick()
    assert scheduled_at(store, "every5") == []
    clock.set(T0 + timedelta(minutes=5))
    sched.tick()
    assert scheduled_at(store, "every5") == [iso(T0 + timedelta(minutes=5))]
    clock.advance(seconds=30)
    sched.tick()
    sched.tick()
    assert len(runs_of(store, "every5")) == 1
    clock.set(T0 + timedelta(minutes=10, milliseconds=5))
    sched.tick()
    assert scheduled_at(store, "every5") == [iso(T0 + timedelta(minutes=m)) for m in (5, 10)]
    stats = sched.stats()
    assert stats["jobs"] == 1 and stats["fires"]["Created"] == 2
    assert 0 <= stats["fireDelaySeconds"]["max"] < 1
    run = runs_of(store, "every5")[0]
    assert run.metadata.annotations["runyard.dev/trigger"] == "schedule"


def test_not_fired_before_the_reconciler_has_seen_it(store):
    """A job without status.scheduleFrom (or whose generation the reconciler has not observed) waits."""
    clock = Clock()
    make_job(store, "new", schedule="* * * * *")
    sched = scheduler(store, clock)
    sched.load()
    clock.advance(minutes=5)
    sched.tick()
    assert runs_of(store, "new") == [] and sched.stats()["jobs"] == 0
    reconcile(store, sched, "new", clock())
    clock.advance(minutes=1)
    sched.tick()
    assert len(runs_of(store, "new")) == 1


def test_a_missed_window_fires_once_for_its_latest_instant(store):
    clock = Clock(T0)
    make_job(store, "minutely", schedule="* * * * *")
    make_job(store, "often", schedule="* * * * *")
    reconcile(store, None, "minutely", T0)
    reconcile(store, None, "often", T0)
    # The controller was down from 10:00 to 10:05:20 (five instants due), and to 10:40:20 for the other.
    clock.set(T0 + timedelta(minutes=5, seconds=20))
    sched = scheduler(store, clock)
    sched.load()
    sched.tick()
    assert scheduled_at(store, "minutely") == [iso(T0 + timedelta(minutes=5))]
    missed = [m for r, t, m in job_events(store, "minutely") if r == "MissedSchedule"]
    assert len(missed) == 1 and "4 earlier fires from " + iso(T0 + timedelta(minutes=1)) in missed[0]
    assert scheduled_at(store, "often") == [iso(T0 + timedelta(minutes=5))]
    clock.set(T0 + timedelta(minutes=40, seconds=20))
    sched = scheduler(store, clock)  # a restart after a longer outage
    sched.load()
    sched.tick()
    assert scheduled_at(store, "minutely")[-1] == iso(T0 + timedelta(minutes=40))
    assert len(runs_of(store, "minutely")) == 2
    missed = [m for r, t, m in job_events(store, "minutely") if r == "MissedSchedule"]
    assert "more than 10 earlier fires from " + iso(T0 + timedelta(minutes=6)) in missed[-1]
    # and it keeps its pace afterwards
    clock.set(T0 + timedelta(minutes=41))
    sched.tick()
    assert scheduled_at(store, "minutely")[-1] == iso(T0 + timedelta(minutes=41))


def test_past_the_starting_deadline_the_fire_is_recorded_missed(store):
    clock = Clock(T0)
    make_job(store, "hourly", schedule="0 * * * *", startingDeadlineSeconds=300)
    make_job(store, "lenient", schedule="0 * * * *", startingDeadlineSeconds=900)
    reconcile(store, None, "hourly", T0)
    reconcile(store, None, "lenient", T0)
    clock.set(T0 + timedelta(hours=2, minutes=10))  # down over 11:00 and 12:00; up 600 s after 12:00
    sched = scheduler(store, clock)
    sched.load()
    sched.tick()
    assert runs_of(store, "hourly") == []
    warnings = [(t, m) for r, t, m in job_events(store, "hourly") if r == "MissedSchedule"]
    assert len(warnings) == 1 and warnings[0][0] == "Warning"
    assert (
        "past startingDeadlineSeconds 300" in warnings[0][1]
        and iso(T0 + timedelta(hours=2)) in warnings[0][1]
    )
    hourly = store.get(Job, "default", "hourly")
    history = store.job_fires(hourly.uid)
    assert [(h["outcome"], h["scheduledAt"]) for h in history] == [("Missed", T0 + timedelta(hours=2))]
    assert scheduled_at(store, "lenient") == [iso(T0 + timedelta(hours=2))]  # 600 s late, within 900
    assert sched.stats()["fires"] == {"Created": 1, "Skipped": 0, "Missed": 1, "Duplicate": 0}
    clock.set(T0 + timedelta(hours=3))  # the next instant fires as usual
    sched.tick()
    assert scheduled_at(store, "hourly") == [iso(T0 + timedelta(hours=3))]


def test_suspended_jobs_never_fire_and_resume_without_catching_up(store):
    clock = Clock(T0)
    sched = scheduler(store, clock)
    make_job(store, "up", schedule="* * * * *")
    make_job(store, "off", schedule="* * * * *", suspend=True, dependsOn=["up"])
    sched.load()
    reconcile(store, sched, "up", T0)
    reconcile(store, sched, "off", T0)
    for minute in range(1, 6):
        clock.set(T0 + timedelta(minutes=minute))
        sched.tick()
    assert len(runs_of(store, "up")) == 5
    succeed(store, runs_of(store, "up")[0])
    sched.job_succeeded(store.get(Job, "default", "up"))
    sched.tick()
    assert runs_of(store, "off") == [] and sched.stats()["jobs"] == 1
    change_spec(store, "off", suspend=False, dependsOn=[])
    reconcile(store, sched, "off", clock())  # resumed at 10:05: counts from there
    sched.tick()
    assert runs_of(store, "off") == []
    clock.set(T0 + timedelta(minutes=6))
    sched.tick()
    assert scheduled_at(store, "off") == [iso(T0 + timedelta(minutes=6))]


def test_a_changed_schedule_is_rescheduled(store):
    clock = Clock(T0 + timedelta(minutes=1))
    sched = scheduler(store, clock)
    make_job(store, "job", schedule="0 * * * *")
    sched.load()
    reconcile(store, sched, "job", clock())
    sched.tick()
    assert sched._next[store.get(Job, "default", "job").uid] == T0 + timedelta(hours=1)
    clock.set(T0 + timedelta(minutes=3))
    change_spec(store, "job", schedule="*/10 * * * *")
    reconcile(store, sched, "job", clock())
    clock.set(T0 + timedelta(minutes=10))
    sched.tick()
    clock.set(T0 + timedelta(minutes=20))
    sched.tick()
    assert scheduled_at(store, "job") == [iso(T0 + timedelta(minutes=10)), iso(T0 + timedelta(minutes=20))]
    change_spec(store, "job", schedule=None)  # no schedule any more: out of the heap
    reconcile(store, sched, "job", clock())
    clock.set(T0 + timedelta(hours=5))
    sched.tick()
    assert len(runs_of(store, "job")) == 2 and sched.stats()["jobs"] == 0
    sched.forget(store.get(Job, "default", "job").uid)
    sched.tick()
    assert sched._jobs == {}


def test_a_pipeline_fires_in_order_and_fan_in_waits_for_all(store):
    clock = Clock(T0)
    sched = scheduler(store, clock)
    make_job(store, "a", schedule="0 * * * *")
    make_job(store, "b", dependsOn=["a"])
    make_job(store, "c", dependsOn=["b"])
    make_job(store, "x")
    make_job(store, "fanin", dependsOn=["a", "x"])
    sched.load()
    for name in ("a", "b", "c", "x", "fanin"):
        reconcile(store, sched, name, T0)
    clock.set(T0 + timedelta(hours=1))
    sched.tick()
    (a1,) = runs_of(store, "a")
    sched.job_succeeded(store.get(Job, "default", "a"))  # not yet: nothing succeeded
    sched.tick()
    assert runs_of(store, "b") == []
    succeed(store, a1)
    sched.job_succeeded(store.get(Job, "default", "a"))
    sched.tick()
    (b1,) = runs_of(store, "b")
    assert b1.metadata.annotations["runyard.dev/trigger"] == "dependency"
    assert runs_of(store, "c") == [] and runs_of(store, "fanin") == []  # c waits for b, fanin for x
    sched.job_succeeded(store.get(Job, "default", "a"))  # told twice: b still fires once
    sched.tick()
    assert len(runs_of(store, "b")) == 1
    succeed(store, b1)
    sched.job_succeeded(store.get(Job, "default", "b"))
    sched.tick()
    assert len(runs_of(store, "c")) == 1
    x1 = store.fire_job(Fire(store.get(Job, "default", "x"), "manual", "manual:k1")).run
    assert x1 is not None
    succeed(store, x1)
    sched.job_succeeded(store.get(Job, "default", "x"))
    sched.tick()
    assert len(runs_of(store, "fanin")) == 1
    # a runs again: b follows, fanin waits for x to succeed again
    clock.set(T0 + timedelta(hours=2))
    sched.tick()
    succeed(store, [r for r in runs_of(store, "a") if r.uid != a1.uid][0])
    sched.job_succeeded(store.get(Job, "default", "a"))
    sched.tick()
    assert len(runs_of(store, "b")) == 2 and len(runs_of(store, "fanin")) == 1


def test_a_restarted_scheduler_fires_waiting_dependents_once(store):
    clock = Clock(T0)
    make_job(store, "up")
    make_job(store, "down", dependsOn=["up"])
    for name in ("up", "down"):
        reconcile(store, None, name, T0)
    run = store.fire_job(Fire(store.get(Job, "default", "up"), "manual", "manual:1")).run
    assert run is not None
    succeed(store, run)  # and the controller died before telling the scheduler
    for _ in range(2):
        sched = scheduler(store, clock)
        sched.load()
        sched.tick()
    assert len(runs_of(store, "down")) == 1


def test_a_dependency_cycle_never_fires(store):
    clock = Clock(T0)
    make_job(store, "p", dependsOn=["q"])
    make_job(store, "q", dependsOn=["p"])
    sched = scheduler(store, clock)
    sched.load()
    for name in ("p", "q"):
        job = reconcile(store, sched, name, T0)
        run = store.fire_job(Fire(job, "manual", f"manual:{name}")).run
        assert run is not None
        succeed(store, run)
    for name in ("p", "q"):
        sched.job_succeeded(store.get(Job, "default", name))
    sched.tick()
    assert [len(runs_of(store, n)) for n in ("p", "q")] == [1, 1]  # only the manual ones


def test_tick_work_follows_what_is_due_not_how_many_jobs(store):
    """One due job among 3 or among 300: the same cron steps and fire_job calls per tick; none at all
    when nothing is due."""
    clock = Clock(T0)
    make_job(store, "due", schedule="5 * * * *")
    work = []
    for total in (3, 300):
        for i in range(len(store.list(Job)), total):
            make_job(store, f"quiet-{i}", schedule="30 * * * *")
        for job in store.list(Job):
            reconcile(store, None, job.metadata.name, T0)
        clock.set(T0 + timedelta(minutes=1))
        sched = scheduler(store, clock)
        sched.load()
        assert sched.stats()["jobs"] == total
        sched.tick()
        before = dict(sched.work)
        clock.set(T0 + timedelta(minutes=4))
        sched.tick()
        assert dict(sched.work) == before  # nothing due: no work
        clock.set(T0 + timedelta(minutes=5))
        sched.tick()
        work.append({k: sched.work[k] - before.get(k, 0) for k in ("next_fire", "fire_job")})
        # the next test round starts again from 10:00
        for name in ("due",):
            job = store.get(Job, "default", name)
            store.forget_job(job.uid)
        for run in runs_of(store, "due"):
            store.delete(run.uid)
    assert work[0] == work[1] == {"next_fire": 1, "fire_job": 1}  # the next instant; the fire


# The pure decisions, with no store at all.


def _job(**spec) -> Job:
    spec.setdefault("template", {"command": "true"})
    return Job(
        metadata=ObjectMeta(name="j", uid="u1", creationTimestamp=T0), spec=JobSpec.model_validate(spec)
    )


def test_due_windows():
    at = T0 + timedelta(minutes=3)
    w = due("* * * * *", "UTC", T0, at)
    assert (w.latest, w.earlier, w.exact, w.following, w.first) == (
        at,
        2,
        True,
        at + timedelta(minutes=1),
        T0 + timedelta(minutes=1),
    )
    assert due("* * * * *", "UTC", T0, T0 + timedelta(seconds=59)).latest is None
    long = due("* * * * *", "UTC", T0, T0 + timedelta(days=3, seconds=1))
    assert long.latest == T0 + timedelta(days=3) and not long.exact
    sparse = due("0 0 1 1 *", "UTC", T0, datetime(2031, 6, 1, tzinfo=UTC))
    assert sparse.latest == datetime(2031, 1, 1, tzinfo=UTC) and sparse.earlier == 4


def test_schedule_fire_decisions():
    job = _job(schedule="* * * * *", startingDeadlineSeconds=30)
    on_time = schedule_fire(
        job, due("* * * * *", "UTC", T0, T0 + timedelta(minutes=1)), T0 + timedelta(minutes=1)
    )
    assert on_time is not None and on_time.missed is None and on_time.events == []
    assert on_time.key == (T0 + timedelta(minutes=1)).isoformat()
    now = T0 + timedelta(minutes=1, seconds=31)
    late = schedule_fire(job, due("* * * * *", "UTC", T0, now), now)
    assert late is not None and late.missed and "31s late" in late.missed
    unbounded = _job(schedule="* * * * *")
    now = T0 + timedelta(hours=1, seconds=50)
    fire = schedule_fire(unbounded, due("* * * * *", "UTC", T0, now), now)
    assert fire is not None and fire.missed is None and fire.scheduled_at == T0 + timedelta(hours=1)
    assert "more than 10 earlier fires" in fire.events[0][1]


def test_dependency_decisions():
    job = _job(dependsOn=["a", "b"])
    after = T0 + timedelta(minutes=1)
    assert dependency_fire(job, {"a": ("r1", after), "b": None}, T0) is None
    assert dependency_fire(job, {"a": ("r1", after), "b": ("r2", T0)}, T0) is None  # b: before `since`
    fire = dependency_fire(job, {"a": ("r1", after), "b": ("r2", after)}, T0)
    again = dependency_fire(job, {"b": ("r2", after), "a": ("r1", after)}, T0)
    assert fire is not None and again is not None and fire.key == again.key and fire.key.startswith("after:")
    assert len(fire.key) == len("after:") + 32
    graph = {"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}
    assert on_cycle("a", lambda n: graph.get(n, []))
    assert not on_cycle("d", lambda n: graph.get(n, []))


def test_the_thread_wakes_for_due_instants_on_a_fast_clock(store):
    """Its own thread, on a clock 60 times faster than real time (a minute a second): each minute fires
    soon after its instant, though the thread never sleeps a whole (warped) minute; stop() ends it."""
    origin = time.monotonic()
    start = T0 + timedelta(seconds=30)
    sched = scheduler(store, Clock(start))
    sched.clock = lambda: start + timedelta(seconds=(time.monotonic() - origin) * 60)
    make_job(store, "fast", schedule="* * * * *")
    sched.start()
    reconcile(store, sched, "fast", start)
    deadline = time.monotonic() + 30
    while len(runs_of(store, "fast")) < 3:
        assert time.monotonic() < deadline, sched.stats()
        time.sleep(0.05)
    sched.stop()
    assert sched._thread is not None and not sched._thread.is_alive()
    fired = scheduled_at(store, "fast")
    assert fired[:3] == [iso(T0 + timedelta(minutes=m)) for m in (1, 2, 3)]
    stats = sched.stats()
    assert stats["jobs"] == 1 and stats["fires"]["Created"] >= 3
    assert stats["fireDelaySeconds"]["max"] < 30  # warped seconds: under half a real second late
