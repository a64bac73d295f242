"""The Job reconciler: status from its runs and fires (phase, active, last run, next fire time), the
history limits, the schedule's starting point after a change or a resume, and cascade delete.

It runs on the job's own notices (a change, a fire: the scheduler touches it) and after each write of one
of its runs, never on every tick; and it writes the status only when something in it changed, so that
thousands of idle jobs cost nothing."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

from runyard.controller.context import Context
from runyard.controller.status import set_condition
from runyard.core.clock import now
from runyard.core.cron import next_fire
from runyard.core.errors import NotFound
from runyard.core.phases import Phase, Reason
from runyard.core.resources import Job, JobStatus, Resource, Run
from runyard.store import EventSpec
from runyard.store.jobs import TRIGGER_ANNOTATION

CONDITION = "DependenciesReady"
RUN_ACTIVE = "RunActive"  # status.reason while a run of the job is unfinished
DEPENDENCIES_FOUND = "DependenciesFound"
FAILED_PHASES = (Phase.FAILED, Phase.CANCELLED)

# (project, job name) -> uids of the jobs seen depending on it: a job created or deleted wakes them, so
# their DependenciesReady condition follows at once (after a restart, at their next change or fire).
_dependents: defaultdict[tuple[str, str], set[str]] = defaultdict(set)


def reconcile_job(ctx: Context, job: Job) -> None:
    m = job.metadata
    runs = ctx.store.list(Run, m.project, owner_uid=job.uid)
    if m.deletionTimestamp is not None:
        _cascade_delete(ctx, job, runs)
        return
    if job.status.observedGeneration is None:  # new: jobs that named it while it was missing may fire now
        _wake_dependents(ctx, job)
    _refresh(ctx, job, runs)


def job_run_changed(ctx: Context, job: Job, run: Resource) -> None:
    """A run of the job was written (or is being deleted): mirror it into the job's status. A run moving
    between unfinished phases (admitted, started) changes nothing the job shows, and costs no query."""
    if (
        isinstance(run, Run)
        and run.metadata.deletionTimestamp is None
        and not run.status.phase.is_terminal()
        and run.metadata.name in job.status.active
        and job.metadata.deletionTimestamp is None
        and job.status.observedGeneration == job.metadata.generation
    ):
        return
    reconcile_job(ctx, job)


def _clock(ctx: Context) -> datetime:
    """The time the scheduler fires by (a test may warp it), so that scheduleFrom agrees with its fires."""
    return ctx.scheduler.clock() if ctx.scheduler is not None else now()


def _refresh(ctx: Context, job: Job, runs: list[Run]) -> None:
    """Compute the whole status from the job, its runs and its fire state; write it if it differs."""
    spec, old = job.spec, job.status
    st = old.model_copy(deep=True)
    events: list[EventSpec] = []
    kept, removed = history(job, runs)
    for run in removed:
        _remove(ctx, job, run)
    if removed:
        events.append((Reason.RUN_DELETED, removed_text(job, removed)))

    observed = f"{spec.schedule}|{spec.timeZone}|{spec.suspend}"
    schedule_changed = old.observedSchedule != observed
    if schedule_changed:  # fires count from now: a resumed job does not make up what it skipped
        st.observedSchedule, st.scheduleFrom = observed, _clock(ctx)
    st.observedGeneration = job.metadata.generation
    state = ctx.store.job_state(job.uid)
    st.lastScheduleTime = state.last_schedule_at if state else None
    st.nextScheduleTime = _next_fire(ctx, job, st)
    st.runs = [r.metadata.name for r in kept]
    st.active = [r.metadata.name for r in kept if not r.status.phase.is_terminal()]
    st.lastRun = last_run(runs, old.lastRun)
    st.lastSuccessfulTime = last_success(runs, old.lastSuccessfulTime)
    events.extend(_dependencies(ctx, job, st))
    set_phase(job, st)
    if schedule_changed:
        events.append(_schedule_event(job, old, st))
    if st.model_dump(mode="json") == old.model_dump(mode="json"):
        return
    job.status = st
    saved = ctx.save(job, *events)
    if ctx.scheduler is None:
        return
    if schedule_changed or old.observedGeneration != saved.metadata.generation:
        ctx.scheduler.update(saved)
    if st.lastSuccessfulTime is not None and (
        old.lastSuccessfulTime is None or st.lastSuccessfulTime > old.lastSuccessfulTime
    ):  # saved once: the next look sees the same time and does not say it again
        ctx.scheduler.job_succeeded(saved)


def set_phase(job: Job, st: JobStatus) -> None:
    """A job's phase, reason and message from its suspension, its active runs and what fires it next:
    the same rule here and on a cluster (controller.kube.jobs)."""
    if job.spec.suspend:
        st.phase, st.reason = "Suspended", Reason.SUSPENDED
        st.message = "suspended: neither its schedule nor its dependencies fire it; a manual trigger does"
    elif st.active:
        st.phase, st.reason = "Active", RUN_ACTIVE
        st.message = f"run {', '.join(st.active)} is active"
    else:
        st.phase, st.reason, st.message = "Scheduled", Reason.SCHEDULED, waiting_text(job, st)


def history(job: Job, runs: list[Run]) -> tuple[list[Run], list[Run]]:
    """The runs kept (oldest first) and those past the history limits: the newest
    successfulRunsHistoryLimit succeeded and failedRunsHistoryLimit failed or cancelled runs stay."""
    live = [r for r in runs if r.metadata.deletionTimestamp is None]
    succeeded = [r for r in live if r.status.phase == Phase.SUCCEEDED]
    failed = [r for r in live if r.status.phase in FAILED_PHASES]
    extra = len(succeeded) - job.spec.successfulRunsHistoryLimit
    removed = succeeded[: max(0, extra)]
    extra = len(failed) - job.spec.failedRunsHistoryLimit
    removed += failed[: max(0, extra)]
    gone = {r.uid for r in removed}
    return [r for r in live if r.uid not in gone], removed


def _remove(ctx: Context, job: Job, run: Run) -> None:
    """Delete as `runyard delete run` does: the run controller removes its logs, files and artifacts."""
    try:
        why = f"removed by the history limits of job {job.metadata.name}"
        ctx.store.mark_deleted(run, events=[(Reason.DELETING, why)])
    except NotFound:
        return
    ctx.notifier.touch(run.uid)


def removed_text(job: Job, removed: list[Run]) -> str:
    s = job.spec
    limits = f"successfulRunsHistoryLimit={s.successfulRunsHistoryLimit}, "
    limits += f"failedRunsHistoryLimit={s.failedRunsHistoryLimit}"
    return f"removed run {', '.join(r.metadata.name for r in removed)} with its logs and artifacts ({limits})"


def _next_fire(ctx: Context, job: Job, st: JobStatus) -> datetime | None:
    spec = job.spec
    if spec.suspend or not spec.schedule:
        return None
    marks = [t for t in (st.lastScheduleTime, st.scheduleFrom) if t is not None]
    after = max([*marks, _clock(ctx)])
    return next_fire(spec.schedule, spec.timeZone, after)


def last_run(runs: list[Run], old: dict | None) -> dict | None:
    """The run that finished last (it may have been removed since: then the one recorded stays)."""
    ended = [r for r in runs if r.status.phase.is_terminal() and r.status.finishedAt is not None]
    if not ended:
        return old
    last = max(ended, key=lambda r: r.status.finishedAt or datetime.min)
    finished = last.status.finishedAt
    assert finished is not None
    if old and old.get("finishedAt") and datetime.fromisoformat(old["finishedAt"]) > finished:
        return old
    return {
        "name": last.metadata.name,
        "phase": last.status.phase.value,
        "finishedAt": finished.astimezone(UTC).isoformat().replace("+00:00", "Z"),  # as the API writes times
        "trigger": last.metadata.annotations.get(TRIGGER_ANNOTATION),
    }


def last_success(runs: list[Run], old: datetime | None) -> datetime | None:
    times = [
        r.status.finishedAt
        for r in runs
        if r.status.phase == Phase.SUCCEEDED and r.status.finishedAt is not None
    ]
    return max([*times, *([old] if old else [])], default=None)


def _dependencies(ctx: Context, job: Job, st: JobStatus) -> list[EventSpec]:
    """Condition DependenciesReady: whether every job named in dependsOn exists in the project."""
    m, deps = job.metadata, job.spec.dependsOn
    if not deps:
        st.conditions = [c for c in st.conditions if c.type != CONDITION]
        return []
    for dep in deps:
        _dependents[(m.project, dep)].add(job.uid)
    missing = [d for d in deps if not _exists(ctx, m.project, d)]
    before = next((c for c in st.conditions if c.type == CONDITION), None)
    if missing:
        names = ", ".join(repr(d) for d in missing)
        noun = "job" if len(missing) == 1 else "jobs"
        msg = f"{noun} {names} not found in project {m.project!r}: this job fires after them once they exist"
        set_condition(st.conditions, CONDITION, "False", Reason.DEPENDENCIES_NOT_READY, msg)
        changed = before is None or before.message != msg
        return [(Reason.DEPENDENCIES_NOT_READY, msg, "Warning")] if changed else []
    msg = f"its dependencies exist: {', '.join(deps)}; it fires once each has succeeded since it last did"
    set_condition(st.conditions, CONDITION, "True", DEPENDENCIES_FOUND, msg)
    return []


def _exists(ctx: Context, project: str, name: str) -> bool:
    try:
        return ctx.store.get(Job, project, name).metadata.deletionTimestamp is None
    except NotFound:
        return False


def waiting_text(job: Job, st: JobStatus) -> str:
    spec = job.spec
    parts = []
    if st.nextScheduleTime is not None:
        parts.append(f"next fire at {st.nextScheduleTime.isoformat()}")
    if spec.dependsOn:
        parts.append(f"fires when its dependencies succeed: {', '.join(spec.dependsOn)}")
    return "; ".join(parts) if parts else "fires when triggered (it has no schedule nor dependencies)"


def _schedule_event(job: Job, old: JobStatus, st: JobStatus) -> EventSpec:
    spec = job.spec
    since = st.scheduleFrom.isoformat() if st.scheduleFrom else "now"
    if spec.suspend:
        return Reason.SUSPENDED, "suspended: no fire from its schedule or dependencies until resumed"
    was_suspended = (old.observedSchedule or "").endswith("|True")
    if was_suspended:
        return Reason.SCHEDULED, (
            f"resumed: fires from {since} on; the instants skipped while suspended are not made up"
        )
    if not spec.schedule:
        return Reason.SCHEDULED, "no schedule: it fires on its dependencies or by hand"
    nxt = st.nextScheduleTime.isoformat() if st.nextScheduleTime else "never"
    return Reason.SCHEDULED, f"schedule {spec.schedule!r} in {spec.timeZone}: next fire at {nxt}"


def _cascade_delete(ctx: Context, job: Job, runs: list[Run]) -> None:
    """Its runs go first (stopped, their logs and artifacts removed); then its fire state and itself."""
    for run in runs:
        if run.metadata.deletionTimestamp is None:
            why = f"its job {job.metadata.name} is being deleted"
            try:
                ctx.store.mark_deleted(run, events=[(Reason.DELETING, why)])
            except NotFound:
                continue
            ctx.notifier.touch(run.uid)
    if runs:
        return  # the loop calls back as each run goes, and the resync looks at deleting jobs
    ctx.store.forget_job(job.uid)
    ctx.store.delete(job.uid)
    if ctx.scheduler is not None:
        ctx.scheduler.forget(job.uid)
    ctx.notifier.touch(job.uid)
    _wake_dependents(ctx, job)


def _wake_dependents(ctx: Context, job: Job) -> None:
    for uid in _dependents.get((job.metadata.project, job.metadata.name), ()):
        if uid != job.uid:
            ctx.notifier.touch(uid)
