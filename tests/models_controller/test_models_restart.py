"""A server killed with SIGKILL: the model's replicas keep answering on its URL (they hold its socket);
the restarted server binds the same port, adopts the model, and it is Ready again without one failed
request on the way."""

from __future__ import annotations

import threading

import httpx
from tests.models_controller.serving_support import (
    model_doc,
    predict,
    ready,
    replicas,
    snapshot,
    wait_status,
)
from tests.support import until


def test_the_url_keeps_answering_through_a_kill9_and_the_restarted_server_adopts_the_model(server, tmp_path):
    api = server.api()
    snap = snapshot(server, tmp_path / "p", "one")
    assert api.put("/models/sturdy", json=model_doc("sturdy", snap, replicas=2)).status_code == 201
    st = wait_status(api, "sturdy", ready, "the model never got ready")
    answers, failures, stop = [], [], threading.Event()

    def ask_all_along() -> None:
        while not stop.is_set():
            try:
                resp = predict(st["url"], server.token, {"x": len(answers)})
                (answers if resp.status_code == 200 else failures).append(resp.status_code)
            except httpx.HTTPError as exc:
                failures.append(repr(exc))

    asker = threading.Thread(target=ask_all_along, daemon=True)
    asker.start()
    until(lambda: len(answers) > 10, "no answer before the kill")
    server.kill9()
    seen = len(answers)
    until(lambda: len(answers) > seen + 20, "the URL stopped answering when the server was killed")
    server.start()
    api = server.api()
    until(
        lambda: {r["status"]["phase"] for r in replicas(api, "sturdy", 1)} >= {"Cancelled"},
        "the replicas of the killed server were not replaced",
    )
    again = wait_status(api, "sturdy", lambda s: ready(s) and s["replicas"] == 2, "not Ready again")
    seen = len(answers)
    until(lambda: len(answers) > seen + 20, "the URL stopped answering after the restart")
    stop.set()
    asker.join(timeout=60)
    assert failures == [] and again["url"] == st["url"] and again["currentVersion"] == 1
    old = [r["metadata"]["name"] for r in replicas(api, "sturdy", 1) if r["status"]["phase"] == "Cancelled"]
    events = [e["reason"] for e in api.get(f"/runs/{old[0]}/events").json()["items"]]
    assert "Adopted" in events and "StopRequested" in events  # found running, then replaced
