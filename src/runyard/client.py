"""`runyard.Client`: the typed Python SDK over the REST API; the CLI talks to the server only through it.

Every error the server reports comes back as the matching `runyard.core.errors.RunyardError` subclass, and a
server that cannot be reached as `Unavailable`, so callers handle one error tree whatever went wrong.
"""

from __future__ import annotations

import builtins
import json
import os
import secrets
import string
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar, overload

import httpx

from runyard.core.errors import FieldError, Invalid, NotFound, RunyardError, Unauthorized, Unavailable
from runyard.core.resources import ALL_KINDS, API_VERSION, Event, Experiment, Resource, Run, kind_for
from runyard.workspace import FileEntry, collect

R = TypeVar("R", bound=Resource)

Progress = Callable[[int, int], None]
_STATUS_ERRORS: dict[int, type[RunyardError]] = {401: Unauthorized, 404: NotFound, 503: Unavailable}
_NAME_ALPHABET = string.ascii_lowercase + string.digits


@dataclass(frozen=True)
class LogLine:
    """One line a run wrote; `stream` is "stdout", "stderr" or "system" (messages from the platform)."""

    time: datetime | None
    stream: str
    text: str


@dataclass(frozen=True)
class WatchEvent:
    """A change to a watched collection: type is ADDED, MODIFIED or DELETED; `revision` resumes after it."""

    type: str
    revision: int
    object: Resource


@dataclass(frozen=True)
class LogEnd:
    """The last item of a log stream: the run has finished."""

    phase: str
    exit_code: int | None = None
    reason: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class ApplyResult:
    """What `apply` did: `outcome` is "created", "configured" or "unchanged"."""

    resource: Resource
    outcome: str


