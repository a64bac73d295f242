"""The resource model: the four workload kinds and the Run, shaped like Kubernetes custom resources.

The same document works with `runyard apply -f`, the REST API and (on a cluster) `kubectl`. Field names are
camelCase because they *are* the wire format; `status` is written only by the controller.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from runyard.core.cron import schedule_error, zone
from runyard.core.errors import FieldError, Invalid, invalid_from_pydantic
from runyard.core.kinds import API_VERSION, name_problem, resolve_kind
from runyard.core.kinds import NAME_RE as NAME_RE  # re-exported: the API validates names by it
from runyard.core.phases import Phase
from runyard.core.quantities import parse_cpu, parse_memory

ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SNAPSHOT_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
# An environment id (content hash), whole or a unique prefix of at least 12 hex digits.
ENVIRONMENT_ID_RE = re.compile(r"^sha256:[0-9a-f]{12,64}$")
HANDLER_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def check_name(value: str) -> str:
    problem = name_problem(value) if isinstance(value, str) else "must be a non-empty string"
    if problem:
        raise ValueError(problem)
    return value


# Kubernetes' rules for label and annotation keys and values.
QUALIFIED_NAME_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
MAX_OBJECT_BYTES = 3 << 19  # 1.5 MiB as JSON, what Kubernetes (etcd) keeps per object
MAX_ANNOTATIONS_BYTES = 256 * 1024
# What exec accepts: each argument (and each NAME=value) under MAX_ARG_STRLEN, 128 KiB on Linux; all of
# them together within our own bound, well under ARG_MAX (a quarter of the stack limit, 2 MiB by default).
MAX_ARG_BYTES = 128 * 1024 - 1
MAX_EXEC_BYTES = 1024 * 1024
MAX_CPU_CORES = 4096.0
MAX_MEMORY_BYTES = 1 << 50  # 1 PiB
MAX_SECONDS = 10 * 365 * 86400.0


def check_label_key(key: str) -> None:
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not DNS_SUBDOMAIN_RE.match(prefix)):
        raise ValueError(f"key {key!r}: the prefix must be a DNS subdomain of at most 253 characters")
    if len(name) > 63 or not QUALIFIED_NAME_RE.match(name):
        raise ValueError(
            f"key {key[:80]!r}: the name must be at most 63 characters of letters, digits, '-', '_' and '.', "
            "starting and ending with a letter or digit"
        )


def check_labels(labels: dict[str, str]) -> dict[str, str]:
    for key, value in labels.items():
        check_label_key(key)
        if value and (len(value) > 63 or not QUALIFIED_NAME_RE.match(value)):
            raise ValueError(
                f"value of {key!r}: at most 63 characters of letters, digits, '-', '_' and '.', "
                "starting and ending with a letter or digit (or empty)"
            )
    return labels


def check_annotations(annotations: dict[str, str]) -> dict[str, str]:
    for key in annotations:
        check_label_key(key)
    size = sum(len(k.encode()) + len(v.encode()) for k, v in annotations.items())
    if size > MAX_ANNOTATIONS_BYTES:
        raise ValueError(f"are {size} bytes in all; at most {MAX_ANNOTATIONS_BYTES}")
    return annotations


def exec_size(args: list[str]) -> int:
    """Bytes the arguments take in exec's argument area, after checking each one exec would accept."""
    total = 0
    for i, arg in enumerate(args):
        size = len(arg.encode())
        if "\0" in arg:
            raise ValueError(f"argument {i} contains a NUL byte, which no program can receive")
        if size > MAX_ARG_BYTES:
            raise ValueError(f"argument {i} is {size} bytes; exec accepts at most {MAX_ARG_BYTES}")
        total += size + 1
    return total


class Strict(BaseModel):
    """Unknown fields are errors, not silently dropped: a typo must not lose a setting. Infinity and NaN
    are refused everywhere: they are not JSON, and no store keeps them."""

    model_config = ConfigDict(extra="forbid", validate_assignment=False, allow_inf_nan=False)


class OwnerReference(Strict):
    kind: str = Field(max_length=32)
    name: str = Field(max_length=63)
    uid: str = Field(max_length=36)


