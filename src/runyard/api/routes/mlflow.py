"""MLflow's tracking REST API (2.0 paths), as its client calls it, on runyard's tracking service.

The routes are lean on purpose (a training loop may call log-metric thousands of times a second): a
`Shortcut` finds them with one dict lookup ahead of FastAPI's router, the token is checked from a short
cache on the event loop, bodies are parsed here rather than by pydantic, the store is called once (in
the thread pool, but for a one-row write on SQLite), and answers are encoded JSON. Requests name
experiments and runs by id, so each is authorized on the project it belongs to; what a request creates
goes to the caller's scope project, the token's own, or "default" for a token bound to none.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import Receive, Scope, Send

from runyard.api.deps import Guard, bearer, state
from runyard.api.errors import BadRequest
from runyard.core.errors import FieldError, Invalid
from runyard.services import run_tracking
from runyard.services.auth import Access, Principal, authenticate, cached_principal
from runyard.services.logged_models import LoggedModels
from runyard.services.tracking import RunRef, Tracking

router = APIRouter()

INT64 = (-(1 << 63), (1 << 63) - 1)
VIEW_TYPES = {"ACTIVE_ONLY": "ACTIVE_ONLY", "DELETED_ONLY": "DELETED_ONLY", "ALL": "ALL"}
VIEW_TYPES.update({"1": "ACTIVE_ONLY", "2": "DELETED_ONLY", "3": "ALL"})
RUN_STATUSES = {"RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"}
RUN_STATUSES_BY_NUMBER = {"1": "RUNNING", "2": "SCHEDULED", "3": "FINISHED", "4": "FAILED", "5": "KILLED"}
MAX_SEARCH_RESULTS = 50_000  # MLflow's own bound on runs/search
EMPTY = b"{}"
JSON = "application/json"


class Caller(Guard):
    """The MLflow routes' guard: a token seen a moment ago costs no thread hop and no query. The route
    then authorizes the project of the experiment or run the request names."""

    async def __call__(  # type: ignore[override]
        self, request: Request, creds: HTTPAuthorizationCredentials | None = Depends(bearer)
    ) -> Principal:
        return await self.check(request, f"Bearer {creds.credentials}" if creds else None)

    async def check(self, request: Request, authorization: str | None) -> Principal:
        store = state(request).store
        who = cached_principal(store, authorization)
        if who is None:
            who = await run_in_threadpool(authenticate, store, authorization)
        who.authorize(self.need)
        return who


READ = Depends(Caller(Access.READ))
WRITE = Depends(Caller(Access.WRITE))


class Shortcut(BaseRoute):
    """The MLflow routes, each found by one dict lookup on (method, path), placed ahead of the app's
    routes. FastAPI's router tries every route in turn, twice for an included router, and solves each
    route's dependencies; on log-metric that cost more than the store's write. The routes stay declared
    on `router` (their Guard, the OpenAPI document); this only finds them faster and runs the same
    endpoint with the same guard. Errors still go through the app's exception handlers."""

    def __init__(self, prefix: str):
        self.endpoints: dict[tuple[str, str], tuple[Caller, Callable]] = {}
        for route in router.routes:
            assert isinstance(route, APIRoute)
            caller = next(d.call for d in route.dependant.dependencies if isinstance(d.call, Caller))
            for method in route.methods or ():
                self.endpoints[(method, prefix + route.path)] = (caller, route.endpoint)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and (scope["method"], scope["path"]) in self.endpoints:
            return Match.FULL, {}
        return Match.NONE, {}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        caller, endpoint = self.endpoints[(scope["method"], scope["path"])]
        request = Request(scope, receive)
        who = await caller.check(request, request.headers.get("authorization"))
        response = await endpoint(request, who)
        await response(scope, receive, send)


def add_shortcut(app: FastAPI, prefix: str) -> None:
    app.router.routes.insert(0, Shortcut(prefix))


