"""runyard's own tracking endpoints, through a real server: the SDK's write path (all or nothing, the
field and the reason named), reads for the CLI, and process usage under a name of its own."""

from __future__ import annotations

import math

from tests.sdk.conftest import history


def _open(api, name: str, **body) -> dict:
    resp = api.post("/tracking/runs", json={"name": name, **body})
    assert resp.status_code == 201, resp.text
    return resp.json()


def test_a_write_with_one_bad_item_stores_nothing_and_names_it(srv):
    api = srv.api()
    _open(api, "atomic")
    good = {"key": "loss", "value": 1.0, "step": 0}
    resp = api.post("/runs/atomic/tracking", json={"metrics": [good, {"key": "bad key!", "value": 1}]})
    assert resp.status_code == 422
    fields = [d["field"] for d in resp.json()["error"]["details"]]
    assert fields and fields[0].startswith("metrics[1]")
    assert api.get("/runs/atomic/metrics").json() == {"metrics": []}
    resp = api.post("/runs/atomic/tracking", json={"metrics": [{"key": "x", "value": "high"}]})
    assert [d["field"] for d in resp.json()["error"]["details"]] == ["metrics[0].value"]
    resp = api.post("/runs/atomic/tracking", json={"metrics": [good] * 10_001})
    assert resp.status_code == 422 and resp.json()["error"]["details"][0]["field"] == "metrics"
    assert api.post("/runs/atomic/tracking", json={"metrics": [good] * 10_000}).status_code == 200


def test_a_param_logged_again_with_another_value_is_refused(srv):
    api = srv.api()
    _open(api, "params-once")
    assert api.post("/runs/params-once/tracking", json={"params": {"lr": "0.1"}}).status_code == 200
    assert api.post("/runs/params-once/tracking", json={"params": {"lr": "0.1"}}).status_code == 200
    resp = api.post("/runs/params-once/tracking", json={"params": {"lr": "0.2"}})
    assert resp.status_code == 422 and "lr" in resp.text
    assert api.get("/runs/params-once/tracking").json()["params"] == {"lr": "0.1"}


def test_nan_and_infinities_are_kept_as_mlflow_keeps_them(srv):
    api = srv.api()
    _open(api, "special")
    body = b'{"metrics": [{"key": "n", "value": NaN}, {"key": "p", "value": Infinity}, '
    body += b'{"key": "m", "value": -Infinity}]}'
    resp = api.post("/runs/special/tracking", content=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == 200, resp.text
    latest = {m["key"]: m["value"] for m in api.get("/runs/special/metrics").json()["metrics"]}
    assert math.isnan(latest["n"])
    assert latest["p"] == 1.7976931348623157e308 and latest["m"] == -1.7976931348623157e308
    nan = api.get("/runs/special/metrics/n").json()  # MLflow's get-history answer, with the key
    assert nan["key"] == "n" and [(p["key"], p["value"]) for p in nan["metrics"]] == [("n", "NaN")]


def test_a_history_comes_by_step_and_pages(srv):
    api = srv.api()
    _open(api, "paged")
    points = [{"key": "acc/top-1", "value": i / 10, "step": i} for i in reversed(range(25))]
    api.post("/runs/paged/tracking", json={"metrics": points})
    assert [p["step"] for p in history(api, "paged", "acc/top-1")] == list(range(25))
    first = api.get("/runs/paged/metrics/acc/top-1", params={"maxResults": 10}).json()
    assert [p["step"] for p in first["metrics"]] == list(range(10)) and first["key"] == "acc/top-1"
    rest = api.get(
        "/runs/paged/metrics/acc/top-1", params={"maxResults": 20, "pageToken": first["nextPageToken"]}
    ).json()
    assert [p["step"] for p in rest["metrics"]] == list(range(10, 25)) and "nextPageToken" not in rest


def test_runs_are_searched_and_sorted_in_mlflows_syntax(srv):
    api = srv.api()
    for i, loss in enumerate([0.5, 0.1, 0.3]):
        name = f"sweep-{i}"
        _open(api, name, experiment="search-sweep")
        data = {"metrics": [{"key": "loss", "value": loss}], "tags": {"i": i}}
        assert api.post(f"/runs/{name}/tracking", json=data).status_code == 200
    found = api.get(
        "/tracking/runs",
        params={"experiment": "search-sweep", "filter": "metrics.loss < 0.4", "orderBy": "metrics.loss DESC"},
    ).json()
    assert [r["name"] for r in found["runs"]] == ["sweep-2", "sweep-1"]
    first = found["runs"][0]
    assert first["metrics"] == {"loss": 0.3} and first["tags"]["i"] == "2"
    assert (first["phase"], first["status"], first["experiment"]) == ("Running", "RUNNING", "search-sweep")
    assert api.get("/tracking/runs", params={"experiment": "no-such"}).status_code == 404


def test_ending_a_run_takes_only_mlflows_end_statuses(srv):
    api = srv.api()
    _open(api, "ended")
    resp = api.post("/runs/ended/end", json={"status": "DONE"})
    assert resp.status_code == 422
    assert resp.json()["error"]["details"][0]["field"] == "status"
    doc = api.post("/runs/ended/end", json={"status": "FAILED"}).json()
    assert doc["status"]["phase"] == "Failed" and doc["runId"] == doc["metadata"]["uid"].replace("-", "")


def test_process_usage_has_its_own_name(srv):
    api = srv.api()
    _open(api, "no-process")
    usage = api.get("/runs/no-process/usage").json()
    assert usage["phase"] == "Running" and "memory_bytes" not in usage
    assert api.get("/runs/no-process/metrics").json() == {"metrics": []}
    assert api.get("/runs/nobody/metrics").status_code == 404


def test_a_viewer_reads_but_cannot_write(srv):
    api = srv.api()
    _open(api, "guarded")
    viewer = api.post(srv.url + "/apis/runyard.dev/v1/tokens", json={"name": "v", "role": "viewer"})
    token = viewer.json()["token"]
    as_viewer = srv.api(token)
    assert as_viewer.get("/runs/guarded/tracking").status_code == 200
    assert as_viewer.post("/runs/guarded/tracking", json={"params": {"a": "1"}}).status_code == 403
    assert as_viewer.post("/tracking/runs", json={}).status_code == 403
