"""What an owner (a Model, a Session) does to the runs it made: ask one to stop, delete the ended ones beyond
a few, delete them all before it goes itself."""

from __future__ import annotations

from runyard.controller.context import Context
from runyard.core.errors import Conflict
from runyard.core.phases import Reason
from runyard.core.resources import Run


def request_stop(ctx: Context, run: Run, why: str) -> None:
    """Ask the run controller to stop it (SIGTERM, SIGKILL after its grace period), saying why."""
    while not run.spec.stopRequested and not run.status.phase.is_terminal():
        run.spec.stopRequested = True
        try:
            run = ctx.store.replace(run, run.metadata.resourceVersion, events=[(Reason.STOP_REQUESTED, why)])
        except Conflict:
            fresh = ctx.store.get_uid(run.uid)
            if not isinstance(fresh, Run):
                return
            run = fresh
            continue
        ctx.notifier.touch(run.uid)
        return


def prune_ended(ctx: Context, runs: list[Run], keep: int) -> None:
    """Delete the ended runs but the last `keep` (with their logs)."""
    ended = [r for r in runs if r.status.phase.is_terminal() and r.metadata.deletionTimestamp is None]
    for run in ended[: max(0, len(ended) - keep)]:
        ctx.store.mark_deleted(run)
        ctx.notifier.touch(run.uid)


def delete_all(ctx: Context, runs: list[Run]) -> bool:
    """Delete every run (the run controller stops the live ones first); whether any is left to wait for."""
    for run in runs:
        if run.metadata.deletionTimestamp is None:
            ctx.store.mark_deleted(run)
            ctx.notifier.touch(run.uid)
    return bool(runs)