class Fields:
    """One request's fields, read as MLflow's handlers read them: from the JSON object of a POST body, or
    from the query string of a GET, where a repeated field may be given once or several times."""

    def __init__(self, values: dict[str, Any]):
        self.values = values

    @classmethod
    async def of(cls, request: Request) -> Fields:
        if request.method == "GET":
            values: dict[str, Any] = {}
            for key, value in request.query_params.multi_items():
                values.setdefault(key, []).append(value)
            return cls({k: v[0] if len(v) == 1 else v for k, v in values.items()})
        return cls.parse(await request.body())

    @classmethod
    def parse(cls, body: bytes) -> Fields:
        try:
            data = json.loads(body) if body.strip() else {}
            if isinstance(data, str):  # old clients double-encode their JSON, and MLflow accepts it
                data = json.loads(data)
        except (ValueError, RecursionError) as exc:
            reason = f"not valid JSON: {exc}" if isinstance(exc, ValueError) else "nested too deeply"
            raise BadRequest("the request body cannot be read", [FieldError("(body)", reason)]) from None
        if not isinstance(data, dict):
            raise BadRequest(
                "the request body must be a JSON object", [FieldError("(body)", "not an object")]
            )
        return cls(data)

    def text(self, name: str, required: bool = False, default: str | None = None) -> Any:
        value = self.values.get(name)
        if value is None or value == "":
            if required:
                raise _missing(name)
            return default
        if not isinstance(value, str):
            raise _invalid(name, value, "must be a string")
        return value

    def integer(self, name: str, required: bool = False, default: int | None = None) -> Any:
        value = self.values.get(name)
        if value is None or value == "":
            if required:
                raise _missing(name)
            return default
        number = _as_int(value)
        if number is None:
            raise _invalid(name, value, "must be an integer")
        if not INT64[0] <= number <= INT64[1]:
            raise _invalid(name, value, "must fit in a 64-bit integer")
        return number

    def number(self, name: str) -> float:
        value = self.values.get(name)
        if value is None or value == "":
            raise _missing(name)
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise _invalid(name, value, "must be a number")
        try:
            return float(value)
        except (ValueError, OverflowError):
            raise _invalid(name, value, "must be a number") from None

    def texts(self, name: str) -> list[str]:
        value = self.values.get(name)
        if value is None:
            return []
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _invalid(name, value, "must be a list of strings")
        return value

    def objects(self, name: str) -> list[dict]:
        value = self.values.get(name)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise _invalid(name, value, "must be a list of objects")
        return value

    def key_values(self, name: str) -> list[dict]:
        """Tags or params: [{key, value}], each key a non-empty string and each value a string."""
        items = self.objects(name)
        for i, item in enumerate(items):
            if not item.get("key") or not isinstance(item["key"], str):
                raise (
                    _missing(f"{name}[{i}].key")
                    if not item.get("key")
                    else _invalid(f"{name}[{i}].key", item["key"], "must be a string")
                )
            if not isinstance(item.get("value", ""), str):
                raise _invalid(f"{name}[{i}].value", item["value"], "must be a string")
        return [{"key": item["key"], "value": item.get("value") or ""} for item in items]

    def run_id(self) -> str:
        """run_id, or run_uuid as older clients send it."""
        run_id = self.text("run_id") or self.text("run_uuid")
        if run_id is None:
            raise _missing("run_id")
        return run_id

    def view_type(self, name: str) -> str:
        value = self.values.get(name)
        if value is None or value == "":
            return "ACTIVE_ONLY"
        view = VIEW_TYPES.get(str(value))
        if view is None:
            raise _invalid(name, value, "must be ACTIVE_ONLY, DELETED_ONLY or ALL")
        return view

    def run_status(self) -> str | None:
        value = self.values.get("status")
        if value is None or value == "":
            return None
        status = RUN_STATUSES_BY_NUMBER.get(str(value), str(value))
        if status not in RUN_STATUSES:
            raise _invalid("status", value, "must be one of " + ", ".join(sorted(RUN_STATUSES)))
        return status


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _missing(name: str) -> Invalid:
    return Invalid(f"Missing value for required parameter '{name}'", [FieldError(name, "is required")])


def _invalid(name: str, value: Any, reason: str) -> Invalid:
    shown = json.dumps(value, default=str)
    shown = shown if len(shown) <= 100 else shown[:100] + "..."
    message = f"Invalid value {shown} for parameter '{name}' supplied: {reason}"
    return Invalid(message, [FieldError(name, reason)])


def _scope(who: Principal) -> str:
    """Where a request creates what it does not name by id: the token's project, else "default"."""
    return who.project or "default"


def _run(t: Tracking, who: Principal, run_id: str, need: Access) -> RunRef:
    ref = t.run(run_id)
    who.authorize(need, ref.project)
    return ref


