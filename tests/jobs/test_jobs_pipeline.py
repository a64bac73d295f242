"""Pipelines: jobs that dependOn others run after them (a -> b -> c) through a real server; a cycle is
refused when applied, naming it; a dependency on a job that does not exist is shown in the status."""

from __future__ import annotations

from tests.jobs.server_support import job, run_phase, status_when, triggered, until


def _condition(st: dict) -> dict | None:
    return next((c for c in st.get("conditions", []) if c["type"] == "DependenciesReady"), None)


def test_a_pipeline_runs_each_job_after_the_one_it_depends_on(server):
    api = server.api()
    for name, deps in [("extract", []), ("transform", ["extract"]), ("load", ["transform"])]:
        assert api.put(f"/jobs/{name}", json=job(name, f"echo {name}", dependsOn=deps)).status_code == 201
    for name in ("transform", "load"):
        st = status_when(api, name, lambda s: _condition(s), f"{name} never had its condition")
        assert _condition(st)["status"] == "True"
    first = triggered(api, "extract")
    until(lambda: run_phase(api, "load-1") == "Succeeded", "the pipeline never reached its last job", 60)
    runs = {r["metadata"]["name"]: r for r in api.get("/runs").json()["items"]}
    assert set(runs) == {first, "transform-1", "load-1"}
    end = {name: runs[name]["status"]["finishedAt"] for name in runs}
    start = {name: runs[name]["status"]["startedAt"] for name in runs}
    assert end[first] <= start["transform-1"] and end["transform-1"] <= start["load-1"]
    for name in ("transform-1", "load-1"):
        assert runs[name]["metadata"]["annotations"]["runyard.dev/trigger"] == "dependency"
    st = status_when(api, "load", lambda s: s.get("lastRun"), "load never showed its run")
    assert st["lastRun"]["trigger"] == "dependency" and st["lastRun"]["phase"] == "Succeeded"
    assert st["lastSuccessfulTime"] == st["lastRun"]["finishedAt"]


def test_a_cycle_is_refused_at_apply_naming_it(server):
    api = server.api()
    api.put("/jobs/a", json=job("a"))
    api.put("/jobs/b", json=job("b", dependsOn=["a"]))
    api.put("/jobs/c", json=job("c", dependsOn=["b"]))
    r = api.put("/jobs/a", json=job("a", dependsOn=["c"]))
    assert r.status_code == 422, r.text
    fields = {d["field"]: d["reason"] for d in r.json()["error"]["details"]}
    assert fields["spec.dependsOn"].startswith("would form a cycle: a -> c -> b -> a;"), fields
    assert api.get("/jobs/a").json()["spec"].get("dependsOn", []) == []  # unchanged
    r = api.post("/jobs", json=job("self", dependsOn=["self"]))
    assert r.status_code == 422 and "would form a cycle: self -> self" in r.text, r.text
    assert api.get("/jobs/self").status_code == 404
    ok = api.put("/jobs/d", json=job("d", dependsOn=["a", "c"]))  # a diamond is no cycle
    assert ok.status_code == 201, ok.text


def test_a_dependency_on_a_missing_job_shows_in_the_condition_until_it_exists(server):
    api = server.api()
    api.put("/jobs/report", json=job("report", dependsOn=["ingest"]))
    st = status_when(api, "report", lambda s: _condition(s), "the condition never showed")
    cond = _condition(st)
    assert cond["status"] == "False" and cond["reason"] == "DependenciesNotReady"
    assert "'ingest' not found in project 'default'" in cond["message"]
    assert st["message"] == "fires when its dependencies succeed: ingest"
    api.put("/jobs/ingest", json=job("ingest"))
    st = status_when(api, "report", lambda s: _condition(s)["status"] == "True", "it never saw ingest made")
    assert "its dependencies exist: ingest" in _condition(st)["message"]
