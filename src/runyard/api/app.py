"""The FastAPI application: routers mounted under /apis/runyard.dev/v1, OpenAPI at /openapi.json."""

from __future__ import annotations

from fastapi import FastAPI

from runyard import __version__
from runyard.api import errors
from runyard.api.deps import AppState
from runyard.api.routes import meta, resources, runs, snapshots

PREFIX = "/apis/runyard.dev/v1"


def create_app(app_state: AppState) -> FastAPI:
    app = FastAPI(title="runyard", version=__version__, description="Run, track, schedule and serve ML work.")
    app.state.runyard = app_state
    errors.install(app)
    app.include_router(meta.health)
    # Order matters: specific paths (snapshots, run verbs) before the generic /{plural}/{name} routes.
    for router in (meta.router, snapshots.router, runs.router, resources.router):
        app.include_router(router, prefix=PREFIX)
    return app
