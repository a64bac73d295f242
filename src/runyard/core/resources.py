"""The resource model: the four workload kinds and the Run, shaped like Kubernetes custom resources.

The same document works with `runyard apply -f`, the REST API and (on a cluster) `kubectl`. Field names are
camelCase because they *are* the wire format; `status` is written only by the controller.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from runyard.core.errors import FieldError, Invalid, invalid_from_pydantic
from runyard.core.phases import Phase
from runyard.core.quantities import parse_cpu, parse_memory

API_GROUP = "runyard.dev"
API_VERSION = f"{API_GROUP}/v1"
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SNAPSHOT_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
HANDLER_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def check_name(value: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("must be a non-empty string")
    if len(value) > 63:
        raise ValueError("must be at most 63 characters")
    if not NAME_RE.match(value):
        raise ValueError(
            f"{value!r} is not a valid name: use lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    return value


class Strict(BaseModel):
    """Unknown fields are errors, not silently dropped: a typo must not lose a setting."""

    model_config = ConfigDict(extra="forbid", validate_assignment=False)


class OwnerReference(Strict):
    kind: str
    name: str
    uid: str


class ObjectMeta(Strict):
    name: str
    project: str = "default"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    # Set by the server; accepted on input so that `get -o yaml | apply -f -` round-trips.
    uid: str | None = None
    resourceVersion: int | None = None
    generation: int | None = None
    creationTimestamp: datetime | None = None
    deletionTimestamp: datetime | None = None
    ownerReferences: list[OwnerReference] = Field(default_factory=list)

    _name = field_validator("name", "project")(classmethod(lambda cls, v: check_name(v)))


class ComputeResources(Strict):
    """Requests for cpu (cores or '500m'), memory ('512Mi', '4Gi' or bytes) and whole GPUs."""

    cpu: float | str | None = None
    memory: int | str | None = None
    gpu: int = Field(default=0, ge=0, le=64)

    @field_validator("cpu")
    @classmethod
    def _cpu(cls, v: Any) -> Any:
        if v is not None:
            parse_cpu(v)
        return v

    @field_validator("memory")
    @classmethod
    def _memory(cls, v: Any) -> Any:
        if v is not None:
            parse_memory(v)
        return v

    @property
    def cpu_cores(self) -> float | None:
        return None if self.cpu is None else parse_cpu(self.cpu)

    @property
    def memory_bytes(self) -> int | None:
        return None if self.memory is None else parse_memory(self.memory)


class RetryPolicy(Strict):
    maxRetries: int = Field(default=0, ge=0, le=100, description="attempts after the first that may fail")
    backoffSeconds: float = Field(default=1.0, ge=0, le=3600, description="wait before each retry")


class RunTemplate(Strict):
    """What to execute: shared by Experiments, Jobs (as their template) and Runs."""

    command: str | list[str] = Field(description="a shell command line, or an argv list run without a shell")
    env: dict[str, str] = Field(default_factory=dict)
    environment: str = "default"
    resources: ComputeResources = Field(default_factory=ComputeResources)
    snapshot: str | None = Field(default=None, description="sha256:… id of the uploaded project files")
    timeoutSeconds: float | None = Field(default=None, gt=0, description="per attempt; then it is stopped")
    retryPolicy: RetryPolicy = Field(default_factory=RetryPolicy)
    stopGracePeriodSeconds: float = Field(default=10.0, ge=0, le=3600)

    @field_validator("command")
    @classmethod
    def _command(cls, v: str | list[str]) -> str | list[str]:
        if (isinstance(v, str) and not v.strip()) or (isinstance(v, list) and not v):
            raise ValueError("must not be empty")
        return v

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        for key in v:
            if not ENV_NAME_RE.match(key):
                raise ValueError(f"{key!r} is not a valid environment variable name")
        return v

    @field_validator("snapshot")
    @classmethod
    def _snapshot(cls, v: str | None) -> str | None:
        if v is not None and not SNAPSHOT_RE.match(v):
            raise ValueError("must look like 'sha256:' followed by 64 hex digits")
        return v

    @field_validator("environment")
    @classmethod
    def _environment(cls, v: str) -> str:
        return check_name(v)


class ExperimentSpec(RunTemplate):
    pass


class SessionSpec(Strict):
    editor: Literal["jupyterlab", "terminal"] = "jupyterlab"
    environment: str = "default"
    resources: ComputeResources = Field(default_factory=ComputeResources)
    snapshot: str | None = None
    idleTimeoutSeconds: int | None = Field(default=None, gt=0)

    _env = field_validator("environment")(classmethod(lambda cls, v: check_name(v)))
    _snap = field_validator("snapshot")(RunTemplate._snapshot.__func__)  # type: ignore[attr-defined]


class JobSpec(Strict):
    schedule: str | None = Field(default=None, description="cron expression, e.g. '0 3 * * *'")
    dependsOn: list[str] = Field(default_factory=list, description="jobs that must succeed first")
    concurrencyPolicy: Literal["Allow", "Forbid", "Replace"] = "Forbid"
    suspend: bool = False
    template: RunTemplate

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, v: str | None) -> str | None:
        if v is not None and not croniter.is_valid(v):
            raise ValueError(
                f"{v!r} is not a valid cron expression (five fields: minute hour day month weekday)"
            )
        return v

    @field_validator("dependsOn")
    @classmethod
    def _depends(cls, v: list[str]) -> list[str]:
        return [check_name(n) for n in v]


class ModelSpec(Strict):
    handler: str | None = Field(
        default=None, description="'module:function' in the snapshot that serves requests"
    )
    modelUri: str | None = None
    replicas: int = Field(default=1, ge=0, le=100)
    environment: str = "default"
    resources: ComputeResources = Field(default_factory=ComputeResources)
    snapshot: str | None = None

    _env = field_validator("environment")(classmethod(lambda cls, v: check_name(v)))
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
    stopRequested: bool = Field(default=False, description="set by `runyard stop`; the controller stops it")


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
    limits: dict[str, Any] | None = Field(default=None, description="how cpu/memory limits were applied")


class WorkloadStatus(BaseModel):
    phase: str | None = None
    reason: str | None = None
    message: str | None = None
    conditions: list[Condition] = Field(default_factory=list)
    observedGeneration: int | None = None
    runs: list[str] = Field(default_factory=list)


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


class Session(Resource):
    kind: Literal["Session"] = "Session"
    spec: SessionSpec = Field(default_factory=SessionSpec)
    status: WorkloadStatus = Field(default_factory=WorkloadStatus)
    plural: ClassVar[str] = "sessions"


class Experiment(Resource):
    kind: Literal["Experiment"] = "Experiment"
    spec: ExperimentSpec
    status: WorkloadStatus = Field(default_factory=WorkloadStatus)
    plural: ClassVar[str] = "experiments"


class Job(Resource):
    kind: Literal["Job"] = "Job"
    spec: JobSpec
    status: WorkloadStatus = Field(default_factory=WorkloadStatus)
    plural: ClassVar[str] = "jobs"


class Model(Resource):
    kind: Literal["Model"] = "Model"
    spec: ModelSpec
    status: WorkloadStatus = Field(default_factory=WorkloadStatus)
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
    w = word.lower()
    for cls in ALL_KINDS.values():
        if w in (cls.__name__.lower(), cls.plural, cls.plural[:3]):
            return cls
    names = ", ".join(c.plural for c in ALL_KINDS.values())
    raise Invalid(f"unknown kind {word!r}", [FieldError("kind", f"expected one of {names}")])


class Event(BaseModel):
    type: Literal["Normal", "Warning"] = "Normal"
    reason: str
    message: str
    time: datetime
    kind: str
    name: str


def parse_workload(data: Any) -> Session | Experiment | Job | Model:
    """Validate a user-supplied document (not Runs). Raises Invalid with field paths; `status` is ignored."""
    if not isinstance(data, dict):
        raise Invalid("the document must be a mapping", [FieldError("(body)", "expected an object")])
    data = {k: v for k, v in data.items() if k != "status"}
    errors = []
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
