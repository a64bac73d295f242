"""Helpers of the environments tests: project files as a snapshot, and runs in them."""

from __future__ import annotations

import tempfile
from pathlib import Path

from tests.support import ServerProcess

from runyard.rest import Rest
from runyard.upload import upload_snapshot

TINY = "six==1.16.0\n"  # a pure-Python wheel: a build takes about a second
SHOW = "import six, sys; print('six', six.__version__, 'in', sys.prefix)"


def snapshot(server: ServerProcess, files: dict[str, str], project: str = "default") -> str:
    """Upload these files as a project's snapshot, as `runyard run` does; its id."""
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in files.items():
            (Path(tmp) / name).write_text(text)
        return upload_snapshot(Rest(server.url, server.token, project), Path(tmp))


def builds_of(server: ServerProcess, env_id: str) -> int:
    """How many times the server started building an environment (its log says so each time)."""
    return (server.home / "server.log").read_text().count(f"building environment {env_id}\n")
