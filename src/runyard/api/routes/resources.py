"""/apis/runyard.dev/v1/projects/{project}/{plural}[/{name}]: the four kinds and Runs, one shape.

The handlers are written once; a loop registers them under each kind's plural, so that the OpenAPI
document gives every kind its own typed operations.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse

from runyard.api.deps import READ, STATE, WRITE, AppState
from runyard.api.params import DocName, IdempotencyKey, Name, Project
from runyard.api.schemas import list_model
from runyard.core.errors import FieldError, Invalid
from runyard.core.resources import ALL_KINDS, Resource, Run
from runyard.services import kube_resources as kube_svc
from runyard.services import resources as svc
from runyard.services.auth import Principal

router = APIRouter()
JSON = "application/json"
Doc = Body(..., description="a resource document: apiVersion runyard.dev/v1, kind, metadata, spec")


def _route_plural(request: Request) -> str:
    """The plural a route was registered under: the path segment after {project}."""
    parts = request.scope["route"].path.split("/")
    return parts[parts.index("{project}") + 1]


Plural = Annotated[str, Depends(_route_plural)]


def _out(res) -> dict:
    return res.model_dump(mode="json", exclude_none=True)


def create(
    project: Project,
    plural: Plural,
    doc: dict[str, Any] = Doc,
    idempotency_key: IdempotencyKey = None,
    s: AppState = STATE,
    who: Principal = WRITE,
) -> dict:
    res = svc.parse_for_path(doc, project, plural, None)
    if s.kube is not None:
        return _out(kube_svc.create(s.kube, s.store, res))
    created = svc.create_resource(s.store, who, res, idempotency_key)
    s.notifier.touch(created.uid)
    return _out(created)


def apply(
    project: Project,
    plural: Plural,
    name: DocName,
    response: Response,
    doc: dict[str, Any] = Doc,
    idempotency_key: IdempotencyKey = None,
    s: AppState = STATE,
    who: Principal = WRITE,
) -> dict:
    res = svc.parse_for_path(doc, project, plural, name)
    if s.kube is not None:
        applied, result = kube_svc.apply(s.kube, s.store, res)
    else:
        applied, result = svc.apply_resource(s.store, who, res, idempotency_key)
    response.headers["X-Runyard-Result"] = result.value
    if result == svc.ApplyOutcome.CREATED:
        response.status_code = 201
    if result != svc.ApplyOutcome.UNCHANGED:
        s.notifier.touch(applied.uid)
    return _out(applied)


def list_(
    project: Project,
    plural: Plural,
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
    if s.kube is not None:
        if watch:
            lines = kube_svc.watch_lines(s.kube, kind, project, since)
            return StreamingResponse(lines, media_type="application/x-ndjson")
        return Response(kube_svc.list_document(s.kube, kind, project, labelSelector), media_type=JSON)
    if watch:
        return StreamingResponse(
            svc.watch_resources(s.store, s.notifier, kind, project, since),
            media_type="application/x-ndjson",
        )
    page = svc.list_resources(s.store, kind, project, labelSelector, limit, continue_)
    return Response(page, media_type=JSON)  # JSON built from rows: no models to dump


def get(project: Project, plural: Plural, name: Name, s: AppState = STATE, who: Principal = READ) -> dict:
    kind = svc.kind_of_plural(plural)
    return _out((s.kube or s.store).get(kind, project, name))


def delete(project: Project, plural: Plural, name: Name, s: AppState = STATE, who: Principal = WRITE) -> dict:
    kind = svc.kind_of_plural(plural)
    if s.kube is not None:
        return _out(kube_svc.delete(s.kube, kind, project, name))
    return _out(svc.delete_resource(s.store, s.notifier, who, kind, project, name))


def events(project: Project, plural: Plural, name: Name, s: AppState = STATE, who: Principal = READ) -> dict:
    kind = svc.kind_of_plural(plural)
    if s.kube is not None:  # the object's Kubernetes Events, as `kubectl describe` lists them
        return {"items": [e.model_dump(mode="json") for e in kube_svc.events(s.kube, kind, project, name)]}
    res = s.store.get(kind, project, name)
    return {"items": [e.model_dump(mode="json") for e in s.store.events(res.uid)]}


def _register(kind: type[Resource]) -> None:
    plural, name = kind.plural, kind.__name__
    base = f"/projects/{{project}}/{plural}"
    item = base + "/{name}"
    typed = {"x-runyard-kind": name}  # app.openapi() points the request body at the kind's schema
    one = {"model": kind, "description": f"the {name}"}
    add = router.add_api_route
    if kind is not Run:  # Runs are made by the controller
        add(
            base,
            create,
            methods=["POST"],
            status_code=201,
            responses={201: one},
            openapi_extra=typed,
            name=f"create {name}",
            tags=[plural],
        )
        add(
            item,
            apply,
            methods=["PUT"],
            responses={200: one, 201: one},
            openapi_extra=typed,
            name=f"apply {name}",
            tags=[plural],
        )
    add(
        base,
        list_,
        methods=["GET"],
        response_model=None,
        name=f"list {plural}",
        tags=[plural],
        responses={200: {"model": list_model(kind), "description": "a page; NDJSON changes with watch"}},
    )
    add(item, get, methods=["GET"], responses={200: one}, name=f"get {name}", tags=[plural])
    add(item, delete, methods=["DELETE"], responses={200: one}, name=f"delete {name}", tags=[plural])
    add(item + "/events", events, methods=["GET"], name=f"events of {name}", tags=[plural])


for _kind in ALL_KINDS.values():
    _register(_kind)


def unknown_plural(project: Project, plural: str, who: Principal = READ) -> None:
    """Any other plural, or a verb a kind does not have: a 422 naming `plural`, rather than a bare 404."""
    kind = svc.kind_of_plural(plural)
    raise Invalid(
        f"{kind.__name__}s cannot be created or applied",
        [FieldError("plural", f"{plural} are made by the controller; read, watch or delete them")],
    )


for _path in ("/projects/{project}/{plural}", "/projects/{project}/{plural}/{name}"):
    router.add_api_route(
        _path, unknown_plural, methods=["GET", "POST", "PUT", "DELETE"], include_in_schema=False
    )
