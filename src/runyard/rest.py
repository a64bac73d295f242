"""The REST API as plain JSON documents, over the standard library's `http.client`.

This is the layer under `runyard.Client` and what the CLI talks through: it imports nothing outside the
standard library (no httpx, no pydantic), so a command like `runyard ps` starts in tens of milliseconds.
Every error the server reports comes back as the matching `runyard.core.errors.RunyardError` subclass, and
a server that cannot be reached as `Unavailable`, so callers handle one error tree whatever went wrong.
"""

from __future__ import annotations

import builtins
import http.client
import json
import os
import random
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from runyard.core.errors import (
    FieldError,
    Gone,
    Invalid,
    NotFound,
    RunyardError,
    Unauthorized,
    Unavailable,
)
from runyard.core.kinds import API_VERSION, Kind, resolve_kind
from runyard.core.phases import TERMINAL

Progress = Callable[[int, int], None]
Document = dict[str, Any]
Documents = list[Document]  # named here: inside Rest, `list` is its method
_STATUS_ERRORS: dict[int, type[RunyardError]] = {401: Unauthorized, 404: NotFound, 503: Unavailable}
# A kept-alive connection the server has since closed fails like this on its next use, before the server
# saw anything: such a request is sent again once on a fresh connection.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)
CHUNK = 1024 * 1024  # bytes read and written at a time when downloading


@dataclass(frozen=True)
class LogLine:
    """One line a run wrote; `stream` is "stdout", "stderr" or "system" (messages from the platform)."""

    time: datetime | None
    stream: str
    text: str


@dataclass(frozen=True)
class LogEnd:
    """The last item of a log stream: the run has finished."""

    phase: str
    exit_code: int | None = None
    reason: str | None = None
    message: str | None = None


