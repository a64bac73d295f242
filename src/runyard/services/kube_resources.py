"""The resource API over a cluster's custom resources (`runyard server --kubernetes`): what
services/resources.py does over the store, with the objects in Kubernetes, so that `kubectl`, the CLI and
the REST API read and change one object. A project is a namespace, made on its first object; the list's
revision and a watch's `since` are Kubernetes' resourceVersion. Validation and the apply rules are the
store path's own (parse_for_path, apply_change); the snapshot an object names is still checked in the store,
which keeps tokens, snapshots and tracking."""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, cast

from runyard.core.errors import Conflict, Gone, NotFound
from runyard.core.resources import API_VERSION, Event, Job, Resource, Run
from runyard.services.auth import Principal
from runyard.services.jobs import Triggered, check_params, find_job, next_fires_of
from runyard.services.resources import (
    ApplyOutcome,
    apply_change,
    check_snapshot,
    parse_selector,
    retry_apply,
)
from runyard.store import Store
from runyard.store.jobs import JOB_LABEL, SCHEDULED_ANNOTATION, TRIGGER_ANNOTATION, Fire, fire_run
from runyard.store.kube.resources import KubeResources

TRIGGERED_BY_ANNOTATION = (
    "runyard.dev/triggered-by"  # who fired a job by hand (the store keeps it in an event)
)

MANAGED = {"app.kubernetes.io/managed-by": "runyard"}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # orders a Run the API server has not stamped (none does) first


def _dump(res: Resource) -> dict[str, Any]:
    return res.model_dump(mode="json", exclude_none=True)


def ensure_namespace(kube: KubeResources, project: str) -> None:
    """The project's namespace, labelled as runyard's (the operator gives it quota, limits and Spark's
    account); one made meanwhile by someone else is fine."""
    from kubernetes.client import CoreV1Api

    from runyard.kube.api import translated

    body = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": project, "labels": {**MANAGED, "runyard.dev/project": project}},
    }
    try:
        with translated():
            CoreV1Api(kube.api_client).create_namespace(body)
    except Conflict:
        pass


def create(kube: KubeResources, store: Store, res: Resource) -> Resource:
    check_snapshot(store, res)
    try:
        return kube.create(res)
    except NotFound:  # no namespace yet: the project's first object
        ensure_namespace(kube, res.metadata.project)
        return kube.create(res)


def apply(kube: KubeResources, store: Store, res: Resource) -> tuple[Resource, ApplyOutcome]:
    """Create it, or bring the stored object to the document, as kubectl apply does (status untouched)."""

    def once() -> tuple[Resource, ApplyOutcome]:
        m = res.metadata
        try:
            current = kube.get(type(res), m.project, m.name)
        except NotFound:
            try:
                return create(kube, store, res), ApplyOutcome.CREATED
            except Conflict:  # created meanwhile: bring it to the document
                current = kube.get(type(res), m.project, m.name)
        merged = apply_change(current, res)
        if merged is None:
            return current, ApplyOutcome.UNCHANGED
        if merged.spec != current.spec:
            check_snapshot(store, res)
        return kube.replace(merged), ApplyOutcome.CONFIGURED

    return retry_apply(res, once)


def list_document(kube: KubeResources, kind: type[Resource], project: str, selector: str | None) -> str:
    """The List document, as the store path answers it: items and the revision to watch from."""
    items, version = kube.list(kind, project, parse_selector(selector))
    meta = {"revision": int(version), "continue": None}
    body = {"apiVersion": API_VERSION, "kind": f"{kind.__name__}List", "metadata": meta}
    return json.dumps({**body, "items": [_dump(r) for r in items]})


def delete(kube: KubeResources, kind: type[Resource], project: str, name: str) -> Resource:
    """Delete it (the garbage collector takes its Runs and pods); the object as it was."""
    res = kube.get(kind, project, name)
    kube.delete(kind, project, name)
    return res


def watch_lines(
    kube: KubeResources, kind: type[Resource], project: str, since: int | None
) -> Iterator[bytes]:
    """NDJSON {type, revision, object}, as the store path streams it, or an ERROR event (code 410) when
    `since` is older than the cluster keeps. A sync generator: Starlette runs it in a worker thread;
    closing it (the client went away) stops the watch."""
    stop = threading.Event()
    try:
        # Not relisted on 410 here: that would repeat as ADDED what the client already has. It ends the
        # stream with Kubernetes' own ERROR event instead, and the client lists again.
        changes = kube.watch(kind, project, str(since) if since is not None else None, stop, relist=False)
        for type_, res in changes:
            line = {"type": type_, "revision": res.metadata.resourceVersion, "object": _dump(res)}
            yield (json.dumps(line) + "\n").encode()
    except Gone as exc:
        error = {"code": 410, "reason": "Gone", "message": f"{exc}; list again and watch from its revision"}
        yield (json.dumps({"type": "ERROR", "object": error}) + "\n").encode()
    finally:
        stop.set()


