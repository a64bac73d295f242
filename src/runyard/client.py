"""`runyard.Client`: the typed Python SDK over the REST API: resources come back as `runyard.core.resources`
models. It stands on `runyard.rest.Rest` (plain JSON documents), which is what the CLI uses; both raise the
`runyard.core.errors` tree, with a server that cannot be reached as `Unavailable`.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

from runyard.rest import LogEnd, LogLine, Progress, Rest, experiment, model, new_run_name
from runyard.upload import upload_snapshot

if TYPE_CHECKING:  # the models (pydantic) load on the first typed answer, not at import
    from runyard.core.resources import Event, Experiment, Model, Resource, Run

__all__ = [
    "ApplyResult",
    "ArtifactFile",
    "Client",
    "LogEnd",
    "LogLine",
    "Metric",
    "TrackedRun",
    "WatchEvent",
    "new_run_name",
]

R = TypeVar("R", bound="Resource")


@dataclass(frozen=True)
class WatchEvent:
    """A change to a watched collection: type is ADDED, MODIFIED or DELETED; `revision` resumes after it."""

    type: str
    revision: int
    object: Resource


@dataclass(frozen=True)
class ApplyResult:
    """What `apply` did: `outcome` is "created", "configured" or "unchanged"."""

    resource: Resource
    outcome: str


@dataclass(frozen=True)
class Metric:
    """A point of a tracked metric; `timestamp` in milliseconds since the epoch, as MLflow keeps it."""

    key: str
    value: float
    step: int
    timestamp: int


@dataclass(frozen=True)
class TrackedRun:
    """A run's tracked data: params, the latest value of each metric, tags. `phase` (the runyard run's)
    comes with a search; `status` is MLflow's (RUNNING, FINISHED...)."""

    name: str
    run_id: str
    experiment: str
    status: str
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]
    phase: str | None = None


@dataclass(frozen=True)
class ArtifactFile:
    """An entry of a run's artifacts: `path` from the run's artifact root; `size` None for a directory."""

    path: str
    is_dir: bool
    size: int | None