class Response:
    """A finished request: status, headers and the body read whole."""

    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes):
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class Rest:
    """A connection to one runyard server, acting in one project; every answer is a JSON document."""

    page_size = 500  # items per request when listing

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        project: str | None = None,
        timeout: float = 30.0,
    ):
        url = url or os.environ.get("RUNYARD_API_URL")
        if not url:
            raise Unavailable(
                "no runyard server configured: start one with `runyard up` (or `runyard server`), "
                "or set RUNYARD_API_URL"
            )
        self.url = url.rstrip("/")
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Invalid(
                f"{url!r} is not an http(s) URL", [FieldError("url", "expected http://HOST[:PORT]")]
            )
        self._scheme, self._netloc, self._prefix = parts.scheme, parts.netloc, parts.path
        self.token = token or os.environ.get("RUNYARD_TOKEN")
        self.project = project or os.environ.get("RUNYARD_PROJECT") or "default"
        self.timeout = timeout
        self._local = threading.local()  # one kept-alive connection per thread

    @property
    def base(self) -> str:
        return f"{self.url}/apis/runyard.dev/v1"

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- resources ---------------------------------------------------------------------------------------

    def get(self, kind: str, name: str) -> Document:
        return self.send("GET", self._item(kind, name)).json()

    def list(self, kind: str, labels: dict[str, str] | None = None) -> Documents:
        """Every resource of the kind (fetched a page at a time), oldest first."""
        params = {"limit": str(self.page_size)}
        if labels:
            params["labelSelector"] = selector(labels)
        items: Documents = []
        while True:
            page = self.send("GET", self._collection(kind), params=params).json()
            items += page["items"]
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items
            params["continue"] = token

    def apply(self, doc: Document, idempotency_key: str | None = None) -> tuple[Document, str]:
        """PUT: (the resource as stored, "created" | "configured" | "unchanged")."""
        body, kind, project = self._document(doc)
        url = f"{self._collection(kind.plural, project)}/{body['metadata']['name']}"
        response = self.send("PUT", url, body=body, headers=_idempotency(idempotency_key))
        outcome = response.headers.get("X-Runyard-Result") or (
            "created" if response.status == 201 else "configured"
        )
        return response.json(), outcome

    def update(
        self, kind: str, name: str, change: Callable[[Document | None], Document | None], tries: int = 20
    ) -> tuple[Document | None, Document | None, str]:
        """Read-modify-write: apply `change(read)` (the object, None when there is none) with the read's
        resourceVersion, and read again and retry when it was written in between, as the controller writes
        status all the time. `change` returns None for nothing to write. (read, stored, outcome)."""
        from runyard.core.errors import Conflict

        for attempt in range(tries):
            try:
                read: Document | None = self.get(kind, name)
            except NotFound:
                read = None
            body = change(read)
            if body is None:
                return read, read, "unchanged"
            try:
                stored, outcome = self.apply(body)
                return read, stored, outcome
            except Conflict:
                if attempt == tries - 1:
                    raise
                time.sleep(random.uniform(0.005, 0.05))
        raise AssertionError("unreachable")

    def create(self, doc: Document, idempotency_key: str | None = None) -> Document:
        """POST; Conflict if the name is taken, unless the key was seen before (then retried once)."""
        body, kind, project = self._document(doc)
        headers = _idempotency(idempotency_key)
        url = self._collection(kind.plural, project)
        return self.send("POST", url, body=body, headers=headers, retry=bool(idempotency_key)).json()

    def delete(self, kind: str, name: str) -> Document:
        return self.send("DELETE", self._item(kind, name)).json()

    def events(self, kind: str, name: str) -> Documents:
        return self.send("GET", f"{self._item(kind, name)}/events").json()["items"]

    def watch(
        self, kind: str, labels: dict[str, str] | None = None, since: int | None = None
    ) -> Iterator[Document]:
        """Every change ({type, revision, object}) to the kind in the project, forever: the current objects
        first (ADDED), or, with `since` (a list's `revision`), only what changed after it. Gone when that
        revision is no longer kept: list again."""
        params = {"watch": "true", **({"since": str(since)} if since is not None else {})}
        for line in self.stream_lines(self._collection(kind), params, endless=True):
            event = json.loads(line)
            if event.get("type") == "ERROR":  # a cluster's watch ends so: 410 when `since` is too old
                error = event.get("object") or {}
                raise (Gone if error.get("code") == 410 else RunyardError)(error.get("message") or str(error))
            if not labels or matches(event["object"], labels):
                yield event

    # -- runs --------------------------------------------------------------------------------------------

    def stop(self, run: str) -> Document:
        return self.send("POST", f"{self._item('runs', run)}/stop").json()

    def wait(self, run: str, timeout: float | None = None) -> Document:
        """Poll until the run reaches a terminal phase (an Experiment's run too, before its controller has
        made it); raises TimeoutError after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.05
        while True:
            try:
                current = self.get("runs", run)
            except NotFound:  # an Experiment's run that its controller has not made yet: wait for it too
                self.get("experiments", run)  # NotFound for a name that is neither
                current = {}
            if (current.get("status") or {}).get("phase") in TERMINAL:
                return current
            if deadline is not None and time.monotonic() + delay > deadline:
                raise TimeoutError(f"run {run} did not finish within {timeout} s")
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def usage(self, run: str) -> dict[str, Any]:
        """The resources the run's processes use now: cpu_percent, memory_bytes (empty once it has ended)."""
        return dict(self.send("GET", f"{self._item('runs', run)}/usage").json())

    def logs(
        self, run: str, follow: bool = False, tail: int | None = None, since: str | None = None
    ) -> Iterator[LogLine | LogEnd]:
        """The run's log lines as they arrive (the last `tail`, those after `since`, an RFC 3339 time);
        a LogEnd comes last once the run has finished."""
        params = {"follow": "true" if follow else "false"}
        if tail is not None:
            params["tail"] = str(tail)
        if since is not None:
            params["since"] = since
        for line in self.stream_lines(f"{self._item('runs', run)}/logs", params, endless=follow):
            yield _log_item(line)

    # -- jobs --------------------------------------------------------------------------------------------

    def trigger_job(
        self, name: str, params: dict[str, str] | None = None, key: str | None = None
    ) -> Document:
        """Run the job now (also when suspended), `params` as environment variables: the run. A repeated
        `key` gives the run its first request made; Conflict when concurrencyPolicy Forbid finds one
        active."""
        body = {"params": params or {}}
        url = f"{self._item('jobs', name)}/trigger"
        return self.send("POST", url, body=body, headers=_idempotency(key), retry=bool(key)).json()

    def job_history(self, name: str, limit: int | None = None) -> Documents:
        """The job's fires, newest first: {trigger, scheduledAt, firedAt, outcome, run, phase, message}."""
        params = {"limit": str(limit)} if limit is not None else None
        return self.send("GET", f"{self._item('jobs', name)}/history", params=params).json()["items"]

    def job_schedule(self, name: str, count: int = 5) -> Document:
        """The job's next fire times: {fires: [{utc, local}], timeZone, schedule, suspended, reason}."""
        url = f"{self._item('jobs', name)}/schedule"
        return self.send("GET", url, params={"count": str(count)}).json()

    def job_webhook_secret(self, name: str) -> Document:
        """The secret that signs the job's webhook notifications."""
        return self.send("GET", f"{self._item('jobs', name)}/webhook-secret").json()

    def scheduler_stats(self) -> Document:
        """The job scheduler's figures (an admin token): jobs, ticks, tick cost, fires, fire delays."""
        return self.send("GET", f"{self.base}/scheduler").json()

    # -- tracking ----------------------------------------------------------------------------------------

    def metrics(self, run: str) -> Documents:
        """The latest value of each metric the run tracked: [{key, value, step, timestamp}]."""
        return self.send("GET", f"{self._item('runs', run)}/metrics").json()["metrics"]

    def metric_history(self, run: str, key: str, max_results: int | None = None) -> Documents:
        """Every point of one metric ({key, value, step, timestamp}), by step then time."""
        params = {"maxResults": str(max_results)} if max_results is not None else None
        url = f"{self._item('runs', run)}/metrics/{urllib.parse.quote(key, safe='')}"
        points = self.send("GET", url, params=params).json()["metrics"]
        for point in points:
            if type(point["value"]) is str:  # "NaN", as MLflow's JSON writes it
                point["value"] = float(point["value"])
        return points

    def tracking(self, run: str) -> Document:
        """The run's tracked data: runId, experiment, status, params, tags and the latest metrics."""
        return self.send("GET", f"{self._item('runs', run)}/tracking").json()

    def search_runs(
        self,
        filter: str | None = None,
        order_by: str | None = None,
        experiment: str | None = None,
        max_results: int | None = None,
    ) -> Documents:
        """The project's runs with their params, latest metrics and tags, fetched a page at a time:
        `filter` and `order_by` in MLflow's syntax ("metrics.loss < 0.5", "metrics.loss DESC"), at most
        `max_results` of them."""
        params = {"filter": filter, "orderBy": order_by, "experiment": experiment}
        query = {k: v for k, v in params.items() if v}
        runs: Documents = []
        while max_results is None or len(runs) < max_results:
            if max_results is not None:
                query["maxResults"] = str(min(max_results - len(runs), self.page_size))
            page = self.send("GET", f"{self._project_url()}/tracking/runs", params=query).json()
            runs += page["runs"]
            if not page.get("nextPageToken"):
                break
            query["pageToken"] = page["nextPageToken"]
        return runs

    def experiments(self) -> Documents:
        """The project's MLflow experiments, as MLflow describes them."""
        return self.send("GET", f"{self._project_url()}/tracking/experiments").json()["experiments"]

    def artifacts(self, run: str, path: str = "") -> Document:
        """One directory of the run's artifacts: {root, files: [{path, is_dir, file_size}]}."""
        params = {"path": path} if path else None
        return self.send("GET", f"{self._item('runs', run)}/artifacts", params=params).json()

    def artifact_files(self, run: str, path: str = "") -> Documents:
        """Every file under the artifact directory `path` (the root when empty), in its subfolders too,
        by path."""
        files: Documents = []
        folders = [path]
        while folders:
            for entry in self.artifacts(run, folders.pop())["files"]:
                if entry["is_dir"]:
                    folders.append(entry["path"])
                else:
                    files.append(entry)
        return sorted(files, key=lambda entry: entry["path"])

    def artifact_plan(
        self, run: str, path: str, dest: Path | None
    ) -> tuple[Path, builtins.list[tuple[Document, Path]]]:
        """Where the artifact `path` goes, and each of its files as (file, local path). A directory (the
        root when `path` is empty) brings every file under it into `dest` (default: ./its name, or ./RUN for
        the root), subfolders kept; a file goes to `dest`, or into it when it is a directory (default: ./its
        name). NotFound when there is nothing; a file the server names outside the directory is refused."""
        path = path.strip("/")
        try:
            files = self.artifact_files(run, path)
        except NotFound:
            files = []  # the path names a file, not a directory
        name = path.rsplit("/", 1)[-1]
        if not files:
            if not path:
                raise NotFound(f"run {run} has no artifacts")
            target = dest or Path(name)
            if target.is_dir():
                target = target / name
            return target, [({"path": path, "is_dir": False, "file_size": None}, target)]
        root = dest or Path(name or run)
        plan = []
        for entry in files:
            inside = not path or entry["path"].startswith(path + "/")
            rel = entry["path"][len(path) + 1 :] if path else entry["path"]
            if not inside or not rel or ".." in Path(rel).parts or Path(rel).is_absolute():
                raise Invalid(f"the server named an artifact outside {path or 'the root'}: {entry['path']!r}")
            plan.append((entry, root / rel))
        return root, plan

    def download_artifact(self, run: str, path: str, dest: Path, progress: Progress | None = None) -> int:
        """Stream one artifact file into `dest` (its folders made as needed); returns its size."""
        url = f"{self._item('runs', run)}/artifacts/{urllib.parse.quote(path.strip('/'))}"
        return self.download(url, dest, progress)

    # -- environments ------------------------------------------------------------------------------------

    def environments(self) -> Documents:
        """The environments the project named or its runs used, newest first (records without the lock)."""
        return self.send("GET", self._environments()).json()["items"]

    def environment(self, ref: str) -> Document:
        """One environment's record, with its lock: `ref` is a name, an id or a unique id prefix."""
        return self.send("GET", self._environments(ref)).json()

    def build_environment(
        self, files: dict[str, str], name: str | None = None, python: str | None = None
    ) -> Document:
        """Build the environment of these dependency files (or reuse it): its record at once, Building until
        the build ends (see `follow_build`)."""
        body = {"files": files, "name": name, "python": python}
        return self.send("POST", self._environments(), body=body).json()

    def environment_log(self, ref: str, offset: int = 0, follow: bool = False) -> Iterator[str]:
        """The lines of the build log from byte `offset`; following, until the build ends."""
        params = {"offset": str(offset), "follow": "true" if follow else "false"}
        return self.stream_lines(f"{self._environments(ref)}/log", params, endless=follow)

    def follow_build(self, ref: str, on_line: Callable[[str], None] | None = None) -> Document:
        """Follow the build log (each line to `on_line`) until the build ends; its final record. A stream
        closed early (a server restart) is followed again from where it stopped."""
        offset = 0
        while True:
            for line in self.environment_log(ref, offset, follow=True):
                offset += len(line.encode())
                if on_line is not None:
                    on_line(line.rstrip("\n"))
            record = self.environment(ref)
            if record["state"] != "Building":
                return record
            time.sleep(0.5)

    def remove_environment(self, ref: str) -> None:
        """A name: drop the name. An id: remove the environment's files (its record and lock are kept)."""
        self.send("DELETE", self._environments(ref))

    def pythons(self) -> Documents:
        """The interpreters on the server's host that a build may use: [{version, implementation, path}]."""
        return self.send("GET", f"{self.base}/environments/pythons").json()["items"]

    # -- projects and tokens -------------------------------------------------------------------------------

    def projects(self) -> Documents:
        return self.send("GET", f"{self.base}/projects").json()["items"]

    def create_project(self, name: str) -> Document:
        return self.send("POST", f"{self.base}/projects", body={"name": name}).json()

    def tokens(self) -> Documents:
        return self.send("GET", f"{self.base}/tokens").json()["items"]

    def create_token(self, name: str, role: str, project: str | None = None) -> Document:
        """A new API token; the answer's `token` is its secret, shown this once."""
        body = {"name": name, "role": role, "project": project}
        return self.send("POST", f"{self.base}/tokens", body=body).json()

    def revoke_token(self, token_id: str) -> Document:
        return self.send("DELETE", f"{self.base}/tokens/{urllib.parse.quote(token_id, safe='')}").json()

    def whoami(self) -> Document:
        return self.send("GET", f"{self.base}/whoami").json()

    def health(self) -> Document:
        """GET /healthz (no credentials needed)."""
        return self.send("GET", f"{self.url}/healthz").json()

    # -- nodes -------------------------------------------------------------------------------------------

    def nodes(self) -> Documents:
        """The nodes runs go to: capacity, what runs hold (allocated), GPUs and who holds each."""
        return self.send("GET", f"{self.base}/nodes").json()["items"]

    # -- models ------------------------------------------------------------------------------------------

    def predict(self, name: str, body: Any, key: str | None = None) -> Any:
        """POST `body` to the model's URL (/invocations) with this connection's token, or a model `key`;
        the model's JSON answer."""
        status = self.get("models", name).get("status") or {}
        if not status.get("url"):
            raise Unavailable(f"model {name} has no URL yet (phase {status.get('phase') or 'Pending'})")
        model = Rest(status["url"], key or self.token, self.project, self.timeout)
        try:
            return model.send("POST", f"{model.url}/invocations", body=body).json()
        finally:
            model.close()

    def model_metrics(self, name: str) -> Document:
        """Per version: requests, errors, errorRate, p50Ms/p95Ms/p99Ms, replicas, readyReplicas, inFlight."""
        return self.send("GET", f"{self._item('models', name)}/metrics").json()

    def rollback_model(self, name: str, version: int) -> Document:
        """Set the model's spec to the one `version` was made from: the model as stored."""
        url = f"{self._item('models', name)}/rollback"
        return self.send("POST", url, body={"version": version}).json()

    def create_model_key(self, name: str, description: str = "") -> Document:
        """A new access key of the model; the answer's `key` is shown this once."""
        url = f"{self._item('models', name)}/keys"
        return self.send("POST", url, body={"description": description}).json()

    def model_keys(self, name: str) -> Documents:
        return self.send("GET", f"{self._item('models', name)}/keys").json()["items"]

    def revoke_model_key(self, name: str, key_id: str) -> None:
        self.send("DELETE", f"{self._item('models', name)}/keys/{urllib.parse.quote(key_id, safe='')}")

    # -- plumbing ----------------------------------------------------------------------------------------

    def send(
        self,
        method: str,
        url: str,
        body: Any = None,
        content: Iterable[bytes] | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        retry: bool = False,
    ) -> Response:
        """One request, its answer read whole; an error answer raises. With `retry`, sent once more after
        a connection error or a 5xx; whatever `retry` says, once more when a kept-alive connection had gone
        stale. `body` goes as JSON, `content` (with a Content-Length header) as raw chunks."""
        path = self._path(url, params)
        all_headers = {**self._auth(), **(headers or {})}
        payload: Any = content
        if body is not None:
            payload = json.dumps(body).encode()
            all_headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            reused = getattr(self._local, "conn", None) is not None
            try:
                conn = self._connection()
                conn.request(method, path, body=payload, headers=all_headers)
                raw = conn.getresponse()
                response = Response(raw.status, raw.headers, raw.read())
            except _STALE as exc:
                self.close()
                if attempt == 1 and (reused or retry) and content is None:
                    continue
                raise self._unreachable(exc) from None
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if attempt == 1 and retry and content is None:
                    continue
                raise self._unreachable(exc) from None
            if response.headers.get("Connection", "").lower() == "close":
                self.close()
            if retry and attempt == 1 and response.status >= 500:
                continue
            _raise_for(response, url)
            return response
        raise AssertionError("unreachable")

    def stream_lines(self, url: str, params: dict[str, str], endless: bool) -> Iterator[str]:
        """The non-empty lines of a streamed (NDJSON) answer, on a connection of its own; `endless` streams
        wait for the next line as long as it takes."""
        conn, response = self._open(url, params)
        try:
            if endless and conn.sock is not None:
                conn.sock.settimeout(None)
            while line := response.readline():
                if line.strip():
                    yield line.decode()
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(exc) from None
        finally:
            conn.close()

    def download(self, url: str, dest: Path, progress: Progress | None = None) -> int:
        """GET `url` into the file `dest` a chunk at a time, calling `progress(done, total)` after each.
        The bytes go to a temporary file beside `dest`, renamed once complete: a failed download leaves no
        partial file. Returns the number of bytes."""
        conn, response = self._open(url, None)
        try:
            total = int(response.headers.get("Content-Length") or 0)
            dest.parent.mkdir(parents=True, exist_ok=True)
            part = dest.with_name(f".{dest.name}.part")
            done = 0
            try:
                with open(part, "wb") as out:
                    for chunk in self._chunks(response):
                        out.write(chunk)
                        done += len(chunk)
                        if progress is not None:
                            progress(done, total)
                if total and done != total:
                    raise Unavailable(f"the download of {url} ended after {done} of {total} bytes; try again")
                os.replace(part, dest)
            finally:
                part.unlink(missing_ok=True)
            return done
        finally:
            conn.close()

    def _open(
        self, url: str, params: dict[str, str] | None
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """A GET on a connection of its own, its headers read and its body not; an error answer raises."""
        conn = None
        try:
            conn = self._new_connection()
            conn.request("GET", self._path(url, params), headers=self._auth())
            response = conn.getresponse()
            if response.status >= 400:
                _raise_for(Response(response.status, response.headers, response.read()), url)
            return conn, response
        except BaseException as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, OSError | http.client.HTTPException):
                raise self._unreachable(exc) from None
            raise

    def _chunks(self, response: http.client.HTTPResponse) -> Iterator[bytes]:
        try:
            while chunk := response.read(CHUNK):
                yield chunk
        except (OSError, http.client.HTTPException) as exc:
            raise self._unreachable(exc) from None

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._new_connection()
        return conn

    def _new_connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection
        if self._scheme == "https":
            import ssl

            context = ssl.create_default_context()
            conn = http.client.HTTPSConnection(self._netloc, timeout=self.timeout, context=context)
        else:
            conn = http.client.HTTPConnection(self._netloc, timeout=self.timeout)
        conn.connect()
        # http.client sends a body apart from its headers: without this, Nagle's algorithm and the
        # server's delayed ACK hold every POST and PUT back by tens of milliseconds.
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def _path(self, url: str, params: dict[str, str] | None) -> str:
        path = url[len(self.url) :] if url.startswith(self.url) else url
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        return f"{self._prefix}{path}{query}"

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _unreachable(self, exc: BaseException) -> Unavailable:
        return Unavailable(
            f"cannot reach the runyard server at {self.url}: {exc or type(exc).__name__}; "
            "is it running? try `runyard server`"
        )

    def _document(self, doc: Document) -> tuple[Document, Kind, str]:
        body = dict(doc)
        if not isinstance(body.get("kind"), str):
            raise Invalid("the resource is invalid", [FieldError("kind", "required")])
        kind = resolve_kind(body["kind"])
        metadata = dict(body.get("metadata") or {})
        if not metadata.get("name"):
            raise Invalid("the resource is invalid", [FieldError("metadata.name", "required")])
        metadata["project"] = metadata.get("project") or self.project
        body["metadata"] = metadata
        body.setdefault("apiVersion", API_VERSION)
        return body, kind, metadata["project"]

    def _project_url(self, project: str | None = None) -> str:
        return f"{self.base}/projects/{project or self.project}"

    def _collection(self, kind: str, project: str | None = None) -> str:
        return f"{self._project_url(project)}/{resolve_kind(kind).plural}"

    def _item(self, kind: str, name: str) -> str:
        return f"{self._collection(kind)}/{urllib.parse.quote(name, safe='')}"

    def _environments(self, ref: str | None = None) -> str:
        url = f"{self._project_url()}/environments"
        return f"{url}/{urllib.parse.quote(ref, safe=':')}" if ref else url


