"""Fixtures shared by the conftests of the tests that drive the real mlflow client (tests/mlflow and
tests/registry): each conftest imports the ones it uses."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import httpx
import mlflow.tracking.fluent as fluent
import pytest
from tests.support import API, ServerProcess

import mlflow

MLFLOW_API = "/api/2.0/mlflow"


@pytest.fixture
def use_server(monkeypatch) -> Iterator[Callable[..., None]]:
    """use_server(srv, token=None) points the mlflow client at srv as users do, through its environment
    (the admin's token by default; token "" sends none). The client's global state (active runs,
    experiment) is reset after the test."""

    def point(srv: ServerProcess, token: str | None = None) -> None:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", srv.url)
        if token == "":
            monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
        else:
            monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token or srv.token)

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # an error is raised at once, not retried
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.setattr(fluent, "_active_experiment_id", None)
    yield point
    while mlflow.active_run():
        mlflow.end_run()
    # mlflow.set_experiment and start_run write these into os.environ themselves, where monkeypatch (which
    # saw them absent) would leave them for the next test of this worker and its children.
    for name in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME"):
        os.environ.pop(name, None)


@pytest.fixture
def unique() -> Callable[[str], str]:
    """unique(prefix): a name no other test of the shared server uses."""
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
def mlflow_http() -> Iterator[Callable[..., httpx.Client]]:
    """mlflow_http(srv, token=None): raw HTTP to the MLflow paths, as any REST client calls them (the
    admin's token by default; token "" sends none)."""
    opened: list[httpx.Client] = []

    def connect(srv: ServerProcess, token: str | None = None) -> httpx.Client:
        headers = {} if token == "" else {"Authorization": f"Bearer {token or srv.token}"}
        opened.append(httpx.Client(base_url=srv.url + MLFLOW_API, headers=headers, timeout=30))
        return opened[-1]

    yield connect
    for client in opened:
        client.close()
