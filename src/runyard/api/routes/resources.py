"""/apis/runyard.dev/v1/projects/{project}/{plural}[/{name}]: the four kinds and Runs, one shape."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Response
from fastapi.responses import StreamingResponse

from runyard.api.deps import READ, STATE, WRITE, AppState
from runyard.api.params import DocName, Name, Project
from runyard.services import resources as svc
from runyard.services.auth import Principal

router = APIRouter(tags=["resources"])
ITEM = "/projects/{project}/{plural}/{name}"
Doc = Body(..., description="a resource document: apiVersion runyard.dev/v1, kind, metadata, spec")
# Bounded and checked here: the store keeps at most 128 characters, and an unchecked one failed there as 503.
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=128,
        pattern=r"^[!-~]+$",
        description="a client's request id (visible ASCII, at most 128): a retry returns the first result",
    ),
]


def _out(res) -> dict:
    return res.model_dump(mode="json", exclude_none=True)


@router.post("/projects/{project}/{plural}", status_code=201)
def create(
    project: Project,
    plural: str,
    doc: dict[str, Any] = Doc,
    idempotency_key: IdempotencyKey = None,
    s: AppState = STATE,
    who: Principal = WRITE,
) -> dict:
    res = svc.parse_for_path(doc, project, plural, None)
    created = svc.create_resource(s.store, who, res, idempotency_key)
    s.notifier.touch(created.uid)
    return _out(created)


@router.put(ITEM)
def apply(
    project: Project,
    plural: str,
    name: DocName,
    response: Response,
    doc: dict[str, Any] = Doc,
    idempotency_key: IdempotencyKey = None,
    s: AppState = STATE,
    who: Principal = WRITE,
) -> dict:
    res = svc.parse_for_path(doc, project, plural, name)
    applied, result = svc.apply_resource(s.store, who, res, idempotency_key)
    response.headers["X-Runyard-Result"] = result.value
    if result == svc.ApplyOutcome.CREATED:
        response.status_code = 201
    if result != svc.ApplyOutcome.UNCHANGED:
        s.notifier.touch(applied.uid)
    return _out(applied)


@router.get("/projects/{project}/{plural}", response_model=None)
def list_(
    project: Project,
    plural: str,
    labelSelector: str | None = Query(None, description="k=v[,k2=v2]"),
    watch: bool = Query(False, description="stream changes as NDJSON {type, revision, object}"),
    since: int | None = Query(
        None, ge=0, le=2**63 - 1, description="with watch: a list's revision; only later changes"
    ),
    limit: int | None = Query(None, ge=1, le=1000, description="at most this many items; see continue"),
    continue_: str | None = Query(None, alias="continue", description="the token of the previous page"),
    s: AppState = STATE,
    who: Principal = READ,
) -> Response:
    kind = svc.kind_of_plural(plural)
    if watch:
        return StreamingResponse(
            svc.watch_resources(s.store, s.notifier, who, kind, project, since),
            media_type="application/x-ndjson",
        )
    page = svc.list_resources(s.store, who, kind, project, labelSelector, limit, continue_)
    return Response(page, media_type="application/json")  # JSON built from rows: no models to dump


@router.get(ITEM)
def get(project: Project, plural: str, name: Name, s: AppState = STATE, who: Principal = READ) -> dict:
    kind = svc.kind_of_plural(plural)
    return _out(svc.get_resource(s.store, who, kind, project, name))


@router.delete(ITEM)
def delete(project: Project, plural: str, name: Name, s: AppState = STATE, who: Principal = WRITE) -> dict:
    kind = svc.kind_of_plural(plural)
    return _out(svc.delete_resource(s.store, s.notifier, who, kind, project, name))


@router.get(ITEM + "/events")
def events(project: Project, plural: str, name: Name, s: AppState = STATE, who: Principal = READ) -> dict:
    kind = svc.kind_of_plural(plural)
    res = svc.get_resource(s.store, who, kind, project, name)
    return {"items": [e.model_dump(mode="json") for e in s.store.events(res.uid)]}