def experiment(
    command: str | list[str],
    name: str | None,
    snapshot: str | None,
    env: dict[str, str] | None = None,
    resources: dict[str, Any] | None = None,
    timeout_seconds: float | None = None,
    retries: int = 0,
    labels: dict[str, str] | None = None,
    environment: str | None = None,
) -> dict[str, Any]:
    """The Experiment document `runyard run` submits."""
    spec: dict[str, Any] = {"command": command, "env": env or {}, "snapshot": snapshot}
    spec["retryPolicy"] = {"maxRetries": retries}
    if environment:
        spec["environment"] = environment
    if resources:
        spec["resources"] = {k: v for k, v in resources.items() if v is not None}
    if timeout_seconds is not None:
        spec["timeoutSeconds"] = timeout_seconds
    metadata = {"name": name or new_run_name(), "labels": labels or {}}
    return {"apiVersion": API_VERSION, "kind": "Experiment", "metadata": metadata, "spec": spec}


def model(
    name: str,
    handler: str | None,
    model_uri: str | None,
    snapshot: str | None,
    replicas: int | None = None,
    autoscaling: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    resources: dict[str, Any] | None = None,
    environment: str | None = None,
    log_sample: float | None = None,
) -> dict[str, Any]:
    """The Model document `runyard models deploy` applies (unset fields keep the server's defaults)."""
    spec: dict[str, Any] = {"handler": handler, "modelUri": model_uri, "snapshot": snapshot, "env": env or {}}
    spec = {k: v for k, v in spec.items() if v is not None}
    if replicas is not None:
        spec["replicas"] = replicas
    if autoscaling:
        spec["autoscaling"] = autoscaling
    if resources and any(v is not None for v in resources.values()):
        spec["resources"] = {k: v for k, v in resources.items() if v is not None}
    if environment:
        spec["environment"] = environment
    if log_sample is not None:
        spec["requestLogging"] = {"sampleRate": log_sample}
    return {"apiVersion": API_VERSION, "kind": "Model", "metadata": {"name": name}, "spec": spec}


# The dependency files an environment is built from, as the server reads them at the top of a snapshot.
ENVIRONMENT_FILES = ("requirements.txt", "pyproject.toml", "uv.lock", ".python-version")


def environment_files(root: Path) -> dict[str, str]:
    """The dependency files at the top of `root`, by name (empty when it has none)."""
    return {name: (root / name).read_text() for name in ENVIRONMENT_FILES if (root / name).is_file()}


def new_run_name() -> str:
    """`run-` and six random lowercase letters and digits."""
    import secrets  # here: it costs more to import than `runyard ps` can spare

    return "run-" + "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(6))


def selector(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in labels.items())


def matches(doc: Document, labels: dict[str, str]) -> bool:
    """Whether the resource carries every one of `labels`."""
    have = (doc.get("metadata") or {}).get("labels") or {}
    return all(have.get(k) == v for k, v in labels.items())


def _idempotency(key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": key} if key else {}


def _raise_for(response: Response, url: str) -> None:
    if response.status < 400:
        return
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        raise RunyardError.from_dict(error)
    err_cls = _STATUS_ERRORS.get(response.status, RunyardError)
    text = response.body[:200].decode(errors="replace")
    raise err_cls(f"HTTP {response.status} from {url}: {text}")


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