class ObjectMeta(Strict):
    name: str = Field(json_schema_extra={"pattern": NAME_RE.pattern, "maxLength": 63})
    project: str = Field("default", json_schema_extra={"pattern": NAME_RE.pattern, "maxLength": 63})
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    # Set by the server; accepted on input so that `get -o yaml | apply -f -` round-trips.
    uid: str | None = Field(default=None, max_length=36)
    resourceVersion: int | None = Field(default=None, ge=0, le=2**63 - 1)
    generation: int | None = Field(default=None, ge=0, le=2**31 - 1)
    creationTimestamp: datetime | None = None
    deletionTimestamp: datetime | None = None
    ownerReferences: list[OwnerReference] = Field(default_factory=list, max_length=16)

    _name = field_validator("name", "project")(classmethod(lambda cls, v: check_name(v)))
    _labels = field_validator("labels")(classmethod(lambda cls, v: check_labels(v)))
    _annotations = field_validator("annotations")(classmethod(lambda cls, v: check_annotations(v)))


def check_environment(value: str) -> str:
    """`default` (the project's own dependencies, if its files declare any), `system` (the host's Python,
    no environment), the name of one built with `runyard env build --name`, or an id `sha256:…` that pins
    one exactly."""
    if isinstance(value, str) and value.startswith("sha256:"):
        if not ENVIRONMENT_ID_RE.match(value):
            raise ValueError("an environment id is 'sha256:' followed by 12 to 64 lowercase hex digits")
        return value
    return check_name(value)


class ComputeResources(Strict):
    """Requests for cpu (cores or '500m'), memory ('512Mi', '4Gi' or bytes), whole GPUs and the most
    processes (pids) the run may hold at once."""

    cpu: float | str | None = None
    memory: int | str | None = None
    gpu: int = Field(default=0, ge=0, le=64)
    pids: int | None = Field(
        default=None,
        ge=8,
        le=4_194_304,
        description="most processes and threads at once; default: the node's",
    )

    @field_validator("cpu")
    @classmethod
    def _cpu(cls, v: Any) -> Any:
        if v is not None and parse_cpu(v) > MAX_CPU_CORES:
            raise ValueError(f"must be at most {MAX_CPU_CORES:g} cores")
        return v

    @field_validator("memory")
    @classmethod
    def _memory(cls, v: Any) -> Any:
        if v is not None and parse_memory(v) > MAX_MEMORY_BYTES:
            raise ValueError(f"must be at most {MAX_MEMORY_BYTES} bytes (1 PiB)")
        return v

    @property
    def cpu_cores(self) -> float | None:
        return None if self.cpu is None else parse_cpu(self.cpu)

    @property
    def memory_bytes(self) -> int | None:
        return None if self.memory is None else parse_memory(self.memory)


class RetryPolicy(Strict):
    """Retries wait backoffSeconds, then that times backoffMultiplier after each further failure (1, 2, 4…
    seconds by default), never more than maxBackoffSeconds."""

    maxRetries: int = Field(default=0, ge=0, le=100, description="attempts after the first that may fail")
    backoffSeconds: float = Field(default=1.0, ge=0, le=3600, description="wait before the first retry")
    backoffMultiplier: float = Field(default=2.0, ge=1, le=10, description="growth of the wait per retry")
    maxBackoffSeconds: float = Field(default=600.0, ge=0, le=86400, description="the longest wait")

    def delay(self, failures: int) -> float:
        """The wait before the retry that follows the `failures`-th failed attempt (1 for the first)."""
        exponent = min(failures - 1, 64)  # beyond that the cap applies anyway; no float overflow
        return min(self.backoffSeconds * self.backoffMultiplier**exponent, self.maxBackoffSeconds)


