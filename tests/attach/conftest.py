"""One real server for the attach tests, with one sandboxed Experiment left running, and a websocket
terminal client speaking the attach protocol (services/pty_bridge.py)."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator

import pytest
from tests.support import API, ServerProcess, experiment, until, wait_phase
from websockets.sync.client import ClientConnection, connect

# The run's command: a marker in its private /tmp, then a sleep that shows in `ps` as a low pid.
RUN_COMMAND = "echo started > /tmp/run-marker; exec sleep 86400"


@pytest.fixture(scope="module")
def srv(tmp_path_factory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("attach") / "home").start()
    yield srv
    srv.api().post("/runs/busy/stop")
    srv.stop()


@pytest.fixture(scope="module")
def busy(srv) -> str:
    """A running Experiment, sandboxed (status.sandbox says so)."""
    api = srv.api()
    assert api.put("/experiments/busy", json=experiment("busy", RUN_COMMAND)).status_code == 201
    wait_phase(api, "busy", {"Running"}, timeout=60)
    status = until(lambda: api.get("/runs/busy").json()["status"].get("sandbox"), "the run's sandbox noted")
    assert status["mechanism"] == "bubblewrap", status
    return "busy"


def attach_url(server: ServerProcess, run: str, **params) -> str:
    query = urllib.parse.urlencode(params, doseq=True)
    return f"{server.url.replace('http', 'ws', 1)}{API}/projects/default/runs/{run}/attach?{query}"


class Terminal:
    """A client of the attach websocket: keystrokes in, output collected, the exit frame noted."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws, self.output, self.exit_code = ws, b"", None

    def type(self, text: str) -> None:
        self.ws.send(text.encode())

    def resize(self, cols: int, rows: int) -> None:
        self.ws.send(json.dumps({"type": "resize", "cols": cols, "rows": rows}))

    def expect(self, needle: str, timeout: float = 20) -> str:
        """Read until `needle` is in the output (since the last expect); the output up to it."""
        while needle.encode() not in self.output:
            self._recv(timeout)
        before, _, self.output = self.output.partition(needle.encode())
        return before.decode(errors="replace")

    def wait_exit(self, timeout: float = 20) -> int:
        while self.exit_code is None:
            self._recv(timeout)
        return self.exit_code

    def _recv(self, timeout: float) -> None:
        message = self.ws.recv(timeout=timeout)  # TimeoutError: the test fails saying what it waited for
        if isinstance(message, bytes):
            self.output += message
        else:
            doc = json.loads(message)
            assert doc["type"] == "exit", doc
            self.exit_code = doc["code"]


@pytest.fixture
def terminal(srv, busy) -> Iterator:
    """Open a terminal on the busy run: terminal(**query) -> Terminal (closed after the test)."""
    opened: list[ClientConnection] = []

    def open_(token: str | None = None, **params) -> Terminal:
        headers = {"Authorization": f"Bearer {token or srv.token}"}
        ws = connect(attach_url(srv, busy, **params), additional_headers=headers, proxy=None, legacy=True)
        opened.append(ws)
        return Terminal(ws)

    yield open_
    for ws in opened:
        ws.close()