class Client:
    """A connection to one runyard server, acting in one project. `rest` answers the same calls with plain
    JSON documents (and has projects and tokens too)."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        project: str | None = None,
        timeout: float = 30.0,
    ):
        self.rest = Rest(url, token, project, timeout)

    url = property(lambda self: self.rest.url)
    token = property(lambda self: self.rest.token)
    project = property(lambda self: self.rest.project)

    @property
    def page_size(self) -> int:
        return self.rest.page_size

    @page_size.setter
    def page_size(self, value: int) -> None:
        self.rest.page_size = value

    def close(self) -> None:
        self.rest.close()

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
        stored, outcome = self.rest.apply(_body(doc), idempotency_key)
        return ApplyResult(_parse(stored), outcome)

    def create(self, doc: dict | Resource, idempotency_key: str | None = None) -> Resource:
        """Create the resource (POST); Conflict if the name is taken, unless the key was seen before."""
        return _parse(self.rest.create(_body(doc), idempotency_key))

    @overload
    def get(self, kind: type[R], name: str) -> R: ...
    @overload
    def get(self, kind: str, name: str) -> Resource: ...
    def get(self, kind: str | type[Resource], name: str) -> Resource:
        """One resource; pass the class (`client.get(Run, "x")`) for a precisely typed result."""
        return _parse(self.rest.get(_plural(kind), name))

    @overload
    def list(self, kind: type[R], labels: dict[str, str] | None = None) -> builtins.list[R]: ...
    @overload
    def list(self, kind: str, labels: dict[str, str] | None = None) -> builtins.list[Resource]: ...
    def list(self, kind: str | type[Resource], labels: dict[str, str] | None = None) -> builtins.list[Any]:
        """Every resource of the kind (fetched a page at a time), oldest first."""
        return [_parse(doc) for doc in self.rest.list(_plural(kind), labels)]

    def delete(self, kind: str | type[Resource], name: str) -> Resource:
        return _parse(self.rest.delete(_plural(kind), name))

    def events(self, kind: str | type[Resource], name: str) -> builtins.list[Event]:
        from runyard.core.resources import Event

        return [Event.model_validate(item) for item in self.rest.events(_plural(kind), name)]

    def watch(self, kind: str | type[Resource], since: int | None = None) -> Iterator[WatchEvent]:
        """Yield every change to the kind in the project, forever: the current objects first (ADDED),
        or, with `since` (a list's `revision`), only what changed after it."""
        for event in self.rest.watch(_plural(kind), since=since):
            yield WatchEvent(event["type"], event["revision"], _parse(event["object"]))

    # -- runs --------------------------------------------------------------------------------------------

    def runs(self) -> builtins.list[Run]:
        return cast("list[Run]", self.list("runs"))

    def stop(self, run: str) -> Run:
        """Ask the controller to stop the run; returns at once (see `wait`). A finished run is left as is."""
        return cast("Run", _parse(self.rest.stop(run)))

    def usage(self, run: str) -> dict[str, Any]:
        """The run's resource usage now: cpu_percent, memory_bytes (absent once it has ended)."""
        return self.rest.usage(run)

    def wait(self, run: str, timeout: float | None = None) -> Run:
        """Poll until the run reaches a terminal phase; raises TimeoutError after `timeout` seconds."""
        return cast("Run", _parse(self.rest.wait(run, timeout)))

    def logs(
        self, run: str, follow: bool = False, tail: int | None = None, since: str | None = None
    ) -> Iterator[LogLine | LogEnd]:
        """Yield the run's log lines as they arrive; a LogEnd comes last once the run has finished."""
        return self.rest.logs(run, follow, tail, since)

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
        environment: str | None = None,
    ) -> Experiment:
        """Snapshot `path`, then create an Experiment running `command`; its Run has the same name.
        `environment`: default (the dependency files of `path`, if any), system (the host's Python), a name
        or an id (see `build_environment`)."""
        snapshot = self.upload_snapshot(Path(path), progress)
        doc = experiment(
            command, name, snapshot, env, resources, timeout_seconds, retries, labels, environment
        )
        return self.create(doc, idempotency_key or str(uuid.uuid4()))  # type: ignore[return-value]

    def upload_snapshot(self, root: Path, progress: Progress | None = None) -> str:
        """Upload the files of `root` the server does not have yet; returns the snapshot id ("sha256:…")."""
        return upload_snapshot(self.rest, Path(root), progress=progress)

    # -- jobs --------------------------------------------------------------------------------------------

    def trigger(
        self, job: str, params: dict[str, str] | None = None, idempotency_key: str | None = None
    ) -> Run:
        """Run the job now (also when suspended), `params` as environment variables of its run; returns the
        run. A repeated `idempotency_key` returns the run its first call made; Conflict when the job's
        concurrencyPolicy Forbid finds a run still active."""
        key = idempotency_key or str(uuid.uuid4())  # a retried request cannot fire twice
        return cast("Run", _parse(self.rest.trigger_job(job, params, key)))

    def job_history(self, job: str, limit: int | None = None) -> builtins.list[dict]:
        """The job's fires, newest first: trigger, scheduledAt, firedAt, outcome, run, phase (None: the run
        was removed since), message."""
        return self.rest.job_history(job, limit)

    def job_schedule(self, job: str, count: int = 5) -> builtins.list[datetime]:
        """The next `count` instants (aware, UTC) the job's schedule fires at; empty when it is suspended
        or has no schedule."""
        fires = self.rest.job_schedule(job, count)["fires"]
        return [datetime.fromisoformat(f["utc"]) for f in fires]

    # -- tracking ----------------------------------------------------------------------------------------

    def metrics(self, run: str) -> dict[str, Metric]:
        """The latest point of each metric the run tracked, by key."""
        return {m["key"]: _metric(m["key"], m) for m in self.rest.metrics(run)}

    def metric_history(self, run: str, key: str, max_results: int | None = None) -> builtins.list[Metric]:
        """Every point of one metric, by step then time."""
        return [_metric(key, point) for point in self.rest.metric_history(run, key, max_results)]

    def tracking(self, run: str) -> TrackedRun:
        """The run's params, latest metrics and tags."""
        doc = self.rest.tracking(run)
        metrics = {key: point["value"] for key, point in (doc.get("metrics") or {}).items()}
        experiment = (doc.get("experiment") or {}).get("name", "")
        return TrackedRun(
            run, doc["runId"], experiment, doc.get("status", ""), doc["params"], metrics, doc["tags"]
        )

    def search_runs(
        self,
        filter: str | None = None,
        order_by: str | None = None,
        experiment: str | None = None,
        max_results: int | None = None,
    ) -> builtins.list[TrackedRun]:
        """The project's runs that match `filter`, ordered by `order_by`, both in MLflow's syntax
        (`"metrics.loss < 0.5 and params.optimizer = 'adam'"`, `"metrics.loss DESC"`), of the experiment
        named `experiment` if given."""
        return [
            TrackedRun(
                doc["name"],
                doc["runId"],
                doc.get("experiment") or "",
                doc.get("status") or "",
                doc.get("params") or {},
                doc.get("metrics") or {},
                doc.get("tags") or {},
                doc.get("phase"),
            )
            for doc in self.rest.search_runs(filter, order_by, experiment, max_results)
        ]

    def artifacts(self, run: str, path: str = "") -> builtins.list[ArtifactFile]:
        """The entries of one directory of the run's artifacts (the root when `path` is empty)."""
        return [
            ArtifactFile(f["path"], f["is_dir"], None if f["is_dir"] else f.get("file_size"))
            for f in self.rest.artifacts(run, path)["files"]
        ]

    def download_artifacts(
        self, run: str, path: str = "", dest: Path | str | None = None, progress: Progress | None = None
    ) -> builtins.list[Path]:
        """Download an artifact file, or a directory with everything under it (the root when `path` is
        empty), streamed to disk; returns the files written. A directory's files go into `dest` (default
        ./its name, or ./RUN for the root); a file goes to `dest`, or into it when it is a directory."""
        written = []
        _, plan = self.rest.artifact_plan(run, path, None if dest is None else Path(dest))
        for entry, target in plan:
            self.rest.download_artifact(run, entry["path"], target, progress)
            written.append(target)
        return written

    # -- environments ------------------------------------------------------------------------------------

    def environments(self) -> builtins.list[dict]:
        """The environments the project named or its runs used, newest first (records without the lock)."""
        return self.rest.environments()

    def environment(self, ref: str) -> dict:
        """An environment's record, with its lock: `ref` is a name, an id or a unique id prefix."""
        return self.rest.environment(ref)

    def build_environment(
        self, path: Path | str = ".", name: str | None = None, python: str | None = None, wait: bool = True
    ) -> dict:
        """Build the environment of the dependency files at the top of `path` (requirements.txt, or
        pyproject.toml with uv.lock; .python-version), or reuse the one built already; with `wait`, return
        once the build has ended (state Ready or Failed, `message` says why)."""
        from runyard.rest import environment_files

        record = self.rest.build_environment(environment_files(Path(path)), name, python)
        return self.rest.follow_build(record["id"]) if wait and record["state"] == "Building" else record

    def remove_environment(self, ref: str) -> None:
        """A name: drop the name. An id: remove the environment's files (its record and lock are kept)."""
        self.rest.remove_environment(ref)

    # -- identity ----------------------------------------------------------------------------------------

    def whoami(self) -> dict:
        return self.rest.whoami()

    def health(self) -> dict:
        """GET /healthz without credentials."""
        return self.rest.health()

    # -- nodes -------------------------------------------------------------------------------------------

    def nodes(self) -> builtins.list[dict]:
        """The nodes runs go to: capacity, allocatable, allocated (what runs hold), and each GPU with its
        model, memory, utilization and the run that holds it."""
        return self.rest.nodes()

    # -- models ------------------------------------------------------------------------------------------

    def deploy(
        self,
        name: str,
        handler: str | None = None,
        model_uri: str | None = None,
        path: Path | str = ".",
        replicas: int | None = None,
        autoscaling: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        environment: str | None = None,
    ) -> Model:
        """Snapshot `path` and apply a Model serving `handler` ('module:function' there) or `model_uri` (an
        MLflow model); an existing model rolls out the change. Returns at once: its status.url answers once
        the model is Ready."""
        snapshot = self.upload_snapshot(Path(path))
        doc = model(name, handler, model_uri, snapshot, replicas, autoscaling, env, None, environment)
        return cast("Model", self.apply(doc))

    def predict(self, model_name: str, body: Any, key: str | None = None) -> Any:
        """POST `body` (JSON) to the model's URL, with this client's token or a model `key`."""
        return self.rest.predict(model_name, body, key)

    def model_metrics(self, model_name: str) -> dict:
        """Per version: requests, errors, errorRate, p50Ms/p95Ms/p99Ms, replicas, readyReplicas, inFlight."""
        return self.rest.model_metrics(model_name)

    def rollback(self, model_name: str, version: int) -> Model:
        """Serve `version` again (its spec becomes the model's); Conflict for a version it never had."""
        return cast("Model", _parse(self.rest.rollback_model(model_name, version)))

    def create_model_key(self, model_name: str, description: str = "") -> dict:
        """A key for this model only: `key` in the answer is shown this once."""
        return self.rest.create_model_key(model_name, description)

    def model_keys(self, model_name: str) -> builtins.list[dict]:
        return self.rest.model_keys(model_name)

    def revoke_model_key(self, model_name: str, key_id: str) -> None:
        self.rest.revoke_model_key(model_name, key_id)


def _plural(kind: str | type[Resource]) -> str:
    return kind.plural if isinstance(kind, type) else kind


def _body(doc: dict | Resource) -> dict:
    return dict(doc) if isinstance(doc, dict) else doc.model_dump(mode="json", exclude_none=True)


def _parse(doc: dict) -> Resource:
    from runyard.core.resources import ALL_KINDS

    return ALL_KINDS[doc["kind"]].model_validate(doc)


def _metric(key: str, point: dict) -> Metric:
    return Metric(key, float(point["value"]), int(point.get("step") or 0), int(point.get("timestamp") or 0))
