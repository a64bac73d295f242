"""Run verbs that are not plain CRUD: stop and logs."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from runyard.api.deps import AppState, principal, state
from runyard.services import resources as svc
from runyard.services.auth import Principal
from runyard.services.logs import find_run, stream_logs

router = APIRouter(tags=["runs"])


@router.post("/projects/{project}/runs/{name}/stop")
def stop(project: str, name: str, s: AppState = Depends(state), who: Principal = Depends(principal)) -> dict:
    return svc.request_stop(s.store, s.notifier, who, project, name).model_dump(
        mode="json", exclude_none=True
    )


@router.get("/projects/{project}/runs/{name}/metrics")
def metrics(
    project: str, name: str, s: AppState = Depends(state), who: Principal = Depends(principal)
) -> dict:
    """cpu_percent and memory_bytes (RSS) of the run's processes now, where the runtime can tell."""
    return svc.run_metrics(s.store, s.runtime, who, project, name)


@router.get("/projects/{project}/runs/{name}/logs", response_class=StreamingResponse)
def logs(
    project: str,
    name: str,
    follow: bool = Query(False, description="keep streaming until the run ends"),
    s: AppState = Depends(state),
    who: Principal = Depends(principal),
) -> StreamingResponse:
    """NDJSON: {time, stream, text} per line, then {end: true, phase, exitCode, reason, message}."""
    who.check_project(project)
    run = find_run(s.store, project, name)  # a 404 now, not mid-stream, for a name that is neither
    body = stream_logs(s.store, s.runtime, s.notifier, project, name, follow, run)
    return StreamingResponse(body, media_type="application/x-ndjson")
