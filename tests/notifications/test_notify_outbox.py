"""The outbox on a real store (SQLite and PostgreSQL): rows are written by the status write that ends a
job's run and by nothing else, once per channel however often that write is repeated; and the sender's
backoff, driven by an injected clock against a real loopback receiver."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from tests.notifications.notify_support import receiver

from runyard.core.errors import Conflict
from runyard.core.phases import Phase, Reason
from runyard.core.resources import Attempt, Job, Run, parse_workload
from runyard.services.job_notifications import NotificationSender
from runyard.settings import NotifySettings
from runyard.store import Store
from runyard.store.jobs import Fire

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def store(store_url) -> Iterator[Store]:
    s = Store(store_url)
    yield s
    s.close()


def make_job(store: Store, name: str, **notifications) -> Job:
    doc = {"apiVersion": "runyard.dev/v1", "kind": "Job", "metadata": {"name": name}}
    doc["spec"] = {"template": {"command": "true"}, "notifications": notifications}
    return store.create(parse_workload(doc))  # type: ignore[return-value]


def end(store: Store, run: Run, phase: Phase, exit_code: int | None = None) -> Run:
    run = store.get(Run, "default", run.metadata.name)
    run.status.phase = phase
    run.status.exitCode = exit_code
    run.status.startedAt, run.status.finishedAt = T0, T0 + timedelta(seconds=5)
    run.status.attempts = [Attempt(attempt=1, exitCode=exit_code)]
    return store.update_status(run)


def run_of(store: Store, job: Job, key: str = "manual:1", **fire) -> Run:
    got = store.fire_job(Fire(job, fire.pop("trigger", "manual"), key, **fire))
    assert got.run is not None, got
    return got.run


def test_a_failed_run_queues_one_row_per_channel_however_often_it_is_written(store):
    job = make_job(store, "nightly", webhook="https://hooks.example.org/x", email=["ops@example.org"])
    run = run_of(store, job, "2026-03-01T03:00:00+00:00", trigger="schedule", scheduled_at=T0)
    ended = end(store, run, Phase.FAILED, 3)
    end(store, ended, Phase.FAILED, 3)  # a second terminal write (a retried status update)
    rows = store.job_notifications(job.uid)
    assert [(r.channel, r.event, r.state) for r in rows] == [
        ("webhook", "run.failed", "pending"),
        ("email", "run.failed", "pending"),
    ]
    assert rows[0].to == "https://hooks.example.org/x" and rows[1].to == ["ops@example.org"]
    body = rows[0].payload
    assert body == rows[1].payload
    assert body["event"] == "run.failed" and body["job"] == {"project": "default", "name": "nightly"}
    assert body["run"] == {
        "name": run.metadata.name,
        "uid": run.uid,
        "phase": "Failed",
        "reason": None,
        "message": None,
        "exitCode": 3,
        "attempts": 1,
        "startedAt": "2026-03-01T12:00:00Z",
        "finishedAt": "2026-03-01T12:00:05Z",
        "trigger": "schedule",
        "scheduledAt": T0.isoformat(),
    }


def test_cancelled_runs_unwanted_outcomes_and_unowned_runs_queue_nothing(store):
    job = make_job(store, "quiet", webhook="https://hooks.example.org/x")  # onFailure only (the default)
    end(store, run_of(store, job, "manual:ok"), Phase.SUCCEEDED, 0)
    end(store, run_of(store, job, "manual:stopped"), Phase.CANCELLED)
    silent = make_job(store, "silent", webhook="https://hooks.example.org/x", onFailure=False)
    end(store, run_of(store, silent, "manual:bad"), Phase.FAILED, 1)
    bare = make_job(store, "bare")  # notifications without a channel
    end(store, run_of(store, bare, "manual:bad"), Phase.FAILED, 1)
    assert store.job_notifications(job.uid) == store.job_notifications(silent.uid) == []
    assert store.job_notifications(bare.uid) == []
    cheerful = make_job(store, "cheerful", email=["ops@example.org"], onSuccess=True)
    end(store, run_of(store, cheerful, "manual:ok"), Phase.SUCCEEDED, 0)
    assert [r.event for r in store.job_notifications(cheerful.uid)] == ["run.succeeded"]


def test_a_status_write_that_loses_its_race_queues_nothing(store):
    job = make_job(store, "racy", webhook="https://hooks.example.org/x")
    run = store.get(Run, "default", run_of(store, job).metadata.name)
    run.status.phase = Phase.FAILED
    with pytest.raises(Conflict):
        store.update_status(run, expect_version=(run.metadata.resourceVersion or 0) + 7)
    assert store.job_notifications(job.uid) == []


def test_failed_attempts_back_off_doubling_then_give_up_with_a_warning(store):
    settings = NotifySettings(max_attempts=4, backoff_seconds=10, timeout_seconds=5)
    clock = [T0]
    sender = NotificationSender(store, settings, clock=lambda: clock[0])
    with receiver(status=500) as rec:
        job = make_job(store, "flaky", webhook=rec.url)
        rec.secret = store.webhook_secret(job)
        end(store, run_of(store, job), Phase.FAILED, 1)
        waits = []
        for attempt in range(1, 5):
            (row,) = store.job_notifications(job.uid)
            clock[0] = max(clock[0], row.next_attempt_at)
            assert sender.deliver_due() == 1 and len(rec.deliveries) == attempt
            assert sender.deliver_due() == 0  # not due again yet
            (row,) = store.job_notifications(job.uid)
            waits.append((row.next_attempt_at - clock[0]).total_seconds())
        assert waits[:3] == [10, 20, 40]  # doubling; the fourth attempt was the last
        assert (row.state, row.attempts) == ("failed", 4) and "HTTP 500" in (row.last_error or "")
        clock[0] += timedelta(days=1)
        assert sender.deliver_due() == 0 and all(d.signed for d in rec.deliveries)
    (event,) = [e for e in store.events(job.uid) if e.reason == Reason.NOTIFICATION_FAILED]
    assert event.type == "Warning" and "after 4 attempts: HTTP 500" in event.message


def test_a_deleted_jobs_notifications_are_dropped_not_sent(store):
    sender = NotificationSender(store, NotifySettings(backoff_seconds=0))
    with receiver() as rec:
        job = make_job(store, "gone", webhook=rec.url, email=["ops@example.org"])
        end(store, run_of(store, job), Phase.FAILED, 1)
        store.mark_deleted(job)
        assert sender.deliver_due() == 2
        assert rec.deliveries == []
    rows = store.job_notifications(job.uid)
    assert [(r.state, r.attempts) for r in rows] == [("failed", 1), ("failed", 1)]
    assert all("was deleted" in (r.last_error or "") for r in rows)