class Client:
    """A connection to one runyard server, acting in one project."""

    page_size = 500  # items per request when listing

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        project: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ):
        url = url or os.environ.get("RUNYARD_API_URL")
        if not url:
            raise Unavailable(
                "no runyard server configured: start one with `runyard up` (or `runyard server`), "
                "or set RUNYARD_API_URL"
            )
        self.url = url.rstrip("/")
        self.token = token or os.environ.get("RUNYARD_TOKEN")
        self.project = project or os.environ.get("RUNYARD_PROJECT") or "default"
        self.timeout = timeout
        self._http = httpx.Client(timeout=timeout, transport=transport)

    @property
    def base(self) -> str:
        return f"{self.url}/apis/runyard.dev/v1"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- resources ---------------------------------------------------------------------------------------

    def apply(self, doc: dict | Resource, idempotency_key: str | None = None) -> Resource:
        """Create or update the resource named in `doc` (PUT); returns it as the server stored it."""
        return self.apply_result(doc, idempotency_key).resource

    def apply_result(self, doc: dict | Resource, idempotency_key: str | None = None) -> ApplyResult:
        """Like `apply`, and also say whether the resource was created, configured or left unchanged."""
        body, cls, project = self._document(doc)
        url = f"{self._collection(cls, project)}/{body['metadata']['name']}"
        response = self._send("PUT", url, json=body, headers=_idempotency(idempotency_key))
        outcome = response.headers.get("X-Runyard-Result") or (
            "created" if response.status_code == 201 else "configured"
        )
        return ApplyResult(_parse(response.json()), outcome)

    def create(self, doc: dict | Resource, idempotency_key: str | None = None) -> Resource:
        """Create the resource (POST); Conflict if the name is taken, unless the key was seen before."""
        body, cls, project = self._document(doc)
        headers = _idempotency(idempotency_key)
        # Retrying is safe only when the server can recognise the second attempt by its key.
        url = self._collection(cls, project)
        response = self._send("POST", url, json=body, headers=headers, retry=bool(idempotency_key))
        return _parse(response.json())

    @overload
    def get(self, kind: type[R], name: str) -> R: ...
    @overload
    def get(self, kind: str, name: str) -> Resource: ...
    def get(self, kind: str | type[Resource], name: str) -> Resource:
        """One resource; pass the class (`client.get(Run, "x")`) for a precisely typed result."""
        return _parse(self._send("GET", self._item(kind, name)).json())

    @overload
    def list(self, kind: type[R], labels: dict[str, str] | None = None) -> builtins.list[R]: ...
    @overload
    def list(self, kind: str, labels: dict[str, str] | None = None) -> builtins.list[Resource]: ...
    def list(self, kind: str | type[Resource], labels: dict[str, str] | None = None) -> builtins.list[Any]:
        """Every resource of the kind (fetched a page at a time), oldest first."""
        params = {"limit": str(self.page_size)}
        if labels:
            params["labelSelector"] = ",".join(f"{k}={v}" for k, v in labels.items())
        items: builtins.list[Resource] = []
        while True:
            page = self._send("GET", self._collection(_kind(kind)), params=params).json()
            items += [_parse(item) for item in page["items"]]
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items
            params["continue"] = token

    def delete(self, kind: str | type[Resource], name: str) -> Resource:
        return _parse(self._send("DELETE", self._item(kind, name)).json())

    def events(self, kind: str | type[Resource], name: str) -> builtins.list[Event]:
        response = self._send("GET", f"{self._item(kind, name)}/events")
        return [Event.model_validate(item) for item in response.json()["items"]]

    # -- runs --------------------------------------------------------------------------------------------

    def runs(self) -> builtins.list[Run]:
        return self.list(Run)

    def stop(self, run: str) -> Run:
        """Ask the controller to stop the run; returns at once (see `wait`). A finished run is left as is."""
        return Run.model_validate(self._send("POST", f"{self._item(Run, run)}/stop").json())

    def metrics(self, run: str) -> dict[str, Any]:
        """The run's resource usage now: cpu_percent, memory_bytes (absent once it has ended)."""
        return dict(self._send("GET", f"{self._item(Run, run)}/metrics").json())

    def wait(self, run: str, timeout: float | None = None) -> Run:
        """Poll until the run reaches a terminal phase; raises TimeoutError after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.05
        while True:
            current = self.get(Run, run)
            if current.status.phase.is_terminal():
                return current
            if deadline is not None and time.monotonic() + delay > deadline:
                raise TimeoutError(f"run {run} did not finish within {timeout} s")
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def logs(self, run: str, follow: bool = False) -> Iterator[LogLine | LogEnd]:
        """Yield the run's log lines as they arrive; a LogEnd comes last once the run has finished."""
        params = {"follow": "true" if follow else "false"}
        for line in self._stream_lines(f"{self._item(Run, run)}/logs", params, endless=follow):
            yield _log_item(line)

    def watch(self, kind: str | type[Resource], since: int | None = None) -> Iterator[WatchEvent]:
        """Yield every change to the kind in the project, forever: the current objects first (ADDED),
        or, with `since` (a list's `revision`), only what changed after it."""
        params = {"watch": "true", **({"since": str(since)} if since is not None else {})}
        for line in self._stream_lines(self._collection(_kind(kind)), params, endless=True):
            doc = json.loads(line)
            yield WatchEvent(doc["type"], doc["revision"], _parse(doc["object"]))

    def _stream_lines(self, url: str, params: dict[str, str], endless: bool) -> Iterator[str]:
        """The non-empty lines of a streamed (NDJSON) response, as the server sends them."""
        timeout = httpx.Timeout(self.timeout, read=None) if endless else self.timeout
        try:
            stream = self._http.stream("GET", url, params=params, headers=self._auth(), timeout=timeout)
            with stream as response:
                if response.is_error:
                    response.read()
                    _raise_for(response)
                yield from (line for line in response.iter_lines() if line.strip())
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None

    def run(
        self,
        command: str | builtins.list[str],
        name: str | None = None,
        path: Path | str = ".",
        env: dict[str, str] | None = None,
        resources: dict[str, Any] | None = None,
        timeout_seconds: float | None = None,
        retries: int = 0,
        labels: dict[str, str] | None = None,
        idempotency_key: str | None = None,
        progress: Progress | None = None,
    ) -> Experiment:
        """Snapshot `path`, then create an Experiment running `command`; its Run has the same name."""
        snapshot = self.upload_snapshot(Path(path), progress)
        spec: dict[str, Any] = {"command": command, "env": env or {}, "snapshot": snapshot}
        spec["retryPolicy"] = {"maxRetries": retries}
        if resources:
            spec["resources"] = {k: v for k, v in resources.items() if v is not None}
        if timeout_seconds is not None:
            spec["timeoutSeconds"] = timeout_seconds
        metadata = {"name": name or new_run_name(), "project": self.project, "labels": labels or {}}
        doc = {"apiVersion": API_VERSION, "kind": "Experiment", "metadata": metadata, "spec": spec}
        return self.create(doc, idempotency_key or str(uuid.uuid4()))  # type: ignore[return-value]

    # -- snapshots ---------------------------------------------------------------------------------------

    def upload_snapshot(self, root: Path, progress: Progress | None = None) -> str:
        """Upload the files of `root` the server does not have yet; returns the snapshot id ("sha256:…")."""
        root = Path(root)
        files = collect(root)
        url = f"{self.base}/projects/{self.project}/snapshots"
        missing = self._send("POST", url, json={"files": files}).json()["missing"]
        by_hash = {entry["sha256"]: rel for rel, entry in files.items()}
        uploads = [(by_hash[digest], files[by_hash[digest]]) for digest in missing]
        meter = _Meter(sum(entry["size"] for _, entry in uploads), progress)
        for rel, entry in uploads:
            self._put_blob(root, rel, entry, meter)
        answer = self._send("POST", url, json={"files": files}).json()
        if answer["missing"]:
            lacking = len(answer["missing"])
            raise Unavailable(f"the server still lacks {lacking} file(s) after the upload; try again")
        return answer["id"]

    def _put_blob(self, root: Path, rel: str, entry: FileEntry, meter: _Meter) -> None:
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(entry["size"])}
        content = _read_exactly(root / rel, entry["size"], meter)
        try:
            self._send("PUT", f"{self.base}/blobs/{entry['sha256']}", content=content, headers=headers)
        except (Invalid, _FileChanged):
            # The server checks the hash; a file written to while we read it (a log, a database) fails it.
            reason = "changed while it was being uploaded: run again, or list it in .runyardignore"
            raise Invalid("a file changed during the snapshot upload", [FieldError(rel, reason)]) from None

    # -- identity ----------------------------------------------------------------------------------------

    def whoami(self) -> dict:
        return self._send("GET", f"{self.base}/whoami").json()

    def health(self) -> dict:
        """GET /healthz without credentials."""
        try:
            response = self._http.get(f"{self.url}/healthz")
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        _raise_for(response)
        return response.json()

    # -- plumbing ----------------------------------------------------------------------------------------

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _send(self, method: str, url: str, retry: bool = False, **kwargs: Any) -> httpx.Response:
        """Send one request; with `retry`, once more after a connection error or a 5xx."""
        kwargs["headers"] = {**self._auth(), **(kwargs.get("headers") or {})}
        for attempt in (1, 2):
            try:
                response = self._http.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                if retry and attempt == 1:
                    continue
                raise self._unreachable(exc) from None
            if retry and attempt == 1 and response.status_code >= 500:
                continue
            _raise_for(response)
            return response
        raise AssertionError("unreachable")

    def _unreachable(self, exc: httpx.TransportError) -> Unavailable:
        return Unavailable(
            f"cannot reach the runyard server at {self.url}: {exc or type(exc).__name__}; "
            "is it running? try `runyard server`"
        )

    def _document(self, doc: dict | Resource) -> tuple[dict, type[Resource], str]:
        body = doc.model_dump(mode="json", exclude_none=True) if isinstance(doc, Resource) else dict(doc)
        if not isinstance(body.get("kind"), str):
            raise Invalid("the resource is invalid", [FieldError("kind", "required")])
        cls = kind_for(body["kind"])
        metadata = dict(body.get("metadata") or {})
        if not metadata.get("name"):
            raise Invalid("the resource is invalid", [FieldError("metadata.name", "required")])
        metadata["project"] = metadata.get("project") or self.project
        body["metadata"] = metadata
        return body, cls, metadata["project"]

    def _collection(self, cls: type[Resource], project: str | None = None) -> str:
        return f"{self.base}/projects/{project or self.project}/{cls.plural}"

    def _item(self, kind: str | type[Resource], name: str) -> str:
        return f"{self._collection(_kind(kind))}/{name}"


