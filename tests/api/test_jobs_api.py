"""The jobs API over HTTP against a real server (SQLite and PostgreSQL): triggering by hand with parameters,
idempotent triggers, concurrencyPolicy Forbid, parameter validation, history, the next fire times in a
daylight-saving zone, and who may call what."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from tests.jobs.warp import warp_env
from tests.support import API, ServerProcess, fresh_postgres_database, read_logs, resource, wait_phase

from runyard.client import Client
from runyard.core.errors import Conflict, NotFound
from runyard.core.resources import Run


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def srv(request, tmp_path_factory) -> Iterator[ServerProcess]:
    store_url = fresh_postgres_database() if request.param == "postgres" else None
    server = ServerProcess(tmp_path_factory.mktemp("jobs-api") / "home", store_url).start()
    yield server
    server.stop()


def job(name: str, command: str, **spec) -> dict:
    return resource("Job", name, template={"command": command, "stopGracePeriodSeconds": 1}, **spec)


def put(api: httpx.Client, doc: dict) -> None:
    r = api.put(f"/jobs/{doc['metadata']['name']}", json=doc)
    assert r.status_code in (200, 201), r.text


def token(srv: ServerProcess, role: str, project: str) -> str:
    admin = {"Authorization": f"Bearer {srv.token}"}
    httpx.post(srv.url + API + "/projects", json={"name": project}, headers=admin)  # 409 once it exists
    r = httpx.post(
        srv.url + API + "/tokens",
        json={"name": f"a {role} of {project}", "role": role, "project": project},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    return r.json()["token"]


def wait_gone(api: httpx.Client, run: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while api.get(f"/runs/{run}").status_code != 404:
        assert time.monotonic() < deadline, f"run {run} was not removed"
        time.sleep(0.05)


def test_params_reach_the_command_as_environment_variables(srv):
    api = srv.api()
    doc = job("greet", 'echo "$GREETING, $WHO from $PLACE"', concurrencyPolicy="Allow")
    doc["spec"]["template"]["env"] = {"PLACE": "the template", "WHO": "nobody"}  # WHO: a param overrides
    put(api, doc)
    r = api.post("/jobs/greet/trigger", json={"params": {"GREETING": "hello", "WHO": "world"}})
    assert r.status_code == 201, r.text
    run = r.json()
    name = run["metadata"]["name"]
    assert run["kind"] == "Run" and name.startswith("greet-")
    assert run["metadata"]["labels"]["runyard.dev/job"] == "greet"
    assert run["metadata"]["annotations"]["runyard.dev/trigger"] == "manual"
    assert run["metadata"]["ownerReferences"][0]["name"] == "greet"
    events = api.get("/jobs/greet/events").json()["items"]
    said = [(e["reason"], e["message"]) for e in events if e["reason"] in ("Triggered", "Fired")]
    assert said[:2] == [
        ("Triggered", "triggered by admin (created at first start) with GREETING, WHO"),
        ("Fired", f"created run {name} (triggered by hand with GREETING=hello, WHO=world)"),
    ]
    lines, end = read_logs(api, name)
    assert [line["text"] for line in lines] == ["hello, world from the template"]
    assert (end["phase"], end["exitCode"]) == ("Succeeded", 0)

    bare = api.post("/jobs/greet/trigger")  # no body at all: no params
    assert bare.status_code == 201, bare.text
    lines, _ = read_logs(api, bare.json()["metadata"]["name"])
    assert [line["text"] for line in lines] == [", nobody from the template"]


def test_a_repeated_idempotency_key_gives_the_same_run(srv):
    api = srv.api()
    put(api, job("once", "echo once", concurrencyPolicy="Allow"))
    key = {"Idempotency-Key": "deploy-2026-12-01"}
    first = api.post("/jobs/once/trigger", json={"params": {"A": "1"}}, headers=key)
    assert first.status_code == 201, first.text
    again = api.post("/jobs/once/trigger", json={"params": {"A": "1"}}, headers=key)
    assert again.status_code == 200, again.text
    assert again.json()["metadata"]["uid"] == first.json()["metadata"]["uid"]
    other = api.post("/jobs/once/trigger", headers={"Idempotency-Key": "another"})
    assert other.status_code == 201
    assert other.json()["metadata"]["name"] != first.json()["metadata"]["name"]
    runs = api.get("/runs", params={"labelSelector": "runyard.dev/job=once"}).json()["items"]
    assert len(runs) == 2
    bad = api.post("/jobs/once/trigger", headers={"Idempotency-Key": "x" * 129})
    assert bad.status_code == 422


def test_forbid_refuses_a_trigger_while_a_run_is_active_and_says_what_to_do(srv):
    api = srv.api()
    put(api, job("solo", "exec sleep 600", concurrencyPolicy="Forbid", suspend=True))
    first = api.post("/jobs/solo/trigger")
    assert first.status_code == 201, first.text  # suspended: manual triggers still run
    active = first.json()["metadata"]["name"]
    wait_phase(api, active, {"Running"})

    refused = api.post("/jobs/solo/trigger", json={"params": {"X": "1"}})
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["code"] == "Conflict"
    assert active in error["message"] and "concurrencyPolicy" in error["message"]
    assert f"`runyard stop {active}`" in error["message"] and "Allow" in error["message"]
    assert "Replace" in error["message"]
    fires = api.get("/jobs/solo/history").json()["items"]
    assert [(f["outcome"], f["run"]) for f in fires] == [("Skipped", None), ("Created", active)]

    api.post(f"/runs/{active}/stop")
    wait_phase(api, active, {"Cancelled", "Failed"})
    after = api.post("/jobs/solo/trigger")
    assert after.status_code == 201, after.text
    api.post(f"/runs/{after.json()['metadata']['name']}/stop")


def test_bad_params_are_refused_naming_each_field(srv):
    api = srv.api()
    put(api, job("strict", "echo never"))
    params = {"RUNYARD_TOKEN": "x", "runyard_api_url": "y", "1ST": "z", "A-B": "w", "N": 3, "OK": "fine"}
    r = api.post("/jobs/strict/trigger", json={"params": params})
    assert r.status_code == 422, r.text
    details = {d["field"]: d["reason"] for d in r.json()["error"]["details"]}
    assert set(details) == {
        "params.RUNYARD_TOKEN",
        "params.runyard_api_url",
        "params.1ST",
        "params.A-B",
        "params.N",
    }
    assert "RUNYARD_" in details["params.RUNYARD_TOKEN"]
    assert "environment variable name" in details["params.1ST"]
    assert "string" in details["params.N"]
    nul = api.post("/jobs/strict/trigger", json={"params": {"V": "a\u0000b"}})
    assert nul.status_code == 422 and nul.json()["error"]["details"][0]["field"] == "params.V"
    typo = api.post("/jobs/strict/trigger", json={"param": {"A": "1"}})
    assert typo.status_code == 422
    assert api.get("/jobs/strict/history").json()["items"] == []  # nothing fired


def test_history_is_newest_first_with_each_run_phase_or_none_once_removed(srv):
    api = srv.api()
    put(api, job("hist", "echo $N", concurrencyPolicy="Allow"))
    names = []
    for n in range(3):
        r = api.post("/jobs/hist/trigger", json={"params": {"N": str(n)}})
        names.append(r.json()["metadata"]["name"])
        wait_phase(api, names[-1], {"Succeeded"})
    fires = api.get("/jobs/hist/history").json()["items"]
    assert [f["run"] for f in fires] == names[::-1]
    assert {(f["trigger"], f["outcome"], f["phase"]) for f in fires} == {("manual", "Created", "Succeeded")}
    assert "N=2" in fires[0]["message"]
    assert datetime.fromisoformat(fires[0]["firedAt"]) >= datetime.fromisoformat(fires[1]["firedAt"])
    assert [f["run"] for f in api.get("/jobs/hist/history", params={"limit": 2}).json()["items"]] == [
        names[2],
        names[1],
    ]
    assert api.delete(f"/runs/{names[0]}").status_code == 200
    wait_gone(api, names[0])
    oldest = api.get("/jobs/hist/history").json()["items"][-1]
    assert (oldest["run"], oldest["phase"]) == (names[0], None)
    assert api.get("/jobs/hist/history", params={"limit": 0}).status_code == 422


def _last_sunday_of(day: date) -> bool:
    return day.weekday() == 6 and (day + timedelta(days=7)).month != day.month


def test_the_schedule_gives_the_next_five_fires_across_daylight_saving_changes(srv):
    """Europe/Berlin skips 02:00-03:00 on March's last Sunday and repeats it on October's: a 02:30 fire
    moves to 03:00 that March day and fires once, at the first 02:30, that October day."""
    api = srv.api()
    put(api, job("spring", "true", schedule="30 2 * 3 0", timeZone="Europe/Berlin"))
    put(api, job("autumn", "true", schedule="30 2 * 10 0", timeZone="Europe/Berlin"))
    got = api.get("/jobs/spring/schedule").json()
    assert (got["schedule"], got["timeZone"], got["suspended"], got["reason"]) == (
        "30 2 * 3 0",
        "Europe/Berlin",
        False,
        None,
    )
    fires = [(datetime.fromisoformat(f["utc"]), datetime.fromisoformat(f["local"])) for f in got["fires"]]
    assert len(fires) == 5 and fires == sorted(fires)
    assert fires[0][0] > datetime.now().astimezone()
    switch_days = 0
    for utc, local in fires:
        assert utc == local and local.date().month == 3 and local.weekday() == 6
        if _last_sunday_of(local.date()):  # 02:30 does not exist: fired as the gap ends
            switch_days += 1
            assert (local.strftime("%H:%M %z"), utc.strftime("%H:%M %z")) == ("03:00 +0200", "01:00 +0000")
        else:
            assert (local.strftime("%H:%M %z"), utc.strftime("%H:%M %z")) == ("02:30 +0100", "01:30 +0000")
    assert switch_days >= 1

    autumn = api.get("/jobs/autumn/schedule", params={"count": 6}).json()["fires"]
    assert len(autumn) == 6
    locals_ = [datetime.fromisoformat(fire["local"]) for fire in autumn]
    # summer time until 03:00 of October's last Sunday: the repeated 02:30 fires once, in its first pass
    assert {local.strftime("%H:%M %z") for local in locals_} == {"02:30 +0200"}
    assert any(_last_sunday_of(local.date()) for local in locals_)
    assert len({local.date() for local in locals_}) == 6  # no day twice

    put(api, job("manual-only", "true"))
    none = api.get("/jobs/manual-only/schedule").json()
    assert none["fires"] == [] and "no schedule" in none["reason"]
    put(api, job("paused", "true", schedule="@hourly", suspend=True))
    paused = api.get("/jobs/paused/schedule").json()
    assert paused["fires"] == [] and "runyard jobs resume paused" in paused["reason"]
    assert api.get("/jobs/spring/schedule", params={"count": 101}).status_code == 422


def test_the_schedule_counts_from_the_scheduler_clock_across_the_spring_gap(tmp_path):
    """On a server whose scheduler lives on 27 March 2027 (tests.jobs.warp), the next fires of a 02:30
    Berlin job are exact: 02:30 CET, then 03:00 CEST on the 28th (02:30 does not exist), then 02:30 CEST."""
    root = str(Path(__file__).resolve().parents[2])
    start = datetime(2027, 3, 27, 0, 0, tzinfo=UTC)
    env = {**os.environ, **warp_env(start, 1.0), "PYTHONPATH": root}
    warped = ServerProcess(tmp_path / "home", module="tests.jobs.warp", env=env).start()
    try:
        api = warped.api()
        put(api, job("nightly", "true", schedule="30 2 * * *", timeZone="Europe/Berlin"))
        got = api.get("/jobs/nightly/schedule").json()
        assert [(f["utc"], f["local"]) for f in got["fires"]] == [
            ("2027-03-27T01:30:00Z", "2027-03-27T02:30:00+01:00"),
            ("2027-03-28T01:00:00Z", "2027-03-28T03:00:00+02:00"),
            ("2027-03-29T00:30:00Z", "2027-03-29T02:30:00+02:00"),
            ("2027-03-30T00:30:00Z", "2027-03-30T02:30:00+02:00"),
            ("2027-03-31T00:30:00Z", "2027-03-31T02:30:00+02:00"),
        ]
        assert datetime.fromisoformat(got["from"]) < datetime(2027, 3, 27, 1, tzinfo=UTC)
    finally:
        warped.stop()


def test_an_unknown_job_is_404_naming_it_and_how_to_list_jobs(srv):
    api = srv.api()
    for method, path in [("POST", "trigger"), ("GET", "history"), ("GET", "schedule")]:
        r = api.request(method, f"/jobs/nosuch/{path}")
        assert r.status_code == 404, (path, r.text)
        message = r.json()["error"]["message"]
        assert "'nosuch'" in message and "runyard jobs list" in message


def test_callers_need_a_token_for_the_project_and_admin_for_the_scheduler(srv):
    api = srv.api()
    put(api, job("guarded", "echo guarded", schedule="@daily"))
    base = srv.url + API + "/projects/default/jobs/guarded"
    calls = [("POST", "/trigger"), ("GET", "/history"), ("GET", "/schedule")]
    other = {"Authorization": f"Bearer {token(srv, 'editor', 'other')}"}
    viewer = {"Authorization": f"Bearer {token(srv, 'viewer', 'default')}"}
    editor = {"Authorization": f"Bearer {token(srv, 'editor', 'default')}"}
    for method, path in calls:
        assert httpx.request(method, base + path).status_code == 401, path
        refused = httpx.request(method, base + path, headers=other)
        assert refused.status_code == 403, path
        assert "'other'" in refused.json()["error"]["message"]
    assert httpx.get(base + "/history", headers=viewer).status_code == 200
    assert httpx.get(base + "/schedule", headers=viewer).status_code == 200
    assert httpx.post(base + "/trigger", headers=viewer).status_code == 403
    assert httpx.get(base + "/history").status_code == 401

    scheduler = srv.url + API + "/scheduler"
    assert httpx.get(scheduler).status_code == 401
    assert httpx.get(scheduler, headers=editor).status_code == 403
    admin = {"Authorization": f"Bearer {srv.token}"}

    def scheduled() -> dict:
        stats = httpx.get(scheduler, headers=admin)
        assert stats.status_code == 200, stats.text
        return stats.json()

    deadline = time.monotonic() + 20
    while scheduled()["jobs"] < 1:  # 'guarded' is scheduled once the controller has reconciled it
        assert time.monotonic() < deadline, scheduled()
        time.sleep(0.05)
    stats = scheduled()
    assert set(stats) >= {"jobs", "ticks", "tickSeconds", "fires", "fireDelaySeconds"}


def test_the_client_triggers_reads_history_and_schedule_and_the_rest_layer_the_scheduler(srv):
    client = Client(srv.url, srv.token)
    put(srv.api(), job("sdk", 'echo "$STEP"', schedule="0 6 * * *", timeZone="America/New_York"))
    run = client.trigger("sdk", {"STEP": "one"}, idempotency_key="sdk-1")
    assert isinstance(run, Run) and run.spec.env["STEP"] == "one"
    assert client.trigger("sdk", {"STEP": "one"}, idempotency_key="sdk-1").metadata.uid == run.metadata.uid
    client.wait(run.metadata.name, timeout=30)
    assert [line.text for line in client.logs(run.metadata.name) if hasattr(line, "text")] == ["one"]
    assert [(f["run"], f["phase"]) for f in client.job_history("sdk")] == [(run.metadata.name, "Succeeded")]
    fires = client.job_schedule("sdk", count=3)
    assert len(fires) == 3 and all(f.tzinfo is not None and f.minute == 0 for f in fires)
    assert all(f.astimezone(ZoneInfo("America/New_York")).hour == 6 for f in fires)
    with pytest.raises(NotFound, match="runyard jobs list"):
        client.trigger("nope")
    put(srv.api(), job("sdk-solo", "exec sleep 600"))
    active = client.trigger("sdk-solo")
    with pytest.raises(Conflict, match=active.metadata.name):
        client.trigger("sdk-solo")
    client.stop(active.metadata.name)
    assert {"jobs", "ticks", "fires"} <= set(client.rest.scheduler_stats())
