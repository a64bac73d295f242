"""Kinds whose controllers come later (Session, Job, Model): their status says so, and a delete removes
them, through a real server. The controller's resync only looks at the new and the deleted ones."""

from __future__ import annotations

import time

import pytest
from tests.support import ServerProcess, resource


@pytest.fixture
def server(tmp_path):
    srv = ServerProcess(tmp_path / "home").start()
    yield srv
    srv.stop()


def _until(check, what: str, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_job_gets_a_status_that_says_nothing_runs_and_a_delete_removes_it(server):
    api = server.api()
    doc = resource("Job", "nightly", schedule="0 3 * * *", template={"command": "true"})
    assert api.put("/jobs/nightly", json=doc).status_code == 201
    status = _until(
        lambda: (
            api.get("/jobs/nightly").json()["status"].get("reason") == "ControllerNotAvailable"
            and api.get("/jobs/nightly").json()["status"]
        ),
        "the job never got its status",
    )
    assert status["phase"] == "Pending" and "no Job controller yet" in status["message"]
    assert api.delete("/jobs/nightly").status_code == 200
    _until(lambda: api.get("/jobs/nightly").status_code == 404, "the deleted job is still there")
