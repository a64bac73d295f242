"""runyard's own tracking endpoints: what the SDK writes and the CLI reads (MLflow's API is mlflow.py)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Body, Query
from fastapi.responses import Response

from runyard.api.deps import READ, STATE, WRITE, AppState
from runyard.api.params import Name, Project
from runyard.services import run_tracking as svc
from runyard.services.auth import Principal

router = APIRouter(tags=["tracking"])
RUN = "/projects/{project}/runs/{name}"


def _json(doc: Any) -> Response:
    """JSON that may hold NaN, which tracked metrics may be (Starlette's encoder refuses it)."""
    return Response(json.dumps(doc, separators=(",", ":")), media_type="application/json")


@router.get(f"{RUN}/metrics")
def latest_metrics(project: Project, name: Name, s: AppState = STATE, who: Principal = READ) -> Response:
    """The latest value of each tracked metric: {metrics: [{key, value, step, timestamp}]}."""
    ref = s.tracking.run_by_name(project, name)
    return _json({"metrics": s.tracking.latest_metrics(ref)})


@router.get(f"{RUN}/metrics/{{key:path}}")
def metric_history(
    project: Project,
    name: Name,
    key: str,
    maxResults: int | None = Query(None, ge=1, description="at most this many points, by step"),
    pageToken: str | None = Query(None, description="the nextPageToken of the previous page"),
    s: AppState = STATE,
    who: Principal = READ,
) -> Response:
    """A metric's points by step then time, as MLflow's get-history answers with the key beside them:
    {key, metrics: [{key, value, timestamp, step}], nextPageToken?}; a NaN is "NaN"."""
    ref = s.tracking.run_by_name(project, name)
    body = svc.history_json(s.tracking, ref, key, maxResults, pageToken)
    return Response(body, media_type="application/json")


@router.get(f"{RUN}/tracking")
def run_tracking(project: Project, name: Name, s: AppState = STATE, who: Principal = READ) -> Response:
    """A run's experiment, MLflow status, params, tags and latest metrics."""
    return _json(svc.summary(s.tracking, s.tracking.run_by_name(project, name)))


@router.post(f"{RUN}/tracking")
def log_tracking(
    project: Project,
    name: Name,
    body: Any = Body(..., description="{metrics: [{key, value, step?, timestamp?}], params: {}, tags: {}}"),
    s: AppState = STATE,
    who: Principal = WRITE,
) -> dict:
    """Store up to 10,000 metrics with params and tags, validated as MLflow's log-batch: all or nothing."""
    svc.log_data(s.tracking, s.tracking.run_by_name(project, name), body)
    return {}


@router.post(f"{RUN}/end")
def end_run(
    project: Project,
    name: Name,
    body: Any = Body(..., description='{"status": "FINISHED" | "FAILED" | "KILLED"}'),
    s: AppState = STATE,
    who: Principal = WRITE,
) -> dict:
    """End a tracking-only run (its phase follows the status); for an executed run, record its end time."""
    ref = s.tracking.run_by_name(project, name)
    doc = svc.end_run(s.tracking, s.store, ref, body)
    s.notifier.touch(ref.uid)
    return doc


@router.post("/projects/{project}/tracking/runs", status_code=201)
def open_run(
    project: Project,
    body: Any = Body(None, description="{name?, experiment?}: the experiment is made on first use"),
    s: AppState = STATE,
    who: Principal = WRITE,
) -> dict:
    """Open a tracking-only run (no process): the Run's document, with its MLflow run id as runId."""
    doc = svc.open_run(s.tracking, s.store, project, body or {}, who.name)
    s.notifier.touch(doc["metadata"]["uid"])
    return doc


@router.get("/projects/{project}/tracking/runs")
def search_runs(
    project: Project,
    filter: str | None = Query(None, description='MLflow\'s syntax: "params.lr > 0.01 and metrics.loss < 1"'),
    orderBy: list[str] = Query([], description='e.g. "metrics.loss DESC"; repeat, or separate with commas'),
    experiment: str | None = Query(None, description="only this experiment's runs (by name)"),
    maxResults: int = Query(1000, ge=1, le=50000),
    pageToken: str | None = Query(None),
    s: AppState = STATE,
    who: Principal = READ,
) -> Response:
    """The project's runs with their params, tags and latest metrics."""
    order = [part.strip() for clause in orderBy for part in clause.split(",") if part.strip()]
    doc = svc.search(s.tracking, s.store, project, experiment, filter, order, maxResults, pageToken)
    return _json(doc)


@router.get("/projects/{project}/tracking/experiments")
def experiments(project: Project, s: AppState = STATE, who: Principal = READ) -> dict:
    """The project's MLflow experiments."""
    found, _ = s.tracking.search_experiments(project, view_type="ALL", max_results=1000)
    return {"experiments": found}
