"""`Client.wait(name)` right after `runyard run -d` (or an Experiment's apply): the controller makes the
Experiment's run a moment later, and a wait that starts before then waits for it instead of failing with
NotFound (CI lost this race once). A real server's controller cannot be held back on demand, so a scripted
HTTP server answers as one that has not made the run yet."""

from __future__ import annotations

import pytest
from tests.cli.helpers import ScriptedServers

from runyard.core.errors import NotFound
from runyard.rest import Rest

RUNS, EXPERIMENTS = (
    "/apis/runyard.dev/v1/projects/default/runs/",
    "/apis/runyard.dev/v1/projects/default/experiments/",
)


def _missing(name: str) -> tuple[int, dict]:
    return 404, {"error": {"code": "NotFound", "message": f"{name} not found"}}


def test_a_wait_before_the_experiments_run_exists_waits_for_it():
    looks = {"runs": 0}

    def answer(method: str, path: str, headers: dict) -> tuple[int, dict]:
        if path == RUNS + "train":
            looks["runs"] += 1
            if looks["runs"] < 3:
                return _missing("run train")
            return 200, {"kind": "Run", "metadata": {"name": "train"}, "status": {"phase": "Succeeded"}}
        if path == EXPERIMENTS + "train":
            return 200, {"kind": "Experiment", "metadata": {"name": "train"}, "spec": {"command": "true"}}
        return _missing(path)

    with ScriptedServers() as start:
        rest = Rest(start(answer), token="t", project="default")
        assert rest.wait("train", timeout=10)["status"]["phase"] == "Succeeded"
        assert looks["runs"] == 3
        with pytest.raises(NotFound):  # neither a run nor an experiment: no wait
            rest.wait("nothing", timeout=10)
