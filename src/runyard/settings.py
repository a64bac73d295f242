"""The server's settings, one class per area. Precedence: `runyard server` flags, then the environment
(RUNYARD_<AREA>_<FIELD>, and RUNYARD_HOME for the data directory), then the defaults below."""

from __future__ import annotations

from pathlib import Path

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


def env_name(cls: type[BaseSettings], field: str) -> str:
    """The environment variable a field of a settings class reads (an alias is one already)."""
    info = cls.model_fields.get(field)
    if info is None:
        return field
    if isinstance(info.validation_alias, str):
        return info.validation_alias
    return f"{cls.model_config.get('env_prefix', '')}{field}".upper()