class _FileChanged(Exception):
    """The file holds fewer bytes than when it was hashed."""


class _Meter:
    """Counts uploaded bytes for the caller's progress callback."""

    def __init__(self, total: int, progress: Progress | None):
        self.total, self.done, self.progress = total, 0, progress
        self.add(0)

    def add(self, count: int) -> None:
        self.done += count
        if self.progress:
            self.progress(self.done, self.total)


def _read_exactly(path: Path, size: int, meter: _Meter) -> Iterator[bytes]:
    """The first `size` bytes of the file in chunks: the Content-Length sent must hold even if it grew."""
    left = size
    with path.open("rb") as f:
        while left:
            chunk = f.read(min(left, 1024 * 1024))
            if not chunk:
                raise _FileChanged(path)
            left -= len(chunk)
            yield chunk
            meter.add(len(chunk))


def new_run_name() -> str:
    """`run-` and six random lowercase letters and digits."""
    return "run-" + "".join(secrets.choice(_NAME_ALPHABET) for _ in range(6))


def _kind(kind: str | type[Resource]) -> type[Resource]:
    return kind if isinstance(kind, type) else kind_for(kind)


def _idempotency(key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": key} if key else {}


def _parse(doc: dict) -> Resource:
    return ALL_KINDS[doc["kind"]].model_validate(doc)


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        raise RunyardError.from_dict(error)
    err_cls = _STATUS_ERRORS.get(response.status_code, RunyardError)
    raise err_cls(f"HTTP {response.status_code} from {response.request.url}: {response.text[:200]}")


def _log_item(line: str) -> LogLine | LogEnd:
    data = json.loads(line)
    if data.get("end"):
        return LogEnd(data.get("phase", ""), data.get("exitCode"), data.get("reason"), data.get("message"))
    return LogLine(_time(data.get("time")), data.get("stream", "stdout"), data.get("text", ""))


def _time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
