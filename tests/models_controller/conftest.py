"""The real server the Model tests drive: one per test, with the serving settings of serving_support."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.models_controller.serving_support import start_server
from tests.support import ServerProcess


@pytest.fixture
def server(tmp_path) -> Iterator[ServerProcess]:
    srv = start_server(tmp_path / "home")
    yield srv
    srv.stop()
