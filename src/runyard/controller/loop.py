"""The control loop: one thread, woken by change notices, resyncing every tick (level-triggered)."""

from __future__ import annotations

import logging
import threading

from runyard.controller.context import Context
from runyard.controller.experiments import reconcile_experiment, reconcile_stored_only
from runyard.controller.runs import reconcile_run
from runyard.core.errors import Conflict, NotFound
from runyard.core.phases import Phase
from runyard.core.resources import Resource
from runyard.runtime.base import State

log = logging.getLogger("runyard.controller")


class Controller:
    def __init__(self, ctx: Context):
        self.ctx = ctx
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        ctx.notifier.subscribe(self._wake.set)
        ctx.runtime.on_change(lambda _uid: self._wake.set())

    def start(self) -> None:
        self._report_adoptions()
        self._thread = threading.Thread(target=self._run, name="runyard-controller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=10)

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        delay = 0.0
        while not self._stopping.is_set():
            self._wake.wait(timeout=delay)
            self._wake.clear()
            if self._stopping.is_set():
                return
            delay = self.reconcile_all()

    def reconcile_all(self) -> float:
        """One pass over everything unfinished; returns how long it may sleep."""
        delays = [self.ctx.settings.tick_seconds]
        store = self.ctx.store
        for kind in ("Session", "Job", "Model"):
            for res in store.list(kind, unfinished=True):
                self._guard(reconcile_stored_only, res)
        for exp in store.list("Experiment", unfinished=True):
            self._guard(reconcile_experiment, exp)
        for run in store.list("Run", unfinished=True):
            d = self._guard(reconcile_run, run)
            if isinstance(d, int | float):
                delays.append(d)
        return max(0.0, min(delays))

    def _guard(self, fn, res: Resource):
        try:
            return fn(self.ctx, res)
        except (Conflict, NotFound):
            return 0.0  # someone else wrote it first: look again at once
        except Exception:
            log.exception("reconciling %s %s failed; will retry", res.kind, res.metadata.name)
            return 1.0

    def _report_adoptions(self) -> None:
        """After a restart, say in each running run's events that it was found alive (or not)."""
        for run in self.ctx.store.list("Run", phases=[Phase.RUNNING]):
            att = run.status.attempts[-1] if run.status.attempts else None
            if att and att.handle and self.ctx.runtime.observe(att.handle).state == State.RUNNING:
                self.ctx.store.add_event(run, "Adopted", "the controller restarted and found the process running")