class RunTemplate(Strict):
    """What to execute: shared by Experiments, Jobs (as their template) and Runs."""

    command: str | list[str] = Field(
        description="a shell command line, or an argv list run without a shell; each argument under 128 KiB, "
        "with the environment at most 1 MiB in all"
    )
    env: dict[str, str] = Field(default_factory=dict)
    environment: str = "default"
    resources: ComputeResources = Field(default_factory=ComputeResources)
    snapshot: str | None = Field(default=None, description="sha256:… id of the uploaded project files")
    timeoutSeconds: float | None = Field(
        default=None, gt=0, le=MAX_SECONDS, description="per attempt; then it is stopped"
    )
    retryPolicy: RetryPolicy = Field(default_factory=RetryPolicy)
    stopGracePeriodSeconds: float = Field(default=10.0, ge=0, le=3600)

    @field_validator("command")
    @classmethod
    def _command(cls, v: str | list[str] | None) -> str | list[str] | None:
        if v is None:
            return v
        if (isinstance(v, str) and not v.strip()) or (isinstance(v, list) and not v):
            raise ValueError("must not be empty")
        size = exec_size([v] if isinstance(v, str) else v)
        if size > MAX_EXEC_BYTES:
            raise ValueError(f"is {size} bytes in all; at most {MAX_EXEC_BYTES}")
        return v

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        for key in v:
            if len(key) > 256 or not ENV_NAME_RE.match(key):
                raise ValueError(f"{key[:80]!r} is not a valid environment variable name")
        if exec_size([f"{k}={value}" for k, value in v.items()]) > MAX_EXEC_BYTES:
            raise ValueError(f"is over {MAX_EXEC_BYTES} bytes in all")
        return v

    @model_validator(mode="after")
    def _exec_fits(self) -> RunTemplate:
        argv = [self.command] if isinstance(self.command, str) else self.command or []
        env = [f"{k}={v}" for k, v in self.env.items()]
        if exec_size(argv) + exec_size(env) > MAX_EXEC_BYTES:
            raise ValueError(f"command and env together must be at most {MAX_EXEC_BYTES} bytes")
        return self

    @field_validator("snapshot")
    @classmethod
    def _snapshot(cls, v: str | None) -> str | None:
        if v is not None and not SNAPSHOT_RE.match(v):
            raise ValueError("must look like 'sha256:' followed by 64 hex digits")
        return v

    @field_validator("environment")
    @classmethod
    def _environment(cls, v: str) -> str:
        return check_environment(v)


class ExperimentSpec(RunTemplate):
    pass


DAY = 86400


class SessionSpec(Strict):
    """An interactive workspace: JupyterLab (or a bare terminal) in the project's files and environment,
    reached through the server. `stopped`: the desired state; `runyard session stop` sets it, and so does
    the server when it reclaims an idle session or one past its lifetime (as Kubeflow's culler marks a
    Notebook stopped); `runyard session start` clears it. Its directory is kept across stops."""

    editor: Literal["jupyterlab", "terminal"] = "jupyterlab"
    environment: str = "default"
    resources: ComputeResources = Field(default_factory=ComputeResources)
    snapshot: str | None = None
    stopped: bool = Field(default=False, description="stop it (its directory is kept); false starts it")
    idleTimeoutSeconds: int = Field(
        default=3600, gt=0, le=int(MAX_SECONDS), description="stopped (reason Idle) after this long unused"
    )
    maxLifetimeSeconds: int = Field(
        default=7 * DAY, gt=0, le=int(MAX_SECONDS), description="stopped (reason MaxLifetime) after this long"
    )

    _env = field_validator("environment")(classmethod(lambda cls, v: check_environment(v)))
    _snap = field_validator("snapshot")(RunTemplate._snapshot.__func__)  # type: ignore[attr-defined]


EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")


class JobNotifications(Strict):
    """Where to say that a job's run ended: a webhook (a signed JSON POST) and/or e-mail."""

    onFailure: bool = Field(default=True, description="when a run fails (after its retries)")
    onSuccess: bool = Field(default=False, description="when a run succeeds")
    webhook: str | None = Field(default=None, max_length=2048, description="http(s) URL to POST to")
    email: list[str] = Field(default_factory=list, max_length=32, description="addresses to mail")

    @field_validator("webhook")
    @classmethod
    def _webhook(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^\s/]+", v):
            raise ValueError(f"{v[:80]!r} must be an http:// or https:// URL")
        return v

    @field_validator("email")
    @classmethod
    def _email(cls, v: list[str]) -> list[str]:
        for address in v:
            if not EMAIL_RE.match(address):
                raise ValueError(f"{address[:80]!r} is not an e-mail address")
        return v


