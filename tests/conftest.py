"""Shared fixtures: store URLs for SQLite and a real PostgreSQL, and a real server process on loopback."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest


def postgres_url() -> str:
    url = os.environ.get("RUNYARD_TEST_POSTGRES_URL")
    if not url:
        pytest.fail(
            "RUNYARD_TEST_POSTGRES_URL is not set: run `bash scripts/test.sh`, which starts PostgreSQL"
        )
    return url


def fresh_postgres_database() -> str:
    """A new, empty database on the test server, so tests never see each other's rows."""
    import psycopg

    base = postgres_url()
    name = "ry_" + uuid.uuid4().hex[:12]
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return base.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'runyard.db'}"
    return fresh_postgres_database()


from tests.support import ServerProcess  # noqa: E402


@pytest.fixture(params=["sqlite", "postgres"])
def server(request, tmp_path) -> Iterator[ServerProcess]:
    """A real server, once on SQLite (the embedded default) and once on PostgreSQL."""
    store_url = fresh_postgres_database() if request.param == "postgres" else None
    srv = ServerProcess(tmp_path / "home", store_url).start()
    yield srv
    srv.stop()


@pytest.fixture
def server_factory(tmp_path) -> Iterator:
    started: list[ServerProcess] = []

    def make(store_url: str | None = None, home: Path | None = None) -> ServerProcess:
        srv = ServerProcess(home or tmp_path / f"home{len(started)}", store_url).start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()