def _experiment(t: Tracking, who: Principal, experiment_id: str, need: Access) -> str:
    """The project of the experiment, once the caller may `need` it there."""
    project = t.experiment_project(experiment_id, _scope(who))
    who.authorize(need, project)
    return project


async def _answer(work: Callable[[], Any], small_write: Tracking | None = None) -> Response:
    """Run `work` (which calls the store) in the thread pool; its dict (None: `{}`) as MLflow's JSON, or
    the bytes it encoded itself.

    A `small_write` (one row, as log-metric) on SQLite runs on the event loop instead: the hand-off to a
    worker thread and back cost as much as the write itself. SQLite is a local file written by this
    process alone, so the wait is short; on PostgreSQL, where a write waits on the network and on other
    sessions' locks, everything goes to the thread pool, so that a stalled store stalls only its callers.
    """
    inline = small_write is not None and small_write.store.is_sqlite
    result = work() if inline else await run_in_threadpool(work)
    if isinstance(result, bytes):
        return Response(result, media_type=JSON)
    return Response(EMPTY if result is None else encode(result), media_type=JSON)


def encode(doc: Any) -> bytes:
    """JSON as MLflow's server writes it: a NaN (or an infinity the store kept) as the strings protobuf's
    JSON uses, which its client parses back into floats."""
    try:
        return json.dumps(doc, allow_nan=False, separators=(",", ":")).encode()
    except ValueError:
        return json.dumps(_finite(doc), separators=(",", ":")).encode()


def _finite(doc: Any) -> Any:
    if isinstance(doc, float) and not math.isfinite(doc):
        return "NaN" if math.isnan(doc) else ("Infinity" if doc > 0 else "-Infinity")
    if isinstance(doc, dict):
        return {k: _finite(v) for k, v in doc.items()}
    if isinstance(doc, list | tuple):
        return [_finite(v) for v in doc]
    return doc


def _tracking(request: Request) -> Tracking:
    return state(request).tracking


# ---- experiments


@router.post("/experiments/create")
async def create_experiment(request: Request, who: Principal = WRITE) -> Response:
    f = await Fields.of(request)
    name = f.text("name", required=True)
    location, tags = f.text("artifact_location"), f.key_values("tags")
    t, project = _tracking(request), _scope(who)
    who.authorize(Access.WRITE, project)
    return await _answer(lambda: {"experiment_id": t.create_experiment(project, name, location, tags)})


@router.get("/experiments/get")
async def get_experiment(request: Request, who: Principal = READ) -> Response:
    f = await Fields.of(request)
    experiment_id, t = f.text("experiment_id", required=True), _tracking(request)

    def work() -> dict:
        _experiment(t, who, experiment_id, Access.READ)
        return {"experiment": t.get_experiment(_scope(who), experiment_id)}

    return await _answer(work)


@router.get("/experiments/get-by-name")
async def get_experiment_by_name(request: Request, who: Principal = READ) -> Response:
    f = await Fields.of(request)
    name, t, project = f.text("experiment_name", required=True), _tracking(request), _scope(who)
    who.authorize(Access.READ, project)
    return await _answer(lambda: {"experiment": t.get_experiment_by_name(project, name)})


@router.post("/experiments/search")
@router.get("/experiments/search")
async def search_experiments(request: Request, who: Principal = READ) -> Response:
    f = await Fields.of(request)
    view, limit = f.view_type("view_type"), f.integer("max_results", default=1000)
    query, order_by, token = f.text("filter"), f.texts("order_by"), f.text("page_token")
    t, project = _tracking(request), _scope(who)
    who.authorize(Access.READ, project)

    def work() -> dict:
        found, next_token = t.search_experiments(project, view, limit, query, order_by, token)
        return _page({"experiments": found}, next_token)

    return await _answer(work)


@router.post("/experiments/update")
async def update_experiment(request: Request, who: Principal = WRITE) -> Response:
    f = await Fields.of(request)
    experiment_id, new_name = f.text("experiment_id", required=True), f.text("new_name", required=True)
    t = _tracking(request)

    def work() -> None:
        _experiment(t, who, experiment_id, Access.WRITE)
        t.update_experiment(_scope(who), experiment_id, new_name)

    return await _answer(work)


@router.post("/experiments/delete")
async def delete_experiment(request: Request, who: Principal = WRITE) -> Response:
    return await _experiment_verb(request, who, Tracking.delete_experiment)


