"""The watch-fed cache: ordered by resourceVersion, a re-list turned into events, own writes not echoed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from runyard.controller.kube.informer import RELIST, Informer, pod_key, pod_version


def pod(name: str, rv: int) -> dict:
    return {"metadata": {"namespace": "ns", "name": name, "resourceVersion": str(rv)}}


class Script:
    """A source that lists `listed`, then plays `events` and ends."""

    def __init__(self, listed: list[dict], events: list[tuple[str, Any]]):
        self.listed, self.events = listed, events

    def list(self) -> tuple[list[dict], str]:
        return self.listed, "10"

    def watch(self, resource_version: str, stop: threading.Event) -> Iterator[tuple[str, Any]]:
        assert resource_version == "10"
        yield from self.events


def run(listed: list[dict], events: list[tuple[str, Any]]) -> tuple[Informer[dict], list[tuple[str, str]]]:
    seen: list[tuple[str, str]] = []
    informer = Informer(
        "pods",
        Script(listed, events),
        pod_key,
        pod_version,
        lambda t, p: seen.append((t, p["metadata"]["name"])),
    )
    informer.run(threading.Event())
    return informer, seen


def test_changes_are_applied_in_order_and_old_versions_ignored() -> None:
    informer, seen = run(
        [pod("a", 5)],
        [
            ("MODIFIED", pod("a", 11)),
            ("MODIFIED", pod("a", 11)),
            ("ADDED", pod("b", 12)),
            ("DELETED", pod("a", 13)),
        ],
    )
    assert seen == [("MODIFIED", "a"), ("MODIFIED", "a"), ("ADDED", "b"), ("DELETED", "a")]
    assert [p["metadata"]["name"] for p in informer.items()] == ["b"]


def test_a_relist_yields_only_the_differences() -> None:
    informer, seen = run([pod("a", 5), pod("b", 6)], [(RELIST, [pod("b", 6), pod("c", 20)])])
    assert seen[2:] == [("DELETED", "a"), ("MODIFIED", "c")]  # b unchanged: no event
    assert sorted(p["metadata"]["name"] for p in informer.items()) == ["b", "c"]


def test_its_own_write_is_cached_without_an_event_and_not_echoed_by_the_watch() -> None:
    informer, seen = run([pod("a", 5)], [])
    informer.put(pod("a", 7))
    assert seen == [("MODIFIED", "a")] and informer.get(("ns", "a")) == pod("a", 7)
    informer._apply("MODIFIED", pod("a", 7))  # the watch's copy of the same write
    assert seen == [("MODIFIED", "a")]
