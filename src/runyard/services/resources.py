"""Apply, create, read, list and delete resources on behalf of an authenticated user."""

from __future__ import annotations

import base64
import json
import random
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar, cast

from runyard.core.errors import Conflict, FieldError, Gone, Invalid, NotFound
from runyard.core.phases import Reason
from runyard.core.resources import (
    API_VERSION,
    BY_PLURAL,
    MAX_OBJECT_BYTES,
    Experiment,
    Job,
    JobSpec,
    Resource,
    Run,
    check_labels,
    parse_workload,
)
from runyard.runtime.base import Runtime
from runyard.services import watch
from runyard.services.auth import Principal
from runyard.services.job_graph import check_no_cycle
from runyard.services.notify import Notifier
from runyard.services.snapshots import check_snapshot_owner
from runyard.store import Store
from runyard.store.kube.resources import KubeResources

T = TypeVar("T")


class ApplyOutcome(StrEnum):
    CREATED = "created"
    CONFIGURED = "configured"
    UNCHANGED = "unchanged"


def kind_of_plural(plural: str) -> type[Resource]:
    cls = BY_PLURAL.get(plural)
    if cls is None:
        raise Invalid(
            f"unknown resource type {plural!r}",
            [FieldError("plural", f"expected one of {', '.join(BY_PLURAL)}")],
        )
    return cls


def parse_for_path(doc: Any, project: str, plural: str, name: str | None) -> Resource:
    """Validate a document and check it agrees with the URL it was sent to."""
    if isinstance(doc, dict) and isinstance(doc.get("metadata"), dict):
        doc["metadata"].setdefault("project", project)
    res = parse_workload(doc)
    _check_size(res)
    errors = []
    if res.plural != plural:
        errors.append(FieldError("kind", f"a {res.kind} cannot be sent to /{plural}"))
    if res.metadata.project != project:
        errors.append(
            FieldError("metadata.project", f"is {res.metadata.project!r} but the URL says {project!r}")
        )
    if name is not None and res.metadata.name != name:
        errors.append(FieldError("metadata.name", f"is {res.metadata.name!r} but the URL says {name!r}"))
    if errors:
        raise Invalid("the resource does not match its URL", errors)
    return res


def _check_size(res: Resource) -> None:
    """Each field has its own bound; this bounds what they add up to, as Kubernetes bounds an object."""
    parts = {"metadata": res.metadata.model_dump(mode="json"), "spec": res.spec.model_dump(mode="json")}
    sizes = {k: len(json.dumps(v, separators=(",", ":")).encode()) for k, v in parts.items()}
    size = sum(sizes.values())
    if size > MAX_OBJECT_BYTES:
        reason = f"the object is {size} bytes as JSON; at most {MAX_OBJECT_BYTES} (1.5 MiB)"
        raise Invalid("the resource is too large", [FieldError(max(sizes, key=sizes.__getitem__), reason)])


def check_snapshot(store: Store, res: Resource) -> None:
    spec = res.spec
    if isinstance(spec, JobSpec):
        check_snapshot_owner(store, res.metadata.project, spec.template.snapshot, "spec.template.snapshot")
    else:
        check_snapshot_owner(store, res.metadata.project, getattr(spec, "snapshot", None), "spec.snapshot")


def create_resource(store: Store, who: Principal, res: Resource, key: str | None = None) -> Resource:
    check_snapshot(store, res)
    if isinstance(res, Job):
        check_no_cycle(store, res)
    store.ensure_project(res.metadata.project)
    return store.create(
        res, idempotency_key=key, events=[(Reason.CREATED, f"{res.kind} created by {who.name}")]
    )


# A controller's status write between our read and our write is retried, not refused; a short random pause
# before each retry lets a writer that writes back to back (a controller's busy loop) leave us a gap.
APPLY_TRIES = 50
APPLY_PAUSE = 0.002  # seconds, at most, times the number of tries so far


def apply_resource(
    store: Store, who: Principal, res: Resource, key: str | None = None
) -> tuple[Resource, ApplyOutcome]:
    """Create the resource, or bring an existing one to the document (declarative, like kubectl apply).
    A document without a resourceVersion wins over what changed meanwhile (the controller writes status
    all the time): the write is tried again on a fresh read; one with a resourceVersion must match it."""
    return retry_apply(res, lambda: _apply_once(store, who, res, key))


def retry_apply(res: Resource, once: Callable[[], T]) -> T:
    """`once()`, tried again on a Conflict unless `res` names the resourceVersion it was based on."""
    for attempt in range(APPLY_TRIES):
        try:
            return once()
        except Conflict:
            if res.metadata.resourceVersion is not None or attempt == APPLY_TRIES - 1:
                raise
            time.sleep(random.uniform(0, APPLY_PAUSE * (attempt + 1)))
    raise AssertionError("unreachable")


def _apply_once(
    store: Store, who: Principal, res: Resource, key: str | None
) -> tuple[Resource, ApplyOutcome]:
    m = res.metadata
    try:
        current = store.get(type(res), m.project, m.name)
    except NotFound:
        try:
            return create_resource(store, who, res, key), ApplyOutcome.CREATED
        except Conflict:  # created concurrently: fall through to update it
            current = store.get(type(res), m.project, m.name)
    merged = apply_change(current, res)
    if merged is None:
        return current, ApplyOutcome.UNCHANGED
    if merged.spec != current.spec:
        check_snapshot(store, res)
        if isinstance(res, Job):
            check_no_cycle(store, res)
    event = (Reason.UPDATED, f"{res.kind} updated by {who.name}")
    updated = store.replace(merged, current.metadata.resourceVersion, events=[event])
    return updated, ApplyOutcome.CONFIGURED


