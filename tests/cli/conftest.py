"""The CLI tests' fixtures: one real server per module, and a project directory per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.cli.helpers import Server


@pytest.fixture(scope="module")
def srv(tmp_path_factory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("cli") / "home").start()
    yield server
    server.stop()


@pytest.fixture
def project(tmp_path) -> Path:
    """A project directory with a data file and a git-ignored secret."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "data.txt").write_text("the data\n")
    (root / ".gitignore").write_text("secret.txt\n")
    (root / "secret.txt").write_text("do not upload\n")
    return root
