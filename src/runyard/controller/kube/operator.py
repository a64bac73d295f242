"""The operator: the controller on a cluster. Watches Experiments, Runs and runyard's Pods into caches, and
while it holds the leader Lease turns each change into the writes decide.py asks for: an Experiment gets
its Run, a Run its Pod, a Pod's state flows back into the Run's status and the Run's end into the
Experiment's. Reconciles read the caches, never the API; the watches are shared, so a Run costs only its
writes (create Run, create Pod, two Run status patches, one Experiment patch). A follower keeps its caches
warm and acts the moment it leads (every cached object is queued then: level-triggered, not edge).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from runyard.controller.kube.base import Elector, KindController, ProjectObjects, Work
from runyard.controller.kube.decide import (
    current_attempt,
    experiment_status,
    launch_failed,
    launch_spec,
    run_for,
    step_run,
)
from runyard.controller.kube.informer import PodSource
from runyard.controller.kube.tokens import Tokens
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


class Operator(KindController[Work]):
    """Experiments and Runs, and the pods of Runs' attempts."""

    kinds = ("Experiment", "Run")
    thread_prefix = "operator"

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
        tokens: Tokens | None = None,
    ):
        super().__init__(
            resources, elector, api_client=api_client, namespaces=namespaces, workers=workers, calls=calls
        )
        self.runtime, self.server_url = runtime, server_url
        self.projects = ProjectObjects(api_client, project_objects)
        self.tokens = tokens  # None: pods get no run token (no database to issue one in)
        # (run uid, attempt) -> when launched, its pod not seen yet
        self._launched: dict[tuple[str, int], float] = {}
        self._seen: set[tuple[str, int]] = set()  # pods seen: one gone from the cache was deleted
        self._stopped: set[tuple[str, int]] = set()
        # Experiments (uids) whose Run this process has seen: one gone is not made again, as an Experiment
        # runs once (its status says so only at the end: five calls per Run), nor while the Experiment's
        # own deletion is still on its way to the cache (the Run's may come first).
        self._had_run: set[str] = set()
        for scope in self.scopes:
            self._watch_resources(Experiment, scope, self._on_experiment)
            self._watch_resources(Run, scope, self._on_run)
            pods = PodSource(api_client, scope, MANAGED_SELECTOR)
            self._watch_objects("Pod", scope, "pods", pods, self._on_pod)

    # -- caches

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

    def _ensure_project(self, namespace: str) -> None:
        self.projects.ensure(namespace)

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
