"""Jobs on a cluster: a Job's schedule and dependencies fire Runs through the same decisions as the local
scheduler (controller/jobs/decide.py: due, schedule_fire, dependency_fire), and its status follows as the
local reconciler computes it (history limits, last run, next fire). Not a Kubernetes CronJob: runyard's
semantics (time zones across DST, a missed window fired once or skipped past startingDeadlineSeconds,
dependsOn) stay runyard's.

There is no fire table on a cluster: a fire is claimed by the Run's creation itself. The Run's name is
deterministic (the job and the scheduled instant's Unix minute, or the job and the upstream runs it
follows), so a second controller, or an earlier life of this one, that made it gets Conflict (AlreadyExists)
from the API server: a fire is made once. The Run is owned by the Job (deleting the Job deletes its Runs)
and the Operator runs it as any other Run.

Notifications: with the platform's database (`outbox`), a Run of a job that ends Succeeded or Failed is
queued in the same outbox as locally (store/job_notifications.py, deduped by run and channel) before the
history limits may remove it, and the leader's NotificationSender delivers it, signed with the job's secret
from the database; a delivery given up is a Warning event on the Job.

Watch-driven: Jobs and Runs are cached by informers; a Job is reconciled when it or one of its Runs (or a
Run of a job it depends on) changes, and when its next instant is due (a heap, woken by each reconcile).
Only the leader writes; a follower keeps its caches and acts when it leads.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import logging
import threading
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Unpack, cast

from runyard.controller.jobs.decide import dependency_fire, due, on_cycle, schedule_fire
from runyard.controller.jobs.reconcile import (
    CONDITION,
    DEPENDENCIES_FOUND,
    history,
    last_run,
    last_success,
    removed_text,
    set_phase,
)
from runyard.controller.kube.base import (
    Cluster,
    Elector,
    EventType,
    KindController,
    record_event,
    resource_key,
)
from runyard.controller.kube.informer import Key
from runyard.controller.status import set_condition
from runyard.core.clock import now
from runyard.core.cron import next_fire
from runyard.core.errors import Conflict, NotFound
from runyard.core.phases import Phase, Reason
from runyard.core.resources import Job, JobStatus, Resource, Run
from runyard.services.job_notifications import NotificationSender
from runyard.services.kube_resources import claim_forbid, forbid_busy
from runyard.settings import NotifySettings
from runyard.store import Store
from runyard.store.job_notifications import RETENTION
from runyard.store.jobs import Fire, fire_run, run_name

log = logging.getLogger(__name__)

# On the Job, what its last dependency fire followed (the local store keeps it in its job state row): it
# fires again only once each dependency succeeded after that.
DEPENDENCY_ANNOTATION = "runyard.dev/dependencies-fired-at"
MAX_WAIT = 1.0  # real seconds between two looks at the clock (an injected clock may run faster)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
OUTBOX_RETRY = 5.0  # seconds: a job whose notifications the database did not take is looked at again


def scheduled_run_name(job: str, at: datetime) -> str:
    """The Run a scheduled instant makes: the same for every controller, so its creation is the claim."""
    return run_name(job, int(at.timestamp()) // 60)


def dependency_run_name(job: str, key: str) -> str:
    """The Run a dependency fire makes, named by the upstream runs it follows (decide.dependency_key)."""
    suffix = "-d" + hashlib.sha256(key.encode()).hexdigest()[:10]
    return job[: 63 - len(suffix)].rstrip("-") + suffix


def owned_by(run: Run, job: Job) -> bool:
    return any(o.kind == "Job" and o.uid == job.metadata.uid for o in run.metadata.ownerReferences)


class JobController(KindController[Key]):
    """Fires Jobs' Runs when due (schedule or dependencies) and keeps their status; queue items are
    (namespace, name) of Jobs."""

    kinds = ("Job",)
    thread_prefix = "jobs"

    def __init__(
        self,
        resources: Any,
        elector: Elector,
        *,
        image: str = "",
        server_url: str = "",
        clock: Callable[[], datetime] = now,
        outbox: Store | None = None,
        notify: NotifySettings | None = None,
        **cluster: Unpack[Cluster],
    ):
        """`outbox`: the platform's database, where the notifications of ended Runs are queued and sent
        from while this process leads (None: no notifications); `notify`: how they are sent."""
        super().__init__(resources, elector, image=image, server_url=server_url, **cluster)  # Runs' pods
        self.clock = clock
        self.outbox = outbox
        self.sender = (
            NotificationSender(outbox, notify or NotifySettings(), jobs=_ClusterJobs(self))
            if outbox is not None
            else None
        )
        self._queued: set[str] = set()  # Runs (uids) whose notifications are in the outbox
        self.fired = 0  # Runs this controller created
        self._heap: list[tuple[datetime, Key]] = []
        self._due: dict[Key, datetime] = {}
        self._owned: defaultdict[str, set[Key]] = defaultdict(set)  # job uid -> its Runs in the cache
        self._wake = threading.Event()
        for scope in self.scopes:
            self._watch_resources(Job, scope, self._on_job)
            self._watch_resources(Run, scope, self._on_run)

    # -- lifecycle: KindController's, and a timer

    def start(self) -> None:
        super().start()
        self._spawn("timer", self._timer)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()  # the timer sleeps on it
        super().stop()
        if self.sender is not None:
            self.sender.stop()

    def leading(self, leads: bool) -> None:
        """Only the leader sends notifications (two senders would send each twice)."""
        super().leading(leads)
        if self.sender is not None:
            if leads:
                self.sender.start()
            else:
                self.sender.stop()

    def _item(self, kind: str, obj: Resource) -> Key:
        return resource_key(obj)

    def wake(self) -> None:
        """Look at the clock now (a test that moved its clock; the timer looks every MAX_WAIT anyway)."""
        self._wake.set()

    # -- caches and triggers

    def _on_job(self, type_: str, job: Job) -> None:
        key = resource_key(job)
        self.queue.add(key)
        if type_ != "MODIFIED":  # made or gone: the jobs depending on it show it (DependenciesReady)
            self._dependents_of(key[0], key[1])

    def _on_run(self, type_: str, run: Run) -> None:
        m = run.metadata
        for owner in m.ownerReferences:
            if owner.kind == "Job":
                self._own(owner.uid, run, type_ != "DELETED")
                if type_ == "DELETED":
                    with self._lock:
                        self._queued.discard(run.uid)
                self.queue.add((m.project, owner.name))
                if run.status.phase == Phase.SUCCEEDED:
                    self._dependents_of(m.project, owner.name)

    def _own(self, job_uid: str, run: Run, owned: bool) -> None:
        with self._lock:
            if owned:
                self._owned[job_uid].add(resource_key(run))
            else:
                self._owned[job_uid].discard(resource_key(run))
                if not self._owned[job_uid]:
                    del self._owned[job_uid]

    def _dependents_of(self, namespace: str, name: str) -> None:
        for job in self._cache("Job", namespace).items():
            if job.metadata.project == namespace and name in job.spec.dependsOn:
                self.queue.add(resource_key(job))

    def _timer(self) -> None:
        """Queue each job whose next instant is due by the clock; sleep until the earliest, at most
        MAX_WAIT (woken early by each reconcile that moves a job's instant)."""
        while not self._stop.is_set():
            current = self.clock()
            wait = MAX_WAIT
            with self._lock:
                while self._heap:
                    at, key = self._heap[0]
                    if self._due.get(key) != at:
                        heapq.heappop(self._heap)  # superseded
                    elif at <= current:
                        heapq.heappop(self._heap)
                        del self._due[key]
                        self.queue.add(key)
                    else:
                        wait = min(wait, (at - current).total_seconds())
                        break
            self._wake.wait(max(0.0, wait))
            self._wake.clear()

    def _set_due(self, key: Key, at: datetime | None) -> None:
        with self._lock:
            if at is None:
                self._due.pop(key, None)
            elif self._due.get(key) != at:
                self._due[key] = at
                heapq.heappush(self._heap, (at, key))
        self._wake.set()

    # -- work

    def _reconcile(self, item: Key) -> None:
        self.reconcile(*item)

    def reconcile(self, namespace: str, name: str) -> None:
        """Fire what is due, trim the history, and write the status if it changed."""
        job = self._cache("Job", namespace).get((namespace, name))
        if job is None or job.metadata.deletionTimestamp is not None:
            self._set_due((namespace, name), None)
            return  # the garbage collector deletes its Runs
        current = self.clock()
        old, spec = job.status, job.spec
        st = old.model_copy(deep=True)
        observed = f"{spec.schedule}|{spec.timeZone}|{spec.suspend}"
        if old.observedSchedule != observed:  # fires count from now: a resumed job makes up nothing
            st.observedSchedule, st.scheduleFrom = observed, current
        if spec.schedule and not spec.suspend:
            self._fire_schedule(job, st, current)
        if spec.dependsOn and not spec.suspend:
            self._fire_dependencies(job)
        runs = self._runs(job)
        kept, removed = history(job, runs)
        if not self._notify(job, runs):  # a run is removed only once its notifications are queued
            removed = []
            self.queue.add_after((namespace, name), OUTBOX_RETRY)
        for run in removed:
            with contextlib.suppress(NotFound):
                self.resources.delete("Run", namespace, run.metadata.name)
        if removed:
            self._event(job, Reason.RUN_DELETED, removed_text(job, removed), "Normal")  # as locally
        self._status(job, st, kept, runs, current)
        if st.model_dump(mode="json") != old.model_dump(mode="json"):
            try:
                written = self.resources.patch_status("Job", namespace, name, st.model_dump(mode="json"))
            except NotFound:
                return  # deleted meanwhile: its watch event says so
            self._cache("Job", namespace).put(written)
        self._set_due((namespace, name), st.nextScheduleTime)

    def _notify(self, job: Job, runs: list[Run]) -> bool:
        """Queue the notifications of the job's ended runs (the outbox adds a run's once however often this
        asks); False when the database did not answer. A run that ended before the outbox's retention
        (whose rows may have been pruned) is never queued again."""
        if self.outbox is None or job.spec.notifications is None:
            return True
        since = now() - RETENTION / 2
        with self._lock:
            ended = [
                r
                for r in runs
                if r.status.phase in (Phase.SUCCEEDED, Phase.FAILED)
                and r.uid not in self._queued
                and (r.status.finishedAt or EPOCH) >= since
            ]
        for run in ended:
            try:
                self.outbox.queue_job_notifications(run, job)
            except Exception as exc:
                log.warning(
                    "job %s: cannot queue its notifications (%s); trying again", resource_key(job), exc
                )
                return False
            with self._lock:
                self._queued.add(run.uid)
        return True

    def job_by_uid(self, uid: str) -> Job | None:
        for (kind, _), informer in self._informers.items():
            if kind == "Job":
                found = next((j for j in informer.items() if j.uid == uid), None)
                if found is not None:
                    return cast(Job, found)
        return None

    def _runs(self, job: Job) -> list[Run]:
        """The job's Runs, oldest first (as the local store lists them)."""
        with self._lock:
            keys = list(self._owned.get(job.uid, ()))
        cache = self._cache("Run", job.metadata.project)
        runs = [r for r in map(cache.get, keys) if r is not None and owned_by(r, job)]
        return sorted(runs, key=lambda r: (r.metadata.creationTimestamp or EPOCH, r.metadata.name))

    def _fire_schedule(self, job: Job, st: JobStatus, current: datetime) -> None:
        spec = job.spec
        assert spec.schedule is not None
        marks = [t for t in (st.lastScheduleTime, st.scheduleFrom) if t is not None]
        window = due(spec.schedule, spec.timeZone, max(marks) if marks else current, current)
        fire = schedule_fire(job, window, current)
        if fire is None or fire.scheduled_at is None:
            return
        st.lastScheduleTime = fire.scheduled_at  # claimed, whatever comes of it: never looked at again
        if fire.missed is not None:
            self._event(job, Reason.MISSED_SCHEDULE, fire.missed)
            return
        if self._fire(fire, scheduled_run_name(job.metadata.name, fire.scheduled_at)):
            for reason, message, *_ in fire.events:
                self._event(job, reason, message)

    def _fire_dependencies(self, job: Job) -> None:
        """Fire when every dependency's latest Run succeeded since this job last fired after them."""
        ns = job.metadata.project
        jobs = self._cache("Job", ns)
        upstream: dict[str, tuple[str, datetime] | None] = {}
        for dep in job.spec.dependsOn:
            other = jobs.get((ns, dep))
            if other is None or other.metadata.deletionTimestamp is not None:
                return  # it fires once they all exist
            upstream[dep] = self._latest_success(other)

        def depends_on(name: str) -> list[str]:
            found = jobs.get((ns, name))
            return list(found.spec.dependsOn) if found is not None else []

        if on_cycle(job.metadata.name, depends_on):
            return
        marks = [job.metadata.creationTimestamp, _fired_at(job)]
        since = max([t for t in marks if t is not None], default=EPOCH)
        fire = dependency_fire(job, upstream, since)
        if fire is None:
            return
        self._fire(fire, dependency_run_name(job.metadata.name, fire.key))
        # Remembered on the Job as the latest of the successes it followed (the Runs' own times, not this
        # controller's clock): a replace carrying its resourceVersion, Conflict if it moved meanwhile (the
        # next look finds the Run made, by name).
        followed = max(v[1] for v in upstream.values() if v is not None)
        latest = jobs.get((ns, job.metadata.name)) or job  # a Forbid fire's claim wrote the Job just now
        annotated = latest.model_copy(deep=True)
        annotated.metadata.annotations[DEPENDENCY_ANNOTATION] = followed.isoformat()
        self._cache("Job", ns).put(self.resources.replace(annotated))

    def _latest_success(self, job: Job) -> tuple[str, datetime] | None:
        done = [
            r
            for r in self._runs(job)
            if r.status.phase == Phase.SUCCEEDED and r.status.finishedAt is not None
        ]
        if not done:
            return None
        last = max(done, key=lambda r: r.status.finishedAt or EPOCH)
        return last.uid, cast(datetime, last.status.finishedAt)

    def _fire(self, fire: Fire, name: str) -> bool:
        """Create the fire's Run, applying the concurrency policy; False if it was not made now (made
        before, under the same name, or skipped)."""
        job, ns = fire.job, fire.job.metadata.project
        runs = self._cache("Run", ns)
        existing = runs.get((ns, name))
        if existing is not None:
            if not owned_by(existing, job):
                self._event(job, Reason.FIRE_SKIPPED, f"a run named {name!r} exists and is not this job's")
            return False
        mine = self._runs(job)
        active = [r for r in mine if _active(r)]
        policy = job.spec.concurrencyPolicy
        if policy == "Forbid":  # claimed on the Job first, as a trigger does (services/kube_resources)
            busy = forbid_busy(job, active, {r.metadata.name for r in mine}, name)
            if busy is not None:
                msg = f"skipped: run {busy} is still active (concurrencyPolicy Forbid)"
                self._event(job, Reason.FIRE_SKIPPED, msg)
                return False
            claimed = claim_forbid(self.resources, job, name)  # Conflict: reconciled again, with the news
            self._cache("Job", ns).put(claimed)
        if policy == "Replace":  # before the create: a failed stop is tried again with the whole fire
            for run in active:
                self._request_stop(run, f"replaced by a new run of job {job.metadata.name}")
        try:
            created = self.resources.create(fire_run(fire, name))
        except Conflict:
            return False  # another controller (or an earlier life of this one) made it: its watch brings it
        runs.put(created)
        self._own(job.uid, created, True)
        with self._lock:
            self.fired += 1
        return True

    def _request_stop(self, run: Run, why: str) -> None:
        """As `runyard stop` does: spec.stopRequested, which the Operator acts on."""
        if run.spec.stopRequested:
            return
        stopped = run.model_copy(deep=True)
        stopped.spec.stopRequested = True
        try:
            self._cache("Run", run.metadata.project).put(self.resources.replace(stopped))
        except NotFound:
            return
        self._event(run, Reason.STOP_REQUESTED, why)

    def _status(self, job: Job, st: JobStatus, kept: list[Run], runs: list[Run], current: datetime) -> None:
        spec = job.spec
        st.observedGeneration = job.metadata.generation
        st.runs = [r.metadata.name for r in kept]
        st.active = [r.metadata.name for r in kept if not r.status.phase.is_terminal()]
        st.lastRun = last_run(runs, st.lastRun)
        st.lastSuccessfulTime = last_success(runs, st.lastSuccessfulTime)
        st.nextScheduleTime = None
        if spec.schedule and not spec.suspend:
            marks = [t for t in (st.lastScheduleTime, st.scheduleFrom) if t is not None]
            st.nextScheduleTime = next_fire(spec.schedule, spec.timeZone, max([*marks, current]))
        set_phase(job, st)
        self._dependencies_ready(job, st)

    def _dependencies_ready(self, job: Job, st: JobStatus) -> None:
        """Condition DependenciesReady, as locally: whether every job named in dependsOn exists."""
        m, deps = job.metadata, job.spec.dependsOn
        if not deps:
            st.conditions = [c for c in st.conditions if c.type != CONDITION]
            return
        jobs = self._cache("Job", m.project)
        missing = [d for d in deps if jobs.get((m.project, d)) is None]
        if missing:
            names = ", ".join(repr(d) for d in missing)
            msg = f"job {names} not found in project {m.project!r}: this job fires after them once they exist"
            before = next((c for c in st.conditions if c.type == CONDITION), None)
            if before is None or before.message != msg:
                self._event(job, Reason.DEPENDENCIES_NOT_READY, msg)
            set_condition(st.conditions, CONDITION, "False", Reason.DEPENDENCIES_NOT_READY, msg)
            return
        msg = f"its dependencies exist: {', '.join(deps)}; it fires once each has succeeded since it last did"
        set_condition(st.conditions, CONDITION, "True", DEPENDENCIES_FOUND, msg)

    def _event(self, res: Any, reason: str, message: str, type_: EventType = "Warning") -> None:
        """A Kubernetes Event on the object, as the Operator records one (best effort)."""
        log.info("%s %s/%s: %s: %s", res.kind, res.metadata.project, res.metadata.name, reason, message)
        record_event(self.api_client, res, reason, message, type_)


class _ClusterJobs:
    """The NotificationSender's jobs: this controller's cache, and its events."""

    def __init__(self, controller: JobController):
        self.controller = controller

    def job(self, uid: str) -> Job | None:
        return self.controller.job_by_uid(uid)

    def warn(self, job: Job, reason: str, message: str) -> None:
        self.controller._event(job, reason, message)


def _active(run: Run) -> bool:
    return run.metadata.deletionTimestamp is None and not run.status.phase.is_terminal()


def _fired_at(job: Job) -> datetime | None:
    raw = job.metadata.annotations.get(DEPENDENCY_ANNOTATION)
    try:
        return datetime.fromisoformat(raw) if raw else None
    except ValueError:
        return None
