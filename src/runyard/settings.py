"""The server's settings, one class per area. Precedence: `runyard server` flags, then the environment
(RUNYARD_<AREA>_<FIELD>, and RUNYARD_HOME for the data directory), then the defaults below."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from runyard.home import default_home


class ServerSettings(BaseSettings):
    """Where the server listens, keeps its data and stores its objects."""

    model_config = SettingsConfigDict(
        env_prefix="RUNYARD_SERVER_", use_attribute_docstrings=True, populate_by_name=True
    )

    host: str = "127.0.0.1"
    """Address to listen on; loopback by default: exposing the API is a deliberate choice."""
    port: int = Field(8765, ge=0, le=65535)
    """Port to listen on; 0 picks a free one, written with the URL to server.json in the data directory."""
    home: Path = Field(default_factory=default_home, validation_alias="RUNYARD_HOME")
    """Data directory: the SQLite store, run logs and work directories, snapshots, the admin token."""
    store_url: str | None = None
    """sqlite:///… or postgresql://user:password@host/db; default: SQLite in the data directory."""
    public_url: str | None = None
    """URL runs use to reach the API (RUNYARD_API_URL inside a run); default: the address it listens on."""
    max_blob_bytes: int = Field(2 << 30, ge=1)
    """Largest file a snapshot may hold, in bytes (one uploaded blob); larger uploads are refused with 413."""

    artifact_root: str | None = None
    """Where run artifacts are kept: a directory or any fsspec URL (s3://…); default: HOME/artifacts."""
    max_artifact_bytes: int = Field(5 << 30, ge=1)
    """Largest artifact file one upload may hold, in bytes; larger uploads are refused with 413."""

    kubernetes: bool = False
    """Keep Sessions, Experiments, Jobs, Models and Runs as custom resources in a Kubernetes cluster (a
    project is a namespace; `runyard operator` runs them) instead of in the store; tokens and tracking
    stay in the store."""
    kubeconfig: str | None = None
    """With kubernetes: the kubeconfig file; default: the pod's service account in a cluster, else
    KUBECONFIG or ~/.kube/config."""
    kube_context: str | None = None
    """With kubernetes: the kubeconfig context; default: its current one."""

    @field_validator("home")
    @classmethod
    def _expand(cls, home: Path) -> Path:
        return home.expanduser()

    def resolved_store_url(self) -> str:
        return self.store_url or f"sqlite:///{self.home / 'runyard.db'}"

    def resolved_artifact_root(self) -> str:
        return self.artifact_root or str(self.home / "artifacts")


class ControllerSettings(BaseSettings):
    """How the controller paces itself and admits runs."""

    model_config = SettingsConfigDict(env_prefix="RUNYARD_CONTROLLER_", use_attribute_docstrings=True)

    tick_seconds: float = Field(1.0, gt=0)
    """Period of the level-triggered resync; changes wake the controller sooner."""
    max_running_runs: int = Field(256, ge=1)
    """Runs starting or running at once; the rest wait Queued (WaitingForCapacity) in order."""
    launch_timeout_seconds: float = Field(15.0, gt=0)
    """A launch that has not started a process after this long is tried again."""


class NotifySettings(BaseSettings):
    """How job notifications are sent: the SMTP server for e-mail, and webhook delivery."""

    model_config = SettingsConfigDict(env_prefix="RUNYARD_NOTIFY_", use_attribute_docstrings=True)

    smtp_host: str | None = None
    """SMTP server for job e-mail; unset: e-mail notifications fail with a warning event on the job."""
    smtp_port: int = Field(25, ge=1, le=65535)
    """Its port (587 with starttls, 465 with ssl, as usual)."""
    smtp_security: Literal["none", "starttls", "ssl"] = "none"
    """How the connection is encrypted."""
    smtp_username: str | None = None
    """Login, if the server wants one."""
    smtp_password: str | None = None
    """Password for smtp_username."""
    smtp_from: str = "runyard@localhost"
    """The sender address of job e-mail."""
    timeout_seconds: float = Field(10.0, gt=0)
    """How long one delivery attempt (a webhook POST, an SMTP exchange) may take."""
    max_attempts: int = Field(8, ge=1, le=100)
    """Attempts per notification before it is given up (with a warning event on the job)."""
    backoff_seconds: float = Field(2.0, ge=0)
    """Wait before the second attempt; doubled after each failure (2, 4, 8… seconds, at most a day)."""


class ServingSettings(BaseSettings):
    """How models are served: where their URLs listen, how replicas are watched and scaled."""

    model_config = SettingsConfigDict(env_prefix="RUNYARD_SERVING_", use_attribute_docstrings=True)

    host: str = "127.0.0.1"
    """Address each model's URL listens on (one port per model); loopback by default."""
    public_host: str | None = None
    """Host name put in each model's URL; default: the address it listens on."""
    probe_seconds: float = Field(1.0, gt=0)
    """How often each replica's readiness and metrics are read (the autoscaler's period)."""
    auth_cache_seconds: float = Field(5.0, ge=0)
    """How long a replica trusts a credential the server accepted; a revoked key stops working after it."""
    ready_timeout_seconds: float = Field(120.0, gt=0)
    """A replica not ready after this long is replaced (with backoff)."""
    drain_seconds: float = Field(30.0, ge=0)
    """How long a replica being retired may finish the requests it holds."""


class RuntimeSettings(BaseSettings):
    """What the local runtime offers runs and how it isolates them: the node's capacity, GPUs, sandbox,
    default limits and the environments it builds."""

    model_config = SettingsConfigDict(env_prefix="RUNYARD_RUNTIME_", use_attribute_docstrings=True)

    sandbox: Literal["auto", "off", "required"] = "auto"
    """auto: each run in a bubblewrap sandbox where the host allows, else unsandboxed with a warning;
    required: refuse to start a run that cannot be sandboxed; off: never sandbox."""
    node_cpu: float | None = Field(None, gt=0)
    """Cores offered to runs, in all; default: every core of this host. Set lower on a shared box."""
    node_memory: str | None = None
    """Memory offered to runs, in all ('16Gi' or bytes); default: this host's total memory."""
    node_gpus: int | None = Field(None, ge=0)
    """How many of the GPUs found (first ones by index) are offered to runs; default: all of them."""
    simulated_gpus: str | None = None
    """A made-up GPU inventory, for tests only: a count ('2') or a JSON list of {"model", "memory"}; used
    instead of NVML. Never assumed: without it, GPUs are what NVML finds."""
    default_pids: int = Field(4096, ge=8)
    """Most processes a run may hold at once when its spec names no resources.pids (a fork bomb stops
    there)."""
    pythons: str | None = None
    """Extra Python interpreters environments may be built on, separated by ':'; those on PATH and
    pyenv's are found without it."""
    env_retention_seconds: float = Field(7 * 24 * 3600.0, ge=0)
    """An environment no run has used for this long is removed from disk (its record and lock are kept)."""


def env_name(cls: type[BaseSettings], field: str) -> str:
    """The environment variable a field of a settings class reads (an alias is one already)."""
    info = cls.model_fields.get(field)
    if info is None:
        return field
    if isinstance(info.validation_alias, str):
        return info.validation_alias
    return f"{cls.model_config.get('env_prefix', '')}{field}".upper()
