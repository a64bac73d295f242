"""Jobs on a cluster: schedules fire Runs through the local scheduler's decisions, each instant once, even
with two controllers racing or one restarting, with the concurrency policy, suspend and history limits.

The API server is a fake (kmock's KubernetesEmulator, extended: tests/kube/emulator.py) because no real
kube-apiserver can run here; the module runs unchanged against a real cluster when KUBECONFIG names one.
The controller's clock is the test's: schedules fire as the test moves it, without sleeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.kube_jobs.harness import Clock, View, controller, set_leading, settle
from tests.kube_operator.harness import wait_for

from runyard.controller.kube.jobs import scheduled_run_name
from runyard.services.kube_resources import FORBID_CLAIM, FORBID_CLAIM_SECONDS
from runyard.store.jobs import JOB_LABEL, SCHEDULED_ANNOTATION, TRIGGER_ANNOTATION

T0 = datetime(2026, 3, 2, 10, 2, tzinfo=UTC)


def at(hour: int, minute: int, second: int = 0) -> datetime:
    return T0.replace(hour=hour, minute=minute, second=second)


def scheduled(view: View, name: str, **spec: object) -> None:
    """Apply a job and wait for the controller to take it in (its schedule counts from then)."""
    view.apply_job(name, **spec)
    view.wait_status(name, lambda j: j.status.scheduleFrom is not None)


def test_a_schedule_fires_once_per_instant(kube, namespace):
    view, clock = View(kube, namespace), Clock(T0)
    with controller(kube, namespace, clock) as ctl:
        scheduled(view, "nightly", schedule="*/5 * * * *", concurrencyPolicy="Allow")
        job = view.job("nightly")
        assert job.status.nextScheduleTime == at(10, 5)
        assert view.runs("nightly") == []
        clock.t = at(10, 5, 7)
        ctl.wake()
        (run,) = view.wait_runs("nightly", 1)
        assert run.metadata.name == scheduled_run_name("nightly", at(10, 5))
        assert run.metadata.labels[JOB_LABEL] == "nightly"
        assert run.metadata.annotations[TRIGGER_ANNOTATION] == "schedule"
        assert run.metadata.annotations[SCHEDULED_ANNOTATION] == at(10, 5).isoformat()
        assert [(o.kind, o.uid) for o in run.metadata.ownerReferences] == [("Job", job.uid)]
        assert run.spec.command == "python train.py"
        st = view.wait_status("nightly", lambda j: j.status.lastScheduleTime == at(10, 5)).status
        assert st.nextScheduleTime == at(10, 10)
        assert st.active == [run.metadata.name] and st.phase == "Active"
        for _ in range(3):  # looking again at the same instant fires nothing
            settle(ctl)
        assert len(view.runs("nightly")) == 1
        clock.t = at(10, 10, 1)  # no wake(): the timer looks at the clock by itself (every MAX_WAIT)
        assert len(view.wait_runs("nightly", 2)) == 2
        wait_for("the count of fires", lambda: ctl.fired == 2)  # counted just after the create returned


def test_a_timezone_schedule_fires_at_its_local_instant(kube, namespace):
    view, clock = View(kube, namespace), Clock(at(12, 0))
    with controller(kube, namespace, clock) as ctl:
        # 08:00 in New York on 2026-03-09 is 12:00 UTC (EDT, after the DST change of March 8th).
        clock.t = datetime(2026, 3, 9, 11, 0, tzinfo=UTC)
        scheduled(view, "ny", schedule="0 8 * * *", timeZone="America/New_York")
        assert view.job("ny").status.nextScheduleTime == datetime(2026, 3, 9, 12, 0, tzinfo=UTC)
        clock.t = datetime(2026, 3, 9, 12, 0, 30, tzinfo=UTC)
        ctl.wake()
        (run,) = view.wait_runs("ny", 1)
        assert run.metadata.annotations[SCHEDULED_ANNOTATION] == "2026-03-09T12:00:00+00:00"


def test_two_controllers_racing_fire_once(kube, namespace):
    view, clock = View(kube, namespace), Clock(T0)
    with controller(kube, namespace, clock) as a, controller(kube, namespace, clock) as b:
        scheduled(view, "race", schedule="*/5 * * * *")
        clock.t = at(10, 5, 2)
        a.wake()
        b.wake()
        view.wait_runs("race", 1)
        settle(a)
        settle(b)
        assert len(view.runs("race")) == 1
        assert a.fired + b.fired == 1
        # A controller that has not seen the Run yet (an earlier life of it made it) gets AlreadyExists.
        slow = b if b.fired == 0 else a
        run = view.runs("race")[0]
        set_leading(slow, False)
        slow._cache("Run", namespace).cache.pop((namespace, run.metadata.name))
        slow.reconcile(namespace, "race")
        assert len(view.runs("race")) == 1 and a.fired + b.fired == 1


def test_a_restart_after_missed_instants_fires_once_within_the_deadline(kube, namespace):
    view, clock = View(kube, namespace), Clock(T0)
    with controller(kube, namespace, clock) as ctl:
        for name, deadline in (("late-ok", 300), ("too-late", 60)):
            scheduled(view, name, schedule="*/5 * * * *", concurrencyPolicy="Allow",
                      startingDeadlineSeconds=deadline)  # fmt: skip
        clock.t = at(10, 5, 1)
        ctl.wake()
        view.wait_runs("late-ok", 1)
        view.wait_runs("too-late", 1)
        view.wait_status("too-late", lambda j: j.status.lastScheduleTime == at(10, 5))
        view.wait_status("late-ok", lambda j: j.status.lastScheduleTime == at(10, 5))
    clock.t = at(10, 47)  # down from 10:05 to 10:47: 10:10 ... 10:45 missed, the last 2 minutes ago
    with controller(kube, namespace, clock) as ctl:
        runs = view.wait_runs("late-ok", 2)
        assert runs[-1].metadata.name == scheduled_run_name("late-ok", at(10, 45))
        st = view.wait_status("too-late", lambda j: j.status.lastScheduleTime == at(10, 45)).status
        assert st.nextScheduleTime == at(10, 50)
        settle(ctl)
        assert len(view.runs("late-ok")) == 2 and len(view.runs("too-late")) == 1
        missed = wait_for("the events", lambda: view.events("MissedSchedule") or None)
        assert any("past startingDeadlineSeconds 60; skipped" in m for m in missed)
        assert any("7 earlier fires from" in m and "fired once" in m for m in missed)


def test_forbid_skips_a_fire_while_a_run_is_active_and_replace_stops_it(kube, namespace):
    view, clock = View(kube, namespace), Clock(T0)
    with controller(kube, namespace, clock) as ctl:
        scheduled(view, "forbid", schedule="*/5 * * * *")  # Forbid: the default
        scheduled(view, "replace", schedule="*/5 * * * *", concurrencyPolicy="Replace")
        clock.t = at(10, 5, 1)
        ctl.wake()
        (first,) = view.wait_runs("forbid", 1)
        (old,) = view.wait_runs("replace", 1)
        clock.t = at(10, 10, 1)
        ctl.wake()
        view.wait_status("forbid", lambda j: j.status.lastScheduleTime == at(10, 10))
        settle(ctl)
        assert [r.metadata.name for r in view.runs("forbid")] == [first.metadata.name]
        assert any(first.metadata.name in m for m in view.events("FireSkipped"))
        replaced = view.wait_runs("replace", 2)
        stopped = {r.metadata.name: r.spec.stopRequested for r in replaced}
        assert stopped[old.metadata.name] is True
        assert stopped[scheduled_run_name("replace", at(10, 10))] is False
        # Once the active run ended, the next instant fires.
        view.finish(first.metadata.name, "Succeeded", at(10, 11))
        view.wait_status("forbid", lambda j: j.status.active == [])
        clock.t = at(10, 15, 1)
        ctl.wake()
        assert view.wait_runs("forbid", 2)[-1].metadata.name == scheduled_run_name("forbid", at(10, 15))


def test_forbid_skips_a_fire_while_another_fire_has_claimed_the_job(kube, namespace):
    """A trigger through the API claims the Job (FORBID_CLAIM) before its Run exists: a scheduled fire in
    that moment is skipped; a claim whose Run never came is free after FORBID_CLAIM_SECONDS."""
    view, clock = View(kube, namespace), Clock(T0)
    with controller(kube, namespace, clock) as ctl:
        scheduled(view, "nightly", schedule="*/5 * * * *")  # Forbid: the default
        fresh = datetime.now(UTC)
        claim(view, "nightly", "nightly-mtriggered", fresh)
        wait_for("the controller to see it", lambda: seen_claim(ctl, namespace, "nightly", fresh))
        clock.t = at(10, 5, 1)
        ctl.wake()
        view.wait_status("nightly", lambda j: j.status.lastScheduleTime == at(10, 5))
        settle(ctl)
        assert view.runs("nightly") == []
        assert any("nightly-mtriggered" in m for m in view.events("FireSkipped"))

        stale = datetime.now(UTC) - timedelta(seconds=FORBID_CLAIM_SECONDS + 1)
        claim(view, "nightly", "nightly-mtriggered", stale)  # its writer died before making the Run
        wait_for("the controller to see it", lambda: seen_claim(ctl, namespace, "nightly", stale))
        clock.t = at(10, 10, 1)
        ctl.wake()
        (run,) = view.wait_runs("nightly", 1)
        assert run.metadata.name == scheduled_run_name("nightly", at(10, 10))
        assert view.job("nightly").metadata.annotations[FORBID_CLAIM].startswith(run.metadata.name + "@")


def seen_claim(ctl, namespace: str, job: str, at: datetime) -> bool:
    cached = ctl._cache("Job", namespace).get((namespace, job))
    return cached is not None and cached.metadata.annotations.get(FORBID_CLAIM, "").endswith(at.isoformat())


def claim(view: View, job: str, run: str, at: datetime) -> None:
    """As a trigger's claim writes it (services/kube_resources.claim_forbid)."""
    got = view.job(job)
    got.metadata.annotations[FORBID_CLAIM] = f"{run}@{at.isoformat()}"
    view.resources.replace(got)


