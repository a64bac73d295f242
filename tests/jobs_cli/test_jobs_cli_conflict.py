"""`runyard jobs suspend` when the job changes between its read and its write (the controller writes its
status all the time): the write is refused with a stale resourceVersion, and the command reads the job again
and retries. A real server's timing cannot be made to lose that race on demand, so a scripted HTTP server
answers the first write with the server's 409."""

from __future__ import annotations

from click.testing import CliRunner
from tests.cli.helpers import ScriptedServers

from runyard.cli.main import app

PATH = "/apis/runyard.dev/v1/projects/default/jobs/nightly"


def test_suspend_reads_again_and_retries_after_a_conflict():
    version = {"n": 7}
    calls: list[tuple[str, int]] = []

    def job() -> dict:
        meta = {"name": "nightly", "project": "default", "resourceVersion": version["n"]}
        spec = {"schedule": "@daily", "suspend": False, "template": {"command": "true"}}
        return {"apiVersion": "runyard.dev/v1", "kind": "Job", "metadata": meta, "spec": spec}

    def answer(method: str, path: str, headers: dict) -> tuple[int, dict]:
        assert path == PATH, path
        calls.append((method, version["n"]))
        if method == "GET":
            return 200, job()
        if calls.count(("PUT", 7)) == 1 and version["n"] == 7:  # the controller wrote the status meanwhile
            version["n"] += 1
            error = {"code": "Conflict", "message": "Job 'nightly' has changed since you read it"}
            return 409, {"error": error}
        stored = job()
        stored["spec"]["suspend"] = True
        return 200, stored

    with ScriptedServers() as start:
        result = CliRunner().invoke(
            app, ["--url", start(answer), "--token", "t", "jobs", "suspend", "nightly"]
        )
    assert result.exit_code == 0, result.output
    assert result.stdout == "job/nightly suspended\n"
    assert calls == [("GET", 7), ("PUT", 7), ("GET", 8), ("PUT", 8)]  # read again after the conflict
