"""What the Session tests share: waiting for a phase, and reaching a session's Jupyter directly (the proxy
has its own tests), on its loopback port with the token the server derives for its run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from tests.support import ServerProcess, until

from runyard.services.session_secrets import jupyter_token, load_key


def session_status(api: httpx.Client, name: str) -> dict:
    return api.get(f"/sessions/{name}").json()["status"]


def wait_session(api: httpx.Client, name: str, phase: str, timeout: float = 60) -> dict:
    return until(
        lambda: (st := session_status(api, name)).get("phase") == phase and st,
        f"session {name} {phase}",
        timeout,
    )


def jupyter(srv: ServerProcess, status: dict) -> httpx.Client:
    """A client of the session's Jupyter server itself, at its base URL."""
    token = jupyter_token(load_key(srv.home), status["runUid"])
    base = f"http://127.0.0.1:{status['port']}{urlsplit(status['url']).path}"
    return httpx.Client(base_url=base, headers={"Authorization": f"token {token}"}, timeout=10)


def events(api: httpx.Client, name: str) -> list[str]:
    return [e["reason"] for e in api.get(f"/sessions/{name}/events").json()["items"]]


def cli(srv: ServerProcess, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "runyard", *args],
        env=srv.env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def kill_session_process(srv: ServerProcess, api: httpx.Client, status: dict) -> None:
    """SIGKILL the session's Jupyter (its whole sandbox), as if it had crashed."""
    run = api.get(f"/runs/{status['run']}").json()
    state = json.loads(Path(run["status"]["attempts"][-1]["handle"]["dir"], "state.json").read_text())
    os.killpg(state.get("sandbox_pid") or state["child_pid"], signal.SIGKILL)
