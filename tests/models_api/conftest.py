"""One real server per module for the model API tests (SQLite; the keys lifecycle runs on PostgreSQL too)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.support import ServerProcess


@pytest.fixture(scope="module")
def srv(tmp_path_factory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("models-api") / "home").start()
    yield server
    server.stop()
