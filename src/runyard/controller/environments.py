"""What environment a run needs, and whether it is ready: the controller's side of environments.

STUB (issue 7 wiring): every run uses the host's Python until the environments service lands.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runyard.controller.context import Context
from runyard.core.resources import Run


@dataclass
class EnvDecision:
    """One of: ready (status set, or None for the host's Python), wait (building), or failure."""

    status: dict[str, Any] | None = None  # goes to run.status.environment; None: the host's Python
    wait_seconds: float | None = None  # still building: look again after this (a finished build wakes it)
    message: str = ""  # what it waits for, or what is ready
    failure: tuple[str, str] | None = None  # (reason, message): the run fails with it


def prepare_environment(ctx: Context, run: Run) -> EnvDecision:
    """Find (or start building) the environment `run.spec.environment` asks for. Called while the run is
    Pending, again at each look until ready; never blocks on a build."""
    return EnvDecision()


def environment_directory(ctx: Context, run: Run) -> str | None:
    """The directory of the run's (ready) environment on this node, for its launch; marks it used."""
    return None
