"""The MLflow model-registry REST API (/api/2.0/mlflow/registered-models/..., /model-versions/...), as
MLflow's client calls it: GET requests carry their fields in the query string, the others (DELETE too)
in a JSON body.

Each token works in its project's registry: the token's own project, or "default" for a token bound to
none, as the tracking routes choose where experiments go.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from runyard.api.deps import STATE, AppState
from runyard.api.routes.mlflow import READ, WRITE, Fields, _scope
from runyard.services.auth import Principal
from runyard.services.registry import Registry

router = APIRouter()
Call = Callable[[Fields, Registry, str], dict]


async def _answer(request: Request, who: Principal, s: AppState, call: Call) -> dict:
    """call(fields, registry, project), off the event loop (it reads and writes the store)."""
    fields = await Fields.of(request)
    registry = Registry(s.store, s.tracking, s.notifier.touch)
    return await run_in_threadpool(call, fields, registry, _scope(who))


def _name(f: Fields) -> str:
    return f.text("name", required=True)


def _version(f: Fields) -> str:
    return f.text("version", required=True)


def _flag(f: Fields, name: str) -> bool:
    return f.values.get(name) in (True, "true", "True", "1")


def _searched(key: str, found: tuple[list[dict], str | None]) -> dict:
    items, token = found
    return {key: items, **({"next_page_token": token} if token else {})}


def _search_args(f: Fields) -> tuple:
    return f.text("filter"), f.integer("max_results"), f.texts("order_by"), f.text("page_token")


# ---- registered models


@router.post("/registered-models/create")
async def create_registered_model(request: Request, who: Principal = WRITE, s: AppState = STATE) -> dict:
    def call(f: Fields, r: Registry, p: str) -> dict:
        model = r.create_model(p, _name(f), f.key_values("tags"), f.text("description"))
        return {"registered_model": model}

    return await _answer(request, who, s, call)


@router.get("/registered-models/get")
async def get_registered_model(request: Request, who: Principal = READ, s: AppState = STATE) -> dict:
    return await _answer(request, who, s, lambda f, r, p: {"registered_model": r.get_model(p, _name(f))})


@router.patch("/registered-models/update")
async def update_registered_model(request: Request, who: Principal = WRITE, s: AppState = STATE) -> dict:
    def call(f: Fields, r: Registry, p: str) -> dict:
        return {"registered_model": r.update_model(p, _name(f), f.text("description"))}

    return await _answer(request, who, s, call)


@router.post("/registered-models/rename")
async def rename_registered_model(request: Request, who: Principal = WRITE, s: AppState = STATE) -> dict:
    def call(f: Fields, r: Registry, p: str) -> dict:
        return {"registered_model": r.rename_model(p, _name(f), f.text("new_name", required=True))}

    return await _answer(request, who, s, call)


@router.delete("/registered-models/delete")
async def delete_registered_model(request: Request, who: Principal = WRITE, s: AppState = STATE) -> dict:
    def call(f: Fields, r: Registry, p: str) -> dict:
        r.delete_model(p, _name(f))
        return {}

    return await _answer(request, who, s, call)


@router.get("/registered-models/search")
async def search_registered_models(request: Request, who: Principal = READ, s: AppState = STATE) -> dict:
    def call(f: Fields, r: Registry, p: str) -> dict:
        return _searched("registered_models", r.search_models(p, *_search_args(f)))

    return await _answer(request, who, s, call)


@router.api_route("/registered-models/get-latest-versions", methods=["POST", "GET"])
async def get_latest_versions(request: Request, who: Principal = READ, s: AppState = STATE) -> dict:
    def call(f: Fields, r: Registry, p: str) -> dict:
        return {"model_versions": r.latest_versions(p, _name(f), f.texts("stages"))}

    return await _answer(request, who, s, call)


@router.post("/registered-models/set-tag")
async def set_registered_model_tag(request: Request, who: Principal = WRITE, s: AppState = STATE) -> dict:
    def call(f: Fields, r: Registry, p: str) -> dict:
        r.set_model_tag(p, _name(f), f.text("key", required=True), f.text("value", default=""))
        return {}

    return await _answer(request, who, s, call)


@router.delete("/registered-models/delete-tag")
async def delete_registered_model_tag(request: Request, who: Principal = WRITE, s: AppState = STATE) -> dict:
    def call(f: Fields, r: Registry, p: str) -> dict:
        r.delete_model_tag(p, _name(f), f.text("key", required=True))
        return {}

    return await _answer(request, who, s, call)


@router.post("/registered-models/alias")
async def set_registered_model_alias(request: Request, who: Principal = WRITE, s: AppState = STATE) -> dict:
    def call(f: Fields, r: Registry, p: str) -> dict:
        r.set_alias(p, _name(f), f.text("alias", required=True), _version(f))
        return {}

    return await _answer(request, who, s, call)


@router.delete("/registered-models/alias")
async def delete_registered_model_alias(
    request: Request, who: Principal = WRITE, s: AppState = STATE
) -> dict:
    def call(f: Fields, r: Registry, p: str) -> dict:
        r.delete_alias(p, _name(f), f.text("alias", required=True))
        return {}

    return await _answer(request, who, s, call)


@router.get("/registered-models/alias")
async def get_model_version_by_alias(request: Request, who: Principal = READ, s: AppState = STATE) -> dict:
    def call(f: Fields, r: Registry, p: str) -> dict:
        return {"model_version": r.version_by_alias(p, _name(f), f.text("alias", required=True))}

    return await _answer(request, who, s, call)


# ---- model versions


@router.post("/model-versions/create")
async def create_model_version(request: Request, who: Principal = WRITE, s: AppState = STATE) -> dict:
    def call(f: Fields, r: Registry, p: str) -> dict:
        version = r.create_version(
            p,
            _name(f),
            f.text("source", required=True),
            run_id=f.text("run_id"),
            tags=f.key_values("tags"),
            run_link=f.text("run_link"),
            description=f.text("description"),
            model_id=f.text("model_id"),
        )
        return {"model_version": version}

    return await _answer(request, who, s, call)


@router.get("/model-versions/get")
async def get_model_version(request: Request, who: Principal = READ, s: AppState = STATE) -> dict:
    def call(f: Fields, r: Registry, p: str) -> dict:
        return {"model_version": r.get_version(p, _name(f), _version(f))}

    return await _answer(request, who, s, call)


@router.patch("/model-versions/update")
async def update_model_version(request: Request, who: Principal = WRITE, s: AppState = STATE) -> dict:
    def call(f: Fields, r: Registry, p: str) -> dict:
        return {"model_version": r.update_version(p, _name(f), _version(f), f.text("description"))}

    return await _answer(request, who, s, call)


@router.delete("/model-versions/delete")
async def delete_model_version(request: Request, who: Principal = WRITE, s: AppState = STATE) -> dict:
    def call(f: Fields, r: Registry, p: str) -> dict:
        r.delete_version(p, _name(f), _version(f))
        return {}

    return await _answer(request, who, s, call)


@router.get("/model-versions/search")
async def search_model_versions(request: Request, who: Principal = READ, s: AppState = STATE) -> dict:
    def call(f: Fields, r: Registry, p: str) -> dict:
        return _searched("model_versions", r.search_versions(p, *_search_args(f)))

    return await _answer(request, who, s, call)


@router.get("/model-versions/get-download-uri")
async def get_model_version_download_uri(
    request: Request, who: Principal = READ, s: AppState = STATE
) -> dict:
    def call(f: Fields, r: Registry, p: str) -> dict:
        return {"artifact_uri": r.download_uri(p, _name(f), _version(f))}

    return await _answer(request, who, s, call)


@router.post("/model-versions/set-tag")
async def set_model_version_tag(request: Request, who: Principal = WRITE, s: AppState = STATE) -> dict:
    def call(f: Fields, r: Registry, p: str) -> dict:
        key, value = f.text("key", required=True), f.text("value", default="")
        r.set_version_tag(p, _name(f), _version(f), key, value)
        return {}

    return await _answer(request, who, s, call)


@router.delete("/model-versions/delete-tag")
async def delete_model_version_tag(request: Request, who: Principal = WRITE, s: AppState = STATE) -> dict:
    def call(f: Fields, r: Registry, p: str) -> dict:
        r.delete_version_tag(p, _name(f), _version(f), f.text("key", required=True))
        return {}

    return await _answer(request, who, s, call)


@router.post("/model-versions/transition-stage")
async def transition_model_version_stage(
    request: Request, who: Principal = WRITE, s: AppState = STATE
) -> dict:
    def call(f: Fields, r: Registry, p: str) -> dict:
        stage, archive = f.text("stage", required=True), _flag(f, "archive_existing_versions")
        return {"model_version": r.transition_stage(p, _name(f), _version(f), stage, archive)}

    return await _answer(request, who, s, call)
