"""Model verbs: access keys, the access check replicas ask, metrics, rollback; and Prometheus /metrics."""

from __future__ import annotations

from fastapi import APIRouter, Body, Depends, Path, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from runyard.api.deps import READ, STATE, WRITE, AppState, Guard, bearer, state
from runyard.api.params import Name, Project
from runyard.core.resources import Model
from runyard.services import model_keys as keys
from runyard.services.auth import Access, Principal
from runyard.services.model_metrics import ModelCollector, model_metrics
from runyard.services.model_rollback import rollback as roll_back
from runyard.services.model_rollback import rollback_on_cluster

router = APIRouter(tags=["models"])
prometheus = APIRouter(tags=["models"])  # mounted at the server's root: GET /metrics
MODEL = "/projects/{project}/models/{name}"


class ModelAccess(Guard):
    """The access check's own authorization: a model key of the path's model, or an API token that may read
    the path's project. The key may come as the bearer or in X-Runyard-Key."""

    def __init__(self) -> None:
        super().__init__(Access.READ)

    def __call__(  # type: ignore[override]
        self, request: Request, creds: HTTPAuthorizationCredentials | None = Depends(bearer)
    ) -> str:
        credential = creds.credentials if creds else request.headers.get("x-runyard-key")
        params = request.path_params
        s = state(request)
        return keys.check_access(s.store, credential, params["project"], params["name"], s.kube)


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = Field(
        "", max_length=256, pattern=r"^[^\x00-\x1f\x7f]*$", description="who or what the key is for"
    )


class RollbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, description="a version in the model's status.versions")


@router.get(
    MODEL + "/access",
    status_code=204,
    response_class=Response,
    responses={204: {"description": "allowed"}},
)
def access(project: Project, name: Name, who: str = Depends(ModelAccess())) -> Response:
    """What a replica asks about a credential it has not seen (send it as the bearer): 204 when it is a key
    of this model or an API token that may read the project; 401 for none or an unknown one, 403 for a
    key of another model or a token of another project."""
    return Response(status_code=204)


@router.post(MODEL + "/keys", status_code=201)
def create_key(
    project: Project, name: Name, body: KeyIn | None = Body(None), s: AppState = STATE, who: Principal = WRITE
) -> dict:
    """A new access key for this model only; `key` in the answer is shown this once, stored only hashed."""
    return keys.create_key(s.store, who, project, name, body.description if body else "", s.kube)


@router.get(MODEL + "/keys")
def list_keys(project: Project, name: Name, s: AppState = STATE, who: Principal = WRITE) -> dict:
    """The model's keys: id, prefix (the key's first characters), description, createdAt, lastUsedAt
    (to the minute); never the keys themselves."""
    return {"items": keys.list_keys(s.store, project, name, s.kube)}


@router.delete(MODEL + "/keys/{key_id}", status_code=204, response_class=Response)
def revoke_key(
    project: Project,
    name: Name,
    key_id: str = Path(..., max_length=16),
    s: AppState = STATE,
    who: Principal = WRITE,
) -> Response:
    """Revoke a key: the server refuses it at once; a replica that accepted it a moment ago trusts it for
    at most RUNYARD_SERVING_AUTH_CACHE_SECONDS more."""
    keys.revoke_key(s.store, project, name, key_id, s.kube)
    return Response(status_code=204)


@router.get(MODEL + "/metrics")
def metrics(project: Project, name: Name, s: AppState = STATE, who: Principal = READ) -> dict:
    """Per version, newest first: requests, errors, errorRate, p50Ms/p95Ms/p99Ms (null before the first
    request), replicas, readyReplicas, inFlight; cumulative since this server started watching."""
    return model_metrics(s.store, s.serving, project, name)


@router.post(MODEL + "/rollback")
def rollback(
    project: Project, name: Name, body: RollbackIn = Body(...), s: AppState = STATE, who: Principal = WRITE
) -> dict:
    """Set the model's spec to the one version `version` was made from; the controller rolls that version
    out again as it would any change. 409, naming the versions there are, for a version it never had."""
    if s.kube is not None:
        model: Model = rollback_on_cluster(s.kube, project, name, body.version)
    else:
        model = roll_back(s.store, s.notifier, who, project, name, body.version)
    return model.model_dump(mode="json", exclude_none=True)


@prometheus.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}},
)
def prometheus_metrics(s: AppState = STATE, who: Principal = READ) -> Response:
    """The models' figures in Prometheus's text format: runyard_model_requests_total, _errors_total,
    _request_duration_seconds (histogram), _replicas, _ready_replicas, _in_flight, labelled project,
    model and version. Any valid token may scrape: an admin token (or one without a project) sees every
    project's models, a project's token that project's only."""
    body = generate_latest(ModelCollector(s.store, s.serving, who.sees))
    return Response(body, media_type=CONTENT_TYPE_LATEST)
