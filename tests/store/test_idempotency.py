"""Idempotency keys: a retry gets the first result, a different request under the same key gets 422."""

from __future__ import annotations

import pytest
from tests.support import experiment

from runyard.core.errors import Invalid
from runyard.core.resources import Experiment, parse_workload


def test_a_key_reused_for_a_different_request_is_refused_and_creates_nothing(store):
    first = store.create(parse_workload(experiment("a", "echo one")), idempotency_key="k1")
    again = store.create(parse_workload(experiment("a", "echo one")), idempotency_key="k1")
    assert again.uid == first.uid
    with pytest.raises(Invalid) as err:
        store.create(parse_workload(experiment("b", "echo two")), idempotency_key="k1")
    assert err.value.details[0].field == "Idempotency-Key"
    assert [r.metadata.name for r in store.list(Experiment)] == ["a"]


def test_over_http_a_reused_key_with_another_body_names_the_key(server):
    api = server.api()
    key = {"Idempotency-Key": "submit-7"}
    assert api.post("/experiments", json=experiment("x", "true"), headers=key).status_code == 201
    assert api.post("/experiments", json=experiment("x", "true"), headers=key).status_code == 201
    r = api.post("/experiments", json=experiment("y", "true"), headers=key)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["details"][0]["field"] == "Idempotency-Key"
    assert api.get("/experiments/y").status_code == 404


@pytest.mark.parametrize("key", ["k" * 129, "k" * 200, "has space", "tab\there", "ünïcode"])
def test_a_key_too_long_or_of_odd_characters_is_refused_before_the_store(server, key):
    r = server.api().post(
        "/experiments", json=experiment("z", "true"), headers={"Idempotency-Key": key.encode()}
    )
    assert r.status_code == 422, r.text
    assert [d["field"] for d in r.json()["error"]["details"]] == ["Idempotency-Key"]


def test_a_key_of_128_visible_characters_is_accepted(server):
    key = ("0123456789-_.:~+/=" * 8)[:128]
    r = server.api().put("/experiments/z", json=experiment("z", "true"), headers={"Idempotency-Key": key})
    assert r.status_code == 201, r.text