def apply_change(current: Resource, res: Resource) -> Resource | None:
    """`current` brought to the document `res` (its spec, labels and annotations), or None when that changes
    nothing. Conflict when it is being deleted or `res` names another resourceVersion; Invalid for an
    Experiment's spec (it runs once)."""
    m = res.metadata
    if current.metadata.deletionTimestamp is not None:
        raise Conflict(f"{res.kind} {m.name!r} is being deleted; apply again once it is gone")
    if m.resourceVersion is not None and m.resourceVersion != current.metadata.resourceVersion:
        raise Conflict(
            f"{res.kind} {m.name!r} has changed since you read it (resourceVersion "
            f"{current.metadata.resourceVersion}, yours {m.resourceVersion}); read it again and retry"
        )
    same_spec = current.spec == res.spec
    if isinstance(res, Experiment) and not same_spec:
        raise Invalid(
            "an Experiment runs once; its spec cannot change",
            [
                FieldError(
                    "spec", "immutable once created: delete the Experiment or apply it under a new name"
                )
            ],
        )
    if same_spec and current.metadata.labels == m.labels and current.metadata.annotations == m.annotations:
        return None
    merged = current.model_copy(update={"spec": res.spec})
    merged.metadata = current.metadata.model_copy(update={"labels": m.labels, "annotations": m.annotations})
    return merged


def list_resources(
    store: Store,
    kind: type[Resource],
    project: str,
    selector: str | None,
    limit: int | None = None,
    token: str | None = None,
) -> str:
    """A page of resources, oldest first, as the List document's JSON: its revision (to watch from) and the
    token that continues after it (null: that was all). Items come as JSON straight from the store."""
    labels, after = parse_selector(selector), _decode(token)
    revision = store.revision(kind, project)  # read first: a watch from it misses nothing listed after
    page = store.list_documents(kind, project, labels=labels, limit=limit, after=after)
    last = page[-1] if limit is not None and len(page) == limit else None
    meta = {"revision": revision, "continue": _encode(last.created, last.uid) if last else None}
    items = ",".join(d.json for d in page)
    return (
        f'{{"apiVersion":"{API_VERSION}","kind":"{kind.__name__}List",'
        f'"metadata":{json.dumps(meta)},"items":[{items}]}}'
    )


def _encode(created: datetime | None, uid: str | None) -> str:
    raw = json.dumps([created.isoformat() if created else None, uid]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(token: str | None) -> tuple[datetime, str] | None:
    if not token:
        return None
    try:
        created, uid = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return datetime.fromisoformat(created), str(uid)
    except (ValueError, TypeError):
        raise Invalid(
            "bad continue token", [FieldError("continue", "use the token a list returned")]
        ) from None


def watch_resources(
    store: Store, notifier: Notifier, kind: type[Resource], project: str, since: int | None
) -> AsyncIterator[bytes]:
    """Check whether `since` can still be served (410-like Gone otherwise), then stream."""
    if since is not None and watch.gone(store, since):
        raise Gone(
            f"changes after revision {since} are no longer kept; list again and watch from its revision"
        )
    return watch.watch(store, notifier, kind, project, since)


def parse_selector(selector: str | None) -> dict[str, str] | None:
    if not selector:
        return None
    labels = {}
    for part in selector.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise Invalid("bad label selector", [FieldError("labelSelector", f"{part!r} is not key=value")])
        labels[key.strip()] = value.strip()
    try:
        return check_labels(labels)  # a selector no label could match is a mistake; NUL would reach SQL
    except ValueError as exc:
        raise Invalid("bad label selector", [FieldError("labelSelector", str(exc))]) from None


def delete_resource(
    store: Store, notifier: Notifier, who: Principal, kind: type[Resource], project: str, name: str
) -> Resource:
    """Mark for deletion; the controller stops what runs, then removes it (and the Runs it owns)."""
    res = store.get(kind, project, name)
    marked = store.mark_deleted(res, events=[(Reason.DELETING, f"deletion requested by {who.name}")])
    notifier.touch(marked.uid)
    return marked


def run_usage(store: Store | KubeResources, runtime: Runtime, project: str, name: str) -> dict:
    """Resource usage of the run's current attempt, read through the runtime; empty once it has ended."""
    run = cast(Run, store.get(Run, project, name))
    att = run.status.attempts[-1] if run.status.attempts else None
    usage = runtime.metrics(att.handle) if att and att.handle and not run.status.phase.is_terminal() else {}
    return {"name": name, "phase": run.status.phase.value, "attempt": att.attempt if att else None, **usage}


def request_stop(store: Store, notifier: Notifier, who: Principal, project: str, name: str) -> Run:
    while True:
        run = store.get(Run, project, name)
        if run.status.phase.is_terminal() or run.spec.stopRequested:
            return run
        run.spec.stopRequested = True
        try:
            updated = store.replace(
                run,
                run.metadata.resourceVersion,
                events=[(Reason.STOP_REQUESTED, f"stop requested by {who.name}")],
            )
        except Conflict:
            continue  # the controller wrote status meanwhile: read again
        notifier.touch(updated.uid)
        return updated
