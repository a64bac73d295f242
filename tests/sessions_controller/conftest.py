"""One real server per Session test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.support import ServerProcess


@pytest.fixture
def server(tmp_path) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path / "home").start()
    yield srv
    srv.stop()
