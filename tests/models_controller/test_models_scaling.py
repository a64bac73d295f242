"""Replicas through a real server: a crashed one is replaced (after a backoff) while the others answer;
autoscaling follows the requests in flight up and back down; a model scaled to zero starts a replica for
the first request, which waits and succeeds."""

from __future__ import annotations

import os
import signal

import httpx
import pytest
from tests.models_controller.serving_support import (
    Hammer,
    model_doc,
    predict,
    ready,
    replicas,
    snapshot,
    start_server,
    wait_status,
)
from tests.support import until


def _events(api: httpx.Client, name: str) -> list[dict]:
    return api.get(f"/models/{name}/events").json()["items"]


def test_a_crashed_replica_is_replaced_and_the_other_keeps_answering(server, tmp_path):
    api = server.api()
    snap = snapshot(server, tmp_path / "p", "one")
    assert api.put("/models/crashy", json=model_doc("crashy", snap, replicas=2)).status_code == 201
    st = wait_status(api, "crashy", ready, "the model never got ready")
    with pytest.raises(httpx.HTTPError):  # the replica that takes it dies with it
        predict(st["url"], server.token, {"crash": True}, timeout=10)
    for i in range(20):  # meanwhile the other replica answers every request
        assert predict(st["url"], server.token, {"x": i}).json() == {"version": "one", "echo": i}
    until(
        lambda: any(e["reason"] == "ReplicaRestarted" for e in _events(api, "crashy")),
        "the crash was not noticed",
    )
    until(lambda: len(replicas(api, "crashy", 1)) == 3, "no replica replaced the crashed one")
    wait_status(api, "crashy", lambda s: ready(s) and s["readyReplicas"] == 2, "not back to 2 ready")
    phases = sorted(r["status"]["phase"] for r in replicas(api, "crashy", 1))
    assert phases == ["Failed", "Running", "Running"]
    warning = next(e for e in _events(api, "crashy") if e["reason"] == "ReplicaRestarted")
    assert warning["type"] == "Warning" and "exited with code 3" in warning["message"]


def test_a_replica_that_stops_answering_its_probes_is_replaced(tmp_path):
    server = start_server(tmp_path / "home", RUNYARD_RUNTIME_SANDBOX="off")  # its pid, as this host sees it
    try:
        api = server.api()
        snap = snapshot(server, tmp_path / "p", "one")
        assert api.put("/models/frozen", json=model_doc("frozen", snap)).status_code == 201
        st = wait_status(api, "frozen", ready, "the model never got ready")
        pid = predict(st["url"], server.token, {"pid": True}).json()["pid"]
        os.kill(pid, signal.SIGSTOP)  # alive, but answers nothing: only its probes tell
        until(
            lambda: any("readiness probes in a row" in e["message"] for e in _events(api, "frozen")),
            "the frozen replica was not found out",
        )
        wait_status(api, "frozen", lambda s: ready(s) and s["replicas"] == 1, "no new replica got ready")
        assert predict(st["url"], server.token, {"pid": True}).json()["pid"] != pid
        until(lambda: _gone(pid), "the frozen replica was not killed")
    finally:
        server.stop()


def _gone(pid: int) -> bool:
    """Exited (a zombie not reaped yet counts): SIGKILL ends even a stopped process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_autoscaling_follows_the_requests_in_flight_up_and_down(server, tmp_path):
    api = server.api()
    snap = snapshot(server, tmp_path / "p", "one")
    scaling = {"minReplicas": 1, "maxReplicas": 3, "targetInFlight": 2, "scaleDownDelaySeconds": 3}
    assert api.put("/models/busy", json=model_doc("busy", snap, autoscaling=scaling)).status_code == 201
    st = wait_status(api, "busy", ready, "the model never got ready")
    assert st["desiredReplicas"] == 1
    with Hammer(st["url"], server.token, threads=8, body={"x": 1, "sleep": 0.3}) as load:
        wait_status(
            api, "busy", lambda s: s.get("desiredReplicas") == 3 and s.get("readyReplicas") == 3,
            "the model did not scale up to 3 ready replicas under load",
        )  # fmt: skip
    assert load.failures == [] and load.versions["one"] > 0
    wait_status(
        api, "busy", lambda s: s.get("desiredReplicas") == 1 and s.get("replicas") == 1,
        "the model did not scale back down once the load stopped",
    )  # fmt: skip
    messages = [e["message"] for e in _events(api, "busy") if e["reason"] == "Scaled"]
    assert any("-> 3" in m for m in messages) and messages[-1].endswith("-> 1")


def test_a_model_scaled_to_zero_starts_a_replica_for_the_first_request(server, tmp_path):
    api = server.api()
    snap = snapshot(server, tmp_path / "p", "one")
    scaling = {"minReplicas": 0, "maxReplicas": 2, "scaleToZeroAfterSeconds": 2}
    assert api.put("/models/sleepy", json=model_doc("sleepy", snap, autoscaling=scaling)).status_code == 201
    st = wait_status(api, "sleepy", ready, "the model never got ready")
    assert predict(st["url"], server.token, {"x": 1}).status_code == 200
    st = wait_status(
        api, "sleepy", lambda s: s.get("phase") == "ScaledToZero" and s.get("replicas") == 0,
        "the idle model did not scale to zero",
    )  # fmt: skip
    until(
        lambda: {r["status"]["phase"] for r in replicas(api, "sleepy", 1)} == {"Cancelled"},
        "its replica was not stopped",
    )
    resp = predict(st["url"], server.token, {"x": 7}, timeout=60)  # waits in the backlog meanwhile
    assert resp.status_code == 200 and resp.json() == {"version": "one", "echo": 7}
    again = wait_status(api, "sleepy", ready, "the model is not Ready after the first request")
    assert again["replicas"] == 1 and again["url"] == st["url"]
