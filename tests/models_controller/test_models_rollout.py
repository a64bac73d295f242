"""A Model served through a real server: its URL answers; a new spec rolls out under load without one
failed request, and the old spec again (a rollback) reuses its version; a deleted model stops listening."""

from __future__ import annotations

import httpx
import pytest
from tests.models_controller.serving_support import (
    Hammer,
    model_doc,
    predict,
    ready,
    replicas,
    snapshot,
    wait_status,
)
from tests.support import until

from runyard.client import Client


def test_a_rolling_update_under_load_fails_no_request_and_a_rollback_reuses_the_version(server, tmp_path):
    api = server.api()
    one = snapshot(server, tmp_path / "v1", "one")
    assert api.put("/models/scorer", json=model_doc("scorer", one, replicas=2)).status_code == 201
    st = wait_status(api, "scorer", ready, "the model never got ready")
    assert st["currentVersion"] == 1 and st["url"] == f"http://127.0.0.1:{st['port']}"
    resp = predict(st["url"], server.token, {"x": 41})
    assert resp.status_code == 200 and resp.json() == {"version": "one", "echo": 41}
    assert predict(st["url"], "not-a-token", {"x": 1}).status_code == 401

    two = snapshot(server, tmp_path / "v2", "two")
    with Hammer(st["url"], server.token) as load:
        until(lambda: load.total > 20, "the load never got going")
        assert api.put("/models/scorer", json=model_doc("scorer", two, replicas=2)).status_code == 200
        wait_status(api, "scorer", lambda s: s.get("targetVersion") == 2, "version 2 never started rolling")
        st = wait_status(
            api, "scorer", lambda s: s.get("currentVersion") == 2 and ready(s) and s["replicas"] == 2,
            "version 2 never took over",
        )  # fmt: skip
        until(
            lambda: {r["status"]["phase"] for r in replicas(api, "scorer", 1)} == {"Cancelled"},
            "version 1's replicas were not stopped",
        )
        seen = load.versions["two"]
        until(lambda: load.versions["two"] > seen + 20, "version 2 served nothing after the rollout")
    assert load.failures == [] and load.versions["one"] > 0 and load.versions["two"] > 0, load.failures
    assert len(replicas(api, "scorer", 1)) == 2 and st.get("targetVersion") is None
    assert {r["status"]["phase"] for r in replicas(api, "scorer", 2)} == {"Running"}
    events = [e["reason"] for e in api.get("/models/scorer/events").json()["items"]]
    assert events.count("VersionCreated") == 2 and events.count("RolledOut") == 2

    assert api.put("/models/scorer", json=model_doc("scorer", one, replicas=2)).status_code == 200
    st = wait_status(api, "scorer", lambda s: s.get("currentVersion") == 1 and ready(s), "no rollback")
    assert [v["version"] for v in st["versions"]] == [1, 2]
    assert predict(st["url"], server.token, {"x": 2}).json()["version"] == "one"

    assert api.delete("/models/scorer").status_code == 200
    until(lambda: api.get("/models/scorer").status_code == 404, "the deleted model is still there")
    with pytest.raises(httpx.ConnectError):
        predict(st["url"], server.token, {"x": 3}, timeout=5)


def test_a_version_that_never_gets_ready_leaves_traffic_on_the_current_one_and_says_why(server, tmp_path):
    api = server.api()
    one = snapshot(server, tmp_path / "v1", "one")
    assert api.put("/models/steady", json=model_doc("steady", one)).status_code == 201
    st = wait_status(api, "steady", ready, "the model never got ready")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "predict.py").write_text("raise RuntimeError('this version cannot load')\n")
    snap = Client(server.url, server.token).upload_snapshot(broken)
    assert api.put("/models/steady", json=model_doc("steady", snap)).status_code == 200
    stalled = wait_status(api, "steady", lambda s: s.get("reason") == "RolloutStalled", "no stall reported")
    assert stalled["phase"] == "Updating" and stalled["currentVersion"] == 1 and stalled["targetVersion"] == 2
    assert "version 1 keeps serving" in stalled["message"]
    warning = next(
        e for e in api.get("/models/steady/events").json()["items"] if e["reason"] == "RolloutStalled"
    )
    assert warning["type"] == "Warning"
    for i in range(10):
        assert predict(st["url"], server.token, {"x": i}).json() == {"version": "one", "echo": i}
    assert {r["status"]["phase"] for r in replicas(api, "steady", 1)} == {"Running"}
