"""A fake Kubernetes API server for tests: kmock's KubernetesEmulator, extended with what runyard relies on.

No real kube-apiserver can run here, so the store, runtime and operator tests talk to this one. kmock 0.8
stores objects as plain JSON and routes by URL, but lacks what optimistic concurrency and watches need:
resourceVersion, 409 on a stale write, the status subresource, watch-from-version with 410 Gone, label
selectors, PUT, cluster-scoped namespaces, owner-reference garbage collection, CRD schemas (once a CRD is
stored, its objects are pruned and validated against it: tests/kube/schemas.py). This subclass serves every
object request (main resource and /status) itself, from one store behind one global revision counter as
etcd keeps; everything else (discovery, other subresources such as pods/log, reactions a test adds with
kmock's DSL, which take precedence) stays kmock's.

The state is guarded by a threading lock so tests may inspect or change it from their own thread while
the server runs its asyncio loop in another (see cluster.py).
"""

from __future__ import annotations

import asyncio
import bisect
import copy
import datetime
import re
import secrets
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, NamedTuple

import attrs
import kmock
from kmock._internal import parsing, rendering
from tests.kube import schemas

Obj = dict[str, Any]

_kmock_parse_path = parsing.parse_path


def _parse_path(path: str) -> parsing.ParsedPath:
    """kmock 0.8 fails to parse /api/v1/namespaces (it expects a namespace name after "namespaces") before
    any handler sees the request; the emulator routes object requests itself (route() below) anyway."""
    try:
        return _kmock_parse_path(path)
    except ValueError:
        return parsing.ParsedPath(group="", version="v1", plural="namespaces")


parsing.parse_path = _parse_path


class Route(NamedTuple):
    """An object request as Kubernetes routes it (kmock's parser has no cluster-scoped namespaces)."""

    group: str
    plural: str
    namespace: str | None
    name: str | None
    subresource: str | None


class Key(NamedTuple):
    group: str
    plural: str
    namespace: str | None
    name: str


class Event(NamedTuple):
    revision: int
    key: Key
    type: str
    object: Obj


def route(path: str) -> Route | None:
    """/api/v1[/namespaces/NS]/PLURAL[/NAME[/SUB]] and /apis/GROUP/VERSION/... to their parts."""
    parts = [p for p in path.strip("/").split("/") if p]
    if len(parts) >= 3 and parts[0] == "api":
        group, rest = "", parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, rest = parts[1], parts[3:]
    else:
        return None
    namespace = None
    # namespaces/NS/PLURAL... is namespaced; namespaces[/NAME[/status|finalize]] is the Namespace itself.
    if (
        len(rest) >= 3
        and rest[0] == "namespaces"
        and not (len(rest) == 3 and rest[2] in ("status", "finalize"))
    ):
        namespace, rest = rest[1], rest[2:]
    if len(rest) > 3:
        return None
    return Route(group, rest[0], namespace, *(rest[1:] + [None, None])[:2])


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 (strategic merge is approximated by it: lists are replaced, not merged by key)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