class JobSpec(Strict):
    """A run template and what triggers it: a cron schedule, other jobs succeeding, or a user."""

    schedule: str | None = Field(
        default=None,
        max_length=256,
        description="cron expression ('0 3 * * *') or macro (@hourly, @daily, @weekly, @monthly, @yearly)",
    )
    timeZone: str = Field(default="UTC", max_length=64, description="IANA zone the schedule is read in")
    startingDeadlineSeconds: int | None = Field(
        default=None,
        ge=1,
        le=int(MAX_SECONDS),
        description="a fire missed (the controller was down) is still made this late, else skipped; "
        "default: always made, once for the missed window",
    )
    dependsOn: list[str] = Field(
        default_factory=list,
        max_length=64,
        description="jobs of the project that must all succeed (again since this job last ran after them)",
    )
    concurrencyPolicy: Literal["Allow", "Forbid", "Replace"] = Field(
        default="Forbid",
        description="when a fire finds a run of the job still active: run both, skip the fire, or stop the "
        "active run and start the new one",
    )
    suspend: bool = Field(default=False, description="no fire while set; manual triggers still run")
    successfulRunsHistoryLimit: int = Field(default=10, ge=0, le=1000, description="succeeded runs kept")
    failedRunsHistoryLimit: int = Field(
        default=10, ge=0, le=1000, description="failed or cancelled runs kept"
    )
    notifications: JobNotifications | None = None
    template: RunTemplate

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, v: str | None) -> str | None:
        if v is not None and (error := schedule_error(v)):
            raise ValueError(error)
        return v

    @field_validator("timeZone")
    @classmethod
    def _zone(cls, v: str) -> str:
        zone(v)  # raises ValueError naming it
        return v

    @field_validator("dependsOn")
    @classmethod
    def _depends(cls, v: list[str]) -> list[str]:
        names = [check_name(n) for n in v]
        if len(set(names)) != len(names):
            raise ValueError("names a job more than once")
        return names


class Autoscaling(Strict):
    """Replicas follow the requests in flight: ceil(in flight / targetInFlight), between min and max. With
    minReplicas 0 the model scales to zero after scaleToZeroAfterSeconds without a request; the next
    request waits for a replica instead of failing."""

    minReplicas: int = Field(default=1, ge=0, le=100)
    maxReplicas: int = Field(default=1, ge=1, le=100)
    targetInFlight: float = Field(default=8.0, gt=0, le=10_000, description="requests in flight per replica")
    scaleDownDelaySeconds: float = Field(default=30.0, ge=0, le=86_400)
    scaleToZeroAfterSeconds: float = Field(default=300.0, gt=0, le=30 * 86_400)

    @model_validator(mode="after")
    def _bounds(self) -> Autoscaling:
        if self.minReplicas > self.maxReplicas:
            raise ValueError(f"minReplicas {self.minReplicas} is over maxReplicas {self.maxReplicas}")
        return self


class RequestLogging(Strict):
    sampleRate: float = Field(default=0.0, ge=0, le=1, description="share of requests kept with the version")


class ModelSpec(Strict):
    handler: str | None = Field(
        default=None, max_length=256, description="'module:function' in the snapshot that serves requests"
    )
    modelUri: str | None = Field(
        default=None,
        max_length=2048,
        description="an MLflow model: runs:/RUN/path, models:/NAME/VERSION, models:/NAME@alias, or a path in "
        "the snapshot",
    )
    replicas: int = Field(default=1, ge=0, le=100, description="how many, when there is no autoscaling")
    autoscaling: Autoscaling | None = None
    environment: str = "default"
    env: dict[str, str] = Field(default_factory=dict)
    resources: ComputeResources = Field(default_factory=ComputeResources)
    snapshot: str | None = None
    requestLogging: RequestLogging = Field(default_factory=RequestLogging)

    _env_vars = field_validator("env")(RunTemplate._env.__func__)  # type: ignore[attr-defined]

    _env = field_validator("environment")(classmethod(lambda cls, v: check_environment(v)))
    _snap = field_validator("snapshot")(RunTemplate._snapshot.__func__)  # type: ignore[attr-defined]

    @field_validator("handler")
    @classmethod
    def _handler(cls, v: str | None) -> str | None:
        if v is not None and not HANDLER_RE.match(v):
            raise ValueError(f"{v!r} must look like 'module:function'")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> ModelSpec:
        if (self.handler is None) == (self.modelUri is None):
            raise ValueError("set exactly one of 'handler' and 'modelUri'")
        return self


class RunSpec(RunTemplate):
    command: str | list[str] | None = Field(  # type: ignore[assignment]
        default=None, description="what to execute; absent only for a tracking-only run"
    )
    trackingOnly: bool = Field(
        default=False,
        description="a run that only records tracking data (opened by `runyard.start_run` or MLflow's "
        "create-run): no process is launched; it ends when its client ends it",
    )
    stopRequested: bool = Field(default=False, description="set by `runyard stop`; the controller stops it")

    @model_validator(mode="after")
    def _command_or_tracking(self) -> RunSpec:
        if self.trackingOnly and self.command is not None:
            raise ValueError("a tracking-only run has no command")
        if not self.trackingOnly and self.command is None:
            raise ValueError("command: required (only a tracking-only run has none)")
        return self


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(BaseModel):
    type: str
    status: ConditionStatus
    reason: str
    message: str = ""
    lastTransitionTime: datetime


