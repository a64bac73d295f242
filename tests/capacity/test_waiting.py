"""Runs that do not fit yet wait Queued, saying what for, then start when capacity frees; nothing is ever
over-committed; what a run holds goes back when it ends, retries or is deleted. Through a real server whose
node offers 2 cores and 2 simulated GPUs (see conftest.py: there is no NVIDIA GPU here)."""

from __future__ import annotations

import json
import time
from datetime import datetime

from tests.capacity.conftest import most_at_once, nodes, span, timed
from tests.cli.helpers import base_env, runyard_cli
from tests.support import API, experiment, wait_phase


def _events(api, run: str) -> list[tuple[str, str]]:
    return [(e["reason"], e["message"]) for e in api.get(f"/runs/{run}/events").json()["items"]]


def test_runs_beyond_the_free_cores_wait_and_at_most_the_node_s_cores_run_at_once(node_server):
    api = node_server.api()
    names = [f"core-{i}" for i in range(4)]
    for name in names:
        api.put(f"/experiments/{name}", json=timed(name, 0.6, resources={"cpu": 1}))
    spans = [span(api, name)[1:] for name in names]
    assert most_at_once(spans) == 2
    waited = [m for name in names for reason, m in _events(api, name) if reason == "WaitingForResources"]
    assert waited and waited[0].startswith("waiting for 1 core: 2 of 2 held by core-")


def test_a_gpu_run_that_fits_later_waits_with_a_condition_then_gets_a_gpu_of_its_own(node_server):
    api = node_server.api()
    api.put("/experiments/big", json=timed("big", 1.5, resources={"gpu": 2}))
    wait_phase(api, "big", {"Running"})
    api.put("/experiments/small", json=timed("small", 0.1, resources={"gpu": 1}))
    api.put("/experiments/plain", json=timed("plain", 0.1))

    waiting = wait_phase(api, "small", {"Queued"})["status"]
    for _ in range(100):  # Admitted first, then the reservation's answer
        if waiting["reason"] == "WaitingForResources":
            break
        time.sleep(0.05)
        waiting = api.get("/runs/small").json()["status"]
    assert (waiting["reason"], waiting["message"]) == (
        "WaitingForResources",
        "waiting for 1 GPU: 2 of 2 held by big",
    )
    cond = next(c for c in waiting["conditions"] if c["type"] == "ResourcesAvailable")
    assert (cond["status"], cond["reason"]) == ("False", "WaitingForResources")

    node = nodes(node_server)[0]
    assert node["allocated"]["gpu"] == 2 and node["capacity"]["gpu"] == 2
    assert [(g["index"], g["run"], g["simulated"]) for g in node["gpus"]] == [
        (0, "big", True),
        (1, "big", True),
    ]
    shown = runyard_cli("nodes", env=node_server_env(node_server))
    assert shown.returncode == 0, shown.stderr
    assert "2/2" in shown.stdout and "big" in shown.stdout and "Simulated GPU" in shown.stdout

    big, small, plain = span(api, "big"), span(api, "small"), span(api, "plain")
    assert big[0] == "0,1" and small[0] in ("0", "1") and plain[0] == ""  # a run without GPUs sees none
    assert small[1] >= big[2]
    done = api.get("/runs/small").json()["status"]
    assert done["allocation"]["gpus"] == [int(small[0])]
    cond = next(c for c in done["conditions"] if c["type"] == "ResourcesAvailable")
    assert cond["status"] == "True"


def node_server_env(srv) -> dict[str, str]:
    return {**base_env(), "RUNYARD_API_URL": srv.url, "RUNYARD_TOKEN": srv.token}


def test_a_gpu_held_in_another_project_is_not_named_to_its_readers(node_server):
    admin = node_server.api()
    assert admin.post(f"{node_server.url}{API}/projects", json={"name": "elsewhere"}).status_code == 201
    r = admin.post(
        f"{node_server.url}{API}/tokens", json={"name": "v", "role": "viewer", "project": "elsewhere"}
    )
    viewer = r.json()["token"]
    admin.put(
        "/experiments/hidden",
        json=experiment("hidden", "sleep 30", resources={"gpu": 1}, stopGracePeriodSeconds=1),
    )
    wait_phase(admin, "hidden", {"Running"})
    try:
        held = [g["run"] for g in nodes(node_server, viewer)[0]["gpus"] if g["run"]]
        assert held == ["(another project)"]
        out = runyard_cli(
            "nodes", "-o", "json", env={**node_server_env(node_server), "RUNYARD_TOKEN": viewer}
        )
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["items"][0]["allocated"]["gpu"] == 1
    finally:
        assert admin.delete("/runs/hidden").status_code == 200  # deleting it frees its GPU
    deadline = time.monotonic() + 20
    while nodes(node_server)[0]["allocated"]["gpu"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert nodes(node_server)[0]["allocated"]["gpu"] == 0


def test_an_attempt_that_fails_frees_its_gpus_during_the_retry_backoff(node_server):
    api = node_server.api()
    flaky = 'sleep 0.5; [ "$RUNYARD_ATTEMPT" = 2 ]'
    policy = {"maxRetries": 1, "backoffSeconds": 3}
    api.put("/experiments/flaky", json=experiment("flaky", flaky, resources={"gpu": 2}, retryPolicy=policy))
    wait_phase(api, "flaky", {"Running"})
    api.put("/experiments/between", json=timed("between", 0.1, resources={"gpu": 1}))
    _, _, between_end = span(api, "between")
    done = wait_phase(api, "flaky", {"Succeeded"}, timeout=30)["status"]
    second = datetime.fromisoformat(done["attempts"][1]["startedAt"]).timestamp()
    assert between_end < second  # it ran in the backoff, on a GPU the failed attempt gave back
    assert done["allocation"]["gpus"] == [0, 1]
