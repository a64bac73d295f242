"""GET .../runs/{name}/logs with tail (the last N lines) and since (lines at or after an RFC 3339 time)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from tests.support import experiment, wait_phase


def texts(api, run: str, **params) -> list[str]:
    r = api.get(f"/runs/{run}/logs", params=params)
    assert r.status_code == 200, r.text
    docs = [json.loads(x) for x in r.text.splitlines()]
    assert docs[-1]["end"]
    return [d["text"] for d in docs[:-1]]


def test_tail_and_since_select_the_lines(server):
    api = server.api()
    api.put("/experiments/count", json=experiment("count", "seq 5; sleep 0.2; seq 6 10"))  # two moments
    wait_phase(api, "count", {"Succeeded"})
    everything = api.get("/runs/count/logs").text.splitlines()[:-1]
    assert texts(api, "count") == [str(i) for i in range(1, 11)]
    assert texts(api, "count", tail=3) == ["8", "9", "10"]
    assert texts(api, "count", tail=0) == []
    assert texts(api, "count", tail=100, follow="true") == [str(i) for i in range(1, 11)]
    sixth = datetime.fromisoformat(json.loads(everything[5])["time"])
    assert texts(api, "count", since=sixth.isoformat())[0] == "6"
    assert texts(api, "count", since=(sixth + timedelta(days=1)).isoformat()) == []
    assert texts(api, "count", since=sixth.isoformat(), tail=2) == ["9", "10"]


def test_bad_tail_and_since_are_refused_naming_them(server):
    api = server.api()
    api.put("/experiments/one", json=experiment("one", "true"))
    for params, field in [
        ({"tail": -1}, "tail"),
        ({"tail": 10**9}, "tail"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-01-01T00:00:00"}, "since"),  # no offset: which zone?
    ]:
        r = api.get("/runs/one/logs", params=params)
        assert r.status_code == 422, (params, r.text)
        assert r.json()["error"]["details"][0]["field"] == field
