"""The SDK tests' fixtures: one real server per module (SQLite), and scripts run as users run them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.support import ServerProcess

import runyard

PACKAGE_ROOT = str(Path(runyard.__file__).resolve().parents[1])


@pytest.fixture(scope="module")
def srv(tmp_path_factory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("sdk") / "home").start()
    yield server
    server.stop()


def script_env(server: ServerProcess | None = None, **extra: str) -> dict[str, str]:
    """A user's environment outside any run: no runyard variables unless given, the package importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNYARD_", "MLFLOW_"))}
    env["PYTHONPATH"] = PACKAGE_ROOT
    if server is not None:
        env.update(RUNYARD_API_URL=server.url, RUNYARD_TOKEN=server.token)
    return {**env, **extra}


def python(code: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout
    )


def history(api: httpx.Client, run: str, key: str) -> list[dict]:
    resp = api.get(f"/runs/{run}/metrics/{key}")
    assert resp.status_code == 200, resp.text
    return resp.json()["metrics"]
