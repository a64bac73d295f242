"""Typed settings, one class per area; each reads RUNYARD_<AREA>_<FIELD> from the environment."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_home() -> Path:
    """Where the embedded server keeps its state (database, logs, snapshots): RUNYARD_HOME or ~/.runyard."""
    return Path(os.environ.get("RUNYARD_HOME") or Path.home() / ".runyard").expanduser()


class ServerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RUNYARD_SERVER_")

    host: str = Field("127.0.0.1", description="loopback by default: exposing the API is a deliberate choice")
    port: int = Field(8765, description="0 picks a free port; the chosen one is written to server.json")
    home: Path = Field(default_factory=default_home, description="data directory for the embedded defaults")
    store_url: str | None = Field(None, description="sqlite:///… or postgresql://…; default: sqlite in home")
    public_url: str | None = Field(
        None, description="URL runs use to reach the API; default: the bound address"
    )

    def resolved_store_url(self) -> str:
        return self.store_url or f"sqlite:///{self.home / 'runyard.db'}"


class ControllerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RUNYARD_CONTROLLER_")

    tick_seconds: float = Field(1.0, description="level-triggered resync period; events wake it sooner")
    max_running_runs: int = Field(256, description="local capacity guard until the scheduler owns admission")
    launch_timeout_seconds: float = Field(
        15.0, description="a launch that never started a process after this long is tried again"
    )
