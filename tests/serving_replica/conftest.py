from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.serving_replica.replica_support import HANDLERS, AccessServer


@pytest.fixture
def access() -> Iterator[AccessServer]:
    server = AccessServer()
    yield server
    server.close()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """The model's listening socket, as the server holds it."""
    with socket.create_server(("127.0.0.1", 0), backlog=1024) as sock:
        yield sock


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "handlers.py").write_text(HANDLERS)
    return tmp_path
