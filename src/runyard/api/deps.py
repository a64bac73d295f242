"""Shared state and the one authorization dependency every route declares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from runyard.runtime.base import Runtime
from runyard.services.artifacts import ArtifactStore
from runyard.services.auth import Access, Principal, authenticate
from runyard.services.environments import Environments
from runyard.services.node import Node
from runyard.services.notify import Notifier
from runyard.services.session_gateway import SessionGateway
from runyard.services.snapshots import BlobStore
from runyard.services.tracking import Tracking
from runyard.serving.state import Serving
from runyard.store import Store
from runyard.store.kube.resources import KubeResources


class Figures(Protocol):
    """What the API may show of a controller-side worker (the job scheduler): its figures."""

    def stats(self) -> dict: ...


bearer = HTTPBearer(
    auto_error=False, description="a runyard token (the embedded server writes one to HOME/admin-token)"
)


@dataclass
class AppState:
    store: Store
    runtime: Runtime
    blobs: BlobStore
    notifier: Notifier
    tracking: Tracking
    artifacts: ArtifactStore
    environments: Environments | None = None
    node: Node | None = None
    scheduler: Figures | None = None  # the job scheduler, for its figures (GET /scheduler)
    serving: Serving | None = None  # models' replica figures (GET .../models/{name}/metrics, /metrics)
    sessions: SessionGateway | None = None  # the session proxy's upstreams and activity
    kube: KubeResources | None = (
        None  # `--kubernetes`: the kinds live in the cluster (services/kube_resources)
    )


def state(request: Request) -> AppState:
    return request.app.state.runyard


class Guard:
    """Authenticate the bearer token and check it allows `need`, on the path's {project} when it has one.

    The project is read from the raw path parameters, so that a caller without the right token learns
    nothing (401/403) before the route's own validation (422) runs.
    """

    def __init__(self, need: Access):
        self.need = need

    def __call__(
        self, request: Request, creds: HTTPAuthorizationCredentials | None = Depends(bearer)
    ) -> Principal:
        who = authenticate(state(request).store, f"Bearer {creds.credentials}" if creds else None)
        who.authorize(self.need, request.path_params.get("project"))
        return who


READ = Depends(Guard(Access.READ))
WRITE = Depends(Guard(Access.WRITE))
ADMIN = Depends(Guard(Access.ADMIN))
STATE = Depends(state)
