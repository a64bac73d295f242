"""A real runyard server per module, on SQLite and on PostgreSQL (tests name what they create uniquely, so
they share it), the real mlflow client pointed at it as users do, and the store itself."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import httpx
import mlflow.tracking.fluent as fluent
import pytest
from tests.support import API, ServerProcess, fresh_postgres_database

import mlflow
from runyard.store import Store

MLFLOW_API = "/api/2.0/mlflow"


@pytest.fixture(scope="module")
def registry_server(tmp_path_factory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("registry") / "home").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def pg_registry_server(tmp_path_factory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("registry-pg") / "home", fresh_postgres_database()).start()
    yield srv
    srv.stop()


@pytest.fixture(params=["registry_server", "pg_registry_server"])
def both_servers(request) -> ServerProcess:
    """The test runs once against each of the two servers."""
    return request.getfixturevalue(request.param)


@pytest.fixture
def store(store_url) -> Iterator[Store]:
    """The store itself, on SQLite and on PostgreSQL (store_url is parametrized)."""
    s = Store(store_url)
    yield s
    s.close()


@pytest.fixture
def use_server(monkeypatch) -> Iterator[Callable[..., None]]:
    """use_server(srv, token=None): the mlflow client talks to srv with that token (the admin's by default);
    its global state (active runs, experiment) is reset after the test."""

    def point(srv: ServerProcess, token: str | None = None) -> None:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", srv.url)
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token or srv.token)

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # an error is raised at once, not retried
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.setattr(fluent, "_active_experiment_id", None)
    yield point
    while mlflow.active_run():
        mlflow.end_run()


@pytest.fixture
def unique() -> Callable[[str], str]:
    return lambda prefix: f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def project_token() -> Callable[..., str]:
    """project_token(srv, project, role="editor"): a new token bound to `project` (made if missing)."""

    def make(srv: ServerProcess, project: str, role: str = "editor") -> str:
        headers = {"Authorization": f"Bearer {srv.token}"}
        httpx.post(srv.url + API + "/projects", json={"name": project}, headers=headers)  # 409: it exists
        doc = {"name": f"{project}-{role}-{uuid.uuid4().hex[:6]}", "role": role, "project": project}
        r = httpx.post(srv.url + API + "/tokens", json=doc, headers=headers)
        assert r.status_code == 201, r.text
        return r.json()["token"]

    return make


@pytest.fixture
def registry_http() -> Iterator[Callable[..., httpx.Client]]:
    """registry_http(srv, token=None): raw HTTP to the MLflow paths, as any REST client calls them."""
    opened: list[httpx.Client] = []

    def connect(srv: ServerProcess, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or srv.token}"}
        opened.append(httpx.Client(base_url=srv.url + MLFLOW_API, headers=headers, timeout=30))
        return opened[-1]

    yield connect
    for client in opened:
        client.close()
