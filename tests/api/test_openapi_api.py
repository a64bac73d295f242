"""The API's edges: bodies that cannot be parsed, 410 Gone for a watch too far behind, and an OpenAPI
document a generated client can use (error responses, a typed schema per kind)."""

from __future__ import annotations

from datetime import timedelta

import httpx
from tests.support import API, experiment

from runyard.store import Store

JSON = {"Content-Type": "application/json"}


def test_bodies_that_cannot_be_parsed_are_422_in_the_error_format(server):
    api = server.api()
    for body in (b'{"apiVersion": "\xff\xfe"}', b"[" * 100_000 + b"]" * 100_000, b"\x00\x01"):
        r = api.post("/experiments", content=body, headers=JSON)
        assert r.status_code == 422, (body[:10], r.text)
        detail = r.json()["error"]["details"][0]
        assert detail["field"] == "(body)" and "JSON" in detail["reason"]
    for depth in (900, 990):  # at the parser's limit: refused while parsing or after, never a 500
        deep = b'{"apiVersion": "runyard.dev/v1", "kind": "Experiment", "spec": {"x": ' + b"[" * depth
        r = api.post("/experiments", content=deep + b"]" * depth + b"}}", headers=JSON)
        assert r.status_code == 422 and r.json()["error"]["code"] == "Invalid", depth
    r = api.post("/runs", json={"kind": "Run"})
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "plural"
    r = api.get("/widgets")
    assert r.status_code == 422 and "experiments" in r.json()["error"]["details"][0]["reason"]
    r = httpx.get(server.url + API + "/nowhere", headers=api.headers)
    assert r.status_code == 404 and r.json()["error"]["code"] == "NotFound"
    r = httpx.request("TRACE", server.url + API + "/tokens", headers=api.headers)
    assert r.status_code == 405 and "POST" in r.headers["allow"]
    assert r.json()["error"]["message"] == "Method Not Allowed"


def test_a_watch_from_a_revision_no_longer_kept_gets_410_gone(server):
    api = server.api()
    api.put("/experiments/old", json=experiment("old", "true"))
    api.put("/experiments/newer", json=experiment("newer", "true"))
    store = Store(server.store_url or f"sqlite:///{server.home / 'runyard.db'}", migrate=False)
    try:
        store.prune_changes(keep=timedelta(0))  # what the controller does after KEEP_CHANGES
    finally:
        store.close()
    api.put("/experiments/latest", json=experiment("latest", "true"))
    r = api.get("/experiments", params={"watch": "true", "since": 1})
    assert r.status_code == 410
    assert r.json()["error"]["code"] == "Gone" and "list again" in r.json()["error"]["message"]


def test_the_openapi_document_types_every_kind_and_every_error(server):
    doc = httpx.get(server.url + "/openapi.json").json()
    schemas = doc["components"]["schemas"]
    assert {"Experiment", "Job", "Model", "Session", "Run", "ExperimentList", "ErrorBody"} <= set(schemas)
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            if path == "/healthz":
                continue
            mlflow = path.startswith(("/api/2.0/mlflow", "/api/3.0/mlflow"))  # MLflow's own error body
            body = "MlflowErrorBody" if mlflow else "ErrorBody"
            for code in ("400", "401", "403", "404") if mlflow else ("401", "403", "404", "409", "422"):
                ref = op["responses"][code]["content"]["application/json"]["schema"]["$ref"]
                assert ref == f"#/components/schemas/{body}", (method, path, code)
    base = API + "/projects/{project}"
    for kind, plural in [("Experiment", "experiments"), ("Job", "jobs"), ("Model", "models")]:
        create = doc["paths"][f"{base}/{plural}"]["post"]
        assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/" + kind)
        assert create["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith(
            "/" + kind
        )
        listed = doc["paths"][f"{base}/{plural}"]["get"]["responses"]["200"]["content"]["application/json"]
        assert listed["schema"]["$ref"].endswith(f"/{kind}List")
    assert "post" not in doc["paths"][f"{base}/runs"]
    assert not any("{plural}" in p for p in doc["paths"])
