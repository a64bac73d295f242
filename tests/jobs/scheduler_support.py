"""What the scheduler tests share (no tests here): a clock the test moves, a scheduler on a real store with
no server, jobs as users write them, and the two steps of the job reconciler the scheduler relies on (set
status.scheduleFrom and call update(); report a run's success)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from runyard.controller.context import Context
from runyard.controller.jobs.scheduler import Scheduler
from runyard.core.phases import Phase
from runyard.core.resources import Job, JobSpec, ObjectMeta, Run
from runyard.services.notify import Notifier
from runyard.settings import ControllerSettings
from runyard.store import Store
from runyard.store.jobs import SCHEDULED_ANNOTATION

PROJECT = "default"
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


class Clock:
    """The time a scheduler reads: it moves only when the test says so."""

    def __init__(self, start: datetime = T0):
        self.t = start

    def __call__(self) -> datetime:
        return self.t

    def set(self, t: datetime) -> None:
        self.t = t

    def advance(self, **delta: float) -> datetime:
        self.t += timedelta(**delta)
        return self.t


def open_store(url: str) -> Store:
    store = Store(url)
    store.ensure_project(PROJECT)
    return store


def scheduler(store: Store, clock: Clock) -> Scheduler:
    """A scheduler with no thread: the test calls load() and tick()."""
    ctx = Context(store, None, Notifier(), ControllerSettings(), "http://127.0.0.1:9", None)  # type: ignore[arg-type]
    return Scheduler(ctx, clock=clock)


def make_job(store: Store, name: str, **spec: Any) -> Job:
    spec.setdefault("template", {"command": "true"})
    spec.setdefault("concurrencyPolicy", "Allow")  # runs stay Pending here (no controller runs them)
    return store.create(
        Job(metadata=ObjectMeta(name=name, project=PROJECT), spec=JobSpec.model_validate(spec))
    )


def reconcile(store: Store, sched: Scheduler | None, name: str, schedule_from: datetime) -> Job:
    """What the job reconciler does for a new, changed or resumed job: count fires from `schedule_from`."""
    job = store.get(Job, PROJECT, name)
    job.status.scheduleFrom = schedule_from
    job.status.observedGeneration = job.metadata.generation
    job.status.observedSchedule = f"{job.spec.schedule}|{job.spec.timeZone}|{job.spec.suspend}"
    saved = store.update_status(job)
    if sched is not None:
        sched.update(saved)
    return saved


def change_spec(store: Store, name: str, **changes: Any) -> Job:
    job = store.get(Job, PROJECT, name)
    spec = JobSpec.model_validate({**job.spec.model_dump(), **changes})
    return store.replace(job.model_copy(update={"spec": spec}), job.metadata.resourceVersion)


def runs_of(store: Store, name: str) -> list[Run]:
    return [r for r in store.list(Run, PROJECT) if r.metadata.labels.get("runyard.dev/job") == name]


def scheduled_at(store: Store, name: str) -> list[str]:
    """The instants the job's runs were fired for, in order."""
    return sorted(r.metadata.annotations[SCHEDULED_ANNOTATION] for r in runs_of(store, name))


def succeed(store: Store, run: Run, finished: datetime | None = None) -> Run:
    """The run ends well (as the run controller would say), so its job's dependents may fire."""
    run = store.get(Run, PROJECT, run.metadata.name)
    run.status.phase = Phase.SUCCEEDED
    run.status.finishedAt = finished or datetime.now(UTC)
    return store.update_status(run)
