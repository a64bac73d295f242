"""The FastAPI application: routers mounted under /apis/runyard.dev/v1, OpenAPI at /openapi.json."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from runyard import __version__
from runyard.api import errors
from runyard.api.deps import AppState, Guard
from runyard.api.errors import MLFLOW_ERROR_RESPONSES as MLFLOW_ERRORS
from runyard.api.limits import BodyLimit, limits
from runyard.api.routes import (
    artifacts,
    attach,
    environments,
    job_notifications,
    jobs,
    meta,
    mlflow,
    mlflow_artifacts,
    mlflow_models,
    models,
    nodes,
    registry,
    resources,
    runs,
    session_proxy,
    snapshots,
    tokens,
    tracking,
)
from runyard.api.schemas import ERRORS

PREFIX = "/apis/runyard.dev/v1"
PUBLIC = {"/healthz"}  # the only route without a token


def create_app(app_state: AppState) -> FastAPI:
    app = FastAPI(title="runyard", version=__version__, description="Run, track, schedule and serve ML work.")
    app.state.runyard = app_state
    errors.install(app)
    app.add_middleware(BodyLimit, limit_for=limits(app_state.blobs.max_bytes, app_state.artifacts.max_bytes))
    app.include_router(meta.health)
    app.include_router(models.prometheus, responses=ERRORS)  # GET /metrics, where Prometheus looks
    # Order matters: the run verbs before the catch-all that names an unknown plural.
    routers = (
        meta.router,
        tokens.router,
        snapshots.router,
        tracking.router,
        artifacts.router,
        environments.router,
        jobs.router,
        job_notifications.router,
        models.router,
        nodes.router,
        attach.router,
        runs.router,
        resources.router,
    )
    for router in routers:
        app.include_router(router, prefix=PREFIX, responses=ERRORS)
    # MLflow's own REST paths, as its client builds them from MLFLOW_TRACKING_URI (the server's root URL)
    app.include_router(
        mlflow_models.router, prefix="/api/2.0/mlflow", tags=["mlflow"], responses=MLFLOW_ERRORS
    )
    app.include_router(registry.router, prefix="/api/2.0/mlflow", tags=["mlflow"], responses=MLFLOW_ERRORS)
    app.include_router(mlflow.router, prefix="/api/2.0/mlflow", tags=["mlflow"], responses=MLFLOW_ERRORS)
    mlflow.add_shortcut(app, "/api/2.0/mlflow")  # the tracking routes found first, by one lookup
    app.include_router(
        mlflow_artifacts.router,
        prefix="/api/2.0/mlflow-artifacts",
        tags=["mlflow-artifacts"],
        responses=MLFLOW_ERRORS,
    )
    app.include_router(session_proxy.router)  # authenticates itself: cookies and ?token= (see there)
    _check_guarded(app)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _check_guarded(app: FastAPI) -> None:
    """Every route but the public ones declares the authorization dependency: a new route cannot forget."""
    for route in _api_routes(app.routes):
        if route.path in PUBLIC:
            continue
        if not any(isinstance(dep.call, Guard) for dep in route.dependant.dependencies):
            raise RuntimeError(f"route {route.path} does not declare an authorization dependency")


def _api_routes(routes: list) -> Iterator[APIRoute]:
    """Every APIRoute, also inside included routers (FastAPI keeps those as one entry of app.routes)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from _api_routes(inner.routes)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The generated document, with each kind's create/apply body typed as that kind (the handlers take
    the raw document, to report every error with its field path in one answer)."""
    if app.openapi_schema is None:
        doc = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        for ops in doc["paths"].values():
            for op in ops.values():
                kind = op.pop("x-runyard-kind", None)
                if kind:
                    schema = {"$ref": f"#/components/schemas/{kind}"}
                    op["requestBody"]["content"]["application/json"]["schema"] = schema
        app.openapi_schema = doc
    return app.openapi_schema
