"""The Job reconciler: status from its runs and fires (phase, active, last run, next fire times), the
history limits, the schedule's starting point after a change or a resume, and cascade delete."""

from __future__ import annotations

from runyard.controller.context import Context
from runyard.core.resources import Job, Resource


def reconcile_job(ctx: Context, job: Job) -> None:
    """Stub: replaced by the job reconciler."""
    if job.metadata.deletionTimestamp is not None:
        ctx.store.delete(job.uid)
        ctx.notifier.touch(job.uid)


def job_run_changed(ctx: Context, job: Job, run: Resource) -> None:
    """A run of the job was written (or is being deleted): mirror it into the job's status."""
    return None
