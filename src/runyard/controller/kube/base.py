"""What every controller on a cluster shares: informers fill caches from watches (a failed watch lists
again, counted), workers reconcile queued items while this process leads, and what comes while it does
not is kept aside and queued again the moment it leads (a late renewal is no transition the elector
reports, and nothing seen meanwhile may be lost). On becoming leader every cached object of the kinds it
reconciles is queued once: level-triggered, not edge. A subclass registers its informers and reconciles.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Generic, Literal, Protocol, Required, TypedDict, TypeVar

from runyard.controller.kube.informer import Informer, Key, pod_key, pod_version
from runyard.controller.kube.workqueue import WorkQueue
from runyard.core.clock import now
from runyard.core.resources import Resource

log = logging.getLogger(__name__)

EventType = Literal["Normal", "Warning"]
Item = TypeVar("Item", bound=tuple[str, ...])
Work = tuple[str, str, str]  # (kind, namespace, name): most controllers' queue item


class Elector(Protocol):
    def is_leader(self) -> bool: ...


class Cluster(TypedDict, total=False):
    """KindController's keywords that a subclass passes on unchanged (as `**cluster`)."""

    api_client: Required[Any]
    namespaces: list[str] | None
    workers: int
    calls: Any


class KindController(Generic[Item]):
    """The lifecycle: start, stop, leading, resync, the watches and the leader-only work loop.

    A subclass fills `_informers` (through `_watch_resources` and `_watch_objects`), names in `kinds` the
    kinds it reconciles (resync queues their cached objects) and implements `_reconcile(item)`."""

    kinds: tuple[str, ...] = ()
    thread_prefix = "controller"

    def __init__(
        self,
        resources: Any,
        elector: Elector,
        *,
        api_client: Any,
        namespaces: list[str] | None = None,
        workers: int = 2,
        calls: Any = None,
        image: str = "",
        server_url: str = "",
    ):
        """`image`, `server_url`: what the pods a controller makes run and reach the server at."""
        self.resources, self.elector, self.api_client = resources, elector, api_client
        self.workers, self.calls = workers, calls
        self.image, self.server_url = image, server_url
        self.scopes: list[str | None] = list(namespaces) if namespaces else [None]
        self.queue: WorkQueue[Item] = WorkQueue()
        self.reconciled = 0  # reconciles that wrote or launched something
        self._informers: dict[tuple[str, str | None], Informer[Any]] = {}
        self._pod_sources: list[Any] = []  # the API server's sources (pods, Deployments, ...): their relists
        self._deferred: set[Item] = set()  # queued while not leading
        self._restarts = 0  # watches that failed and listed again
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

    # -- what a subclass provides

    def _reconcile(self, item: Item) -> None:
        raise NotImplementedError

    def _item(self, kind: str, obj: Resource) -> Item:
        """The queue's item for a cached object of `kind` (what resync queues)."""
        return (kind, obj.metadata.project, obj.metadata.name)  # type: ignore[return-value]

    # -- lifecycle

    def start(self) -> None:
        """Start the watches, wait for their first lists, then the workers."""
        for (kind, scope), informer in self._informers.items():
            self._spawn(f"watch-{kind}-{scope or 'all'}", self._watch, informer)
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
        """The elector's on_change: on becoming leader, look at everything once, and revoke the tokens of
        objects deleted while no leader watched (their DELETED events are gone)."""
        if leads:
            self.resync()
            self.sweep_tokens()

    def sweep_tokens(self) -> int:
        """For a controller that issues tokens (`self.tokens`): revoke those of its kinds' objects that are
        not in its caches any more; best effort (a database down now is tried at the next leadership)."""
        tokens = getattr(self, "tokens", None)
        if tokens is None:
            return 0
        scoped = [s for s in self.scopes if s is not None] or None
        swept = 0
        for kind in self.kinds:
            try:
                swept += tokens.sweep(kind, lambda kind=kind: self._uids(kind), scoped)
            except Exception as exc:
                log.warning("revoking the tokens of deleted %ss: %s", kind, exc)
        return swept

    def _uids(self, kind: str) -> set[str]:
        """The uids of the cached objects of `kind`."""
        informers = [i for (k, _), i in self._informers.items() if k == kind]
        return {o.uid for informer in informers for o in informer.items()}

    def resync(self) -> None:
        for (kind, _), informer in self._informers.items():
            if kind in self.kinds:
                for obj in informer.items():
                    self.queue.add(self._item(kind, obj))

    @property
    def relists(self) -> int:
        """Lists beyond each watch's first: after 410 Gone, or a watch that failed and started over."""
        sources = [*self._pod_sources, self.resources]
        return self._restarts + sum(int(getattr(s, "relists", 0)) for s in sources)

    def _spawn(self, name: str, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=f"{self.thread_prefix}-{name}", daemon=True)
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

    def _watch_resources(
        self, cls: type[Resource], scope: str | None, handler: Callable[[str, Any], None]
    ) -> Informer[Any]:
        """Cache one of runyard's kinds in `scope` (None: every namespace) through the store's backend."""
        source = ResourceSource(self.resources, cls.__name__, scope)
        informer = Informer(f"{cls.plural}/{scope}", source, resource_key, resource_version, handler)
        self._informers[(cls.__name__, scope)] = informer
        return informer

    def _watch_objects(
        self, kind: str, scope: str | None, name: str, source: Any, handler: Callable[[str, dict], None]
    ) -> None:
        """Cache the API server's own objects (pods, Deployments, ...) as `source` lists and watches them;
        its relists count."""
        self._pod_sources.append(source)
        self._informers[(kind, scope)] = Informer(f"{name}/{scope}", source, pod_key, pod_version, handler)

    def _cache(self, kind: str, namespace: str) -> Informer[Any]:
        return self._informers.get((kind, None)) or self._informers[(kind, namespace)]

    # -- work

    def _work(self) -> None:
        """Reconcile while leading; what comes while not is kept aside until leadership is back."""
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
                log.exception("reconciling %s; trying again", "/".join(item))
                self.queue.add_after(item, 1.0)
            finally:
                self.queue.done(item)

    def _count_reconciled(self) -> None:
        with self._lock:
            self.reconciled += 1

    def _warn(self, res: Resource, reason: str, message: str) -> None:
        record_event(self.api_client, res, reason, message, "Warning")


def record_event(api_client: Any, res: Resource, reason: str, message: str, type_: EventType) -> None:
    """An Event on the object (what `kubectl describe` lists). Best effort: an Event lost is no reason to
    act again."""
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
        "type": type_,
        "source": {"component": "runyard-operator"},
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
    try:
        core = client.CoreV1Api(api_client)
        core.create_namespaced_event(m.project, event, _preload_content=False)
    except Exception as exc:
        log.warning("event %s on %s %s/%s not recorded: %s", reason, res.kind, m.project, m.name, exc)


class ResourceSource:
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


def resource_key(res: Resource) -> Key:
    return res.metadata.project, res.metadata.name


def resource_version(res: Resource) -> int:
    return res.metadata.resourceVersion or 0


class ProjectObjects:
    """What a project namespace needs (quota, limits, Spark's service account), applied once per namespace
    this process sees; what exists already is left as it is. Disabled, it applies nothing."""

    def __init__(self, api_client: Any, enabled: bool = True):
        self.api_client, self.enabled = api_client, enabled
        self._done: set[str] = set()
        self._lock = threading.Lock()

    def ensure(self, namespace: str) -> None:
        with self._lock:
            if not self.enabled or namespace in self._done:
                return
            self._done.add(namespace)
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
