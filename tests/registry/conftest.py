"""A real runyard server per module, on SQLite and on PostgreSQL (tests name what they create uniquely, so
they share it), the real mlflow client pointed at it as users do, and the store itself."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest
from tests.mlflow_fixtures import mlflow_http, project_token, unique, use_server
from tests.support import ServerProcess, fresh_postgres_database

from runyard.store import Store

__all__ = ["mlflow_http", "project_token", "unique", "use_server"]  # the shared fixtures, used here


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
def registry_http(mlflow_http) -> Callable[..., httpx.Client]:
    """registry_http(srv, token=None): raw HTTP to the MLflow paths, as any REST client calls them."""
    return mlflow_http
