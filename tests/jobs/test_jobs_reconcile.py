"""The Job reconciler through a real server (SQLite and PostgreSQL): the status follows fires and run ends,
a resumed job does not make up the instants it skipped while suspended, an idle job's status is not
rewritten, and a delete takes the job's runs (with their logs), fire state and history with it."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.jobs.server_support import (
    events,
    fire,
    job,
    run_phase,
    status,
    status_when,
    store_of,
    until,
)
from tests.jobs.warp import warp_env, warped_now
from tests.support import ServerProcess, read_logs

from runyard.core.cron import next_fire
from runyard.core.resources import Job

ROOT = str(Path(__file__).resolve().parents[2])


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def test_the_status_follows_fires_and_run_ends(server):
    api, store = server.api(), store_of(server)
    assert api.put("/jobs/nightly", json=job("nightly", "sleep 60", schedule="0 3 * * *")).status_code == 201
    st = status_when(api, "nightly", lambda s: s.get("phase") == "Scheduled", "the job was never scheduled")
    assert st["observedGeneration"] == 1 and st["observedSchedule"] == "0 3 * * *|UTC|False"
    start = _time(st["scheduleFrom"])
    assert start is not None and abs(start - datetime.now(UTC)) < timedelta(seconds=30)
    assert _time(st["nextScheduleTime"]) == next_fire("0 3 * * *", "UTC", start)
    assert st["runs"] == [] and st["active"] == [] and st.get("lastRun") is None
    assert st.get("lastScheduleTime") is None and st.get("lastSuccessfulTime") is None

    first = fire(store, "nightly").run
    assert first is not None and first.metadata.name == "nightly-1"
    st = status_when(api, "nightly", lambda s: s["phase"] == "Active", "the fired run never showed")
    assert st["active"] == ["nightly-1"] and st["runs"] == ["nightly-1"]
    assert st["message"] == "run nightly-1 is active"
    until(lambda: run_phase(api, "nightly-1") == "Running", "the run never started")
    assert api.post("/runs/nightly-1/stop").status_code == 200
    st = status_when(api, "nightly", lambda s: s["phase"] == "Scheduled", "the stopped run never ended")
    assert st["active"] == [] and st["runs"] == ["nightly-1"]
    assert st["lastRun"]["name"] == "nightly-1" and st["lastRun"]["phase"] == "Cancelled"
    assert st["lastRun"]["trigger"] == "manual" and st.get("lastSuccessfulTime") is None

    api.put("/jobs/nightly", json=job("nightly", "echo done", schedule="0 3 * * *"))  # a new template
    status_when(api, "nightly", lambda s: s["observedGeneration"] == 2, "the change was never observed")
    assert fire(store, "nightly").outcome == "Created"
    st = status_when(
        api, "nightly", lambda s: (s.get("lastRun") or {}).get("name") == "nightly-2", "run 2 never ended"
    )
    assert st["lastRun"]["phase"] == "Succeeded" and st["runs"] == ["nightly-1", "nightly-2"]
    assert st["lastSuccessfulTime"] == st["lastRun"]["finishedAt"]
    assert st["phase"] == "Scheduled" and st["active"] == []
    assert _time(st["scheduleFrom"]) == start  # a new template does not move the schedule's start

    # Idle, it is not written again: several resyncs (a tick each second) leave its version as it was.
    version = api.get("/jobs/nightly").json()["metadata"]["resourceVersion"]
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline:
        assert api.get("/jobs/nightly").json()["metadata"]["resourceVersion"] == version
        time.sleep(0.25)
    store.close()


def test_a_resumed_job_does_not_make_up_the_instants_it_skipped(tmp_path):
    """Every minute of a warped clock (a minute a second): fires before the suspension, none for the
    minutes it was suspended (not even one collapsed catch-up fire), and fires again after the resume."""
    setting = warp_env(datetime(2026, 3, 2, 9, 0, 30, tzinfo=UTC), 60)
    env = {**os.environ, **setting, "PYTHONPATH": ROOT}
    srv = ServerProcess(tmp_path / "home", module="tests.jobs.warp", env=env).start()
    clock = setting["RUNYARD_TEST_WARP"]
    try:
        api, store = srv.api(), store_of(srv)
        api.put("/jobs/minutely", json=job("minutely", "true", schedule="* * * * *"))
        status_when(api, "minutely", lambda s: s.get("lastScheduleTime"), "it never fired", timeout=60)
        api.put("/jobs/minutely", json=job("minutely", "true", schedule="* * * * *", suspend=True))
        st = status_when(api, "minutely", lambda s: s["phase"] == "Suspended", "it was never suspended")
        suspended_from = _time(st["scheduleFrom"])
        assert suspended_from is not None and st.get("nextScheduleTime") is None
        assert st["observedSchedule"] == "* * * * *|UTC|True"
        until(lambda: warped_now(clock) > suspended_from + timedelta(minutes=4), "the warped clock stopped")
        api.put("/jobs/minutely", json=job("minutely", "true", schedule="* * * * *"))
        st = status_when(api, "minutely", lambda s: s["phase"] != "Suspended", "it was never resumed")
        resumed_from = _time(st["scheduleFrom"])
        assert resumed_from is not None and resumed_from >= suspended_from + timedelta(minutes=4)
        assert _time(st["nextScheduleTime"]) == next_fire("* * * * *", "UTC", resumed_from)
        uid = store.get(Job, "default", "minutely").uid
        fires = until(
            lambda: [f for f in store.job_fires(uid) if f["scheduledAt"] and f["scheduledAt"] > resumed_from],
            "it never fired after the resume",
            timeout=60,
        )
        skipped = [
            f
            for f in store.job_fires(uid, limit=1000)
            if f["scheduledAt"] and suspended_from + timedelta(seconds=1) < f["scheduledAt"] <= resumed_from
        ]
        assert skipped == [], skipped
        assert min(f["scheduledAt"] for f in fires) == next_fire("* * * * *", "UTC", resumed_from)
        reasons = [(e["reason"], e["message"]) for e in events(api, "jobs", "minutely")]
        assert any(r == "Suspended" for r, _ in reasons)
        assert any(r == "Scheduled" and "not made up" in m for r, m in reasons), reasons
        store.close()
    finally:
        srv.stop()


def test_a_deleted_job_takes_its_runs_logs_and_fire_history_with_it(server):
    api, store = server.api(), store_of(server)
    api.put("/jobs/reports", json=job("reports", "echo report-line; sleep 60", concurrencyPolicy="Allow"))
    status_when(api, "reports", lambda s: s.get("phase") == "Scheduled", "the job was never scheduled")
    runs = [fire(store, "reports").run for _ in range(2)]
    assert all(runs)
    for run in runs:
        until(lambda run=run: run_phase(api, run.metadata.name) == "Running", "a run never started")
        lines = until(
            lambda run=run: read_logs(api, run.metadata.name, follow=False)[0], "a run wrote no output"
        )
        assert lines[0]["text"] == "report-line"
        assert (server.home / "runs" / run.uid).exists()
    uid = store.get(Job, "default", "reports").uid
    assert store.job_state(uid) is not None and len(store.job_fires(uid)) == 2

    assert api.delete("/jobs/reports").status_code == 200
    until(lambda: api.get("/jobs/reports").status_code == 404, "the job was never removed", timeout=60)
    for run in runs:
        assert run is not None
        assert api.get(f"/runs/{run.metadata.name}").status_code == 404
        assert not (server.home / "runs" / run.uid).exists()  # its logs and work directory
    assert store.job_state(uid) is None and store.job_fires(uid) == []
    assert api.get("/runs", params={"labelSelector": "runyard.dev/job=reports"}).json()["items"] == []
    store.close()


def test_a_job_with_a_status_the_api_reads_back(server):
    """The status round-trips through the API with the fields users read (`jobs list` shows them)."""
    api = server.api()
    api.put("/jobs/tz", json=job("tz", "true", schedule="30 2 * * *", timeZone="Europe/Berlin"))
    st = status_when(api, "tz", lambda s: s.get("phase") == "Scheduled", "the job was never scheduled")
    nxt = _time(st["nextScheduleTime"])
    assert nxt is not None and nxt == next_fire("30 2 * * *", "Europe/Berlin", _time(st["scheduleFrom"]))
    assert st["message"] == f"next fire at {nxt.isoformat()}"
    assert status(api, "tz")["observedSchedule"] == "30 2 * * *|Europe/Berlin|False"
