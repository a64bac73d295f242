"""Job actions beyond the resource API: trigger by hand, history of fires, next fire times, the scheduler's
figures. (The webhook secret is in job_notifications.py.)"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from runyard.api.deps import ADMIN, READ, STATE, WRITE, AppState
from runyard.api.params import IdempotencyKey, Name, Project
from runyard.services import jobs as svc
from runyard.services import kube_resources as kube_svc
from runyard.services.auth import Principal

router = APIRouter(tags=["jobs"])


class TriggerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    params: dict[str, Any] = Field(
        default_factory=dict,
        description="environment variables of the run, over the template's env: NAME: string value",
    )


@router.post(
    "/projects/{project}/jobs/{name}/trigger",
    status_code=201,
    responses={200: {"description": "the run a request with the same Idempotency-Key made"}},
)
def trigger(
    project: Project,
    name: Name,
    response: Response,
    body: TriggerIn | None = Body(None),
    idempotency_key: IdempotencyKey = None,
    s: AppState = STATE,
    who: Principal = WRITE,
) -> dict:
    """Run the job now (also when suspended), with `params` as environment variables: 201 and the run; 409
    when its concurrencyPolicy Forbid finds a run still active."""
    params = body.params if body is not None else {}
    if s.kube is not None:
        done = kube_svc.trigger_job(s.kube, who, project, name, params, idempotency_key)
    else:
        done = svc.trigger(s.store, s.notifier, who, project, name, params, idempotency_key)
    if not done.created:
        response.status_code = 200
    return done.run.model_dump(mode="json", exclude_none=True)


@router.get("/projects/{project}/jobs/{name}/history")
def history(
    project: Project,
    name: Name,
    limit: int = Query(50, ge=1, le=1000, description="the newest this many fires"),
    s: AppState = STATE,
    who: Principal = READ,
) -> dict:
    """The job's fires, newest first: trigger (schedule, dependency, manual), scheduledAt, firedAt, outcome
    (Created, Skipped, Missed), run, phase (null: the run was removed since), message. On a cluster: its
    Runs (Skipped and Missed fires are Warning events on the Job there)."""
    if s.kube is not None:
        return {"items": kube_svc.job_history(s.kube, project, name, limit)}
    return {"items": svc.history(s.store, project, name, limit)}


@router.get("/projects/{project}/jobs/{name}/schedule")
def schedule(
    project: Project,
    name: Name,
    count: int = Query(5, ge=1, le=100, description="how many fire times"),
    s: AppState = STATE,
    who: Principal = READ,
) -> dict:
    """The next fire times: {fires: [{utc, local}], timeZone, ...}; none, and `reason`, when the job is
    suspended or has no schedule."""
    clock = getattr(s.scheduler, "clock", None)  # the time jobs fire by (tests warp it), as the status uses
    at = clock() if callable(clock) else None
    if s.kube is not None:
        return kube_svc.job_schedule(s.kube, project, name, count, at)
    return svc.schedule(s.store, project, name, count, at)


@router.get("/scheduler")
def scheduler(s: AppState = STATE, who: Principal = ADMIN) -> dict[str, Any]:
    """The job scheduler's figures: jobs scheduled, ticks and their cost, fires by outcome, delays from the
    scheduled instant to the run ({} on a server without a scheduler)."""
    return s.scheduler.stats() if s.scheduler is not None else {}