def test_a_suspended_job_does_not_fire_and_does_not_catch_up(kube, namespace):
    view, clock = View(kube, namespace), Clock(T0)
    with controller(kube, namespace, clock) as ctl:
        scheduled(view, "paused", schedule="*/5 * * * *", suspend=True)
        st = view.wait_status("paused", lambda j: j.status.phase == "Suspended").status
        assert st.nextScheduleTime is None
        clock.t = at(10, 20, 1)
        settle(ctl)
        assert view.runs("paused") == []
        view.update_spec("paused", suspend=False)
        st = view.wait_status("paused", lambda j: j.status.phase == "Scheduled").status
        assert st.scheduleFrom == at(10, 20, 1) and st.nextScheduleTime == at(10, 25)
        settle(ctl)
        assert view.runs("paused") == []  # 10:05 ... 10:20 were skipped while suspended
        clock.t = at(10, 25, 1)
        ctl.wake()
        view.wait_runs("paused", 1)


def test_history_limits_delete_the_oldest_runs(kube, namespace):
    view, clock = View(kube, namespace), Clock(T0)
    with controller(kube, namespace, clock) as ctl:
        scheduled(view, "kept", schedule="* * * * *", concurrencyPolicy="Allow",
                  successfulRunsHistoryLimit=2, failedRunsHistoryLimit=1)  # fmt: skip
        outcomes = ["Succeeded", "Failed", "Succeeded", "Failed", "Succeeded"]
        names = [scheduled_run_name("kept", at(10, 3 + i)) for i in range(5)]
        for i, (name, phase) in enumerate(zip(names, outcomes, strict=True)):
            clock.t = at(10, 3 + i, 1)
            ctl.wake()
            wait_for(name, lambda n=name: n in [r.metadata.name for r in view.runs("kept")])
            view.finish(name, phase, at(10, 3 + i, 30))
            view.wait_status("kept", lambda j, n=name: n in j.status.runs and n not in j.status.active)
        st = view.wait_status("kept", lambda j: len(j.status.runs) == 3).status
        assert st.runs == [names[2], names[3], names[4]]
        wait_for("the deletions", lambda: [r.metadata.name for r in view.runs("kept")] == st.runs)
        assert st.lastRun is not None and st.lastRun["name"] == names[4]
        assert st.lastSuccessfulTime == at(10, 7, 30)
        assert view.events("RunDeleted")


