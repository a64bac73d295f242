"""Lists filtered by label: the filter is part of the query, so a page holds `limit` matches."""

from __future__ import annotations

import pytest
from tests.support import resource

from runyard.core.resources import Session, parse_workload


def session(name: str, labels: dict[str, str]):
    doc = resource("Session", name)
    doc["metadata"]["labels"] = labels
    return parse_workload(doc)


def test_a_label_filtered_page_holds_the_matches_that_come_late(store):
    for i in range(6):
        store.create(session(f"s{i}", {"team": "cv" if i >= 4 else "nlp"}))
    page = store.list(Session, "default", labels={"team": "cv"}, limit=2)
    assert [r.metadata.name for r in page] == ["s4", "s5"]


def test_every_label_of_the_selector_must_match_and_keys_with_dots_and_slashes_are_plain_keys(store):
    key = "runyard.dev/team.x"  # in a JSON path, '.' and '/' would need quoting
    store.create(session("both", {"a": "1", key: "2"}))
    store.create(session("one", {"a": "1"}))
    store.create(session("other", {"a": "2", key: "2"}))
    names = lambda labels: [r.metadata.name for r in store.list(Session, "default", labels=labels)]  # noqa: E731
    assert names({"a": "1"}) == ["both", "one"]
    assert names({"a": "1", key: "2"}) == ["both"]
    assert names({"missing": "1"}) == []


def test_paging_a_label_filtered_list_over_http_finds_every_match(server):
    api = server.api()
    for i in range(6):
        doc = resource("Session", f"s{i}")
        doc["metadata"]["labels"] = {"team": "cv" if i in (4, 5) else "nlp"}
        assert api.post("/sessions", json=doc).status_code == 201
    first = api.get("/sessions", params={"labelSelector": "team=cv", "limit": 2}).json()
    assert [i["metadata"]["name"] for i in first["items"]] == ["s4", "s5"]
    assert first["metadata"]["continue"]
    rest = api.get(
        "/sessions", params={"labelSelector": "team=cv", "continue": first["metadata"]["continue"]}
    )
    assert rest.json()["items"] == [] and rest.json()["metadata"]["continue"] is None


@pytest.mark.parametrize("selector", ["team=a\0b", "bad key=x", "team=" + "v" * 64])
def test_a_selector_no_label_could_match_is_refused_before_the_store(server, selector):
    r = server.api().get("/sessions", params={"labelSelector": selector})
    assert r.status_code == 422, r.text
    assert [d["field"] for d in r.json()["error"]["details"]] == ["labelSelector"]
