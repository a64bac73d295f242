"""What a fire does while a run of the job is still active (concurrencyPolicy Forbid, Replace, Allow), and
the per-run timeout, through a real server on SQLite and PostgreSQL."""

from __future__ import annotations

import os
from datetime import datetime

from tests.jobs.server_support import (
    events,
    job,
    run_phase,
    status_when,
    store_of,
    trigger,
    triggered,
    until,
)
from tests.support import ServerProcess

from runyard.core.resources import Job

SLOW = "sleep 60"


def _running(api, name: str) -> None:
    until(lambda: run_phase(api, name) == "Running", f"run {name} never started")


def test_forbid_skips_a_fire_while_a_run_is_active_and_records_it(server):
    api, store = server.api(), store_of(server)
    api.put("/jobs/forbid", json=job("forbid", SLOW))  # Forbid is the default
    first = triggered(api, "forbid")
    _running(api, first)
    r = trigger(api, "forbid")
    assert r.status_code == 409 and first in r.text, r.text
    uid = store.get(Job, "default", "forbid").uid
    skipped = store.job_fires(uid)[0]
    assert skipped["outcome"] == "Skipped" and skipped["run"] is None
    assert f"run {first} is still active (concurrencyPolicy Forbid)" in skipped["message"]
    assert any(e["reason"] == "FireSkipped" and first in e["message"] for e in events(api, "jobs", "forbid"))
    st = status_when(api, "forbid", lambda s: s.get("active"), "the active run never showed")
    assert st["active"] == [first] and st["runs"] == [first] and st["phase"] == "Active"
    assert run_phase(api, first) == "Running"  # the skipped fire left it alone
    store.close()


def test_replace_stops_the_active_run_and_starts_the_new_one(server):
    api = server.api()
    api.put("/jobs/replace", json=job("replace", SLOW, concurrencyPolicy="Replace"))
    first = triggered(api, "replace")
    _running(api, first)
    second = triggered(api, "replace")
    until(lambda: run_phase(api, first) == "Cancelled", "the replaced run was never stopped")
    assert api.get(f"/runs/{first}").json()["status"]["reason"] == "Stopped"
    _running(api, second)
    st = status_when(
        api, "replace", lambda s: s.get("active") == [second], "the job never showed the new run"
    )
    assert st["runs"] == [first, second] and st["lastRun"]["name"] == first
    assert st["lastRun"]["phase"] == "Cancelled"
    assert any(
        e["reason"] == "Fired" and "concurrencyPolicy Replace" in e["message"]
        for e in events(api, "jobs", "replace")
    )


def test_allow_runs_both(server):
    api = server.api()
    api.put("/jobs/allow", json=job("allow", SLOW, concurrencyPolicy="Allow"))
    first, second = triggered(api, "allow"), triggered(api, "allow")
    _running(api, first)
    _running(api, second)
    st = status_when(api, "allow", lambda s: len(s.get("active", [])) == 2, "both runs never showed")
    assert st["active"] == [first, second] and st["phase"] == "Active"
    assert run_phase(api, first) == "Running"


def test_a_run_over_its_timeout_fails_with_deadline_exceeded(server):
    api = server.api()
    template = {"timeoutSeconds": 0.5, "stopGracePeriodSeconds": 1}
    api.put("/jobs/bounded", json=job("bounded", SLOW, template=template))
    name = triggered(api, "bounded")
    until(lambda: run_phase(api, name) == "Failed", "the run never timed out", timeout=30)
    run = api.get(f"/runs/{name}").json()
    assert run["status"]["reason"] == "DeadlineExceeded"
    attempt = run["status"]["attempts"][-1]
    ran = datetime.fromisoformat(attempt["finishedAt"]) - datetime.fromisoformat(attempt["startedAt"])
    assert 0.5 <= ran.total_seconds() < 20  # stopped at its deadline, not left to sleep its 60 s
    st = status_when(api, "bounded", lambda s: s.get("lastRun"), "the job never showed the run's end")
    assert st["lastRun"]["name"] == name and st["lastRun"]["phase"] == "Failed"
    assert st["phase"] == "Scheduled" and st["active"] == [] and st.get("lastSuccessfulTime") is None


def test_a_replaced_run_is_stopped_at_once_not_at_the_next_resync(tmp_path):
    """The resync (every tick_seconds) would stop it too, eventually: with a minute between resyncs, only
    the trigger's own notice of the replaced run stops it within seconds."""
    srv = ServerProcess(
        tmp_path / "home", env={**os.environ, "RUNYARD_CONTROLLER_TICK_SECONDS": "60"}
    ).start()
    try:
        api = srv.api()
        api.put("/jobs/replace", json=job("replace", SLOW, concurrencyPolicy="Replace"))
        first = triggered(api, "replace")
        _running(api, first)
        triggered(api, "replace")
        until(lambda: run_phase(api, first) == "Cancelled", "the replaced run waited for a resync", 15)
    finally:
        srv.stop()
