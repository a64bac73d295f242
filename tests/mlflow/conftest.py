"""The real mlflow client against a real runyard server: one server per module (tests name what they
create uniquely, so they share it), on SQLite, and on PostgreSQL for the tests marked postgres."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.mlflow_fixtures import mlflow_http, project_token, unique, use_server
from tests.support import ServerProcess, fresh_postgres_database

__all__ = ["mlflow_http", "project_token", "unique", "use_server"]  # the shared fixtures, used here


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("mlflow") / "home").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def pg_tracking_server(tmp_path_factory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("mlflow-pg") / "home", fresh_postgres_database()).start()
    yield srv
    srv.stop()
