"""Watch-fed caches (client-go's informers, small): list once, then watch from the list's resourceVersion and
keep a copy of every object, so the operator reconciles from memory and its API calls are the writes.

A dropped stream resumes from the last resourceVersion seen (no relist); only 410 Gone (the history it
needs was compacted) re-lists, and the differences against the cache become events, so nothing is lost
and nothing is seen twice. `relists` counts those: a healthy watch never re-lists.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, Generic, Protocol, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
Key = tuple[str, str]  # (namespace, name)
RELIST = "RELIST"  # a source's event carrying the complete list after a 410


class Source(Protocol[T]):
    def list(self) -> tuple[list[T], str]: ...

    def watch(self, resource_version: str, stop: threading.Event) -> Iterator[tuple[str, Any]]: ...


class Informer(Generic[T]):
    def __init__(
        self,
        name: str,
        source: Source[T],
        key: Callable[[T], Key],
        version: Callable[[T], int],
        on_change: Callable[[str, T], None],
    ):
        self.name, self.source = name, source
        self.key, self.version, self.on_change = key, version, on_change
        self.cache: dict[Key, T] = {}
        self.synced = threading.Event()
        self._lock = threading.Lock()

    def get(self, key: Key) -> T | None:
        with self._lock:
            return self.cache.get(key)

    def items(self) -> list[T]:
        with self._lock:
            return list(self.cache.values())

    def put(self, obj: T) -> None:
        """What the operator itself just wrote: cached now, so its next look does not act on the old copy
        (the watch event that follows carries the same version and changes nothing)."""
        self._apply("MODIFIED", obj, notify=False)

    def run(self, stop: threading.Event) -> None:
        items, rv = self.source.list()
        self._replace(items)  # run again after a failure: what vanished meanwhile is DELETED
        self.synced.set()
        for type_, obj in self.source.watch(rv, stop):
            if stop.is_set():
                return
            if type_ == RELIST:
                self._replace(obj)
            else:
                self._apply(type_, obj)

    def _replace(self, items: list[T]) -> None:
        fresh = {self.key(o): o for o in items}
        with self._lock:
            gone = [o for k, o in self.cache.items() if k not in fresh]
        for obj in gone:
            self._apply("DELETED", obj)
        for obj in fresh.values():
            self._apply("MODIFIED", obj)

    def _apply(self, type_: str, obj: T, notify: bool = True) -> None:
        k = self.key(obj)
        with self._lock:
            old = self.cache.get(k)
            if type_ == "DELETED":
                if old is None:
                    return
                del self.cache[k]
            else:
                if old is not None and self.version(old) >= self.version(obj):
                    return  # seen already (our own write, or a relist of what we hold)
                self.cache[k] = obj
        if notify:
            self.on_change(type_, obj)


class PodSource:
    """The pods runyard manages (by label), cluster-wide or in one namespace, as raw dicts: list, then a
    watch that resumes after a dropped stream and re-lists on 410 Gone."""

    def __init__(
        self,
        api_client: Any,
        namespace: str | None,
        selector: str,
        timeout_seconds: int = 30,
    ):
        from kubernetes import client

        self.core = client.CoreV1Api(api_client)
        self.namespace, self.selector = namespace, selector
        self.timeout_seconds = timeout_seconds
        self.relists = 0

    def list(self) -> tuple[list[dict], str]:
        resp = self._call(watch=False)
        body = json.loads(resp.data)
        return body.get("items") or [], body["metadata"]["resourceVersion"]

    def watch(self, resource_version: str, stop: threading.Event) -> Iterator[tuple[str, Any]]:
        rv = resource_version
        while not stop.is_set():
            try:
                for event in self._stream(rv, stop):
                    type_, obj = str(event.get("type")), event.get("object") or {}
                    if type_ == "ERROR":
                        if obj.get("code") == 410:
                            raise _Gone
                        log.warning("pod watch: %s", obj.get("message"))
                        break
                    rv = obj.get("metadata", {}).get("resourceVersion") or rv
                    if type_ != "BOOKMARK":
                        yield type_, obj
            except _Gone:
                self.relists += 1
                items, rv = self.list()
                yield RELIST, items
            except Exception as exc:  # a dropped connection: resume from rv
                if stop.is_set():
                    return
                status = getattr(exc, "status", None)
                if status == 410:
                    self.relists += 1
                    items, rv = self.list()
                    yield RELIST, items
                    continue
                log.info("pod watch dropped (%s); resuming from %s", exc, rv)
                stop.wait(0.2)

    def _stream(self, rv: str, stop: threading.Event) -> Iterator[dict]:
        """One watch request's events; `stop` shuts its connection down from a helper thread, so a quiet
        watch ends at once."""
        resp = self._call(watch=True, resource_version=rv)
        done = threading.Event()
        threading.Thread(target=_shutdown_on, args=(stop, done, resp), daemon=True).start()
        try:
            buffer = b""
            for chunk in resp.stream(amt=None, decode_content=False):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in filter(None, (raw.strip() for raw in lines)):
                    yield json.loads(line)
        finally:
            done.set()
            resp.close()  # a watch's connection is not reused half-read
            resp.release_conn()

    def _call(self, watch: bool, **kwargs: Any) -> Any:
        args: dict[str, Any] = {"label_selector": self.selector, "_preload_content": False}
        if watch:
            args.update(watch=True, allow_watch_bookmarks=True, timeout_seconds=self.timeout_seconds)
            args.update(kwargs)
        if self.namespace is None:
            return self.core.list_pod_for_all_namespaces(**args)
        return self.core.list_namespaced_pod(self.namespace, **args)


class _Gone(Exception):
    pass


def _shutdown_on(stop: threading.Event, done: threading.Event, resp: Any) -> None:
    while not done.is_set():
        if stop.wait(0.2):
            with contextlib.suppress(Exception):
                resp.shutdown()
            return


def pod_key(pod: dict) -> Key:
    m = pod["metadata"]
    return m.get("namespace", ""), m["name"]


def pod_version(pod: dict) -> int:
    return int(pod["metadata"].get("resourceVersion") or 0)
