"""list + watch over HTTP: a watch from a list's revision sees exactly the later changes, in order."""

from __future__ import annotations

import json
import threading

import httpx
from tests.support import experiment, wait_phase


def collect(api: httpx.Client, params: dict, until, out: list) -> None:
    """Read watch events into `out` until `until(out)` holds (bounded by the client timeout)."""
    with api.stream("GET", "/experiments", params={"watch": "true", **params}, timeout=30) as resp:
        assert resp.status_code == 200, resp.read()
        for raw in resp.iter_lines():
            out.append(json.loads(raw))
            if until(out):
                return


def test_a_watch_from_a_lists_revision_sees_the_lifecycle_of_a_new_experiment(server):
    api = server.api()
    api.put("/experiments/before", json=experiment("before", "true"))
    wait_phase(api, "before", {"Succeeded"})
    listed = api.get("/experiments").json()
    revision = listed["metadata"]["revision"]
    assert [i["metadata"]["name"] for i in listed["items"]] == ["before"]

    events: list[dict] = []
    done = lambda evs: any(e["type"] == "DELETED" for e in evs)  # noqa: E731
    watcher = threading.Thread(target=collect, args=(api, {"since": revision}, done, events))
    watcher.start()
    api.put("/experiments/watched", json=experiment("watched", "echo hi"))
    wait_phase(api, "watched", {"Succeeded"})
    api.delete("/experiments/watched")
    watcher.join(timeout=30)

    assert all(e["object"]["metadata"]["name"] == "watched" for e in events), "nothing from before the list"
    types = [e["type"] for e in events]
    assert types[0] == "ADDED" and types[-1] == "DELETED" and "MODIFIED" in types
    revisions = [e["revision"] for e in events]
    assert revisions == sorted(revisions) and revisions[0] > revision
    phases = [e["object"]["status"].get("phase") for e in events if e["type"] == "MODIFIED"]
    assert "Succeeded" in phases


def test_a_watch_without_a_revision_starts_with_what_exists(server):
    api = server.api()
    for name in ("one", "two"):
        api.put(f"/experiments/{name}", json=experiment(name, "true"))
    events: list[dict] = []
    collect(api, {}, lambda evs: len(evs) >= 2, events)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events[:2]] == [
        ("ADDED", "one"),
        ("ADDED", "two"),
    ]
