"""Shared fixtures: store URLs for SQLite and a real PostgreSQL, and a real server process on loopback."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support import ServerProcess, fresh_postgres_database


def pytest_configure(config) -> None:
    """A shell without job control starts background commands with Ctrl-C ignored, and every process under
    them inherits that: the CLI these tests start would then never see the Ctrl-C they send it. Take it
    back, here and so in each process a test starts (in each xdist worker too)."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'runyard.db'}"
    return fresh_postgres_database()


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
