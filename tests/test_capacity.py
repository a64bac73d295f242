"""Runs beyond the server's capacity wait in Queued, with a condition that says why, then start."""

from __future__ import annotations

from datetime import datetime

from tests.support import ServerProcess, experiment, wait_phase


def test_a_run_over_capacity_waits_queued_and_starts_when_a_slot_frees(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNYARD_CONTROLLER_MAX_RUNNING_RUNS", "1")
    srv = ServerProcess(tmp_path / "home").start()
    try:
        api = srv.api()
        api.put("/experiments/first", json=experiment("first", "sleep 1.5"))
        wait_phase(api, "first", {"Running"})
        api.put("/experiments/second", json=experiment("second", "echo second"))
        waiting = wait_phase(api, "second", {"Queued"})
        assert waiting["status"]["reason"] == "WaitingForCapacity"
        assert "limit is 1" in waiting["status"]["message"]
        assert api.get("/runs/first").json()["status"]["phase"] == "Running"
        done = wait_phase(api, "second", {"Succeeded"}, timeout=20)
        first = api.get("/runs/first").json()
        started = datetime.fromisoformat(done["status"]["startedAt"])
        assert started >= datetime.fromisoformat(first["status"]["finishedAt"])
    finally:
        srv.stop()
