"""What environment a run needs, and whether it is ready: the controller's side of environments.

The environments service builds on its own threads; here a run only asks, and waits (Pending, reason
EnvironmentBuilding) until the build's end wakes it. A warm run (its environment known Ready) reads memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runyard.controller.context import Context
from runyard.core.phases import Reason
from runyard.core.resources import Run
from runyard.services.environments import BUILDING, FAILED, WAIT_SECONDS, EnvironmentProblem, short


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
    envs, spec = ctx.environments, run.spec
    if envs is None or spec.environment == "system":
        return EnvDecision()
    try:
        row = envs.for_run(run.metadata.project, run.uid, spec.environment, spec.snapshot, _waited(run))
    except EnvironmentProblem as exc:
        return EnvDecision(failure=(exc.reason, str(exc)))
    if row is None:
        return EnvDecision()
    env_id, py = row["id"], row["python"]["version"]
    if row["state"] == BUILDING:
        msg = f"building environment {env_id} for this run (python {py})"
        return EnvDecision(wait_seconds=WAIT_SECONDS, message=msg)
    if row["state"] == FAILED:  # failed before this run asked: for_run has started it again
        return EnvDecision(wait_seconds=WAIT_SECONDS, message=f"building environment {env_id} for this run")
    n = len(row["packages"] or [])
    status = {
        "id": env_id,
        "name": spec.environment,
        "python": py,
        "platform": row["platform"],
        "lockDigest": row["lock_digest"],
        "packages": n,
    }
    return EnvDecision(
        status=status, message=f"environment {short(env_id)}… ready (python {py}, {n} packages)"
    )


def environment_directory(ctx: Context, run: Run) -> str | None:
    """The directory of the run's (ready) environment on this node, for its launch; marks it used."""
    env = run.status.environment
    if ctx.environments is None or not env:
        return None
    ctx.environments.mark_used(env["id"])
    return str(ctx.environments.directory(env["id"]))


def _waited(run: Run) -> bool:
    """Whether the run has been waiting for a build (so a Failed one is the failure of its own build)."""
    return any(
        c.type == "EnvironmentReady" and c.reason == Reason.ENVIRONMENT_BUILDING
        for c in run.status.conditions
    )
