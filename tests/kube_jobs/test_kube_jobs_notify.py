"""Job notifications on a cluster: a job's Run that ends is queued in the platform database's outbox (as
locally) and the leading controller posts it, signed with the job's secret from that database; a restart
sends nothing twice, and a delivery given up is a Warning event on the Job.

The API server is a fake (kmock's KubernetesEmulator, extended: tests/kube/emulator.py) because no real
kube-apiserver can run here; the module runs unchanged against a real cluster when KUBECONFIG names one.
The webhook receiver is a real HTTP server on loopback, and the outbox a real SQLite database."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from tests.kube_jobs.harness import Clock, View, controller, set_leading, settle
from tests.kube_operator.harness import wait_for
from tests.notifications.notify_support import Receiver, receiver

from runyard.controller.kube.jobs import scheduled_run_name
from runyard.core.resources import Job
from runyard.settings import NotifySettings
from runyard.store import Store

T0 = datetime(2026, 3, 2, 10, 2, tzinfo=UTC)
FAST = NotifySettings(backoff_seconds=0.1, timeout_seconds=5, max_attempts=2)


def fired(view: View, ctl, clock: Clock, job: str) -> str:
    """Move the clock past the job's next minute; the name of the Run it fired."""
    clock.t = T0.replace(minute=3, second=1)
    ctl.wake()
    name = scheduled_run_name(job, T0.replace(minute=3))
    wait_for(name, lambda: name in [r.metadata.name for r in view.runs(job)])
    return name


def hooked(view: View, outbox: Store, rec: Receiver, name: str) -> Job:
    """A job firing every minute, notifying `rec` on failure; `rec` checks what GET …/webhook-secret says."""
    job = view.apply_job(name, schedule="* * * * *", notifications={"webhook": rec.url})
    view.wait_status(name, lambda j: j.status.scheduleFrom is not None)
    rec.secret = outbox.webhook_secret(job)
    return job


def test_a_failed_run_is_posted_once_signed_with_the_jobs_secret(kube, namespace, tmp_path: Path):
    view, clock = View(kube, namespace), Clock(T0)
    outbox = Store(f"sqlite:///{tmp_path / 'runyard.db'}")
    with receiver(fail_first=1) as rec:
        with controller(kube, namespace, clock, outbox=outbox, notify=FAST) as ctl:
            job = hooked(view, outbox, rec, "nightly")
            run = fired(view, ctl, clock, "nightly")
            view.finish(run, "Failed", datetime.now(UTC))
            wait_for("the delivery taken", lambda: len(rec.deliveries) == 2)  # the first got a 500
        first, again = rec.deliveries
        assert first.signed and again.signed
        assert first.headers["x-runyard-delivery"] == again.headers["x-runyard-delivery"]
        assert again.json["event"] == "run.failed"
        assert again.json["job"] == {"project": namespace, "name": "nightly"}
        assert again.json["run"]["name"] == run and again.json["run"]["phase"] == "Failed"
        (row,) = outbox.job_notifications(job.uid)
        assert row.state == "sent"

        with controller(kube, namespace, clock, outbox=outbox, notify=FAST) as ctl:  # a restart
            settle(ctl)  # every job looked at again: nothing is queued again
            assert ctl.sender is not None and ctl.sender.deliver_due() == 0  # one pass now: nothing is due
        assert len(rec.deliveries) == 2 and len(outbox.job_notifications(job.uid)) == 1


def test_only_the_leader_sends_and_a_success_needs_on_success(kube, namespace, tmp_path: Path):
    view, clock = View(kube, namespace), Clock(T0)
    outbox = Store(f"sqlite:///{tmp_path / 'runyard.db'}")
    with receiver() as rec:
        with controller(kube, namespace, clock, outbox=outbox, notify=FAST) as ctl:
            hooks = {"webhook": rec.url}
            quiet = view.apply_job("quiet", schedule="* * * * *", notifications=hooks)
            loud = view.apply_job("loud", schedule="* * * * *", notifications={**hooks, "onSuccess": True})
            for name in ("quiet", "loud"):
                view.wait_status(name, lambda j: j.status.scheduleFrom is not None)
            rec.secret = outbox.webhook_secret(loud)
            runs = [fired(view, ctl, clock, name) for name in ("quiet", "loud")]
            set_leading(ctl, False)
            for run in runs:
                view.finish(run, "Succeeded", datetime.now(UTC))
            wait_for("the follower to see both ends", lambda: ended_in_cache(ctl, namespace, runs))
            settle(ctl)
            assert (
                rec.deliveries == [] and outbox.job_notifications(loud.uid) == []
            )  # a follower sends nothing
            set_leading(ctl, True)
            wait_for("the success posted", lambda: len(rec.deliveries) == 1)
            settle(ctl)
            assert ctl.sender is not None and ctl.sender.deliver_due() == 0  # nothing else is due
        (only,) = rec.deliveries
        assert only.signed and only.json["event"] == "run.succeeded" and only.json["job"]["name"] == "loud"
        assert outbox.job_notifications(quiet.uid) == []


def ended_in_cache(ctl, namespace: str, runs: list[str]) -> bool:
    cached = [ctl._cache("Run", namespace).get((namespace, name)) for name in runs]
    return all(r is not None and r.status.phase == "Succeeded" for r in cached)


def test_a_delivery_given_up_is_a_warning_event_on_the_job(kube, namespace, tmp_path: Path):
    view, clock = View(kube, namespace), Clock(T0)
    outbox = Store(f"sqlite:///{tmp_path / 'runyard.db'}")
    with receiver(status=503) as rec:
        with controller(kube, namespace, clock, outbox=outbox, notify=FAST) as ctl:
            job = hooked(view, outbox, rec, "flaky")
            run = fired(view, ctl, clock, "flaky")
            view.finish(run, "Failed", datetime.now(UTC))
            (message,) = wait_for("the warning", lambda: view.events("NotificationFailed"))
        assert len(rec.deliveries) == FAST.max_attempts
        assert f"webhook notification of run {run} (run.failed) failed after 2 attempts" in message
        (row,) = outbox.job_notifications(job.uid)
        assert row.state == "failed"
