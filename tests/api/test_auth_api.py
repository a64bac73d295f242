"""Authorization over HTTP: one dependency on every route, roles, project scope, tokens and projects."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator

import httpx
import pytest
from tests.support import API, ServerProcess, experiment, resource

ADMIN_ONLY = {
    ("POST", "/projects"),
    ("GET", "/tokens"),
    ("POST", "/tokens"),
    ("DELETE", "/tokens/{token_id}"),
    ("GET", "/scheduler"),
}
# GETs only writers may make
SECRET_READS = {
    ("GET", "/projects/{project}/jobs/{name}/webhook-secret"),
    ("GET", "/projects/{project}/models/{name}/keys"),
}
FILL = {"plural": "experiments", "name": "walk", "digest": "0" * 64, "token_id": "nope", "path": "default/x"}
MLFLOW = ("/api/2.0/mlflow", "/api/3.0/mlflow")  # MLflow's paths answer errors in MLflow's format
MLFLOW_READS = {"/api/2.0/mlflow/experiments/search", "/api/2.0/mlflow/runs/search"}  # POSTs that only read
MLFLOW_READS.add("/api/2.0/mlflow/logged-models/search")
MLFLOW_READS.add("/api/2.0/mlflow/registered-models/get-latest-versions")  # MLflow's client POSTs it


@pytest.fixture
def run_token(server: ServerProcess) -> Iterator[str]:
    """The token of a run of project default, taken while the run still runs (it is revoked at the end)."""
    api = server.api()
    api.put("/experiments/holder", json=experiment("holder", 'echo "$RUNYARD_TOKEN"; exec sleep 600'))
    with api.stream("GET", "/runs/holder/logs", params={"follow": "true"}, timeout=30) as resp:
        first = json.loads(next(resp.iter_lines()))
    assert first.get("stream") == "stdout", first
    yield first["text"]
    api.post("/runs/holder/stop")


def new_token(server: ServerProcess, role: str, project: str | None = "default") -> dict:
    r = httpx.post(
        server.url + API + "/tokens",
        json={"name": f"a {role}", "role": role, "project": project},
        headers={"Authorization": f"Bearer {server.token}"},
    )
    assert r.status_code == 201, r.text
    return r.json()


def routes(server: ServerProcess) -> list[tuple[str, str, dict]]:
    doc = httpx.get(server.url + "/openapi.json").json()
    return [(m.upper(), path, op) for path, ops in doc["paths"].items() for m, op in ops.items()]


def call(server: ServerProcess, method: str, path: str, project: str, token: str | None) -> httpx.Response:
    url = re.sub(r"\{(\w+)(:path)?\}", lambda m: project if m[1] == "project" else FILL.get(m[1], "x"), path)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.request(method, server.url + url, headers=headers, timeout=30)


def test_every_route_refuses_exactly_whom_it_should(server, run_token):
    viewer = new_token(server, "viewer")["token"]
    walked = routes(server)
    assert len(walked) > 15
    for method, path, op in walked:
        if path == "/healthz":
            assert "security" not in op
            continue
        where = f"{method} {path}"
        assert op.get("security"), f"{where} declares no bearer security"
        short = path.removeprefix(API)
        scoped = "{project}" in path
        mlflow = path.startswith(MLFLOW)
        anon = call(server, method, path, "default", None)
        assert anon.status_code == 401, where
        assert anon.headers["www-authenticate"].startswith("Bearer"), where
        code = anon.json()["error_code"] if mlflow else anon.json()["error"]["code"]
        assert code == ("UNAUTHENTICATED" if mlflow else "Unauthorized"), where

        admin = call(server, method, path, "default", server.token)
        assert admin.status_code not in (401, 403), (where, admin.text)

        other = call(server, method, path, "other", run_token)
        if scoped or (method, short) in ADMIN_ONLY:
            assert other.status_code == 403, (where, other.text)
            assert other.json()["error"]["code"] == "Forbidden", where
        else:
            assert other.status_code not in (401, 403), (where, other.text)

        seen = call(server, method, path, "default", viewer)
        if (method == "GET" or path in MLFLOW_READS) and (method, short) not in ADMIN_ONLY | SECRET_READS:
            assert seen.status_code not in (401, 403), (where, seen.text)
        else:
            assert seen.status_code == 403, (where, seen.text)


def test_a_run_token_is_limited_to_its_project(server, run_token):
    assert run_token.startswith("ryd_") and run_token != server.token
    mine = server.api(run_token)
    assert mine.get("/experiments").status_code == 200
    assert mine.put("/sessions/s", json=resource("Session", "s")).status_code == 201
    other = httpx.get(
        server.url + API + "/projects/other/experiments", headers={"Authorization": f"Bearer {run_token}"}
    )
    assert other.status_code == 403
    assert "default" in other.json()["error"]["message"]


def test_tokens_are_created_listed_and_revoked(server):
    admin = httpx.Client(base_url=server.url + API, headers={"Authorization": f"Bearer {server.token}"})
    made = admin.post("/tokens", json={"name": "ci", "role": "editor", "project": "default"})
    assert made.status_code == 201
    doc = made.json()
    assert (doc["name"], doc["role"], doc["project"]) == ("ci", "editor", "default")
    assert doc["token"].startswith("ryd_") and doc["createdAt"]
    editor = server.api(doc["token"])
    assert editor.put("/models/m", json=resource("Model", "m", handler="a:b")).status_code == 201
    assert httpx.get(server.url + API + "/tokens", headers=editor.headers).status_code == 403

    listed = {t["id"]: t for t in admin.get("/tokens").json()["items"]}
    assert listed[doc["id"]] == {k: v for k, v in doc.items() if k != "token"} | {"revoked": False}
    assert all("token" not in t and "secretHash" not in t for t in listed.values())

    revoked = admin.delete(f"/tokens/{doc['id']}")
    assert revoked.status_code == 200 and revoked.json()["revoked"] is True
    assert editor.get("/models").status_code == 401
    assert admin.delete("/tokens/0123456789abcdef").status_code == 404


def test_a_token_request_is_validated(server):
    admin = httpx.Client(base_url=server.url + API, headers={"Authorization": f"Bearer {server.token}"})
    cases = {
        "role": {"name": "x", "role": "owner"},
        "name": {"name": "", "role": "viewer"},
        "project": {"name": "x", "role": "viewer", "project": "nowhere"},
    }
    for field, body in cases.items():
        r = admin.post("/tokens", json=body)
        assert r.status_code == 422, (field, r.text)
        assert r.json()["error"]["details"][0]["field"] == field


def test_a_project_is_created_once_then_conflicts(server):
    admin = httpx.Client(base_url=server.url + API, headers={"Authorization": f"Bearer {server.token}"})
    first = admin.post("/projects", json={"name": "vision"})
    assert first.status_code == 201 and first.json()["name"] == "vision"
    again = admin.post("/projects", json={"name": "vision"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "Conflict"
    items = admin.get("/projects").json()["items"]
    assert [p["name"] for p in items] == ["default", "vision"]
    assert all(p["createdAt"] for p in items)
    bad = admin.post("/projects", json={"name": "Bad_Name"})
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "name"
    scoped = new_token(server, "viewer", "vision")["token"]
    seen = httpx.get(server.url + API + "/projects", headers={"Authorization": f"Bearer {scoped}"})
    assert [p["name"] for p in seen.json()["items"]] == ["vision"]


def test_a_resource_may_only_name_a_snapshot_of_its_own_project(server):
    api = server.api()
    content = b"print('mine')\n"
    digest = hashlib.sha256(content).hexdigest()
    manifest = {"files": {"train.py": {"sha256": digest, "size": len(content), "mode": 0o644}}}
    api.post("/snapshots", json=manifest)
    assert api.put(f"/blobs/{digest}", content=content).status_code == 201
    snap = api.post("/snapshots", json=manifest).json()["id"]
    other = httpx.Client(base_url=server.url + API + "/projects/other", headers=api.headers)

    r = other.put("/experiments/steal", json=experiment("steal", "cat train.py", snapshot=snap))
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["field"] == "spec.snapshot"
    job = resource("Job", "steal", template={"command": "cat train.py", "snapshot": snap})
    r = other.put("/jobs/steal", json=job)
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["field"] == "spec.template.snapshot"

    assert other.post("/snapshots", json=manifest).json() == {"id": snap, "missing": [digest]}
    assert other.put(f"/blobs/{digest}", content=content).status_code == 201
    assert other.post("/snapshots", json=manifest).json() == {"id": snap, "missing": []}
    assert (
        other.put("/experiments/mine", json=experiment("mine", "cat train.py", snapshot=snap)).status_code
        == 201
    )
    assert (
        api.put("/experiments/mine", json=experiment("mine", "cat train.py", snapshot=snap)).status_code
        == 201
    )


def test_the_last_working_admin_token_cannot_be_revoked(server):
    admin = httpx.Client(base_url=server.url + API, headers={"Authorization": f"Bearer {server.token}"})
    (first,) = [t for t in admin.get("/tokens").json()["items"] if t["role"] == "admin"]
    locked_out = admin.delete(f"/tokens/{first['id']}")
    assert locked_out.status_code == 409 and "only admin token" in locked_out.json()["error"]["message"]
    second = new_token(server, "admin", None)
    assert admin.delete(f"/tokens/{first['id']}").status_code == 200
    assert admin.get("/whoami").status_code == 401
    headers = {"Authorization": f"Bearer {second['token']}"}
    assert httpx.get(server.url + API + "/whoami", headers=headers).json()["role"] == "admin"
