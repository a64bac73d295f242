"""History limits: a job keeps its newest successfulRunsHistoryLimit succeeded and failedRunsHistoryLimit
failed runs; older ones are deleted with their logs and artifacts, while its fire history still lists
them (their phase null: removed), through a real server on SQLite and PostgreSQL."""

from __future__ import annotations

import sys

from tests.jobs.server_support import (
    events,
    job,
    run_phase,
    status_when,
    store_of,
    triggered,
    until,
)
from tests.support import read_logs

from runyard.core.resources import Job

# Each run logs an artifact named after itself, prints a line and exits with the code it is given.
CODE = """
import os, sys, runyard
name = os.environ["RUNYARD_RUN_ID"]
open(name + ".txt", "w").write(name)
runyard.log_artifact(name + ".txt")
print("output of", name)
sys.exit(int(os.environ["CODE"]))
"""


def test_older_runs_go_with_their_logs_and_artifacts_but_stay_in_the_fire_history(server):
    api, store = server.api(), store_of(server)
    limits = {"successfulRunsHistoryLimit": 2, "failedRunsHistoryLimit": 1, "concurrencyPolicy": "Allow"}
    api.put("/jobs/etl", json=job("etl", [sys.executable, "-c", CODE], **limits))
    made: list[tuple[str, str]] = []  # (run, phase), in order
    for code in ["0", "1", "0", "1", "0"]:
        name = triggered(api, "etl", CODE=code)
        phase = "Succeeded" if code == "0" else "Failed"
        until(lambda name=name: run_phase(api, name) in ("Succeeded", "Failed"), f"{name} never ended")
        assert run_phase(api, name) == phase, read_logs(api, name, follow=False)
        assert api.get(f"/runs/{name}/artifacts/{name}.txt").content == name.encode()
        assert read_logs(api, name, follow=False)[0][0]["text"] == f"output of {name}"
        uid = api.get(f"/runs/{name}").json()["metadata"]["uid"]
        assert (server.home / "runs" / uid).exists()
        made.append((name, uid))
    (s1, _), (f1, _), (s2, _), (f2, _), (s3, _) = made
    kept, removed = [s2, f2, s3], [s1, f1]
    st = status_when(api, "etl", lambda s: s["runs"] == kept, "the job never kept just the newest runs")
    assert st["lastRun"]["name"] == s3 and st["lastRun"]["phase"] == "Succeeded"
    for name, uid in made:
        gone = name in removed
        until(lambda name=name, gone=gone: (api.get(f"/runs/{name}").status_code == 404) == gone, name)
        assert (server.home / "runs" / uid).exists() != gone  # its logs and work directory
        assert bool(list((server.home / "artifacts").rglob(f"{name}.txt"))) != gone  # its artifact
    job_uid = store.get(Job, "default", "etl").uid
    fires = store.job_fires(job_uid)  # newest first
    assert [f["run"] for f in fires] == [name for name, _ in reversed(made)]
    phases = {f["run"]: f["phase"] for f in fires}
    assert phases == {s1: None, f1: None, s2: "Succeeded", f2: "Failed", s3: "Succeeded"}
    history = api.get("/jobs/etl/history").json()["items"]
    assert {h["run"]: h["phase"] for h in history} == phases
    removals = [e["message"] for e in events(api, "jobs", "etl") if e["reason"] == "RunDeleted"]
    assert removals and all("successfulRunsHistoryLimit=2, failedRunsHistoryLimit=1" in m for m in removals)
    assert {r for m in removals for r in removed if r in m} == set(removed)
    store.close()
