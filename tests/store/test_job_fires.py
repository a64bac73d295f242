"""A job's fire is claimed, checked against its concurrency policy and turned into a run in one store
transaction, on SQLite and PostgreSQL: what each outcome records, and the clashes that must not double a
fire or lose one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from runyard.core.phases import Phase
from runyard.core.resources import Experiment, Job, Run, parse_workload
from runyard.store import Store
from runyard.store.jobs import JOB_LABEL, SCHEDULED_ANNOTATION, Fire

T = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)


@pytest.fixture
def store(store_url):
    s = Store(store_url)
    s.ensure_project("default")
    yield s
    s.close()


def make_job(store: Store, name: str = "nightly", **spec) -> Job:
    doc = {"schedule": "0 3 * * *", "template": {"command": "echo hi", "env": {"A": "1"}}, **spec}
    job = parse_workload(
        {"apiVersion": "runyard.dev/v1", "kind": "Job", "metadata": {"name": name}, "spec": doc}
    )
    return store.create(job)


def scheduled(job: Job, at: datetime = T) -> Fire:
    return Fire(job, "schedule", at.isoformat(), at)


def finish(store: Store, run: Run, phase: Phase = Phase.SUCCEEDED) -> None:
    run = store.get(Run, run.metadata.project, run.metadata.name)
    run.status.phase = phase
    run.status.finishedAt = datetime.now(UTC)
    store.update_status(run)


def test_a_scheduled_fire_creates_its_run_once(store):
    job = make_job(store)
    first = store.fire_job(scheduled(job))
    assert first.outcome == "Created" and first.run is not None
    run = first.run
    assert run.metadata.name == "nightly-1"
    assert run.metadata.labels[JOB_LABEL] == "nightly"
    assert run.metadata.annotations[SCHEDULED_ANNOTATION] == T.isoformat()
    assert run.metadata.ownerReferences[0].uid == job.uid and run.spec.env == {"A": "1"}
    again = store.fire_job(scheduled(job))  # a restart, or a second controller, claiming the same instant
    assert again.outcome == "Duplicate" and again.run is not None and again.run.uid == run.uid
    earlier = store.fire_job(scheduled(job, T - timedelta(days=1)))  # a stale scheduler's older instant
    assert earlier.outcome == "Duplicate"
    assert [r.metadata.name for r in store.list(Run)] == ["nightly-1"]
    assert store.job_state(job.uid).last_schedule_at == T


def test_forbid_skips_while_a_run_is_active_and_fires_after_it_ends(store):
    job = make_job(store)
    run = store.fire_job(scheduled(job)).run
    skipped = store.fire_job(scheduled(job, T + timedelta(days=1)))
    assert skipped.outcome == "Skipped" and "nightly-1 is still active" in skipped.message
    assert store.job_state(job.uid).last_schedule_at == T + timedelta(days=1)  # not tried again later
    finish(store, run)
    created = store.fire_job(scheduled(job, T + timedelta(days=2)))
    assert created.outcome == "Created" and created.run.metadata.name == "nightly-2"
    reasons = [e.reason for e in store.events(job.uid)]
    assert reasons == ["Fired", "FireSkipped", "Fired"]
    assert [f["outcome"] for f in store.job_fires(job.uid)] == ["Created", "Skipped", "Created"]


def test_replace_asks_the_active_run_to_stop_in_the_same_transaction(store):
    job = make_job(store, concurrencyPolicy="Replace")
    old = store.fire_job(scheduled(job)).run
    new = store.fire_job(scheduled(job, T + timedelta(days=1)))
    assert new.outcome == "Created" and new.replaced == [old.uid]
    assert store.get_uid(old.uid).spec.stopRequested is True
    assert any(e.reason == "StopRequested" for e in store.events(old.uid))


def test_allow_runs_beside_the_active_one(store):
    job = make_job(store, concurrencyPolicy="Allow")
    store.fire_job(scheduled(job))
    assert store.fire_job(scheduled(job, T + timedelta(days=1))).outcome == "Created"
    assert len(store.list(Run, owner_uid=job.uid)) == 2


def test_a_manual_trigger_is_idempotent_by_its_key_and_carries_its_params(store):
    job = make_job(store)
    fire = Fire(job, "manual", "manual:req-1", params={"LR": "0.1"})
    first = store.fire_job(fire)
    assert first.outcome == "Created" and first.run.spec.env == {"A": "1", "LR": "0.1"}
    again = store.fire_job(Fire(job, "manual", "manual:req-1", params={"LR": "0.1"}))
    assert again.outcome == "Duplicate" and again.run.uid == first.run.uid


def test_a_missed_fire_is_recorded_and_never_made(store):
    job = make_job(store)
    missed = store.fire_job(Fire(job, "schedule", T.isoformat(), T, missed="past the deadline"))
    assert missed.outcome == "Missed" and store.list(Run) == []
    assert store.fire_job(scheduled(job)).outcome == "Duplicate"
    assert [(e.reason, e.type) for e in store.events(job.uid)] == [("MissedSchedule", "Warning")]


def test_a_dependency_fire_runs_once_per_set_of_upstream_runs(store):
    job = make_job(store, schedule=None, dependsOn=["etl"])
    assert store.fire_job(Fire(job, "dependency", "after:abc")).outcome == "Created"
    finish(store, store.list(Run)[0])
    assert store.fire_job(Fire(job, "dependency", "after:abc")).outcome == "Duplicate"
    assert store.fire_job(Fire(job, "dependency", "after:def")).outcome == "Created"
    assert store.job_state(job.uid).dependency_key == "after:def"


def test_a_deleted_job_does_not_fire(store):
    job = make_job(store)
    store.mark_deleted(job)
    assert store.fire_job(scheduled(job)).outcome == "Skipped"
    assert store.list(Run) == []


def test_a_run_name_taken_by_an_experiment_gets_another(store):
    """Run names are shared by every kind's runs: `nightly-1` may already be an Experiment's run."""
    exp = parse_workload(
        {"apiVersion": "runyard.dev/v1", "kind": "Experiment", "metadata": {"name": "nightly-1"},
         "spec": {"command": "true"}}
    )  # fmt: skip
    store.create(exp)
    store.create(Run.model_validate({"metadata": {"name": "nightly-1"}, "spec": {"command": "true"}}))
    job = make_job(store)
    other = make_job(store, name="other")
    results = store.fire_jobs([scheduled(other), scheduled(job)])  # the clash undoes the batch: one by one
    assert [r.outcome for r in results] == ["Created", "Created"]
    name = results[1].run.metadata.name
    assert name.startswith("nightly-1-") and len(store.list(Run, owner_uid=job.uid)) == 1
    assert len(store.list(Run, owner_uid=other.uid)) == 1
    assert store.list(Experiment)[0].metadata.name == "nightly-1"


def test_a_burst_is_claimed_in_one_batch_and_a_second_batch_adds_nothing(store):
    jobs = [make_job(store, name=f"j{i}", schedule="0 * * * *") for i in range(20)]
    results = store.fire_jobs([scheduled(j) for j in jobs])
    assert {r.outcome for r in results} == {"Created"}
    again = store.fire_jobs([scheduled(j) for j in jobs])
    assert {r.outcome for r in again} == {"Duplicate"}
    assert len(store.list(Run)) == 20


def test_old_fire_records_and_job_events_are_pruned_and_the_claim_still_holds(store):
    job = make_job(store)
    store.fire_job(scheduled(job))
    assert store.prune_job_fires(datetime.now(UTC) + timedelta(seconds=1)) == 1
    assert store.job_fires(job.uid) == [] and store.events(job.uid) == []
    assert store.fire_job(scheduled(job)).outcome == "Duplicate"  # the state row still knows the instant
