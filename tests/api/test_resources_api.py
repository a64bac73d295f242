"""The REST API over HTTP against a real server process: auth, validation, apply, concurrency, events."""

from __future__ import annotations

import concurrent.futures
import time

import httpx
from tests.support import API, experiment, resource, wait_phase


def test_openapi_document_is_served_and_lists_the_resource_paths(server):
    doc = httpx.get(server.url + "/openapi.json").json()
    assert doc["info"]["title"] == "runyard"
    assert API + "/projects/{project}/experiments/{name}" in doc["paths"]
    assert API + "/projects/{project}/runs/{name}/logs" in doc["paths"]


def test_every_api_call_needs_a_valid_bearer_token(server):
    anon = httpx.get(server.url + API + "/projects/default/experiments")
    assert anon.status_code == 401
    assert anon.json()["error"]["code"] == "Unauthorized"
    wrong = httpx.get(server.url + API + "/whoami", headers={"Authorization": "Bearer ryd_nope"})
    assert wrong.status_code == 401
    assert server.api().get("/experiments").status_code == 200


def test_the_admin_token_is_stored_hashed(server):
    from sqlalchemy import create_engine, text

    from runyard.store.engine import normalize_url

    url = server.store_url or f"sqlite:///{server.home / 'runyard.db'}"
    with create_engine(normalize_url(url)).connect() as conn:
        stored = [row[0] for row in conn.execute(text("select secret_hash from tokens"))]
    assert stored and server.token not in stored
    assert all(len(h) == 64 for h in stored)


def test_apply_creates_then_reports_unchanged_then_configured(server):
    api = server.api()
    doc = resource("Job", "nightly", schedule="0 3 * * *", template={"command": "python etl.py"})
    first = api.put("/jobs/nightly", json=doc)
    assert (first.status_code, first.headers["x-runyard-result"]) == (201, "created")
    again = api.put("/jobs/nightly", json=doc)
    assert (again.status_code, again.headers["x-runyard-result"]) == (200, "unchanged")
    doc["spec"]["schedule"] = "0 4 * * *"
    changed = api.put("/jobs/nightly", json=doc)
    assert changed.headers["x-runyard-result"] == "configured"
    assert changed.json()["metadata"]["generation"] == 2
    assert api.get("/jobs/nightly").json()["spec"]["schedule"] == "0 4 * * *"


def test_all_four_kinds_validate_store_and_list(server):
    api = server.api()
    docs = {
        "sessions": {"kind": "Session", "spec": {"editor": "jupyterlab"}},
        "experiments": {"kind": "Experiment", "spec": {"command": "true"}},
        "jobs": {"kind": "Job", "spec": {"dependsOn": ["etl"], "template": {"command": "true"}}},
        "models": {"kind": "Model", "spec": {"handler": "serve:predict", "replicas": 2}},
    }
    for plural, doc in docs.items():
        body = {"apiVersion": "runyard.dev/v1", "metadata": {"name": "one"}, **doc}
        assert api.put(f"/{plural}/one", json=body).status_code == 201, plural
        items = api.get(f"/{plural}").json()["items"]
        assert [i["metadata"]["name"] for i in items] == ["one"]


def test_bad_input_names_each_field_and_writes_nothing(server):
    api = server.api()
    bad = experiment(
        "Bad_Name", "x", resources={"cpu": "lots", "memory": "4 gigs"}, colour="blue", timeoutSeconds=-1
    )
    r = api.put("/experiments/Bad_Name", json=bad)
    assert r.status_code == 422
    fields = {d["field"]: d["reason"] for d in r.json()["error"]["details"]}
    assert "metadata.name" in fields and "lowercase" in fields["metadata.name"]
    assert "cpu quantity" in fields["spec.resources.cpu"]
    assert "memory quantity" in fields["spec.resources.memory"]
    assert fields["spec.colour"] == "unknown field"
    assert "spec.timeoutSeconds" in fields
    assert api.get("/experiments").json()["items"] == []


def test_unknown_kind_and_malformed_json_are_clear_4xx(server):
    api = server.api()
    r = api.put(
        "/experiments/x", json={"apiVersion": "runyard.dev/v1", "kind": "Pipeline", "metadata": {"name": "x"}}
    )
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["field"] == "kind"
    r = api.put("/experiments/x", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    assert "JSON" in r.json()["error"]["details"][0]["reason"]
    r = api.get("/widgets")
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "plural"


def test_a_document_sent_to_the_wrong_url_is_refused(server):
    r = server.api().put("/experiments/other", json=experiment("train"))
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["field"] == "metadata.name"


def test_a_stale_resource_version_gets_409(server):
    api = server.api()
    doc = resource("Model", "m", handler="a:b")
    api.put("/models/m", json=doc)
    v1 = _settled(api, "/models/m")["metadata"]["resourceVersion"]
    doc["spec"]["replicas"] = 3
    doc["metadata"]["resourceVersion"] = v1
    assert api.put("/models/m", json=doc).status_code == 200
    doc["spec"]["replicas"] = 5  # still based on v1
    r = api.put("/models/m", json=doc)
    assert r.status_code == 409
    assert api.get("/models/m").json()["spec"]["replicas"] == 3


def test_an_experiment_spec_is_immutable(server):
    api = server.api()
    api.put("/experiments/e", json=experiment("e", "sleep 5"))
    r = api.put("/experiments/e", json=experiment("e", "sleep 6"))
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["field"] == "spec"


def test_a_retried_submit_with_the_same_request_id_runs_once(server):
    api = server.api()
    key = {"Idempotency-Key": "submit-42"}
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(lambda _: api.post("/experiments", json=experiment("once"), headers=key), range(4))
        )
    assert {r.status_code for r in results} == {201}
    assert len({r.json()["metadata"]["uid"] for r in results}) == 1
    wait_phase(api, "once", {"Succeeded"})
    assert [r["metadata"]["name"] for r in api.get("/runs").json()["items"]] == ["once"]


def test_delete_removes_the_resource(server):
    api = server.api()
    api.put("/sessions/s", json=resource("Session", "s"))
    assert api.delete("/sessions/s").status_code == 200
    assert api.delete("/sessions/missing").status_code == 404


def _settled(api: httpx.Client, path: str) -> dict:
    """The resource once the controller has written its status (a status write bumps resourceVersion too)."""
    for _ in range(200):
        doc = api.get(path).json()
        if doc.get("status", {}).get("reason"):
            return doc
        time.sleep(0.02)
    raise AssertionError(f"no status on {path}")


def test_a_list_comes_in_pages_that_continue_where_the_last_ended(server):
    api = server.api()
    names = [f"m{i}" for i in range(5)]
    for name in names:
        api.put(f"/models/{name}", json=resource("Model", name, handler="a:b"))
    seen, params = [], {"limit": 2}
    while True:
        page = api.get("/models", params=params).json()
        seen += [i["metadata"]["name"] for i in page["items"]]
        if not page["metadata"]["continue"]:
            break
        params["continue"] = page["metadata"]["continue"]
    assert seen == names
    bad = api.get("/models", params={"continue": "not-a-token"})
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "continue"
    from runyard.client import Client

    client = Client(server.url, server.token)
    client.page_size = 2  # three requests, following the continue tokens
    assert [m.metadata.name for m in client.list("models")] == names
