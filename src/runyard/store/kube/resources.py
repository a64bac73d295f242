"""runyard's resources kept as custom resources in the Kubernetes API (etcd behind it): a project is a
namespace, our integer resourceVersion is Kubernetes' own, status is written through the status subresource.

The API server already does what the SQL store does by hand (optimistic concurrency, a change feed with
versions), so this is a thin translation; the one piece of logic is `watch`, which keeps a watch alive
across dropped connections (resuming from the last version seen) and across 410 Gone (listing again and
yielding only the differences, so a consumer sees each change once).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from runyard.core.errors import Gone, Invalid, RunyardError, invalid_from_pydantic
from runyard.core.kinds import API_GROUP, API_VERSION, resolve_kind
from runyard.core.resources import ALL_KINDS, Resource
from runyard.kube.api import CallCounter, translate, translated

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

log = logging.getLogger(__name__)

VERSION = API_VERSION.split("/")[1]
MERGE_PATCH = "application/merge-patch+json"
# Kubernetes metadata that runyard's ObjectMeta has no field for (it is Strict): dropped when read.
_META_KEPT = ("name", "labels", "annotations", "uid", "generation", "creationTimestamp", "deletionTimestamp")

Kind = str | type[Resource]


def plural_of(kind: Kind) -> str:
    """'Experiment', 'experiments', 'exp' or the class itself to the resource's plural."""
    return kind.plural if isinstance(kind, type) else resolve_kind(kind).plural


def to_resource(obj: dict[str, Any]) -> Resource:
    """A custom object as runyard's typed resource (namespace -> project). Invalid if it does not fit."""
    kind = obj.get("kind")
    cls = ALL_KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise Invalid(f"not a runyard kind: {kind!r}")
    meta = obj.get("metadata") or {}
    ours: dict[str, Any] = {k: meta[k] for k in _META_KEPT if meta.get(k) is not None}
    if meta.get("namespace"):
        ours["project"] = meta["namespace"]
    if meta.get("resourceVersion"):
        ours["resourceVersion"] = int(meta["resourceVersion"])
    refs = meta.get("ownerReferences") or []
    ours["ownerReferences"] = [{"kind": r["kind"], "name": r["name"], "uid": r["uid"]} for r in refs]
    doc = {k: v for k, v in obj.items() if k in ("kind", "spec", "status") and v is not None}
    try:
        return cls.model_validate({**doc, "apiVersion": API_VERSION, "metadata": ours})
    except ValidationError as exc:
        raise invalid_from_pydantic(exc) from exc


def to_object(res: Resource) -> dict[str, Any]:
    """The custom object for a resource (project -> namespace); unset fields are left out, not null (the
    CRDs' structural schemas have no nullable fields), and owners are runyard.dev objects."""
    obj = res.model_dump(mode="json", exclude_none=True)
    meta = obj["metadata"]
    meta["namespace"] = meta.pop("project")
    if res.metadata.resourceVersion is not None:
        meta["resourceVersion"] = str(res.metadata.resourceVersion)
    meta["ownerReferences"] = [
        {"apiVersion": API_VERSION, "blockOwnerDeletion": True, "controller": True, **ref}
        for ref in meta.get("ownerReferences", [])
    ]
    for key in ("labels", "annotations", "ownerReferences"):
        if not meta.get(key):
            meta.pop(key, None)
    return obj