def test_only_the_leader_writes(kube, namespace):
    view, clock = View(kube, namespace), Clock(T0)
    with controller(kube, namespace, clock, leads=False) as ctl:
        view.apply_job("led", schedule="*/5 * * * *")
        clock.t = at(10, 5, 1)
        settle(ctl)
        assert view.job("led").status.scheduleFrom is None and view.runs("led") == []
        set_leading(ctl, True)
        st = view.wait_status("led", lambda j: j.status.scheduleFrom is not None).status
        assert st.scheduleFrom == at(10, 5, 1)  # a new leader counts from when it first saw the job
        assert st.nextScheduleTime == at(10, 10)
        clock.t = at(10, 10, 1)
        ctl.wake()
        view.wait_runs("led", 1)


def test_deleting_a_job_deletes_its_runs_and_stops_its_schedule(kube, namespace):
    view, clock = View(kube, namespace), Clock(T0)
    with controller(kube, namespace, clock) as ctl:
        scheduled(view, "gone", schedule="*/5 * * * *")
        clock.t = at(10, 5, 1)
        ctl.wake()
        view.wait_runs("gone", 1)
        view.resources.delete("Job", namespace, "gone")
        wait_for("the garbage collector", lambda: view.runs("gone") == [])
        # Once its watch told the controller (a Run made before then would be collected too: its owner's
        # uid is gone, which a real cluster's garbage collector acts on; the emulator's does not).
        wait_for("the deletion seen", lambda: ctl._cache("Job", namespace).get((namespace, "gone")) is None)
        clock.t = at(10, 10, 1)
        settle(ctl)
        assert view.runs("gone") == [] and ctl.fired == 1