def events(kube: KubeResources, kind: type[Resource], project: str, name: str) -> list[Event]:
    """The object's Kubernetes Events (what `kubectl describe` lists: the operator records its own there),
    oldest first, in the store path's shape. Those of an earlier object of that name are not its."""
    from kubernetes.client import CoreV1Api

    from runyard.kube.api import translated

    res = kube.get(kind, project, name)
    with translated():
        reply = CoreV1Api(kube.api_client).list_namespaced_event(
            project, field_selector=f"involvedObject.uid={res.uid}", _preload_content=False
        )
    items = [
        e for e in json.loads(reply.data)["items"] if (e.get("involvedObject") or {}).get("uid") == res.uid
    ]
    items.sort(key=_event_order)
    return [
        Event(
            type="Warning" if e.get("type") == "Warning" else "Normal",
            reason=e.get("reason") or "",
            message=e.get("message") or "",
            time=_event_time(e),
            kind=kind.__name__,
            name=name,
        )
        for e in items
    ]


def _event_order(event: dict[str, Any]) -> tuple[datetime, int]:
    """Its time, then its resourceVersion: Events are stamped to the second, and several come in one."""
    version = str(event.get("metadata", {}).get("resourceVersion") or "")
    return _event_time(event), int(version) if version.isdigit() else 0


def _event_time(event: dict[str, Any]) -> datetime:
    """When it last happened: lastTimestamp (core/v1), eventTime (events.k8s.io), else when it was made."""
    for raw in (
        event.get("lastTimestamp"),
        event.get("eventTime"),
        event.get("metadata", {}).get("creationTimestamp"),
    ):
        if raw:
            return datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    return EPOCH


def request_stop(kube: KubeResources, project: str, name: str) -> Run:
    """Set the run's spec.stopRequested (the operator stops its pod, and the Run ends Cancelled); read
    again and retried when the operator wrote it meanwhile. A run that has ended is left as it is."""
    while True:
        run = cast(Run, kube.get(Run, project, name))
        if run.status.phase.is_terminal() or run.spec.stopRequested:
            return run
        run.spec.stopRequested = True
        try:
            return cast(Run, kube.replace(run))
        except Conflict:
            continue


def trigger_job(
    kube: KubeResources, who: Principal, project: str, name: str, params: Any, key: str | None
) -> Triggered:
    """Fire the job now on a cluster, as services/jobs.trigger does in the store: even when suspended, with
    `params` in the run's environment. The run's name comes from the request key, so a repeated request
    gets the run the first one made (AlreadyExists) and none is made twice; concurrencyPolicy Forbid
    with a run still active (or claimed, see FORBID_CLAIM) is a Conflict naming it, Replace asks the active
    ones to stop first."""
    key = key or str(uuid.uuid4())
    run_name = f"{name[:48].rstrip('-')}-m{hashlib.sha256(key.encode()).hexdigest()[:10]}"
    for _ in range(CLAIM_TRIES):
        job = cast(Job, kube.get(Job, project, name))
        if job.metadata.deletionTimestamp is not None:
            raise Conflict(f"job {name!r} is being deleted; it fires no more")
        checked = check_params(job, params)
        try:
            return Triggered(cast(Run, kube.get(Run, project, run_name)), created=False)
        except NotFound:
            pass
        runs = job_runs(kube, job)
        active = [r for r in runs if not r.status.phase.is_terminal()]
        if job.spec.concurrencyPolicy == "Forbid":
            busy = forbid_busy(job, active, {r.metadata.name for r in runs}, run_name)
            if busy is not None:
                raise Conflict(
                    f"job {name!r} not triggered: its concurrencyPolicy is Forbid and {busy} is still "
                    f"active; `runyard stop {busy.split(', ')[0]}` first, or wait for it"
                )
            try:
                claim_forbid(kube, job, run_name)
            except Conflict:
                continue  # the job changed since it was read (another fire's claim?): decide again
        if job.spec.concurrencyPolicy == "Replace":
            for run in active:
                request_stop(kube, project, run.metadata.name)
        run = fire_run(Fire(job, "manual", f"manual:{key}", params=checked), run_name)
        run.metadata.annotations[TRIGGERED_BY_ANNOTATION] = who.name
        try:
            return Triggered(cast(Run, kube.create(run)), created=True)
        except Conflict:  # the same key, at the same moment
            return Triggered(cast(Run, kube.get(Run, project, run_name)), created=False)
    raise Conflict(f"job {name!r} changed {CLAIM_TRIES} times while being triggered; try again")


