"""`runyard session stop` and `session start` of an existing session when the session changes between the
command's read and its write (the controller writes its status and annotations while it works): the write
is refused with a stale resourceVersion, and the command reads the session again and retries. CI once lost
this race (`session stop` exited 1 with "read it again and retry"); a real server's timing cannot be made
to lose it on demand, so a scripted HTTP server answers the first write with the server's 409."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from tests.cli.helpers import ScriptedServers

from runyard.cli.main import app

PATH = "/apis/runyard.dev/v1/projects/default/sessions/nb"


@pytest.mark.parametrize(("command", "stopped"), [("stop", True), ("start", False)])
def test_a_session_written_meanwhile_is_read_again_and_the_change_retried(command, stopped):
    version = {"n": 4}
    calls: list[tuple[str, int]] = []
    written: list[dict] = []

    def session() -> dict:
        meta = {"name": "nb", "project": "default", "resourceVersion": version["n"], "generation": 2}
        spec = {"editor": "jupyterlab", "stopped": not stopped, "snapshot": "s-1"}
        status = {"phase": "Stopped" if not stopped else "Running", "observedGeneration": 2}
        return {
            "apiVersion": "runyard.dev/v1",
            "kind": "Session",
            "metadata": meta,
            "spec": spec,
            "status": status,
        }

    def answer(method: str, path: str, headers: dict) -> tuple[int, dict]:
        assert path == PATH, path
        calls.append((method, version["n"]))
        if method == "GET":
            return 200, session()
        if version["n"] == 4:  # the controller wrote the session meanwhile
            version["n"] += 1
            return 409, {"error": {"code": "Conflict", "message": "Session 'nb' was modified"}}
        stored = session()
        stored["spec"]["stopped"] = stopped
        written.append(stored)
        return 200, stored

    with ScriptedServers() as start:
        url = start(answer)
        result = CliRunner().invoke(
            app, ["--url", url, "--token", "t", "session", command, "nb", "--no-wait"]
        )
    assert result.exit_code == 0, result.output
    assert calls == [("GET", 4), ("PUT", 4), ("GET", 5), ("PUT", 5)]  # read again after the conflict
    assert [doc["spec"]["stopped"] for doc in written] == [stopped]
