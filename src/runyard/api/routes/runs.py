"""Run verbs that are not plain CRUD: stop, resource usage and logs (tracked metrics: tracking.py)."""

from __future__ import annotations

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime

from runyard.api.deps import READ, STATE, WRITE, AppState
from runyard.api.params import Name, Project
from runyard.services import kube_resources as kube_svc
from runyard.services import resources as svc
from runyard.services.auth import Principal
from runyard.services.logs import MAX_TAIL, LogQuery, find_run, stream_logs

router = APIRouter(tags=["runs"])


@router.post("/projects/{project}/runs/{name}/stop")
def stop(project: Project, name: Name, s: AppState = STATE, who: Principal = WRITE) -> dict:
    if s.kube is not None:
        stopped = kube_svc.request_stop(s.kube, project, name)
    else:
        stopped = svc.request_stop(s.store, s.notifier, who, project, name)
    return stopped.model_dump(mode="json", exclude_none=True)


@router.get("/projects/{project}/runs/{name}/usage")
def usage(project: Project, name: Name, s: AppState = STATE, who: Principal = READ) -> dict:
    """cpu_percent and memory_bytes (RSS) of the run's processes now, where the runtime can tell."""
    return svc.run_usage(s.kube or s.store, s.runtime, project, name)


@router.get("/projects/{project}/runs/{name}/logs", response_class=StreamingResponse)
def logs(
    project: Project,
    name: Name,
    follow: bool = Query(False, description="keep streaming until the run ends"),
    tail: int | None = Query(None, ge=0, le=MAX_TAIL, description="only the last N lines written so far"),
    since: AwareDatetime | None = Query(None, description="RFC 3339 time: only lines written at or after it"),
    s: AppState = STATE,
    who: Principal = READ,
) -> StreamingResponse:
    """NDJSON: {time, stream, text} per line, then {end: true, phase, exitCode, reason, message}."""
    objects = s.kube or s.store
    run = find_run(objects, project, name)  # a 404 now, not mid-stream, for a name that is neither
    query = LogQuery(follow, tail, since)
    body = stream_logs(objects, s.runtime, s.notifier, project, name, query, run)
    return StreamingResponse(body, media_type="application/x-ndjson")