class Attempt(BaseModel):
    attempt: int
    handle: dict[str, Any] | None = None
    startedAt: datetime | None = None
    finishedAt: datetime | None = None
    exitCode: int | None = None
    reason: str | None = None


class RunStatus(BaseModel):
    phase: Phase = Phase.PENDING
    reason: str | None = None
    message: str | None = None
    conditions: list[Condition] = Field(default_factory=list)
    attempts: list[Attempt] = Field(default_factory=list)
    exitCode: int | None = None
    startedAt: datetime | None = None
    finishedAt: datetime | None = None
    nextAttemptAt: datetime | None = None
    limits: dict[str, Any] | None = Field(default=None, description="how cpu/memory/pids limits were applied")
    environment: dict[str, Any] | None = Field(
        default=None, description="the environment the run uses: id, name, python, platform, lock digest"
    )
    sandbox: dict[str, Any] | None = Field(
        default=None, description="how the run is isolated: mechanism ('bubblewrap' or 'none') and why"
    )
    allocation: dict[str, Any] | None = Field(
        default=None, description="what the node set aside for it while it runs: cpu, memory, GPU indices"
    )
    peakMemoryBytes: int | None = Field(default=None, description="the most memory its processes held")


class WorkloadStatus(BaseModel):
    phase: str | None = None
    reason: str | None = None
    message: str | None = None
    conditions: list[Condition] = Field(default_factory=list)
    observedGeneration: int | None = None
    runs: list[str] = Field(default_factory=list)


class JobStatus(WorkloadStatus):
    """Written by the job controller. `runs`: the runs kept (history), oldest first; `active`: those not
    finished. Phase: Scheduled (waiting for its next trigger), Active (a run is unfinished), Suspended."""

    active: list[str] = Field(default_factory=list)
    lastScheduleTime: datetime | None = Field(default=None, description="the last scheduled instant fired")
    nextScheduleTime: datetime | None = Field(default=None, description="the next instant it fires at")
    lastRun: dict[str, Any] | None = Field(
        default=None, description="the last run that finished: name, phase, finishedAt, trigger"
    )
    lastSuccessfulTime: datetime | None = None
    scheduleFrom: datetime | None = Field(
        default=None,
        description="fires are counted from here: when the job was made, its schedule changed or it was "
        "resumed (a resumed job does not catch up on what it skipped while suspended)",
    )
    observedSchedule: str | None = Field(
        default=None, description="schedule, time zone and suspend as last seen, to notice a change"
    )


class Resource(Strict):
    apiVersion: Literal["runyard.dev/v1"] = "runyard.dev/v1"
    kind: str
    metadata: ObjectMeta
    # Every kind overrides these two with its own concrete types; declared here so that code handling
    # any resource can read them.
    spec: Any
    status: Any
    plural: ClassVar[str]

    @property
    def uid(self) -> str:
        """The uid the store gave it; only stored resources have one."""
        if self.metadata.uid is None:
            raise ValueError(f"{self.kind} {self.metadata.name!r} has not been stored yet")
        return self.metadata.uid


class SessionStatus(WorkloadStatus):
    """Written by the session controller. Phase: Pending (environment, capacity, launch), Starting (its
    process is up, Jupyter not answering yet), Running, Stopped (reason Stopped, Idle or MaxLifetime),
    Failed (its process ended unasked)."""

    url: str | None = Field(default=None, description="where a browser opens it (through the server)")
    run: str | None = Field(default=None, description="the run of its current (or last) start")
    runUid: str | None = None
    port: int | None = Field(default=None, description="the loopback port its Jupyter server listens on")
    startedAt: datetime | None = None
    readyAt: datetime | None = None
    lastActivity: datetime | None = Field(default=None, description="last kernel, terminal or HTTP use")
    idleWarnedAt: datetime | None = None


class Session(Resource):
    kind: Literal["Session"] = "Session"
    spec: SessionSpec = Field(default_factory=SessionSpec)
    status: SessionStatus = Field(default_factory=SessionStatus)
    plural: ClassVar[str] = "sessions"


class Experiment(Resource):
    kind: Literal["Experiment"] = "Experiment"
    spec: ExperimentSpec
    status: WorkloadStatus = Field(default_factory=WorkloadStatus)
    plural: ClassVar[str] = "experiments"


class Job(Resource):
    kind: Literal["Job"] = "Job"
    spec: JobSpec
    status: JobStatus = Field(default_factory=JobStatus)
    plural: ClassVar[str] = "jobs"


