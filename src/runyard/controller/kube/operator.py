"""The operator: the controller on a cluster. Watches Experiments, Runs and runyard's Pods into caches, and
while it holds the leader Lease turns each change into the writes decide.py asks for: an Experiment gets
its Run, a Run its Pod, a Pod's state flows back into the Run's status and the Run's end into the
Experiment's. Reconciles read the caches, never the API; the watches are shared, so a Run costs only its
writes (create Run, create Pod, two Run status patches, one Experiment patch). A follower keeps its caches
warm and acts the moment it leads (every cached object is queued then: level-triggered, not edge).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any, Protocol

from runyard.controller.kube.decide import (
    current_attempt,
    experiment_status,
    launch_failed,
    launch_spec,
    run_for,
    step_run,
)
from runyard.controller.kube.informer import Informer, Key, PodSource, pod_key, pod_version
from runyard.controller.kube.workqueue import WorkQueue
from runyard.core.clock import now
from runyard.core.errors import Conflict, NotFound, Unavailable
from runyard.core.phases import Phase, Reason
from runyard.core.resources import Experiment, Resource, Run
from runyard.runtime.base import AttemptState, Handle, LaunchError, Observed
from runyard.runtime.kubernetes.pods import pod_name
from runyard.runtime.kubernetes.runtime import observed

log = logging.getLogger(__name__)

MANAGED_SELECTOR = "app.kubernetes.io/managed-by=runyard,runyard.dev/kind=Run"
RUN_LABEL = "runyard.dev/run"
LAUNCH_RECHECK = 30.0  # seconds: a launched pod not seen by then is launched again (idempotent)
RUN_OWNERS = ("Experiment", "Job")  # Runs of these (or of nobody) are plain runs: a pod per attempt
Work = tuple[str, str, str]  # (kind, namespace, name)


class Elector(Protocol):
    def is_leader(self) -> bool: ...


class RunTokens(Protocol):
    def issue(self, run: Run, attempt: int) -> str: ...

    def revoke(self, run: Run) -> None: ...


class Operator:
    def __init__(
        self,
        resources: Any,
        runtime: Any,
        elector: Elector,
        *,
        api_client: Any,
        namespaces: list[str] | None = None,
        server_url: str = "",
        project_objects: bool = True,
        workers: int = 4,
        calls: Any = None,
        tokens: RunTokens | None = None,
    ):
        self.resources, self.runtime, self.elector = resources, runtime, elector
        self.api_client, self.server_url, self.calls = api_client, server_url, calls
        self.apply_project_objects = project_objects
        self.tokens = tokens  # None: pods get no run token (no database to issue one in)
        self.scopes: list[str | None] = list(namespaces) if namespaces else [None]
        self.queue: WorkQueue[Work] = WorkQueue()
        self.workers = workers
        self.reconciled = 0  # reconciles that wrote or launched something
        self._informers: dict[tuple[str, str | None], Informer[Any]] = {}
        self._pod_sources: list[PodSource] = []
        # (run uid, attempt) -> when launched, its pod not seen yet
        self._launched: dict[tuple[str, int], float] = {}
        self._seen: set[tuple[str, int]] = set()  # pods seen: one gone from the cache was deleted
        self._stopped: set[tuple[str, int]] = set()
        self._projects: set[str] = set()
        self._deferred: set[Work] = set()  # queued while not leading
        self._restarts = 0  # watches that failed and listed again
        # Experiments (uids) whose Run this process has seen: one gone is not made again, as an Experiment
        # runs once (its status says so only at the end: five calls per Run), nor while the Experiment's
        # own deletion is still on its way to the cache (the Run's may come first).
        self._had_run: set[str] = set()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        for scope in self.scopes:
            self._informers[("Experiment", scope)] = self._resource_informer(Experiment, scope)
            self._informers[("Run", scope)] = self._resource_informer(Run, scope)
            pods = PodSource(api_client, scope, MANAGED_SELECTOR)
            self._pod_sources.append(pods)
            pod_informer = Informer(f"pods/{scope}", pods, pod_key, pod_version, self._on_pod)
            self._informers[("Pod", scope)] = pod_informer

    # -- lifecycle

    def start(self) -> None:
        """Start the watches, wait for their first lists, then the workers."""
        for name, informer in self._informers.items():
            self._spawn(f"watch-{name[0]}-{name[1] or 'all'}", self._watch, informer)
        for informer in self._informers.values():
            if not informer.synced.wait(60):
                raise TimeoutError(f"the {informer.name} watch did not list in time")
        for i in range(self.workers):
            self._spawn(f"reconcile-{i}", self._work)

    def stop(self) -> None:
        self._stop.set()
        self.queue.close()
        for thread in self._threads:
            thread.join(10)

    def leading(self, leads: bool) -> None:
        """The elector's on_change: on becoming leader, look at everything once."""
        if leads:
            self.resync()

    def resync(self) -> None:
        for (kind, _), informer in self._informers.items():
            if kind != "Pod":
                for obj in informer.items():
                    self.queue.add((kind, obj.metadata.project, obj.metadata.name))

    @property
    def relists(self) -> int:
        """Lists beyond each watch's first: after 410 Gone, or a watch that failed and started over."""
        sources = [*self._pod_sources, self.resources]
        return self._restarts + sum(int(getattr(s, "relists", 0)) for s in sources)

    def _spawn(self, name: str, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=f"operator-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _watch(self, informer: Informer[Any]) -> None:
        while not self._stop.is_set():
            try:
                informer.run(self._stop)
            except Exception:
                if self._stop.is_set():
                    return
                log.exception("%s watch failed; listing again", informer.name)
                with self._lock:
                    self._restarts += 1
                self._stop.wait(1)

    # -- caches

    def _resource_informer(self, cls: type[Resource], scope: str | None) -> Informer[Any]:
        source = _ResourceSource(self.resources, cls.__name__, scope)
        handler = self._on_experiment if cls is Experiment else self._on_run
        return Informer(f"{cls.plural}/{scope}", source, _resource_key, _resource_version, handler)

    def _cache(self, kind: str, namespace: str) -> Informer[Any]:
        return self._informers.get((kind, None)) or self._informers[(kind, namespace)]

    def _on_experiment(self, type_: str, exp: Experiment) -> None:
        self.queue.add(("Experiment", exp.metadata.project, exp.metadata.name))

    def _on_run(self, type_: str, run: Run) -> None:
        m = run.metadata
        self.queue.add(("Run", m.project, m.name))
        for owner in m.ownerReferences:
            if owner.kind == "Experiment":
                with self._lock:
                    self._had_run.add(owner.uid)
                self.queue.add(("Experiment", m.project, owner.name))

    def _on_pod(self, type_: str, pod: dict) -> None:
        m = pod["metadata"]
        run = (m.get("labels") or {}).get(RUN_LABEL)
        if run:
            self.queue.add(("Run", m["namespace"], run))

    # -- work

    def _work(self) -> None:
        """Reconcile while leading. What comes while not (a follower, or a leader whose renewal is late) is
        kept aside, and queued again the moment leadership is back: a late renewal is no transition the
        elector reports, and nothing seen meanwhile may be lost."""
        while not self._stop.is_set():
            item = self.queue.get(timeout=0.5)
            leads = self.elector.is_leader()
            if leads and self._deferred:
                with self._lock:
                    deferred, self._deferred = self._deferred, set()
                for key in deferred:
                    self.queue.add(key)
            if item is None:
                continue
            try:
                if leads:
                    self._reconcile(item)
                else:
                    with self._lock:
                        self._deferred.add(item)
            except Exception:
                log.exception("reconciling %s %s/%s; trying again", *item)
                self.queue.add_after(item, 1.0)
            finally:
                self.queue.done(item)

    def _reconcile(self, item: Work) -> None:
        kind, namespace, name = item
        if kind == "Experiment":
            self._experiment(namespace, name)
        else:
            self._run(namespace, name)

    def _experiment(self, namespace: str, name: str) -> None:
        exp = self._cache("Experiment", namespace).get((namespace, name))
        if exp is None or exp.metadata.deletionTimestamp is not None:
            return  # the garbage collector deletes its Run, and the Run's pods
        self._ensure_project(namespace)
        runs = self._cache("Run", namespace)
        run = runs.get((namespace, name))
        if run is not None and not any(o.uid == exp.metadata.uid for o in run.metadata.ownerReferences):
            self._name_taken(exp)
            return
        with self._lock:
            had_run = exp.uid in self._had_run
        if run is None and not exp.status.runs and not had_run:
            try:
                created = self.resources.create(run_for(exp))
            except Conflict:
                return  # its Run exists already: its watch event brings it
            with self._lock:
                self._had_run.add(exp.uid)
            runs.put(created)
            self._count_reconciled()
            self.queue.add(("Run", namespace, name))
            return
        status = experiment_status(exp, run, had_run)
        if status is not None:
            self._write_status(exp, status)

    def _name_taken(self, exp: Experiment) -> None:
        if exp.status.reason == Reason.NAME_TAKEN:
            return
        m = exp.metadata
        msg = f"a run named {m.name!r} already exists in project {m.project!r}"
        status = exp.status.model_copy(update={"phase": Phase.FAILED.value, "reason": Reason.NAME_TAKEN})
        self._write_status(exp, status.model_copy(update={"message": msg}))

    def _run(self, namespace: str, name: str) -> None:
        run = self._cache("Run", namespace).get((namespace, name))
        if run is None or run.metadata.uid is None:
            return
        if any(o.kind not in RUN_OWNERS for o in run.metadata.ownerReferences):
            return  # a Session's or a Model's: their controllers do not run on a cluster yet
        n = current_attempt(run)
        attempt = (run.uid, n)
        pod = self._cache("Pod", namespace).get((namespace, self._pod_name(run, n)))
        with self._lock:
            if pod is not None:
                self._seen.add(attempt)
                self._launched.pop(attempt, None)
            seen = attempt in self._seen
        obs = self._observe(pod) if pod is not None else None
        if obs is None and seen:
            obs = Observed(AttemptState.LOST, message="pod deleted")
        handle = self._handle(run, n)
        step = step_run(run, obs, handle, now())
        if step.launch is not None:
            if self._owner_gone(run):
                return  # the garbage collector is deleting the Run: its pod would be an orphan
            with self._lock:
                if time.monotonic() - self._launched.get(attempt, -LAUNCH_RECHECK) < LAUNCH_RECHECK:
                    return  # its pod's ADDED event is on its way
                self._launched[attempt] = time.monotonic()
            self.queue.add_after(("Run", namespace, name), LAUNCH_RECHECK)  # launch again if never seen
            try:
                token = self.tokens.issue(run, step.launch) if self.tokens is not None else None
                self.runtime.launch(launch_spec(run, step.launch, self.server_url, token))
            except LaunchError as exc:
                with self._lock:
                    self._launched.pop(attempt, None)
                if isinstance(exc.__cause__, Unavailable):
                    raise  # the API is busy or away: try again shortly
                step = launch_failed(run, str(exc), now())  # refused (invalid, forbidden): say why
            self._count_reconciled()
        if step.stop:
            with self._lock:
                first = attempt not in self._stopped
                self._stopped.add(attempt)
            if first:
                self.runtime.stop(handle, run.spec.stopGracePeriodSeconds)
        if step.status is not None:
            if self._write_status(run, step.status):
                for reason, message in step.events:
                    self._warn(run, reason, message)
            if step.status.phase.is_terminal():
                if self.tokens is not None:
                    self.tokens.revoke(run)
                with self._lock:
                    self._seen = {a for a in self._seen if a[0] != run.uid}
                    self._stopped = {a for a in self._stopped if a[0] != run.uid}
        if step.after is not None:
            self.queue.add_after(("Run", namespace, name), step.after)

    def _owner_gone(self, run: Run) -> bool:
        """Its Experiment is no longer cached (caches are full before any reconcile): deleted."""
        m = run.metadata
        owners = [o for o in m.ownerReferences if o.kind == "Experiment"]
        experiments = self._cache("Experiment", m.project)
        return any(experiments.get((m.project, o.name)) is None for o in owners)

    def _write_status(self, res: Resource, status: Any) -> bool:
        m = res.metadata
        try:
            written = self.resources.patch_status(res.kind, m.project, m.name, status.model_dump(mode="json"))
        except NotFound:
            return False  # deleted meanwhile
        self._count_reconciled()
        if isinstance(written, Resource):
            self._cache(res.kind, m.project).put(written)
        if isinstance(res, Run):
            for owner in m.ownerReferences:
                if owner.kind == "Experiment":
                    self.queue.add(("Experiment", m.project, owner.name))
        return True

    def _warn(self, res: Resource, reason: str, message: str) -> None:
        """A Warning Event on the object (what `kubectl describe` lists): only when something went wrong,
        so a Run that succeeds costs no Event. Best effort: an Event lost is no reason to act again."""
        from kubernetes import client

        m = res.metadata
        stamp = now().strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "metadata": {"name": f"{m.name}.{uuid.uuid4().hex[:16]}", "namespace": m.project},
            "involvedObject": {
                "apiVersion": res.apiVersion,
                "kind": res.kind,
                "name": m.name,
                "namespace": m.project,
                "uid": m.uid,
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning",
            "source": {"component": "runyard-operator"},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            core = client.CoreV1Api(self.api_client)
            core.create_namespaced_event(m.project, event, _preload_content=False)
        except Exception as exc:
            log.warning("event %s on %s %s/%s not recorded: %s", reason, res.kind, m.project, m.name, exc)

    def _ensure_project(self, namespace: str) -> None:
        """What a project namespace needs (quota, limits, Spark's service account), applied once per
        namespace this process sees; what exists already is left as it is."""
        with self._lock:
            if not self.apply_project_objects or namespace in self._projects:
                return
            self._projects.add(namespace)
        from kubernetes import utils
        from kubernetes.client.exceptions import ApiException

        from runyard.kube.manifests import project_objects

        for obj in project_objects(namespace):
            try:
                utils.create_from_dict(self.api_client, obj)
            except utils.FailToCreateError as exc:
                for err in exc.api_exceptions:
                    if isinstance(err, ApiException) and err.status != 409:
                        log.warning("project %s: %s %s: %s", namespace, obj["kind"], err.status, err.reason)

    def _count_reconciled(self) -> None:
        with self._lock:
            self.reconciled += 1

    # -- the runtime's view of a pod

    def _pod_name(self, run: Run, attempt: int) -> str:
        return pod_name(run.metadata.name, attempt)

    def _handle(self, run: Run, attempt: int) -> Handle:
        """The runtime's handle of an attempt (KubernetesRuntime.launch returns the same), known without a
        read: a project is its namespace, and a pod's name is its run's and attempt's."""
        return {
            "runtime": "kubernetes",
            "namespace": run.metadata.project,
            "pod": pod_name(run.metadata.name, attempt),
            "run_uid": run.uid,
            "attempt": attempt,
        }

    def _observe(self, pod: dict) -> Observed:
        return observed(pod)


class _ResourceSource:
    """One kind of runyard's resources through the store backend (its watch resumes and re-lists)."""

    def __init__(self, resources: Any, kind: str, scope: str | None):
        self.resources, self.kind, self.scope = resources, kind, scope
        self._listed: list[Resource] = []

    def list(self) -> tuple[list[Resource], str]:
        self._listed, rv = self.resources.list(self.kind, self.scope, None)
        return self._listed, rv

    def watch(self, resource_version: str, stop: threading.Event) -> Iterator[tuple[str, Any]]:
        """The store's watch: it resumes by itself, and after a 410 yields the differences from what it
        was told was listed and has yielded since."""
        yield from self.resources.watch(self.kind, self.scope, resource_version, stop, known=self._listed)


def _resource_key(res: Resource) -> Key:
    return res.metadata.project, res.metadata.name


def _resource_version(res: Resource) -> int:
    return res.metadata.resourceVersion or 0
