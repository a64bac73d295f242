"""Kinds whose controllers come later (Session): their status says so, and a delete removes them, through a
real server. The controller's resync only looks at the new and the deleted ones."""

from __future__ import annotations

import pytest
from tests.support import ServerProcess, resource, until


@pytest.fixture
def server(tmp_path):
    srv = ServerProcess(tmp_path / "home").start()
    yield srv
    srv.stop()


def test_a_session_gets_a_status_that_says_nothing_runs_and_a_delete_removes_it(server):
    api = server.api()
    assert api.put("/sessions/notebook", json=resource("Session", "notebook")).status_code == 201
    status = until(
        lambda: (
            api.get("/sessions/notebook").json()["status"].get("reason") == "ControllerNotAvailable"
            and api.get("/sessions/notebook").json()["status"]
        ),
        "the session never got its status",
    )
    assert status["phase"] == "Pending" and "no Session controller yet" in status["message"]
    assert api.delete("/sessions/notebook").status_code == 200
    until(lambda: api.get("/sessions/notebook").status_code == 404, "the deleted session is still there")