@router.post("/experiments/restore")
async def restore_experiment(request: Request, who: Principal = WRITE) -> Response:
    return await _experiment_verb(request, who, Tracking.restore_experiment)


async def _experiment_verb(request: Request, who: Principal, verb: Callable[..., None]) -> Response:
    f = await Fields.of(request)
    experiment_id, t = f.text("experiment_id", required=True), _tracking(request)

    def work() -> None:
        _experiment(t, who, experiment_id, Access.WRITE)
        verb(t, _scope(who), experiment_id)

    return await _answer(work)


@router.post("/experiments/delete-experiment-tag")
async def delete_experiment_tag(request: Request, who: Principal = WRITE) -> Response:
    f = await Fields.of(request)
    experiment_id, key = f.text("experiment_id", required=True), f.text("key", required=True)
    t = _tracking(request)

    def work() -> None:
        _experiment(t, who, experiment_id, Access.WRITE)
        run_tracking.delete_experiment_tag(t, _scope(who), experiment_id, key)

    return await _answer(work)


@router.post("/experiments/set-experiment-tag")
async def set_experiment_tag(request: Request, who: Principal = WRITE) -> Response:
    f = await Fields.of(request)
    experiment_id, key = f.text("experiment_id", required=True), f.text("key", required=True)
    value, t = f.text("value", default=""), _tracking(request)

    def work() -> None:
        _experiment(t, who, experiment_id, Access.WRITE)
        t.set_experiment_tag(_scope(who), experiment_id, key, value)

    return await _answer(work)


# ---- runs


@router.post("/runs/create")
async def create_run(request: Request, who: Principal = WRITE) -> Response:
    f = await Fields.of(request)
    experiment_id = f.text("experiment_id", default="0")
    run_name, start_time = f.text("run_name"), f.integer("start_time")
    tags, user_id, t = f.key_values("tags"), f.text("user_id", default=""), _tracking(request)

    def work() -> dict:
        project = _experiment(t, who, experiment_id, Access.WRITE)
        return {"run": t.create_run(project, experiment_id, run_name, start_time, tags, user_id)}

    return await _answer(work)


@router.post("/runs/update")
async def update_run(request: Request, who: Principal = WRITE) -> Response:
    f = await Fields.of(request)
    run_id, status, end_time = f.run_id(), f.run_status(), f.integer("end_time")
    run_name, t = f.text("run_name"), _tracking(request)

    def work() -> dict:
        ref = _run(t, who, run_id, Access.WRITE)
        return {"run_info": run_tracking.update_run(t, t.store, ref, status, end_time, run_name)}

    return await _answer(work)


@router.get("/runs/get")
async def get_run(request: Request, who: Principal = READ) -> Response:
    f = await Fields.of(request)
    run_id, t = f.run_id(), _tracking(request)

    def work() -> dict:
        ref = _run(t, who, run_id, Access.READ)
        outputs = {"model_outputs": LoggedModels(t.store, t).outputs(ref)}  # MLflow 3's logged models
        return {"run": {**t.get_run(ref), "outputs": outputs}}

    return await _answer(work)


@router.post("/runs/delete")
async def delete_run(request: Request, who: Principal = WRITE) -> Response:
    f = await Fields.of(request)
    run_id, t = f.run_id(), _tracking(request)
    return await _answer(lambda: t.delete_run(_run(t, who, run_id, Access.WRITE)))


@router.post("/runs/restore")
async def restore_run(request: Request, who: Principal = WRITE) -> Response:
    f = await Fields.of(request)
    run_id, t = f.run_id(), _tracking(request)
    return await _answer(lambda: t.restore_run(_run(t, who, run_id, Access.WRITE)))


@router.post("/runs/search")
async def search_runs(request: Request, who: Principal = READ) -> Response:
    f = await Fields.of(request)
    experiment_ids, query = f.texts("experiment_ids"), f.text("filter")
    view, limit = f.view_type("run_view_type"), f.integer("max_results", default=1000)
    order_by, token, t = f.texts("order_by"), f.text("page_token"), _tracking(request)
    if limit is not None and limit > MAX_SEARCH_RESULTS:
        raise _invalid("max_results", limit, f"must be at most {MAX_SEARCH_RESULTS}")

    def work() -> dict:
        projects = {_experiment(t, who, e, Access.READ) for e in experiment_ids} or {_scope(who)}
        if len(projects) > 1:
            reason = "experiments of different projects cannot be searched together"
            raise Invalid(
                "runs can be searched in one project at a time", [FieldError("experiment_ids", reason)]
            )
        found, next_token = t.search_runs(projects.pop(), experiment_ids, query, view, limit, order_by, token)
        return _page({"runs": found}, next_token)

    return await _answer(work)


