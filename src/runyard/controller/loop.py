"""The control loop: one thread. Change notices queue uids that are reconciled at once; a full resync
every tick catches anything a notice missed (level-triggered, like an informer's periodic resync)."""

from __future__ import annotations

import logging
import threading
import time

from runyard.controller.context import Context
from runyard.controller.experiments import mirror_run, reconcile_experiment, reconcile_stored_only
from runyard.controller.jobs.reconcile import job_run_changed, reconcile_job
from runyard.controller.models.reconcile import reconcile_model
from runyard.controller.retry import CAP_SECONDS, Backoff, is_temporary
from runyard.controller.runs import fail_unreconcilable, reconcile_run
from runyard.controller.sessions import reconcile_session
from runyard.core.errors import Conflict, NotFound
from runyard.core.phases import Phase, Reason
from runyard.core.resources import Experiment, Job, Model, Resource, Run, Session
from runyard.runtime.base import AttemptState
from runyard.services.watch import KEEP_CHANGES

log = logging.getLogger("runyard.controller")
STORED_ONLY: tuple[type[Resource], ...] = ()
BATCH = 8  # uids reconciled between two looks at the queues
RESYNC_AT_LEAST = 5  # ticks: how long a busy queue may postpone the full resync
PRUNE_EVERY = 60.0  # seconds between prunes of the change feed
BURST_LOOK = 0.05  # seconds between looks at a job scheduler's burst that holds off the resync
LOOP = "*"  # the backoff key of the loop's own passes


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


