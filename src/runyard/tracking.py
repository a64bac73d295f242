"""Tracking from a run's own code: metrics, params, tags and artifacts, sent in the background.

Standard library only, so that `import runyard` fits any project environment whatever its pins. Inside a
run the controller injects RUNYARD_API_URL, RUNYARD_TOKEN, RUNYARD_PROJECT and RUNYARD_RUN_ID, and the
functions below log to that run; elsewhere `start_run` opens a tracking-only run on the server the CLI
would use. A log call only appends to a queue; one thread sends it in batches, retrying what failed for a
transient reason, and everything queued is sent at interpreter exit and on SIGTERM before the process ends.
"""

from __future__ import annotations

import atexit
import collections
import http.client
import json
import operator
import os
import re
import signal
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

API = "/apis/runyard.dev/v1"
MAX_BATCH = 10_000  # metrics per request: what the tracking endpoint takes at most
MAX_KEYED = 100  # params, and tags, per request (as MLflow's log-batch)
SEND_EVERY = 0.5  # seconds a logged point waits, at most, before it is sent
FLUSH_SECONDS = 30.0  # how long exit and SIGTERM wait for a server that keeps failing
TRANSIENT = {408, 425, 429, 500, 502, 503, 504}
KEY_RE = re.compile(r"[\w.\- /:]{1,250}")
MAX_STEP, MIN_STEP = 2**63 - 1, -(2**63)

METRIC, PARAM, TAG, FLUSH = 0, 1, 2, 3
JSON_SPECIAL = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}  # as Python's json writes them
if TYPE_CHECKING:  # annotations only: project environments may run a Python older than 3.9
    Item = tuple[Any, ...]


class TrackingError(RuntimeError):
    """A tracking call could not be done: no run to log to, no server, or the server refused it."""


# -- the connection --------------------------------------------------------------------------------------