def _page(doc: dict, next_page_token: str | None) -> dict:
    return {**doc, "next_page_token": next_page_token} if next_page_token else doc


# ---- run data


@router.post("/runs/log-metric")
async def log_metric(request: Request, who: Principal = WRITE) -> Response:
    f = await Fields.of(request)
    run_id, key, value = f.run_id(), f.text("key", required=True), f.number("value")
    timestamp, step = f.integer("timestamp", required=True), f.integer("step", default=0)
    model_id, t = f.text("model_id"), _tracking(request)
    # MLflow 3: a metric of a logged model (on a dataset) counts for the model too
    dataset = {"dataset_name": f.text("dataset_name"), "dataset_digest": f.text("dataset_digest")}

    def work() -> None:
        ref = _run(t, who, run_id, Access.WRITE)
        t.log_metric(ref, key, value, timestamp, step)
        if model_id:
            metric = {"key": key, "value": value, "timestamp": timestamp, "step": step, "model_id": model_id}
            LoggedModels(t.store, t).link_metrics(ref, [metric | dataset])

    return await _answer(work, small_write=t)


@router.post("/runs/log-batch")
async def log_batch(request: Request, who: Principal = WRITE) -> Response:
    f = await Fields.of(request)
    # each metric is checked by the service, in one pass with the write's own (a batch of 1,000 is hot)
    run_id, metrics = f.run_id(), f.objects("metrics")
    params, tags, t = f.key_values("params"), f.key_values("tags"), _tracking(request)

    def work() -> None:
        ref = _run(t, who, run_id, Access.WRITE)
        for_model = any(isinstance(m, dict) and m.get("model_id") for m in metrics)
        t.log_batch(
            ref, run_tracking.without_relogged_points(t, ref, metrics) if for_model else metrics, params, tags
        )
        if for_model:  # MLflow 3: metrics of a logged model, too
            LoggedModels(t.store, t).link_metrics(ref, metrics)

    return await _answer(work)


@router.post("/runs/log-parameter")
async def log_param(request: Request, who: Principal = WRITE) -> Response:
    f = await Fields.of(request)
    run_id, key, value = f.run_id(), f.text("key", required=True), f.text("value", default="")
    t = _tracking(request)
    return await _answer(lambda: t.log_param(_run(t, who, run_id, Access.WRITE), key, value), small_write=t)


@router.post("/runs/set-tag")
async def set_tag(request: Request, who: Principal = WRITE) -> Response:
    f = await Fields.of(request)
    run_id, key, value = f.run_id(), f.text("key", required=True), f.text("value", default="")
    t = _tracking(request)
    return await _answer(lambda: t.set_tag(_run(t, who, run_id, Access.WRITE), key, value), small_write=t)


@router.post("/runs/delete-tag")
async def delete_tag(request: Request, who: Principal = WRITE) -> Response:
    f = await Fields.of(request)
    run_id, key, t = f.run_id(), f.text("key", required=True), _tracking(request)
    return await _answer(lambda: t.delete_tag(_run(t, who, run_id, Access.WRITE), key), small_write=t)


@router.post("/runs/log-inputs")
async def log_inputs(request: Request, who: Principal = WRITE) -> Response:
    f = await Fields.of(request)
    run_id, datasets, t = f.run_id(), f.objects("datasets"), _tracking(request)
    return await _answer(lambda: t.log_inputs(_run(t, who, run_id, Access.WRITE), datasets))


@router.get("/metrics/get-history")
async def get_metric_history(request: Request, who: Principal = READ) -> Response:
    f = await Fields.of(request)
    run_id, key = f.run_id(), f.text("metric_key", required=True)
    limit, token, t = f.integer("max_results"), f.text("page_token"), _tracking(request)
    if limit is not None and limit <= 0:
        raise _invalid("max_results", limit, "must be a positive integer")

    return await _answer(lambda: t.metric_history_json(_run(t, who, run_id, Access.READ), key, limit, token))
