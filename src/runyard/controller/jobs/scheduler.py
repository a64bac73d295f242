"""The job scheduler: its own thread, beside the controller's, holding every scheduled job's next fire
time in a heap, so that a tick costs what is due, not what exists."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from runyard.controller.context import Context
from runyard.core.clock import now
from runyard.core.resources import Job

# The clock a scheduler reads when given none. Tests of a real server process replace it (tests/jobs/warp.py)
# to make minutes pass in seconds; everything else reads core.clock.
CLOCK: Callable[[], datetime] = now


class Scheduler:
    def __init__(self, ctx: Context, clock: Callable[[], datetime] | None = None):
        self.ctx = ctx
        self.clock = clock or CLOCK

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None

    def update(self, job: Job) -> None:
        """The reconciler saw the job (new, changed, resumed): schedule it anew."""

    def forget(self, job_uid: str) -> None:
        """The job is gone."""

    def job_succeeded(self, job: Job) -> None:
        """A run of `job` succeeded: its dependents may fire."""

    def stats(self) -> dict:
        return {}
