"""The Experiment reconciler (one Run per Experiment, same name, status mirrored, cascade delete), and the
placeholder for kinds whose controllers come later."""

from __future__ import annotations

from runyard.controller.context import Context
from runyard.core.errors import Conflict
from runyard.core.phases import TERMINAL, Phase, Reason
from runyard.core.resources import (
    Experiment,
    ObjectMeta,
    OwnerReference,
    Resource,
    Run,
    RunSpec,
    WorkloadStatus,
)


def reconcile_experiment(ctx: Context, exp: Experiment) -> list[Run]:
    """Returns the runs it created, so the loop can start them in the same pass."""
    m = exp.metadata
    runs = ctx.store.list(Run, m.project, owner_uid=exp.uid)
    if m.deletionTimestamp is not None:
        _cascade_delete(ctx, exp, runs)
        return []
    if not runs and exp.status.runs:
        _run_gone(ctx, exp)  # its run was deleted: an Experiment runs once, so it is not made again
        return []
    if not runs:
        run = _create_run(ctx, exp)
        return [] if run is None else [run]  # the loop starts it, then mirrors it with mirror_run
    _mirror(ctx, exp, runs[-1])
    return []


def mirror_run(ctx: Context, exp: Experiment, run: Run) -> None:
    """Mirror a run the loop has just acted on into its Experiment: no need to list the runs again."""
    if exp.metadata.deletionTimestamp is not None:
        reconcile_experiment(ctx, exp)
        return
    _mirror(ctx, exp, run)


def _create_run(ctx: Context, exp: Experiment) -> Run | None:
    m = exp.metadata
    run = Run(
        metadata=ObjectMeta(
            name=m.name,
            project=m.project,
            labels=m.labels,
            ownerReferences=[OwnerReference(kind="Experiment", name=m.name, uid=m.uid)],
        ),
        spec=RunSpec(**exp.spec.model_dump()),
    )
    try:
        created = ctx.store.create(run, events=[(Reason.CREATED, f"created by Experiment {m.name}")])
    except Conflict:
        exp.status.phase, exp.status.reason = Phase.FAILED, Reason.NAME_TAKEN
        exp.status.message = f"a run named {m.name!r} already exists in project {m.project!r}"
        ctx.save(exp, (Reason.NAME_TAKEN, exp.status.message, "Warning"))
        return None
    ctx.notifier.touch(created.uid, wake_controller=False)
    return created


def _run_gone(ctx: Context, exp: Experiment) -> None:
    if exp.status.reason != Reason.RUN_DELETED:
        exp.status.reason = Reason.RUN_DELETED
        exp.status.message = f"its run {exp.status.runs[-1]} was deleted; the experiment is not run again"
        if exp.status.phase not in TERMINAL:
            exp.status.phase = Phase.CANCELLED
        ctx.save(exp, (Reason.RUN_DELETED, exp.status.message, "Warning"))


def mirrored_status(exp: Experiment, run: Run) -> WorkloadStatus:
    """The Experiment's status as its Run's: the same here and on a cluster (controller.kube.decide)."""
    rs = run.status
    return WorkloadStatus(
        phase=rs.phase.value,
        reason=rs.reason,
        message=rs.message,
        conditions=rs.conditions,
        observedGeneration=exp.metadata.generation,
        runs=[run.metadata.name],
    )


def _mirror(ctx: Context, exp: Experiment, run: Run) -> None:
    status = mirrored_status(exp, run)
    if status != exp.status:
        first = not exp.status.runs  # the first mirror of a run says it was created
        exp.status = status
        ctx.save(exp, *([(Reason.RUN_CREATED, f"created run {run.metadata.name}")] if first else []))


def _cascade_delete(ctx: Context, exp: Experiment, runs: list[Run]) -> None:
    for run in runs:
        if run.metadata.deletionTimestamp is None:
            ctx.store.mark_deleted(run)
            ctx.notifier.touch(run.uid)  # wakes the controller to reconcile the run's deletion
    if not runs:
        ctx.store.delete(exp.uid)
        ctx.notifier.touch(exp.uid)


def reconcile_stored_only(ctx: Context, res: Resource) -> None:
    """Sessions, Jobs and Models are validated and stored; their controllers come later.
    Say so in their status, and delete them when asked."""
    if res.metadata.deletionTimestamp is not None:
        ctx.store.delete(res.uid)
        ctx.notifier.touch(res.uid)
        return
    if res.status.reason != Reason.NOT_IMPLEMENTED:
        res.status.phase, res.status.reason = "Pending", Reason.NOT_IMPLEMENTED
        res.status.message = f"stored; this server has no {res.kind} controller yet, so nothing runs for it"
        ctx.save(res)
