"""MLflow's tracking REST API over raw HTTP: its error format (only on its paths), GET variants with query
parameters, NaN on the wire, history pages, batch validation, and tokens revoked while they are cached."""

from __future__ import annotations

import json

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from tests.support import API, experiment, wait_phase

from runyard.api.app import _check_guarded as check_guarded
from runyard.api.routes import mlflow

MAX_FLOAT = 1.7976931348623157e308


def new_run(api: httpx.Client, experiment_id: str = "0") -> str:
    r = api.post("/runs/create", json={"experiment_id": experiment_id, "start_time": 1})
    assert r.status_code == 200, r.text
    return r.json()["run"]["info"]["run_id"]


def refused(r: httpx.Response, status: int, code: str, *words: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error_code", "message"} and body["error_code"] == code, body
    for word in words:
        assert word in body["message"], body


def test_errors_on_mlflow_paths_are_mlflows_and_runyards_paths_keep_theirs(tracking_server, mlflow_http):
    api = mlflow_http(tracking_server)
    refused(api.get("/runs/no-such-endpoint"), 404, "ENDPOINT_NOT_FOUND")
    refused(api.get("/runs/log-metric"), 405, "ENDPOINT_NOT_FOUND")
    refused(api.post("/runs/log-metric", content=b"{not json"), 400, "BAD_REQUEST", "JSON")
    refused(api.post("/runs/log-metric", content=b"[1, 2]"), 400, "BAD_REQUEST", "object")
    refused(api.get("/runs/get", params={"run_id": "0" * 32}), 404, "RESOURCE_DOES_NOT_EXIST")
    anon = mlflow_http(tracking_server, token="").get("/experiments/get", params={"experiment_id": "0"})
    refused(anon, 401, "UNAUTHENTICATED")
    assert anon.headers["www-authenticate"] == "Bearer"

    headers = {"Authorization": f"Bearer {tracking_server.token}"}
    runyard = httpx.get(f"{tracking_server.url}{API}/projects/default/runs/nope", headers=headers)
    assert runyard.status_code == 404 and runyard.json()["error"]["code"] == "NotFound"
    unknown = httpx.get(f"{tracking_server.url}/apis/nothing-here", headers=headers)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "NotFound"


def test_fields_are_checked_by_name_and_reason(tracking_server, mlflow_http):
    api = mlflow_http(tracking_server)
    run_id = new_run(api)
    good = {"run_id": run_id, "key": "m", "value": 1.0, "timestamp": 5, "step": 1}
    cases = [
        ({k: v for k, v in good.items() if k != "run_id"}, "run_id"),
        ({k: v for k, v in good.items() if k != "timestamp"}, "timestamp"),
        ({**good, "step": "abc"}, "step"),
        ({**good, "step": 2**63}, "step"),
        ({**good, "step": 1.5}, "step"),
        ({**good, "value": "high"}, "value"),
        ({**good, "value": True}, "value"),
        ({**good, "key": 7}, "key"),
        ({**good, "key": "k" * 251}, "250"),
        ({**good, "key": "../up"}, "key"),
    ]
    for body, word in cases:
        refused(api.post("/runs/log-metric", json=body), 400, "INVALID_PARAMETER_VALUE", word)
    # int64 fields as strings (protobuf's JSON) and NaN as its string: both accepted
    assert api.post("/runs/log-metric", json={**good, "step": "2", "timestamp": "6"}).status_code == 200
    assert api.post("/runs/log-metric", json={**good, "key": "n", "value": "NaN"}).status_code == 200
    # a body double-encoded as a JSON string, as old clients send it
    assert (
        api.post("/runs/log-metric", content=json.dumps(json.dumps({**good, "step": 3}))).status_code == 200
    )
    history = api.get("/metrics/get-history", params={"run_id": run_id, "metric_key": "m"}).json()
    assert [p["step"] for p in history["metrics"]] == [2, 3]


def test_get_variants_take_query_parameters(tracking_server, mlflow_http, unique):
    api = mlflow_http(tracking_server)
    prefix = unique("get")
    ids = [
        api.post("/experiments/create", json={"name": f"{prefix}-{i}"}).json()["experiment_id"]
        for i in range(3)
    ]
    params = [("filter", f"name LIKE '{prefix}-%'"), ("order_by", "name DESC"), ("max_results", "2")]
    page = api.get("/experiments/search", params=params).json()
    assert [e["experiment_id"] for e in page["experiments"]] == ids[:0:-1] and page["next_page_token"]
    by_post = api.post("/experiments/search", json={"filter": f"name LIKE '{prefix}-%'", "max_results": 5})
    assert len(by_post.json()["experiments"]) == 3 and "next_page_token" not in by_post.json()

    default = api.get("/experiments/get", params={"experiment_id": "0"}).json()["experiment"]
    assert default["name"] == "Default" and default["experiment_id"] != "0"
    by_name = api.get("/experiments/get-by-name", params={"experiment_name": f"{prefix}-1"}).json()
    assert by_name["experiment"]["experiment_id"] == ids[1]
    run_id = new_run(api, ids[0])
    assert api.get("/runs/get", params={"run_uuid": run_id}).json()["run"]["info"]["run_id"] == run_id
    refused(api.get("/runs/get"), 400, "INVALID_PARAMETER_VALUE", "run_id")
    refused(api.get("/experiments/search", params={"max_results": "many"}), 400, "INVALID_PARAMETER_VALUE")


def test_nan_and_infinities_on_the_wire_as_mlflow_writes_them(tracking_server, mlflow_http):
    api = mlflow_http(tracking_server)
    run_id = new_run(api)
    metrics = [
        {"key": "nan", "value": "NaN", "timestamp": 1, "step": 0},
        {"key": "inf", "value": "Infinity", "timestamp": 1, "step": 0},
        {"key": "neg", "value": "-Infinity", "timestamp": 1, "step": 0},
    ]
    assert api.post("/runs/log-batch", json={"run_id": run_id, "metrics": metrics}).status_code == 200
    latest = api.get("/runs/get", params={"run_id": run_id}).json()["run"]["data"]["metrics"]
    assert {m["key"]: m["value"] for m in latest} == {"nan": "NaN", "inf": MAX_FLOAT, "neg": -MAX_FLOAT}
    raw = api.get("/metrics/get-history", params={"run_id": run_id, "metric_key": "nan"}).text
    assert '"value":"NaN"' in raw.replace(" ", "")


def test_history_pages_by_max_results_and_page_token(tracking_server, mlflow_http):
    api = mlflow_http(tracking_server)
    run_id = new_run(api)
    metrics = [{"key": "loss", "value": s / 10, "timestamp": 100 + s, "step": s} for s in range(25)]
    assert api.post("/runs/log-batch", json={"run_id": run_id, "metrics": metrics}).status_code == 200
    steps, token, pages = [], None, 0
    while True:
        params = {
            "run_id": run_id,
            "metric_key": "loss",
            "max_results": 10,
            **({"page_token": token} if token else {}),
        }
        page = api.get("/metrics/get-history", params=params).json()
        steps += [m["step"] for m in page["metrics"]]
        pages += 1
        token = page.get("next_page_token")
        if not token:
            break
    assert steps == list(range(25)) and pages == 3
    every = api.get("/metrics/get-history", params={"run_id": run_id, "metric_key": "loss"}).json()
    assert len(every["metrics"]) == 25 and "next_page_token" not in every
    zero = api.get("/metrics/get-history", params={"run_id": run_id, "metric_key": "loss", "max_results": 0})
    refused(zero, 400, "INVALID_PARAMETER_VALUE", "max_results")


def test_a_batch_that_fails_writes_nothing(tracking_server, mlflow_http):
    api = mlflow_http(tracking_server)
    run_id = new_run(api)
    point = {"key": "m", "value": 1.0, "timestamp": 1, "step": 0}
    too_many = {"run_id": run_id, "metrics": [{**point, "step": s} for s in range(1001)]}
    refused(api.post("/runs/log-batch", json=too_many), 400, "INVALID_PARAMETER_VALUE", "1000")
    bad_step = {
        "run_id": run_id,
        "metrics": [point, {**point, "step": "x"}],
        "params": [{"key": "p", "value": "1"}],
        "tags": [{"key": "t", "value": "v"}],
    }
    refused(api.post("/runs/log-batch", json=bad_step), 400, "INVALID_PARAMETER_VALUE", "metrics[1].step")
    bad_key = {
        **bad_step,
        "metrics": [point],
        "params": [{"key": "p", "value": "1"}, {"key": "a*b", "value": "2"}],
    }
    refused(api.post("/runs/log-batch", json=bad_key), 400, "INVALID_PARAMETER_VALUE")
    data = api.get("/runs/get", params={"run_id": run_id}).json()["run"]["data"]
    assert not data.get("metrics") and not data.get("params")
    assert "t" not in {t["key"] for t in data.get("tags", [])}


def test_runs_of_two_projects_are_not_searched_together(tracking_server, mlflow_http, project_token, unique):
    other = unique("proj")
    theirs = mlflow_http(tracking_server, project_token(tracking_server, other))
    their_exp = theirs.post("/experiments/create", json={"name": "x"}).json()["experiment_id"]
    admin = mlflow_http(tracking_server)
    mine = admin.post("/experiments/create", json={"name": unique("mine")}).json()["experiment_id"]
    both = admin.post("/runs/search", json={"experiment_ids": [mine, their_exp]})
    refused(both, 400, "INVALID_PARAMETER_VALUE", "experiment_ids")
    assert admin.post("/runs/search", json={"experiment_ids": [their_exp]}).status_code == 200


def test_a_revoked_token_is_refused_at_once_though_it_was_cached(tracking_server, mlflow_http):
    admin = httpx.Client(
        base_url=tracking_server.url + API, headers={"Authorization": f"Bearer {tracking_server.token}"}
    )
    made = admin.post("/tokens", json={"name": "ci", "role": "editor", "project": "default"}).json()
    api = mlflow_http(tracking_server, made["token"])
    run_id = new_run(api)
    point = {"run_id": run_id, "key": "m", "value": 1.0, "timestamp": 1}
    assert api.post("/runs/log-metric", json=point).status_code == 200
    assert admin.delete(f"/tokens/{made['id']}").status_code == 200
    refused(api.post("/runs/log-metric", json=point), 401, "UNAUTHENTICATED")


def test_a_run_token_writes_in_its_project_until_its_run_ends(
    tracking_server, mlflow_http, project_token, unique
):
    api = tracking_server.api()
    name = unique("holder")
    api.put(f"/experiments/{name}", json=experiment(name, 'echo "$RUNYARD_TOKEN"; exec sleep 60'))
    with api.stream("GET", f"/runs/{name}/logs", params={"follow": "true"}, timeout=30) as resp:
        token = json.loads(next(resp.iter_lines()))["text"]
    as_run = mlflow_http(tracking_server, token)
    own = new_run(as_run)
    point = {"run_id": own, "key": "m", "value": 1.0, "timestamp": 1}
    assert as_run.post("/runs/log-metric", json=point).status_code == 200

    elsewhere = new_run(mlflow_http(tracking_server, project_token(tracking_server, unique("else"))))
    refused(as_run.post("/runs/log-metric", json={**point, "run_id": elsewhere}), 403, "PERMISSION_DENIED")

    assert api.post(f"/runs/{name}/stop").status_code == 200
    wait_phase(api, name, {"Cancelled", "Failed", "Succeeded"})
    # the controller revoked the token in the transaction that recorded the end, and no cache kept it
    refused(as_run.post("/runs/log-metric", json=point), 401, "UNAUTHENTICATED")


@pytest.mark.postgres
def test_on_postgresql_errors_and_history(pg_tracking_server, mlflow_http):
    api = mlflow_http(pg_tracking_server)
    run_id = new_run(api)
    metrics = [{"key": "loss", "value": s, "timestamp": 1, "step": s} for s in range(12)] + [
        {"key": "nan", "value": "NaN", "timestamp": 1, "step": 0}
    ]
    assert api.post("/runs/log-batch", json={"run_id": run_id, "metrics": metrics}).status_code == 200
    page = api.get("/metrics/get-history", params={"run_id": run_id, "metric_key": "loss", "max_results": 5})
    assert [m["step"] for m in page.json()["metrics"]] == list(range(5)) and page.json()["next_page_token"]
    raw = api.get("/metrics/get-history", params={"run_id": run_id, "metric_key": "nan"}).text
    assert '"value":"NaN"' in raw.replace(" ", "")
    refused(api.post("/runs/log-metric", json={"run_id": run_id, "key": "m"}), 400, "INVALID_PARAMETER_VALUE")
    refused(api.get("/runs/get", params={"run_id": "f" * 32}), 404, "RESOURCE_DOES_NOT_EXIST")


def test_a_route_without_a_guard_is_refused_inside_an_included_router():
    """FastAPI keeps an included router as one entry of app.routes: the start-up check looks inside."""
    unguarded = APIRouter()

    @unguarded.get("/open")
    def open_route() -> dict:
        return {}

    app = FastAPI()
    app.include_router(mlflow.router, prefix="/api/2.0/mlflow")
    check_guarded(app)  # every MLflow route declares its guard
    app.include_router(unguarded, prefix="/api/2.0/mlflow")
    with pytest.raises(RuntimeError, match="/open"):
        check_guarded(app)
