"""What an attempt of a Run is started with, whichever controller starts it (the local one, or the
operator on a cluster): pure, from the Run alone."""

from __future__ import annotations

from runyard.core.resources import Run
from runyard.runtime.base import LaunchSpec


def attempt_env(
    run: Run, attempt: int, api_url: str, token: str | None, mlflow: dict[str, str]
) -> dict[str, str]:
    """The attempt's environment: `mlflow` (what MLflow's client reads), then the spec's own variables,
    then runyard's, which a spec cannot override (the run's name, uid, project, attempt, API and token)."""
    spec, m = run.spec, run.metadata
    return {
        **mlflow,
        **spec.env,
        "PYTHONUNBUFFERED": spec.env.get("PYTHONUNBUFFERED", "1"),
        "RUNYARD_RUN_ID": m.name,
        "RUNYARD_RUN_UID": run.uid,
        "RUNYARD_PROJECT": m.project,
        "RUNYARD_ATTEMPT": str(attempt),
        "RUNYARD_API_URL": api_url,
        **({"RUNYARD_TOKEN": token} if token is not None else {}),
    }


def attempt_spec(run: Run, attempt: int, env: dict[str, str]) -> LaunchSpec:
    """The attempt as a runtime starts it: a command string runs under sh -c, a list as it is."""
    spec, m = run.spec, run.metadata
    argv = ["/bin/sh", "-c", spec.command] if isinstance(spec.command, str) else list(spec.command or [])
    return LaunchSpec(
        run_uid=run.uid,
        project=m.project,
        name=m.name,
        attempt=attempt,
        argv=argv,
        env=env,
        snapshot=spec.snapshot,
        cpu=spec.resources.cpu_cores,
        memory=spec.resources.memory_bytes,
        gpu=spec.resources.gpu,
        stop_grace=spec.stopGracePeriodSeconds,
        pids=spec.resources.pids,
    )