class KubeResources:
    """get/list/create/replace/delete, status writes and watches of runyard's kinds over the Kubernetes API.

    Errors are runyard's (NotFound, Conflict on an existing name or a stale resourceVersion, Invalid,
    Unavailable). `relists` counts the lists a watch had to make after 410 Gone (a healthy watch makes
    none).
    """

    def __init__(
        self,
        api_client: ApiClient,
        calls: CallCounter | None = None,
        *,
        watch_timeout: float = 60.0,
        retry_delay: float = 1.0,
    ) -> None:
        from kubernetes.client import CustomObjectsApi

        if calls is not None:
            calls.instrument(api_client)
        self.calls = calls
        self.api_client = api_client  # for the other APIs beside these objects (namespaces)
        self._api = CustomObjectsApi(api_client)
        self.watch_timeout = watch_timeout  # a watch request is renewed this often (server side)
        self.retry_delay = retry_delay  # the wait before reconnecting after the API failed
        self.relists = 0

    # --- reads ------------------------------------------------------------------------------------------

    def get(self, kind: Kind, project: str, name: str) -> Resource:
        with translated():
            obj = self._api.get_namespaced_custom_object(API_GROUP, VERSION, project, plural_of(kind), name)
        return to_resource(obj)

    def list(
        self, kind: Kind, project: str | None = None, labels: dict[str, str] | None = None
    ) -> tuple[list[Resource], str]:
        """The resources of one kind (in one project, or all) and the version to watch from after them."""
        data = self._list_raw(plural_of(kind), project, labels)
        return _decode_all(data.get("items") or []), data["metadata"]["resourceVersion"]

    def _list_raw(self, plural: str, project: str | None, labels: dict[str, str] | None) -> dict[str, Any]:
        selector = ",".join(f"{k}={v}" for k, v in (labels or {}).items()) or None
        with translated():
            if project is None:
                return self._api.list_cluster_custom_object(
                    API_GROUP, VERSION, plural, label_selector=selector
                )
            return self._api.list_namespaced_custom_object(
                API_GROUP, VERSION, project, plural, label_selector=selector
            )

    # --- writes -----------------------------------------------------------------------------------------

    def create(self, res: Resource) -> Resource:
        """Store a new resource; Conflict when its name is taken. The status subresource ignores `status`
        here, as the API server does for any CRD with one: write it with update_status after."""
        obj = to_object(res)
        obj["metadata"].pop("resourceVersion", None)
        with translated():
            created = self._api.create_namespaced_custom_object(
                API_GROUP, VERSION, res.metadata.project, res.plural, obj
            )
        return to_resource(created)

    def replace(self, res: Resource) -> Resource:
        """Write spec and metadata (status is left as stored); Conflict if res's resourceVersion is stale."""
        with translated():
            written = self._api.replace_namespaced_custom_object(
                API_GROUP, VERSION, res.metadata.project, res.plural, res.metadata.name, to_object(res)
            )
        return to_resource(written)

    def update_status(self, res: Resource) -> Resource:
        """Write status only (the status subresource); Conflict if res's resourceVersion is stale."""
        with translated():
            written = self._api.replace_namespaced_custom_object_status(
                API_GROUP, VERSION, res.metadata.project, res.plural, res.metadata.name, to_object(res)
            )
        return to_resource(written)

    def patch_status(self, kind: Kind, project: str, name: str, status: dict[str, Any]) -> Resource:
        """Merge `status` into the stored one (null removes a field), whatever its version: for writers that
        own the fields they write."""
        with translated():
            written = self._api.patch_namespaced_custom_object_status(
                API_GROUP,
                VERSION,
                project,
                plural_of(kind),
                name,
                {"status": status},
                _content_type=MERGE_PATCH,
            )
        return to_resource(written)

    def delete(self, kind: Kind, project: str, name: str) -> None:
        """Delete it (its dependents go with it: the garbage collector follows ownerReferences)."""
        with translated():
            self._api.delete_namespaced_custom_object(
                API_GROUP, VERSION, project, plural_of(kind), name, propagation_policy="Background"
            )

    # --- watch ------------------------------------------------------------------------------------------

    def watch(
        self,
        kind: Kind,
        project: str | None,
        resource_version: str | None,
        stop: threading.Event,
        known: Iterable[Resource] = (),
        relist: bool = True,
    ) -> Iterator[tuple[str, Resource]]:
        """(ADDED|MODIFIED|DELETED, resource) for each change after `resource_version`, until `stop` is set.

        Without a version it lists first and yields what exists as ADDED. A dropped connection or an
        expired server-side timeout resumes from the last version seen; 410 Gone (the version is older than
        the API server keeps) lists again and yields the differences from what this watch has yielded
        (and `known`: what the caller listed), counted in `relists`; with `relist=False` Gone is raised
        instead, for a caller that passes it on (the REST API's watch: its client lists again). Other
        failures are retried after `retry_delay`.
        """
        plural = plural_of(kind)
        seen: dict[tuple[str, str], Resource] = {(r.metadata.project, r.metadata.name): r for r in known}
        version = resource_version
        while not stop.is_set():
            try:
                if not version:
                    data = self._list_raw(plural, project, None)
                    version = data["metadata"]["resourceVersion"]
                    yield from _differences(seen, _decode_all(data.get("items") or []))
                for event_type, obj in self._stream(plural, project, version, stop):
                    meta = obj.get("metadata") or {}
                    version = meta.get("resourceVersion") or version
                    res = _decode(obj) if event_type != "BOOKMARK" else None
                    if res is None:
                        continue
                    key = (res.metadata.project, res.metadata.name)
                    if event_type == "DELETED":
                        seen.pop(key, None)
                    else:
                        seen[key] = res
                    yield event_type, res
            except Gone:
                if not relist:
                    raise
                log.info("watch of %s from version %s: gone, listing again", plural, version)
                self.relists += 1
                version = None
            except RunyardError as exc:  # Unavailable above all: the API server restarting, a network cut
                log.warning("watch of %s failed (%s); retrying", plural, exc)
                stop.wait(self.retry_delay)

    def _stream(
        self, plural: str, project: str | None, version: str, stop: threading.Event
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """One watch request's events, until the server ends it, the connection drops or `stop` is set
        (which shuts the connection down from a helper thread, so a quiet watch stops at once)."""
        kwargs: dict[str, Any] = {
            "watch": True,
            "resource_version": version,
            "allow_watch_bookmarks": True,
            "timeout_seconds": max(1, int(self.watch_timeout)),
            "_preload_content": False,
            "_request_timeout": (10, self.watch_timeout + 30),
        }
        with translated():
            if project is None:
                resp = self._api.list_cluster_custom_object(API_GROUP, VERSION, plural, **kwargs)
            else:
                resp = self._api.list_namespaced_custom_object(API_GROUP, VERSION, project, plural, **kwargs)
        done = threading.Event()
        guard = threading.Thread(target=_shutdown_on, args=(stop, done, resp), daemon=True)
        guard.start()
        try:
            buffer = b""
            with translated():
                for chunk in resp.stream(amt=None, decode_content=False):
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    for line in filter(None, (raw.strip() for raw in lines)):
                        event = json.loads(line)
                        if event.get("type") == "ERROR":
                            raise _status_error(event.get("object") or {})
                        if stop.is_set():
                            return
                        yield event["type"], event.get("object") or {}
        except Exception:
            if stop.is_set():
                return  # the connection was shut down to stop
            raise
        finally:
            done.set()
            resp.close()  # a watch's connection is not reused half-read
            resp.release_conn()


def _shutdown_on(stop: threading.Event, done: threading.Event, resp: Any) -> None:
    while not done.is_set():
        if stop.wait(0.2):
            with contextlib.suppress(ValueError, RuntimeError, OSError):  # already closed: nothing to end
                resp.shutdown()
            return


def _status_error(status: dict[str, Any]) -> RunyardError:
    """A watch stream's ERROR event (a Status, e.g. 410 Expired) as the error the same Status would be."""
    from kubernetes.client.exceptions import ApiException

    exc = ApiException(status=status.get("code") or 500, reason=status.get("reason"))
    exc.body = json.dumps(status)
    return translate(exc)


def _decode(obj: dict[str, Any]) -> Resource | None:
    """A watched or listed object, or None (logged) for one that does not fit the model: one bad object,
    written around the CRD's validation, must not stop the others from being seen."""
    try:
        return to_resource(obj)
    except Invalid as exc:
        meta = obj.get("metadata") or {}
        log.warning("skipping %s %s/%s: %s", obj.get("kind"), meta.get("namespace"), meta.get("name"), exc)
        return None


def _decode_all(items: Iterable[dict[str, Any]]) -> list[Resource]:
    return [res for res in map(_decode, items) if res is not None]


def _differences(
    seen: dict[tuple[str, str], Resource], listed: list[Resource]
) -> Iterator[tuple[str, Resource]]:
    """What a fresh list changes against what was yielded: new ADDED, newer MODIFIED, missing DELETED."""
    current = {(r.metadata.project, r.metadata.name): r for r in listed}
    for key, res in current.items():
        before = seen.get(key)
        if before is None:
            seen[key] = res
            yield "ADDED", res
        elif before.metadata.resourceVersion != res.metadata.resourceVersion:
            seen[key] = res
            yield "MODIFIED", res
    for key in [k for k in seen if k not in current]:
        yield "DELETED", seen.pop(key)