# Forbid on a cluster: there is no store transaction to check "no run active" and create one in. A fire
# first writes the run's name into this annotation of its Job, conditional on the Job's resourceVersion,
# and only then creates the Run: of two fires at once (a trigger and a schedule, two server replicas) one
# write wins and the other is refused, and the loser then sees the claim. A claim whose Run never came (its
# writer died between the two steps) is free again after FORBID_CLAIM_SECONDS.
FORBID_CLAIM = "runyard.dev/forbid-claim"
FORBID_CLAIM_SECONDS = 30.0
CLAIM_TRIES = 5  # a trigger reads the job again this often when its claim loses to another write


def forbid_busy(job: Job, active: list[Run], known: set[str], mine: str) -> str | None:
    """The run a Forbid job is busy with: an active one, or one claimed lately whose Run is not seen yet
    (`known`: the names of the job's Runs the caller sees; `mine`: the run the caller would make, whose
    own claim does not stop it)."""
    if active:
        return ", ".join(r.metadata.name for r in active)
    name, _, stamp = (job.metadata.annotations.get(FORBID_CLAIM) or "").partition("@")
    if not name or name in known or name == mine:
        return None
    try:
        age = (datetime.now(UTC) - datetime.fromisoformat(stamp)).total_seconds()
    except ValueError:
        return None
    return name if abs(age) < FORBID_CLAIM_SECONDS else None  # a claim from the future: a skewed clock


def claim_forbid(kube: KubeResources, job: Job, run_name: str) -> Job:
    """Write the claim, conditional on the job's resourceVersion: Conflict when it changed since read."""
    claimed = job.model_copy(deep=True)
    claimed.metadata.annotations[FORBID_CLAIM] = f"{run_name}@{datetime.now(UTC).isoformat()}"
    return cast(Job, kube.replace(claimed))


def job_runs(kube: KubeResources, job: Job) -> list[Run]:
    """The job's Runs: labelled with its name and owned by its uid (a Run that only carries the label, or
    an earlier job of that name's, is not its own)."""
    listed, _ = kube.list(Run, job.metadata.project, {JOB_LABEL: job.metadata.name})
    return [cast(Run, r) for r in listed if any(o.uid == job.uid for o in r.metadata.ownerReferences)]


def job_history(kube: KubeResources, project: str, name: str, limit: int = 50) -> list[dict[str, Any]]:
    """The job's fires on a cluster, in services/jobs.history's shape, newest first: its Runs (labelled
    with its name and owned by its uid, so not an earlier job of that name's), each fire being the Run's
    creation (see controller/kube/jobs.py). Only fires that made a Run are here: a Skipped or Missed fire is
    kept nowhere but as a Warning event on the Job (`kubectl describe job NAME -n PROJECT`), and a Run
    removed by the history limits is gone with its fire."""
    job = find_job(kube, project, name)
    runs = job_runs(kube, job)
    runs.sort(key=lambda r: (r.metadata.creationTimestamp or EPOCH, r.metadata.name), reverse=True)
    return [_fire_item(r) for r in runs[:limit]]


def _fire_item(run: Run) -> dict[str, Any]:
    m = run.metadata
    return {
        "trigger": m.annotations.get(TRIGGER_ANNOTATION),
        "scheduledAt": _instant(m.annotations.get(SCHEDULED_ANNOTATION)),
        "firedAt": m.creationTimestamp,
        "outcome": "Created",
        "run": m.name,
        "runUid": run.uid,
        "phase": run.status.phase,
        "message": "",
    }


def _instant(text: str | None) -> datetime | None:
    """An annotation's ISO instant; None when absent or not one (annotations are anyone's to write)."""
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


def job_schedule(
    kube: KubeResources, project: str, name: str, count: int = 5, at: datetime | None = None
) -> dict[str, Any]:
    """The job's next fire times on a cluster: there is no job state row there, the last fire claimed is
    the controller's status.lastScheduleTime."""
    job = find_job(kube, project, name)
    return next_fires_of(job, job.status.lastScheduleTime, count, at)