class ModelVersion(BaseModel):
    """One immutable version of a Model: what its replicas run. Made by the model controller for each
    applied spec it has not seen (the same spec again, e.g. a rollback, reuses its version)."""

    version: int
    specHash: str
    spec: dict[str, Any] = Field(description="the ModelSpec it was made from")
    snapshot: str | None = None
    source: str | None = Field(default=None, description="the MLflow model it serves, resolved (no alias)")
    createdAt: datetime


class ModelStatus(WorkloadStatus):
    """Written by the model controller. Phase: Pending (no version ready yet), Ready, Updating (a new
    version is starting; traffic stays on the current one), ScaledToZero, Failed."""

    url: str | None = Field(default=None, description="the model's one stable URL")
    port: int | None = None
    versions: list[ModelVersion] = Field(default_factory=list)
    currentVersion: int | None = Field(default=None, description="the version traffic goes to")
    targetVersion: int | None = Field(default=None, description="the version being rolled out")
    replicas: int = 0
    readyReplicas: int = 0
    desiredReplicas: int = 0


class Model(Resource):
    kind: Literal["Model"] = "Model"
    spec: ModelSpec
    status: ModelStatus = Field(default_factory=ModelStatus)
    plural: ClassVar[str] = "models"


class Run(Resource):
    """The pod-like unit a runtime knows how to start; created by the controllers, never applied."""

    kind: Literal["Run"] = "Run"
    spec: RunSpec
    status: RunStatus = Field(default_factory=RunStatus)
    plural: ClassVar[str] = "runs"


AnyWorkload = Annotated[Session | Experiment | Job | Model, Field(discriminator="kind")]
AnyResource = Session | Experiment | Job | Model | Run

WORKLOAD_KINDS: dict[str, type[Session | Experiment | Job | Model]] = {
    c.__name__: c for c in (Session, Experiment, Job, Model)
}
ALL_KINDS: dict[str, type[Resource]] = {**WORKLOAD_KINDS, "Run": Run}
BY_PLURAL: dict[str, type[Resource]] = {c.plural: c for c in ALL_KINDS.values()}


def kind_for(word: str) -> type[Resource]:
    """Resolve what a user types ('experiment', 'exp', 'Experiments', 'runs') to a kind."""
    return ALL_KINDS[resolve_kind(word).name]


class Event(BaseModel):
    type: Literal["Normal", "Warning"] = "Normal"
    reason: str
    message: str
    time: datetime
    kind: str
    name: str


def _nul_paths(doc: Any) -> list[str]:
    """Where a NUL character hides in a document: no program takes one, and PostgreSQL's text refuses it.
    A loop, not recursion: a document may nest as deep as the JSON parser allows."""
    found, todo = [], [("", doc)]
    while todo:
        path, value = todo.pop()
        if isinstance(value, str) and "\0" in value:
            found.append(path or "(body)")
        elif isinstance(value, dict):
            found += [f"{path}.{k}".lstrip(".") for k in value if "\0" in str(k)]
            todo += [(f"{path}.{k}".lstrip("."), v) for k, v in value.items()]
        elif isinstance(value, list):
            todo += [(f"{path}.{i}", v) for i, v in enumerate(value)]
    return sorted(found)


def parse_workload(data: Any) -> Session | Experiment | Job | Model:
    """Validate a user-supplied document (not Runs). Raises Invalid with field paths; `status` is ignored."""
    if not isinstance(data, dict):
        raise Invalid("the document must be a mapping", [FieldError("(body)", "expected an object")])
    data = {k: v for k, v in data.items() if k != "status"}
    errors = [FieldError(path, "must not contain a NUL character") for path in _nul_paths(data)]
    if data.get("apiVersion") != API_VERSION:
        errors.append(FieldError("apiVersion", f"must be {API_VERSION!r}"))
    kind = data.get("kind")
    if kind not in WORKLOAD_KINDS:
        expected = ", ".join(WORKLOAD_KINDS)
        reason = (
            "Runs are created by the controller"
            if kind == "Run"
            else f"unknown kind {kind!r}: expected one of {expected}"
        )
        raise Invalid("the resource is invalid", [*errors, FieldError("kind", reason)])
    try:
        res = WORKLOAD_KINDS[kind].model_validate({**data, "apiVersion": API_VERSION})
    except ValidationError as exc:
        errors.extend(invalid_from_pydantic(exc).details)
    if errors:
        raise Invalid("the resource is invalid", errors)
    return res
