"""The registry's REST API as any HTTP client sees it: each project a registry of its own, roles, and
errors in MLflow's shape that name the field and the reason."""

from __future__ import annotations

import httpx
import pytest
from tests.support import ServerProcess


def _run_in(srv: ServerProcess, token: str) -> str:
    """A tracked run of the token's project, made through the MLflow API."""
    http = httpx.Client(base_url=srv.url + "/api/2.0/mlflow", headers={"Authorization": f"Bearer {token}"})
    with http:
        r = http.post("/runs/create", json={"experiment_id": "0"})
        assert r.status_code == 200, r.text
        return r.json()["run"]["info"]["run_id"]


def _error(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error_code"] == code, body
    return body["message"]


def test_each_project_has_its_own_registry(registry_server, registry_http, project_token, unique):
    a = registry_http(registry_server, project_token(registry_server, unique("pa")))
    b = registry_http(registry_server, project_token(registry_server, unique("pb")))
    name = unique("shared-name")
    assert a.post("/registered-models/create", json={"name": name}).status_code == 200
    _error(b.get("/registered-models/get", params={"name": name}), 404, "RESOURCE_DOES_NOT_EXIST")
    assert b.get("/registered-models/search").json() == {"registered_models": []}
    assert b.post("/registered-models/create", json={"name": name, "description": "b's"}).status_code == 200
    got = a.get("/registered-models/get", params={"name": name}).json()["registered_model"]
    assert got["name"] == name and "description" not in got


def test_a_version_cannot_come_from_another_projects_run(
    registry_server, registry_http, project_token, unique
):
    token_a, token_b = (project_token(registry_server, unique(p)) for p in ("ra", "rb"))
    foreign_run = _run_in(registry_server, token_b)
    b = registry_http(registry_server, token_b)
    a = registry_http(registry_server, token_a)
    name = unique("guarded")
    a.post("/registered-models/create", json={"name": name})
    r = a.post("/model-versions/create", json={"name": name, "source": f"runs:/{foreign_run}/model"})
    assert "project" in _error(r, 400, "INVALID_PARAMETER_VALUE")
    r = a.post("/model-versions/create", json={"name": name, "source": "file:///x", "run_id": foreign_run})
    _error(r, 400, "INVALID_PARAMETER_VALUE")
    b.post("/registered-models/create", json={"name": name})
    r = b.post("/model-versions/create", json={"name": name, "source": f"runs:/{foreign_run}/model"})
    assert r.status_code == 200 and r.json()["model_version"]["run_id"] == foreign_run


def test_roles_and_credentials(registry_server, registry_http, project_token, unique):
    project = unique("roles")
    viewer = registry_http(registry_server, project_token(registry_server, project, "viewer"))
    editor = registry_http(registry_server, project_token(registry_server, project))
    name = unique("m")
    _error(viewer.post("/registered-models/create", json={"name": name}), 403, "PERMISSION_DENIED")
    assert editor.post("/registered-models/create", json={"name": name}).status_code == 200
    assert viewer.get("/registered-models/get", params={"name": name}).status_code == 200
    r = httpx.get(registry_server.url + "/api/2.0/mlflow/registered-models/get", params={"name": name})
    _error(r, 401, "UNAUTHENTICATED")


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("post", "/registered-models/create", {}, "name"),
        ("post", "/registered-models/create", {"name": "a/b"}, "name"),
        ("post", "/registered-models/create", {"name": "ok", "tags": [{"value": "v"}]}, "tags[0].key"),
        ("post", "/model-versions/create", {"name": "x"}, "source"),
        ("get", "/model-versions/get", {"name": "x", "version": "one"}, "version"),
        ("post", "/registered-models/alias", {"name": "x", "alias": "v2", "version": "1"}, "alias"),
        ("post", "/model-versions/transition-stage", {"name": "x", "version": "1", "stage": "Live"}, "stage"),
        ("get", "/registered-models/search", {"filter": "name = 'a' OR name = 'b'"}, "filter"),
        ("get", "/registered-models/search", {"filter": "owner = 'a'"}, "filter"),
        ("get", "/registered-models/search", {"order_by": "size DESC"}, "order_by"),
        ("get", "/model-versions/search", {"max_results": "0"}, "max_results"),
        ("get", "/model-versions/search", {"page_token": "nope"}, "page_token"),
    ],
)
def test_invalid_requests_name_the_field(registry_server, registry_http, method, path, body, field):
    http = registry_http(registry_server)
    http.post("/registered-models/create", json={"name": "x"})  # exists for the version checks
    kwargs = {"params": body} if method == "get" else {"json": body}
    message = _error(getattr(http, method)(path, **kwargs), 400, "INVALID_PARAMETER_VALUE")
    assert field in message


def test_a_body_that_is_not_json_is_bad_request(registry_server, registry_http):
    r = registry_http(registry_server).post("/registered-models/create", content=b"{nope")
    assert "body" in _error(r, 400, "BAD_REQUEST")


def test_versions_are_numbered_once_under_concurrent_registration(both_servers, registry_http, unique):
    from concurrent.futures import ThreadPoolExecutor

    http = registry_http(both_servers)
    name = unique("busy")
    http.post("/registered-models/create", json={"name": name})

    def register(i: int) -> str:
        r = http.post("/model-versions/create", json={"name": name, "source": f"file:///models/{i}"})
        assert r.status_code == 200, r.text
        return r.json()["model_version"]["version"]

    with ThreadPoolExecutor(8) as pool:
        numbers = sorted(int(v) for v in pool.map(register, range(24)))
    assert numbers == list(range(1, 25))
    latest = http.post("/registered-models/get-latest-versions", json={"name": name}).json()
    assert [v["version"] for v in latest["model_versions"]] == ["24"]