def json_patch(target: Obj, ops: list[Obj]) -> Obj:
    """RFC 6902's add/replace/remove/test, enough for what clients send."""
    doc = copy.deepcopy(target)
    for op in ops:
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        node: Any = doc
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
        if op["op"] == "test":
            current = node[int(last)] if isinstance(node, list) else node.get(last)
            if current != op["value"]:
                raise invalid(f"test failed at {op['path']}")
        elif op["op"] == "remove":
            del node[int(last) if isinstance(node, list) else last]
        elif isinstance(node, list):
            idx = len(node) if last == "-" else int(last)
            if op["op"] == "add":
                node.insert(idx, op["value"])
            else:
                node[idx] = op["value"]
        else:
            node[last] = op["value"]
    return doc


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Label selectors: k=v, k==v, k!=v, k, !k, k in (a,b), k notin (a,b)."""
    for term in re.split(r",(?![^(]*\))", selector):
        term = term.strip()
        if not term:
            continue
        if m := re.fullmatch(r"(\S+)\s+(in|notin)\s+\((.*)\)", term):
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
            if (op == "in") != (key in labels and labels[key] in values):
                return False
        elif "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = re.split(r"==?", term, maxsplit=1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def fields_match(selector: str, obj: Obj) -> bool:
    """Field selectors on a dotted path: metadata.name and metadata.namespace (what clients use to watch one
    object), and the others the real server allows on some kinds (an Event's involvedObject.uid)."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        negate = "!=" in term
        key, value = re.split(r"!=|==?", term, maxsplit=1)
        actual: Any = obj
        for part in key.strip().split("."):
            actual = actual.get(part, "") if isinstance(actual, dict) else ""
        if (str(actual) == value.strip()) == negate:
            return False
    return True


def error(status: int, reason: str, message: str, **details: Any) -> kmock.KubernetesError:
    return kmock.KubernetesError(status=status, reason=reason, message=message, details=details or {})


def invalid(message: str, causes: list[Obj] | None = None) -> kmock.KubernetesError:
    return error(422, "Invalid", message, causes=causes or [])


CRD_GROUP = "apiextensions.k8s.io"
# What the API server (its admission and registry strategies) puts in a new object's status.
INITIAL_STATUS = {("", "pods"): {"phase": "Pending"}, ("", "namespaces"): {"phase": "Active"}}
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


@attrs.define(kw_only=True)
class Emulator(kmock.KubernetesEmulator):
    """kmock's emulator with resourceVersion, conflicts, status subresource, watch history and GC."""

    # How many events a watch can resume from (etcd's compaction window); tests shrink it or compact().
    history_size: int = 10_000
    # Refuse objects in a namespace that does not exist (404), as the API server does. Off by default:
    # tests that only exercise one component may skip creating namespaces.
    require_namespaces: bool = False

    revision: int = attrs.field(default=0, init=False)
    store: dict[Key, Obj] = attrs.field(factory=dict, init=False)
    _history: list[Event] = attrs.field(factory=list, init=False)  # by revision: watches bisect it
    _compacted: int = attrs.field(default=0, init=False)  # watches from before this get 410 Gone
    _state_lock: threading.Lock = attrs.field(factory=threading.Lock, init=False)
    _loop: asyncio.AbstractEventLoop | None = attrs.field(default=None, init=False)
    _changed: asyncio.Future[None] | None = attrs.field(default=None, init=False)
    _drops: int = attrs.field(default=0, init=False)  # bumped to end every open watch stream
    # A write hook tests may set to fail requests or play a controller: called with (verb, route, body).
    before_write: Callable[[str, Route, Any], None] | None = None

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        # Above kmock's own fallbacks (sub-priority 1 within the fallback), below anything a test adds.
        (self.fallback**1)[self._owns] << self._serve

    async def _handle(self, request: kmock.Request) -> Any:
        """kmock's RawHandler._handle, but without KubernetesEmulator's (which writes kmock's own object
        store before dispatching; ours writes in _serve, only when no reaction of the test intercepted the
        request), and deciding which reactions see the request in constant time: kmock asks `request in
        view`, which filters every request served so far, quadratic over a test (a bench's thousands of
        requests cost seconds each)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        priorities = [payload.priorities for payload in self._payloads]
        width = max((len(p) for p in priorities), default=0)
        keys = [tuple(-p for p in priority) + (0,) * (width - len(priority)) for priority in priorities]
        for index in sorted(range(len(keys)), key=lambda i: keys[i]):
            payload = self._payloads[index]
            if payload._disabled.is_set() or not self._sees(payload._source, request):
                continue
            try:
                return await payload(request)
            except rendering.ReactionMismatchError:  # either mismatch or depletion
                payload._disabled.set()
            except NotImplementedError:  # matched, but nothing to respond with
                pass
        raise NotImplementedError("no reaction matches the request")

    def _sees(self, view: Any, request: kmock.Request) -> bool:
        """Whether a reaction's view takes this request: a chain of plain filters and priorities up to this
        handler is decided on the request alone; anything else (slices, groups, streams) by kmock."""
        node = view
        while node is not self:
            if type(node) is kmock.Filter:
                if not node.criteria(request):
                    return False
            elif type(node) is not kmock.Priority:
                return request in view
            node = node._source
        return True

    def _owns(self, request: kmock.Request) -> bool:
        r = route(request.url.path)
        return r is not None and r.subresource in (None, "status") and r.plural not in ("", "watch")

    # --- state, usable from any thread ---------------------------------------------------------------

    def objects_of(self, plural: str, namespace: str | None = None, group: str | None = None) -> list[Obj]:
        """A copy of the live objects of one resource (any group unless given), for assertions."""
        with self._state_lock:
            return [
                copy.deepcopy(o)
                for k, o in self.store.items()
                if k.plural == plural and (group is None or k.group == group)
                if namespace is None or k.namespace == namespace
            ]

    def compact(self) -> None:
        """Forget the event history, as etcd's compaction does: watches from any older version get 410."""
        with self._state_lock:
            self._history.clear()
            self._compacted = self.revision

    def drop_watches(self) -> None:
        """End every open watch stream (a dropped connection, an API server restart)."""
        with self._state_lock:
            self._drops += 1
        self._notify()

    def _notify(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)
        self._changed = None

    def _record(self, key: Key, type_: str, obj: Obj) -> Obj:
        """Store a write under the next revision and keep its event for watches (caller holds the lock)."""
        self.revision += 1
        obj["metadata"]["resourceVersion"] = str(self.revision)
        if type_ == "DELETED":
            self.store.pop(key, None)
        else:
            self.store[key] = obj
        self._history.append(Event(self.revision, key, type_, copy.deepcopy(obj)))
        if len(self._history) > self.history_size:
            dropped = len(self._history) - self.history_size
            self._compacted = self._history[dropped - 1].revision
            del self._history[:dropped]
        return copy.deepcopy(obj)

    # --- serving ---------------------------------------------------------------------------------------

    async def _serve(self, request: kmock.Request) -> Any:
        r = route(request.url.path)
        assert r is not None
        method = request.method.value
        params = request.params
        if method == "GET" and params.get("watch", "").lower() in ("true", "1"):
            if r.name is not None:
                params = dict(params, fieldSelector=f"metadata.name={r.name}")
            return rendering.Response(status=200, payload=self._watch(r._replace(name=None), params))
        if method != "GET" and self.before_write is not None:
            self.before_write(method, r, request.data)
        with self._state_lock:
            result = self._dispatch(method, r, request, params)
        if method != "GET":
            self._notify()
        # Every answer names its status: kmock keeps the last one set on the reaction for later answers.
        return (
            result
            if isinstance(result, rendering.Response)
            else rendering.Response(status=200, payload=result)
        )

    def _dispatch(self, method: str, r: Route, request: kmock.Request, params: dict[str, str]) -> Any:
        if method == "GET" and r.name is None:
            return self._list(r, params)
        if method == "POST" and r.name is None:
            return rendering.Response(status=201, payload=self._create(r, request.data))
        if method == "DELETE" and r.name is None:  # deletecollection
            gone = [self._delete(k, params, request.data) for k, _ in sorted(self._matching(r, params))]
            return {
                "kind": "List",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": str(self.revision)},
                "items": gone,
            }
        if r.name is None:
            raise error(405, "MethodNotAllowed", f"{method} on a collection")
        key = Key(r.group, r.plural, r.namespace, r.name)
        current = self.store.get(key)
        applying = method == "PATCH" and "apply-patch" in request.headers.get("Content-Type", "")
        if current is None and applying and r.subresource is None:
            # Server-side apply creates what is missing (its field ownership is not modelled: an apply
            # is a merge patch here).
            return rendering.Response(status=201, payload=self._create(r._replace(name=None), request.data))
        if current is None:
            raise error(404, "NotFound", f'{r.plural} "{r.name}" not found', name=r.name, kind=r.plural)
        if method == "GET":
            return copy.deepcopy(current)
        if method == "DELETE":
            return self._delete(key, params, request.data)
        if method == "PUT":
            body = request.data
        elif method == "PATCH":
            ctype = request.headers.get("Content-Type", "")
            body = (
                json_patch(current, request.data)
                if "json-patch" in ctype
                else merge_patch(current, request.data)
            )
        else:
            raise error(405, "MethodNotAllowed", method)
        return self._update(key, current, body, status_only=r.subresource == "status")

    def _list(self, r: Route, params: dict[str, str]) -> Obj:
        items = [copy.deepcopy(o) for _, o in sorted(self._matching(r, params), key=lambda ko: ko[0])]
        return {
            "kind": "List",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": str(self.revision)},
            "items": items,
        }

    def _matching(self, r: Route, params: dict[str, str]) -> list[tuple[Key, Obj]]:
        return [(k, o) for k, o in self.store.items() if self._selected(r, params, k, o)]

    @staticmethod
    def _selected(r: Route, params: dict[str, str], key: Key, obj: Obj) -> bool:
        if (key.group, key.plural) != (r.group, r.plural):
            return False
        if r.namespace is not None and key.namespace != r.namespace:
            return False
        labels = obj.get("metadata", {}).get("labels") or {}
        if not selector_matches(params.get("labelSelector", ""), labels):
            return False
        return fields_match(params.get("fieldSelector", ""), obj)

    def _create(self, r: Route, body: Any) -> Obj:
        if not isinstance(body, dict):
            raise error(400, "BadRequest", "the body is not a JSON object")
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
        name = meta.get("name") or ""
        if not NAME_RE.match(name) or len(name) > 253:
            cause = {
                "field": "metadata.name",
                "reason": "FieldValueInvalid",
                "message": f"invalid name {name!r}",
            }
            raise invalid(f"{r.plural} {name!r} is invalid: metadata.name", [cause])
        if r.namespace is not None and meta.get("namespace", r.namespace) != r.namespace:
            raise error(
                400, "BadRequest", "the namespace of the object does not match the namespace of the URL"
            )
        key = Key(r.group, r.plural, r.namespace, name)
        if (
            self.require_namespaces
            and r.namespace
            and Key("", "namespaces", None, r.namespace) not in self.store
        ):
            raise error(
                404, "NotFound", f'namespaces "{r.namespace}" not found', name=r.namespace, kind="namespaces"
            )
        if key in self.store:
            raise error(409, "AlreadyExists", f'{r.plural} "{name}" already exists', name=name, kind=r.plural)
        if r.namespace is not None:
            meta["namespace"] = r.namespace
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now(), generation=1)
        for k in ("resourceVersion", "deletionTimestamp"):
            meta.pop(k, None)
        obj.pop("status", None)  # written through the status subresource only, as for CRDs and pods
        if (r.group, r.plural) in INITIAL_STATUS:
            obj["status"] = dict(INITIAL_STATUS[r.group, r.plural])
        return self._record(key, "ADDED", self._admit(key, obj))

    def _update(self, key: Key, current: Obj, body: Any, status_only: bool) -> Obj:
        if not isinstance(body, dict):
            raise error(400, "BadRequest", "the body is not a JSON object")
        sent = (body.get("metadata") or {}).get("resourceVersion")
        if sent and sent != current["metadata"]["resourceVersion"]:
            raise error(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {key.plural} "{key.name}": the object has been modified; '
                "please apply your changes to the latest version and try again",
                name=key.name,
                kind=key.plural,
            )
        if status_only:
            obj = copy.deepcopy(current)
            if "status" in body:
                obj["status"] = copy.deepcopy(body["status"])
            else:
                obj.pop("status", None)
        else:
            obj = copy.deepcopy(body)
            meta = obj.setdefault("metadata", {})
            for k in ("uid", "creationTimestamp", "generation", "deletionTimestamp", "namespace", "name"):
                if k in current["metadata"]:
                    meta[k] = current["metadata"][k]
            if "status" in current:
                obj["status"] = copy.deepcopy(current["status"])
            else:
                obj.pop("status", None)

            def spec(o: Obj) -> Obj:
                return {k: v for k, v in o.items() if k not in ("metadata", "status")}

            if spec(obj) != spec(current):
                meta["generation"] = current["metadata"].get("generation", 1) + 1
        obj = self._admit(key, obj)

        def unversioned(o: Obj) -> Obj:
            return {**o, "metadata": {k: v for k, v in o["metadata"].items() if k != "resourceVersion"}}

        if unversioned(obj) == unversioned(current):
            return copy.deepcopy(current)  # a no-op write keeps the version, as the API server does
        meta = obj["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):  # the last finalizer removed
            deleted = self._record(key, "DELETED", obj)
            self._collect(key, meta.get("uid"))
            return deleted
        return self._record(key, "MODIFIED", obj)

    def _admit(self, key: Key, obj: Obj) -> Obj:
        """A custom object pruned and validated against its CRD's schema when the CRD is stored (as the API
        server does); objects of resources without a stored CRD are taken as they are."""
        crd = self.store.get(Key(CRD_GROUP, "customresourcedefinitions", None, f"{key.plural}.{key.group}"))
        schema = schemas.served_schema(crd) if crd is not None else None
        if schema is None:
            return obj
        obj = schemas.prune(obj, schema, root=True)
        causes = schemas.problems(obj, schema)
        if causes:
            fields = ", ".join(c["field"] + ": " + c["message"] for c in causes)
            raise invalid(f'{obj.get("kind")} "{key.name}" is invalid: {fields}', causes)
        return obj

    def _delete(self, key: Key, params: dict[str, str], body: Any) -> Obj:
        obj = copy.deepcopy(self.store[key])
        meta = obj["metadata"]
        preconditions = (body or {}).get("preconditions") or {}
        for field in ("uid", "resourceVersion"):
            if preconditions.get(field) and preconditions[field] != meta.get(field):
                raise error(
                    409, "Conflict", f"Precondition failed: {field} in precondition: {preconditions[field]}"
                )
        if meta.get("finalizers"):
            if meta.get("deletionTimestamp"):
                return obj
            meta["deletionTimestamp"] = now()
            return self._record(key, "MODIFIED", obj)
        result = self._record(key, "DELETED", obj)
        policy = params.get("propagationPolicy") or (body or {}).get("propagationPolicy")
        if policy != "Orphan":
            self._collect(key, meta.get("uid"))
        return result

    def _collect(self, owner: Key, uid: str | None) -> None:
        """The garbage collector: dependents of a deleted owner go too (and a namespace's objects)."""
        doomed = [
            k
            for k, o in self.store.items()
            if any(ref.get("uid") == uid for ref in o["metadata"].get("ownerReferences") or [])
            or (owner.group == "" and owner.plural == "namespaces" and k.namespace == owner.name)
        ]
        for k in doomed:
            if k in self.store:
                self._delete(k, {}, None)

    async def _watch(self, r: Route, params: dict[str, str]) -> AsyncIterator[Any]:
        yield b""  # send the headers now: a client waits for them before it reads events
        deadline = None
        if params.get("timeoutSeconds"):
            deadline = asyncio.get_running_loop().time() + float(params["timeoutSeconds"])
        with self._state_lock:
            drops = self._drops
            since = params.get("resourceVersion", "")
            if since in ("", "0"):
                # "Start at most recent": the current objects as ADDED, then what follows.
                events = [
                    {"type": "ADDED", "object": copy.deepcopy(o)}
                    for _, o in sorted(self._matching(r, params))
                ]
                last = self.revision
            else:
                events, last = [], int(since)
        for event in events:
            yield event
        while True:
            with self._state_lock:
                if self._drops != drops:
                    return
                if last < self._compacted:
                    yield {
                        "type": "ERROR",
                        "object": {
                            "kind": "Status",
                            "apiVersion": "v1",
                            "metadata": {},
                            "status": "Failure",
                            "message": f"too old resource version: {last} ({self._compacted})",
                            "reason": "Expired",
                            "code": 410,
                        },
                    }
                    return
                fresh = self._history[bisect.bisect_right(self._history, last, key=lambda e: e.revision) :]
                if self._changed is None:
                    self._changed = asyncio.get_running_loop().create_future()
                changed = self._changed
            for e in fresh:
                last = e.revision
                if self._selected(r, params, e.key, e.object):
                    yield {"type": e.type, "object": copy.deepcopy(e.object)}
            if fresh:
                continue
            timeout = None if deadline is None else deadline - asyncio.get_running_loop().time()
            try:
                if timeout is not None and timeout <= 0:
                    raise TimeoutError
                await asyncio.wait_for(asyncio.shield(changed), timeout)
            except TimeoutError:
                if params.get("allowWatchBookmarks", "").lower() in ("true", "1"):
                    # As the API server does as a watch times out: the version it got to, to resume from.
                    yield {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": str(last)}}}
                return