class Controller:
    def __init__(self, ctx: Context):
        self.ctx = ctx
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        # Ordered sets (dicts): first come, first served. Runtime notices (a process exited) go first, so
        # that a burst of submissions does not delay noticing the runs that already finished.
        self._urgent: dict[str, None] = {}
        self._dirty: dict[str, None] = {}
        self._due: dict[str, float] = {}  # uid -> monotonic time it asked to be looked at again
        self._thread: threading.Thread | None = None
        self._last_prune = 0.0
        self._backoff = Backoff()
        ctx.notifier.subscribe(self.enqueue)
        ctx.runtime.on_change(lambda uid: self.enqueue(uid, urgent=True))

    def start(self) -> None:
        self._report_adoptions()
        self._thread = threading.Thread(target=self._run, name="runyard-controller", daemon=True)
        self._thread.start()
        for worker in self._workers():
            worker.start()

    def stop(self) -> None:
        for worker in self._workers():
            worker.stop()
        self._stopping.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=10)

    def _workers(self) -> list:
        return [*([self.ctx.scheduler] if self.ctx.scheduler else []), *self.ctx.workers]

    def enqueue(self, uid: str, urgent: bool = False) -> None:
        """Thread-safe and cheap: called by the API and the runtime when something changed."""
        with self._lock:
            (self._urgent if urgent else self._dirty)[uid] = None
        self._wake.set()

    def _run(self) -> None:
        last_resync = 0.0
        while not self._stopping.is_set():
            try:
                last_resync = self._step(last_resync)
            except Exception as exc:  # e.g. the database is down: keep the loop alive, back off
                delay = self._backoff.failed(LOOP, exc) or CAP_SECONDS  # the loop itself never gives up
                log.warning("controller pass failed (%s); retrying in %gs", _describe(exc), delay)
                self._wake.wait(delay)  # a notice (the API writes again: the store is back) ends it early
                self._wake.clear()

    def _step(self, last_resync: float) -> float:
        """Reconcile a batch of queued uids (or resync everything), then sleep until there is work."""
        now = time.monotonic()
        work = self._take_work(now)
        # Only a pass that read the store says it is back: one that found nothing to do (woken early, no
        # resync due) must not start the delays over during an outage.
        if work:
            self._process(work)
            self._backoff.succeeded(LOOP)
        # The resync waits while notices keep the loop busy, or while the job scheduler claims a burst of
        # fires (launching the runs made so far would slow the rest: they share the store's writer and the
        # interpreter), but never for long.
        tick = self.ctx.settings.tick_seconds
        bursting = self.ctx.scheduler is not None and self.ctx.scheduler.bursting
        idle = not work and not bursting
        if (idle and now - last_resync >= tick) or now - last_resync >= RESYNC_AT_LEAST * tick:
            self.resync()
            self._backoff.succeeded(LOOP)
            last_resync = now
        if self._urgent or self._dirty:
            return last_resync
        wake_at = min([last_resync + tick, *self._due.values()])
        if bursting:  # the resync is due but held off: look again soon, not in a busy loop
            wake_at = max(wake_at, time.monotonic() + BURST_LOOK)
        self._wake.wait(timeout=max(0.0, wake_at - time.monotonic()))
        self._wake.clear()
        return last_resync

    def _take_work(self, now: float) -> list[str]:
        """At most BATCH uids: runtime notices first, then other notices, then those that are due."""
        work: list[str] = []
        with self._lock:
            for queue in (self._urgent, self._dirty):
                while queue and len(work) < BATCH:
                    uid = next(iter(queue))
                    del queue[uid]
                    work.append(uid)
        for uid, due in list(self._due.items()):
            if due <= now and uid not in work:
                work.append(uid)
                del self._due[uid]
        return work

    def resync(self) -> None:
        """One pass over everything unfinished, whatever the notices said; now and then, housekeeping."""
        if time.monotonic() - self._last_prune >= PRUNE_EVERY:
            self.ctx.store.prune_changes(KEEP_CHANGES)
            self._last_prune = time.monotonic()
        with self._lock:
            self._urgent.clear()
            self._dirty.clear()
        store = self.ctx.store
        now = time.monotonic()
        kinds: tuple[type[Resource], ...] = (*STORED_ONLY, Session, Job, Model, Experiment, Run)
        for kind in kinds:
            # A stored-only kind has nothing left to do once its status says so, and a Job is acted on by
            # notices (its changes, its runs') and by the scheduler: only new or deleted ones need a look,
            # so thousands of Jobs cost nothing per tick.
            settled = kind in (*STORED_ONLY, Job)
            for res in store.list(kind, unfinished=not settled, new_or_deleting=settled):
                if self._due.get(res.uid, 0.0) > now and self._backoff.failures(res.uid):
                    continue  # backing off: it is looked at when due
                self._reconcile(res)
                self.ctx.written.clear()

    def _process(self, uids: list[str]) -> None:
        for uid in uids:
            res = self.ctx.store.get_uid(uid)
            if res is not None:
                self._reconcile(res)
                self.ctx.written.clear()

    def _reconcile(self, res: Resource, created_by: Experiment | None = None) -> None:
        if isinstance(res, Experiment):
            for run in self._guard(reconcile_experiment, res) or []:
                self._reconcile(run, created_by=res)  # start it in the same pass, then mirror it
            return
        if isinstance(res, Job):
            self._guard(reconcile_job, res)
            return
        if isinstance(res, (Model, Session)):  # its runs are probed: it asks to be looked at again
            served = self.ctx.serving if isinstance(res, Model) else self.ctx.sessions
            reconcile = reconcile_model if isinstance(res, Model) else reconcile_session
            delay = self._guard(reconcile if served else reconcile_stored_only, res)
            if delay is not None:
                self._due[res.uid] = time.monotonic() + delay
            return
        if isinstance(res, STORED_ONLY):
            self._guard(reconcile_stored_only, res)
            return
        uid = res.uid
        self.ctx.written.pop(uid, None)
        delay = self._guard(reconcile_run, res)
        if delay is not None:
            self._due[uid] = time.monotonic() + delay
        run = self.ctx.written.pop(uid, None) or (res if created_by else None)
        deleting = res.metadata.deletionTimestamp is not None  # the owner must notice the run is gone
        if not isinstance(run, Run) and not deleting:
            return  # nothing was written: the owner has nothing new to mirror
        for owner in res.metadata.ownerReferences:
            parent = created_by or self.ctx.store.get_uid(owner.uid)
            if isinstance(parent, Job):  # its status follows its runs; a run's end may fire its dependents
                self._guard(lambda ctx, job: job_run_changed(ctx, job, run if isinstance(run, Run) else res),
                            parent)  # fmt: skip
                continue
            if isinstance(parent, (Model, Session)):  # its run started or ended: the owner acts on it
                self.enqueue(parent.uid)
                continue
            if not isinstance(parent, Experiment):
                continue
            if isinstance(run, Run) and not deleting:
                self._guard(lambda ctx, exp: mirror_run(ctx, exp, run), parent)
            else:
                self._guard(reconcile_experiment, parent)

    def _guard(self, fn, res: Resource):
        uid = res.uid
        try:
            result = fn(self.ctx, res)
        except (Conflict, NotFound):
            self.enqueue(uid)  # someone else wrote it first: look again at once
        except Exception as exc:
            delay = self._backoff.failed(uid, exc)
            if delay is None:
                log.error(
                    "reconciling %s %s failed for good: %s", res.kind, res.metadata.name, _describe(exc)
                )
                self._give_up(res, exc)
            else:
                kind = "temporary" if is_temporary(exc) else "unexpected"
                log.warning(
                    "reconciling %s %s failed (%s, %s); retrying in %gs",
                    res.kind, res.metadata.name, kind, _describe(exc), delay,
                )  # fmt: skip
                self._due[uid] = time.monotonic() + delay
        else:
            self._backoff.succeeded(uid)
            return result
        return None

    def _give_up(self, res: Resource, exc: Exception) -> None:
        """Say in the object's status and events why the controller stopped acting on it."""
        msg = f"the controller gave up on this {res.kind}: {_describe(exc)}"
        self._due[res.uid] = time.monotonic() + CAP_SECONDS  # should it stay unfinished, not in a loop
        try:
            if isinstance(res, Run):
                fail_unreconcilable(self.ctx, res, msg)
            else:
                res.status.phase, res.status.reason, res.status.message = (
                    "Failed",
                    Reason.RECONCILE_ERROR,
                    msg,
                )
                self.ctx.save(res, (Reason.RECONCILE_ERROR, msg, "Warning"))
        except (Conflict, NotFound):
            self.enqueue(res.uid)
        except Exception as again:
            log.warning(
                "could not record that %s %s failed: %s", res.kind, res.metadata.name, _describe(again)
            )
            self._due[res.uid] = time.monotonic() + CAP_SECONDS

    def _report_adoptions(self) -> None:
        """After a restart, say in each running run's events that it was found alive."""
        for run in self.ctx.store.list(Run, phases=[Phase.RUNNING]):
            att = run.status.attempts[-1] if run.status.attempts else None
            if att and att.handle and self.ctx.runtime.observe(att.handle).state == AttemptState.RUNNING:
                self.ctx.store.add_event(
                    run, Reason.ADOPTED, "the controller restarted and found the process running"
                )