class _Http:
    """Requests to one server over one kept-alive connection; not shared between threads."""

    def __init__(self, url: str, token: str | None, timeout: float = 30.0, prefix: str = API):
        parts = urllib.parse.urlsplit(url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port
        self.base = parts.path.rstrip("/") + prefix
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def request(
        self, method: str, path: str, body: Any = None, headers: dict | None = None
    ) -> tuple[int, bytes]:
        """(status, body); raises OSError or http.client.HTTPException when no answer came."""
        reused = self._conn is not None
        try:
            return self._once(method, path, body, headers)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            if not reused:
                raise
            return self._once(method, path, body, headers)  # the server had closed the idle connection

    def _once(self, method: str, path: str, body: Any, headers: dict | None) -> tuple[int, bytes]:
        conn = self._conn or self._connect()
        try:
            conn.request(method, self.base + path, body=body, headers={**self.headers, **(headers or {})})
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        if resp.will_close:
            self.close()
        return resp.status, data

    def _connect(self) -> http.client.HTTPConnection:
        kind = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        self._conn = kind(self.host, self.port, timeout=self.timeout, blocksize=1 << 16)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _problem(status: int, data: bytes) -> str:
    """The server's reason, from runyard's {"error": {message, details}} body."""
    try:
        err = json.loads(data)["error"]
        details = "; ".join(f"{d['field']}: {d['reason']}" for d in err.get("details") or [])
        return f"{err['message']} ({details})" if details else str(err["message"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {status}: {data[:200].decode('utf-8', 'replace')}"


def _call(http: _Http, method: str, path: str, doc: Any = None) -> Any:
    """One JSON request, retried with backoff while the failure is transient; TrackingError if refused."""
    body = None if doc is None else json.dumps(doc).encode()
    headers = {"Content-Type": "application/json"} if body is not None else None
    status, data = _retrying(lambda: http.request(method, path, body, headers), None)
    if status >= 400:
        raise TrackingError(_problem(status, data))
    return json.loads(data) if data else None


def _retrying(send: Callable[[], tuple[int, bytes]], deadline: float | None) -> tuple[int, bytes]:
    """Send until an answer that is not transient, or the deadline passes (then the last failure)."""
    delay = 0.1
    deadline = time.monotonic() + FLUSH_SECONDS if deadline is None else deadline
    while True:
        try:
            status, data = send()
            if status not in TRANSIENT:
                return status, data
            failure: BaseException = TrackingError(_problem(status, data))
        except (OSError, http.client.HTTPException) as exc:
            failure = exc
        if time.monotonic() + delay > deadline:
            raise TrackingError(f"the runyard server did not take the request: {failure}")
        time.sleep(delay)
        delay = min(delay * 2, 5.0)


def _server() -> tuple[str, str | None]:
    """(url, token) as the CLI finds them: RUNYARD_API_URL/RUNYARD_TOKEN, else the local server."""
    url = os.environ.get("RUNYARD_API_URL")
    if url:
        return url, os.environ.get("RUNYARD_TOKEN")
    home = Path(os.environ.get("RUNYARD_HOME") or Path.home() / ".runyard").expanduser()
    try:
        url = json.loads((home / "server.json").read_text())["url"]
        token = (home / "admin-token").read_text().strip()
        probe = _Http(url, None, timeout=2, prefix="")
        try:
            if probe.request("GET", "/healthz")[0] == 200:
                return url, os.environ.get("RUNYARD_TOKEN") or token
        finally:
            probe.close()
    except (OSError, ValueError, KeyError, TypeError, http.client.HTTPException):
        pass
    try:  # start it, as the CLI would; that needs the whole package, not only the standard library
        from runyard.embedded import ensure_server
    except ImportError:
        raise TrackingError(
            f"no runyard server is running for {home}: start one with `runyard server`, "
            "or set RUNYARD_API_URL and RUNYARD_TOKEN"
        ) from None
    url, token = ensure_server(home)
    return url, os.environ.get("RUNYARD_TOKEN") or token


# -- the background sender -------------------------------------------------------------------------------


class _Sender:
    """Queues what is logged and sends it from one daemon thread, in batches per run.

    `deque.append` is atomic, so logging takes no lock. A flush is a marker in the queue: the thread sends
    everything before it, then sets the marker's event.
    """

    def __init__(self) -> None:
        self.queue: collections.deque = collections.deque()
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None
        self.reported: set = set()
        self.lock = threading.Lock()

    def put(self, item: Item) -> None:
        self.queue.append(item)
        if self.thread is None or len(self.queue) >= MAX_BATCH:
            self.poke()

    def poke(self) -> None:
        """Start the thread on first use; wake it when a full batch waits."""
        if self.thread is None:
            with self.lock:
                if self.thread is None:
                    self.thread = threading.Thread(target=self._loop, name="runyard-tracking", daemon=True)
                    self.thread.start()
                    _install_sigterm_handler()
        self.wake.set()

    def flush(self, timeout: float = FLUSH_SECONDS) -> bool:
        """Wait until everything logged so far is sent (or refused); False when `timeout` passed first."""
        if self.thread is None:
            return not self.queue
        done = threading.Event()
        self.queue.append((None, FLUSH, done))
        self.wake.set()
        return done.wait(timeout)

    def _loop(self) -> None:
        while True:
            self.wake.wait(SEND_EVERY)
            self.wake.clear()
            try:
                self._drain()
            except Exception as exc:  # never let the thread die: report, keep serving
                self.report(f"tracking data could not be sent: {type(exc).__name__}: {exc}")

    def _drain(self) -> None:
        """Send what is queued, MAX_BATCH items at a time, in order per run; answer flush markers."""
        queue = self.queue
        popleft = queue.popleft
        while queue:
            items = [popleft() for _ in range(min(len(queue), MAX_BATCH))]
            pending: dict[Any, list[Item]] = {}
            for item in items:
                if item[1] == FLUSH:
                    self._send_all(pending)
                    item[2].set()
                else:
                    pending.setdefault(item[0], []).append(item)
            self._send_all(pending)

    def _send_all(self, pending: dict[Any, list[Item]]) -> None:
        for run, batch in pending.items():
            self._send(run, batch)
        pending.clear()

    def _send(self, run: TrackedRun, batch: list[Item]) -> None:
        """Send a batch; one the server refuses is split to find and report only what it refuses."""
        for part in _parts(batch):

            def send(part: list[Item] = part) -> tuple[int, bytes]:
                return run.http.request(*_batch_request(run, part))

            try:  # a server that is down or restarting is waited for; exit waits FLUSH_SECONDS at most
                status, data = _retrying(send, float("inf"))
            except TrackingError as exc:
                self.report(f"{len(part)} tracking values for run {run.name!r} were not sent: {exc}")
                continue
            if status < 400:
                continue
            if len(part) > 1 and status in (400, 413, 422):
                half = len(part) // 2
                self._send(run, part[:half])
                self._send(run, part[half:])
            else:
                self.report(f"run {run.name!r}: the server refused tracking data: {_problem(status, data)}")

    def report(self, message: str) -> None:
        """Once per distinct message, on stderr: the background thread never raises into the run's code."""
        if message not in self.reported:
            self.reported.add(message)
            print(f"runyard: {message}", file=sys.stderr, flush=True)


def _parts(batch: list[Item]) -> Iterator[list[Item]]:
    """`batch` in requests the endpoint takes: at most MAX_KEYED params and as many tags each, none of
    them twice (the body maps a key to one value; a param logged again with another value must reach the
    server, which refuses it)."""
    start = 0
    seen: set[tuple[int, str]] = set()
    counts = [0, 0, 0]
    for i, item in enumerate(batch):
        kind = item[1]
        if kind != METRIC:
            if (kind, item[2]) in seen or counts[kind] == MAX_KEYED:
                yield batch[start:i]
                start, seen, counts = i, set(), [0, 0, 0]
            seen.add((kind, item[2]))
            counts[kind] += 1
    yield batch[start:]


def _batch_request(run: TrackedRun, batch: list[Item]) -> tuple[str, str, bytes, dict]:
    """The request body, formatted directly: twice as fast as dicts through json.dumps, and this thread
    shares the interpreter with the loop that logs."""
    keys: dict[str, str] = {}
    metrics: list[str] = []
    params: dict[str, str] = {}
    tags: dict[str, str] = {}
    for _, kind, key, value, step, ts in batch:
        if kind == METRIC:
            k = keys.get(key)
            if k is None:
                k = keys[key] = json.dumps(key)
            v = repr(value)
            if v[-1] in "nf":  # nan, inf, -inf
                v = JSON_SPECIAL[v]
            metrics.append(f'{{"key":{k},"value":{v},"step":{step},"timestamp":{ts}}}')
        elif kind == PARAM:
            params[key] = value
        else:
            tags[key] = value
    rest = json.dumps({"params": params, "tags": tags})[1:]
    body = f'{{"metrics":[{",".join(metrics)}],{rest}'.encode()
    return "POST", f"{run.path}/tracking", body, {"Content-Type": "application/json"}


_sender = _Sender()


def _reset_after_fork() -> None:
    """A forked child (a data loader's worker) has the parent's queue and connections but not its
    thread: it starts afresh, on connections of its own, and leaves the runs its parent opened for the
    parent to end."""
    global _sender
    _sender = _Sender()
    _open_runs.clear()
    for run in (*_stack, *_ambient):
        run.http = _Http(run.url, run.token)


os.register_at_fork(after_in_child=_reset_after_fork)


# -- runs ------------------------------------------------------------------------------------------------

_checked_keys: set = set()


def _check_key(key: str, what: str) -> str:
    if key in _checked_keys:
        return key
    if not isinstance(key, str) or not KEY_RE.fullmatch(key):
        raise ValueError(
            f"invalid {what} key {key!r}: 1 to 250 letters, digits, spaces and the characters _ - . / :"
        )
    if key.startswith("/") or ".." in key.split("/"):
        raise ValueError(f"invalid {what} key {key!r}: it must be a relative path without '..' parts")
    _checked_keys.add(key)
    return key


def _step(step: Any) -> int:
    try:
        number = operator.index(step)  # an int, or one of numpy's
    except TypeError:
        number = None
    if number is None or isinstance(step, bool) or not MIN_STEP <= number <= MAX_STEP:
        raise ValueError(f"invalid step {step!r}: an integer that fits in 64 bits")
    return number


class TrackedRun:
    """A run logged to: the run this code executes in, or one opened by `start_run`. A context manager
    that ends the run it opened when the block ends (FAILED when the block raised)."""

    def __init__(
        self, url: str, token: str | None, project: str, name: str, run_id: str = "", owned: bool = False
    ):
        self.project, self.name, self.run_id = project, name, run_id
        self.path = f"/projects/{urllib.parse.quote(project)}/runs/{urllib.parse.quote(name)}"
        self.http = _Http(url, token)  # the sender thread's
        self.url, self.token = url, token
        self.owned = owned  # opened by start_run: ended by it too
        self.ended = False

    def __repr__(self) -> str:
        return f"<TrackedRun {self.project}/{self.name}>"

    def log_metric(
        self, key: str, value: float, step: int | None = None, timestamp: int | None = None
    ) -> None:
        # The hot path (a loop may log 10,000 points a second): check, queue, nothing else.
        if key not in _checked_keys:
            _check_key(key, "metric")
        if step is None:
            step = 0
        elif type(step) is not int or not MIN_STEP <= step <= MAX_STEP:
            step = _step(step)
        stamp = time.time_ns() // 1_000_000 if timestamp is None else int(timestamp)
        sender = _sender
        queue = sender.queue
        queue.append((self, METRIC, key, float(value), step, stamp))
        if sender.thread is None or len(queue) >= MAX_BATCH:
            sender.poke()

    def log_metrics(
        self, metrics: Mapping[str, float], step: int | None = None, timestamp: int | None = None
    ) -> None:
        stamp = int(time.time() * 1000) if timestamp is None else int(timestamp)
        for key, value in metrics.items():
            self.log_metric(key, value, step, stamp)

    def log_param(self, key: str, value: Any) -> None:
        _sender.put((self, PARAM, _check_key(key, "param"), str(value), 0, 0))

    def log_params(self, params: Mapping[str, Any]) -> None:
        for key, value in params.items():
            self.log_param(key, value)

    def set_tag(self, key: str, value: Any) -> None:
        _sender.put((self, TAG, _check_key(key, "tag"), str(value), 0, 0))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            self.set_tag(key, value)

    def log_artifact(self, local_path: str, artifact_path: str | None = None) -> None:
        """Upload one file (streamed) as `artifact_path/<its name>`; raises TrackingError if refused."""
        path = Path(local_path)
        if not path.is_file():
            raise TrackingError(f"{local_path} is not a file")
        self._upload(path, "/".join(p for p in (artifact_path, path.name) if p))

    def log_artifacts(self, local_dir: str, artifact_path: str | None = None) -> None:
        """Upload every file under `local_dir`, keeping their relative paths under `artifact_path`."""
        root = Path(local_dir)
        if not root.is_dir():
            raise TrackingError(f"{local_dir} is not a directory")
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            rel = path.relative_to(root).as_posix()
            self._upload(path, "/".join(p for p in (artifact_path, rel) if p))

    def _upload(self, path: Path, dest: str) -> None:
        http = _Http(self.url, self.token, timeout=300)
        target = f"{self.path}/artifacts/{urllib.parse.quote(dest.strip('/'))}"

        def send() -> tuple[int, bytes]:
            with path.open("rb") as f:
                size = os.fstat(f.fileno()).st_size
                headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
                return http.request("PUT", target, f, headers)

        try:
            status, data = _retrying(send, None)
        finally:
            http.close()
        if status >= 400:
            raise TrackingError(f"artifact {dest!r} was not stored: {_problem(status, data)}")

    def flush(self, timeout: float = FLUSH_SECONDS) -> None:
        """Block until what was logged so far has been sent."""
        if not _sender.flush(timeout):
            raise TrackingError(f"tracking data was not sent within {timeout:g} s")

    def end(self, status: str = "FINISHED") -> None:
        """Send what is queued, then end the run: FINISHED, FAILED or KILLED (a run opened by start_run)."""
        if self.ended:
            return
        self.ended = True
        if self in _open_runs:
            _open_runs.remove(self)
        if not _sender.flush():
            _sender.report(f"run {self.name!r}: some tracking data was not sent before it ended")
        http = _Http(self.url, self.token)
        try:
            _call(http, "POST", f"{self.path}/end", {"status": status})
        finally:
            http.close()

    def __enter__(self) -> TrackedRun:
        return self

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        if _stack and _stack[-1] is self:
            _stack.pop()
        elif self in _stack:
            _stack.remove(self)
        if self.owned:
            failed = "KILLED" if kind is KeyboardInterrupt else "FAILED"
            try:
                self.end("FINISHED" if kind is None else failed)
            except TrackingError as err:  # said, not raised: it would replace the block's own exception
                _sender.report(f"run {self.name!r} could not be ended: {err}")


_stack: list[TrackedRun] = []  # runs opened by start_run, innermost last
_open_runs: list[TrackedRun] = []  # opened and not ended: ended at exit
_ambient: list[TrackedRun] = []  # the run this process executes in, once looked up


def start_run(
    project: str | None = None, name: str | None = None, experiment: str | None = None
) -> TrackedRun:
    """Open a tracking-only run (no process) in `project` (RUNYARD_PROJECT, else "default"); the
    module's log functions log to it until its `with` block ends, which ends it."""
    url, token = _server()
    project = project or os.environ.get("RUNYARD_PROJECT") or "default"
    body: dict[str, str] = {}
    if name:
        body["name"] = name
    if experiment:
        body["experiment"] = experiment
    http = _Http(url, token)
    try:
        doc = _call(http, "POST", f"/projects/{urllib.parse.quote(project)}/tracking/runs", body)
    finally:
        http.close()
    run = TrackedRun(url, token, project, doc["metadata"]["name"], doc.get("runId", ""), owned=True)
    _stack.append(run)
    _open_runs.append(run)
    return run


def active_run() -> TrackedRun:
    """The innermost run opened by start_run, else the run this process executes in."""
    if _stack:
        return _stack[-1]
    if _ambient:
        return _ambient[0]
    name, url = os.environ.get("RUNYARD_RUN_ID"), os.environ.get("RUNYARD_API_URL")
    if not (name and url):
        raise TrackingError(
            "no active run: log from code that runs in a runyard run, or inside `with runyard.start_run(...)`"
        )
    uid = os.environ.get("RUNYARD_RUN_UID", "").replace("-", "")
    project = os.environ.get("RUNYARD_PROJECT") or "default"
    _ambient.append(TrackedRun(url, os.environ.get("RUNYARD_TOKEN"), project, name, uid))
    return _ambient[0]


def log_metric(key: str, value: float, step: int | None = None, timestamp: int | None = None) -> None:
    """Log one value of a metric (step 0 unless given; timestamp in ms, now unless given)."""
    run = _stack[-1] if _stack else _ambient[0] if _ambient else active_run()
    run.log_metric(key, value, step, timestamp)


def log_metrics(metrics: Mapping[str, float], step: int | None = None, timestamp: int | None = None) -> None:
    active_run().log_metrics(metrics, step, timestamp)


def log_param(key: str, value: Any) -> None:
    active_run().log_param(key, value)


def log_params(params: Mapping[str, Any]) -> None:
    active_run().log_params(params)


def set_tag(key: str, value: Any) -> None:
    active_run().set_tag(key, value)


def set_tags(tags: Mapping[str, Any]) -> None:
    active_run().set_tags(tags)


def log_artifact(local_path: str, artifact_path: str | None = None) -> None:
    active_run().log_artifact(local_path, artifact_path)


def log_artifacts(local_dir: str, artifact_path: str | None = None) -> None:
    active_run().log_artifacts(local_dir, artifact_path)


def flush(timeout: float = FLUSH_SECONDS) -> None:
    """Block until everything logged so far has been sent."""
    if not _sender.flush(timeout):
        raise TrackingError(f"tracking data was not sent within {timeout:g} s")


# -- exit and SIGTERM ------------------------------------------------------------------------------------


def _shutdown(status: str) -> None:
    """Send everything queued; end the runs start_run opened that no block ended."""
    if not _sender.flush():
        _sender.report("some tracking data could not be sent before the process ended")
    for run in list(_open_runs):
        try:
            run.end(status)
        except TrackingError as exc:
            _sender.report(f"run {run.name!r} could not be ended: {exc}")


def _at_exit() -> None:
    _shutdown("FAILED" if getattr(sys, "last_value", None) is not None else "FINISHED")


atexit.register(_at_exit)
_previous_sigterm: Any = None
_installed = False


def _install_sigterm_handler() -> None:
    """Flush on SIGTERM (how runyard stops a run), then do what was set before: its handler, or die."""
    global _previous_sigterm, _installed
    if _installed or threading.current_thread() is not threading.main_thread():
        return
    try:
        _previous_sigterm = signal.signal(signal.SIGTERM, _on_sigterm)
        _installed = True
    except (ValueError, OSError):  # not allowed here (an embedded interpreter): exit still flushes
        pass


def _on_sigterm(signum: int, frame: Any) -> None:
    _shutdown("KILLED")
    previous = _previous_sigterm
    if callable(previous):
        previous(signum, frame)
    elif previous != signal.SIG_IGN:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
