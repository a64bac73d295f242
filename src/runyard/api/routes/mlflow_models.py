"""MLflow 3's logged models, a run's model outputs and run artifact listing (/api/2.0/mlflow), as
`mlflow.<flavor>.log_model`, autologging and `mlflow.pyfunc.load_model` call them.

A logged model belongs to its experiment's project: every call authorizes on that project.
"""

from __future__ import annotations

import posixpath

from fastapi import APIRouter, Body

from runyard.api.deps import READ, STATE, WRITE, AppState
from runyard.core.errors import FieldError, Invalid
from runyard.services.artifacts import clean_path, locate
from runyard.services.auth import Access, Principal
from runyard.services.logged_models import LoggedModels

router = APIRouter()
JSON = Body(default=None)


def _models(s: AppState) -> LoggedModels:
    return LoggedModels(s.store, s.tracking)


def _scope(who: Principal) -> str:
    """The project an experiment id "0" means: the token's own, else the default project."""
    return who.project or "default"


def _required(body: dict | None, field: str) -> str:
    value = (body or {}).get(field)
    if value is None or value == "":
        raise Invalid(f"missing {field}", [FieldError(field, "is required")])
    if not isinstance(value, str | int):
        raise Invalid(f"invalid {field}", [FieldError(field, "must be a string")])
    return str(value)


def _owned(s: AppState, who: Principal, model_id: str, need: Access, allow_deleted: bool = False):
    row = _models(s).row(model_id, allow_deleted)
    who.authorize(need, row.project)
    return row


@router.post("/logged-models")
def create_logged_model(body: dict | None = JSON, who: Principal = WRITE, s: AppState = STATE) -> dict:
    body = body or {}
    experiment_id = _required(body, "experiment_id")
    who.authorize(Access.WRITE, s.tracking.experiment_project(experiment_id, _scope(who)))
    model = _models(s).create(
        _scope(who),
        experiment_id,
        name=body.get("name"),
        model_type=body.get("model_type"),
        source_run_id=body.get("source_run_id"),
        params=body.get("params") or (),
        tags=body.get("tags") or (),
    )
    return {"model": model}


@router.post("/logged-models/search")
def search_logged_models(body: dict | None = JSON, who: Principal = READ, s: AppState = STATE) -> dict:
    body = body or {}
    ids = body.get("experiment_ids")
    if not isinstance(ids, list) or not ids:
        raise Invalid("missing experiment_ids", [FieldError("experiment_ids", "must list experiment ids")])
    experiments = []
    for given in ids:
        who.authorize(Access.READ, s.tracking.experiment_project(str(given), _scope(who)))
        experiments.append(int(s.tracking.get_experiment(_scope(who), str(given))["experiment_id"]))
    models, token = _models(s).search(
        experiments,
        filter=body.get("filter"),
        datasets=body.get("datasets") or (),
        max_results=body.get("max_results"),
        order_by=body.get("order_by") or (),
        page_token=body.get("page_token"),
    )
    return {"models": models, **({"next_page_token": token} if token else {})}


@router.get("/logged-models/{model_id}")
def get_logged_model(
    model_id: str, allow_deleted: bool = False, who: Principal = READ, s: AppState = STATE
) -> dict:
    return {"model": _models(s).render(_owned(s, who, model_id, Access.READ, allow_deleted))}


@router.patch("/logged-models/{model_id}")
def finalize_logged_model(
    model_id: str, body: dict | None = JSON, who: Principal = WRITE, s: AppState = STATE
) -> dict:
    _owned(s, who, model_id, Access.WRITE)
    return {"model": _models(s).finalize(model_id, (body or {}).get("status"))}


@router.delete("/logged-models/{model_id}")
def delete_logged_model(model_id: str, who: Principal = WRITE, s: AppState = STATE) -> dict:
    _owned(s, who, model_id, Access.WRITE)
    _models(s).delete(model_id)
    return {}


@router.post("/logged-models/{model_id}/params")
def log_logged_model_params(
    model_id: str, body: dict | None = JSON, who: Principal = WRITE, s: AppState = STATE
) -> dict:
    _owned(s, who, model_id, Access.WRITE)
    _models(s).log_params(model_id, (body or {}).get("params") or ())
    return {}


@router.patch("/logged-models/{model_id}/tags")
def set_logged_model_tags(
    model_id: str, body: dict | None = JSON, who: Principal = WRITE, s: AppState = STATE
) -> dict:
    _owned(s, who, model_id, Access.WRITE)
    _models(s).set_tags(model_id, (body or {}).get("tags") or ())
    return {}


@router.delete("/logged-models/{model_id}/tags/{tag_key:path}")
def delete_logged_model_tag(model_id: str, tag_key: str, who: Principal = WRITE, s: AppState = STATE) -> dict:
    _owned(s, who, model_id, Access.WRITE)
    _models(s).delete_tag(model_id, tag_key)
    return {}


@router.get("/logged-models/{model_id}/artifacts/directories")
def list_logged_model_artifacts(
    model_id: str, artifact_directory_path: str = "", who: Principal = READ, s: AppState = STATE
) -> dict:
    row = _owned(s, who, model_id, Access.READ)
    return _listing(s, row.artifact_location, artifact_directory_path)


@router.get("/artifacts/list")
def list_run_artifacts(
    run_id: str = "", run_uuid: str = "", path: str = "", who: Principal = READ, s: AppState = STATE
) -> dict:
    """{root_uri, files}: a run's artifacts under `path`, each path relative to the run's root."""
    ref = s.tracking.run(_required({"run_id": run_id or run_uuid}, "run_id"))
    who.authorize(Access.READ, ref.project)
    return _listing(s, ref.artifact_uri, path)


@router.post("/runs/outputs")
def log_outputs(body: dict | None = JSON, who: Principal = WRITE, s: AppState = STATE) -> dict:
    """Record the models a run produced (MLflow's LogOutputs)."""
    ref = s.tracking.run(_required(body, "run_id"))
    who.authorize(Access.WRITE, ref.project)
    models = (body or {}).get("models")
    if not isinstance(models, list):
        raise Invalid("missing models", [FieldError("models", "must list {model_id, step}")])
    _models(s).log_outputs(ref, models)
    return {}


@router.post("/runs/log-model")
def log_model(body: dict | None = JSON, who: Principal = WRITE, s: AppState = STATE) -> dict:
    """Append a model's description to the run's `mlflow.log-model.history` tag."""
    ref = s.tracking.run(_required(body, "run_id"))
    who.authorize(Access.WRITE, ref.project)
    _models(s).record_in_run(ref, _required(body, "model_json"))
    return {}


def _listing(s: AppState, root_uri: str, path: str) -> dict:
    rel = clean_path(path)
    where = locate(root_uri)
    if where is None:  # kept outside runyard's artifact store: nothing here to list
        return {"root_uri": root_uri, "files": []}
    project, base = where
    found = s.artifacts.list(project, posixpath.join(base, rel) if rel else base)
    files = [{**f.to_dict(), "path": posixpath.join(rel, f.path) if rel else f.path} for f in found]
    return {"root_uri": root_uri, "files": files}
